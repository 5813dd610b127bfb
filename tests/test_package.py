"""What the package is, apart from what it does: its import cost and its typed results."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import get_args

import creds_core
from creds_core.testing import ManualClock
from creds_core.types import BreakerState, CacheInspection, CacheState, CacheStats, LimiterStats

_PYTHON_SOURCE = str(Path(__file__).resolve().parents[1] / "python")


def _fresh_interpreter(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={"PYTHONPATH": _PYTHON_SOURCE, "PATH": "/usr/bin:/bin"},
    )
    return done.stdout.strip()


def test_import_creds_core_does_not_import_botocore() -> None:
    code = (
        "import sys, creds_core, creds_core.types\n"
        "c = creds_core.CredentialCache(lambda: creds_core.Credentials('AK', 's'))\n"
        "assert c.get().access_key_id == 'AK'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('botocore', 'boto3')))"
    )
    assert _fresh_interpreter(code) == "[]"


def test_to_botocore_imports_botocore_when_asked() -> None:
    code = (
        "import sys, creds_core\n"
        "frozen = creds_core.Credentials('AK', 's', 't').to_botocore()\n"
        "from botocore.credentials import ReadOnlyCredentials\n"
        "print(isinstance(frozen, ReadOnlyCredentials), 'botocore' in sys.modules)"
    )
    assert _fresh_interpreter(code) == "True True"


def test_cache_stats_and_inspect_have_the_typed_keys() -> None:
    clock = ManualClock()
    cache = creds_core.CredentialCache(
        lambda: creds_core.Credentials("AK", "s", expiry=clock.time() + 3600), clock=clock
    )
    assert cache.inspect()["state"] == "empty"
    cache.get()
    stats: CacheStats = cache.stats()
    inspection: CacheInspection = cache.inspect()
    assert set(stats) == set(CacheStats.__annotations__)
    assert set(inspection) == set(CacheInspection.__annotations__)
    assert inspection["state"] == "fresh"
    assert inspection["state"] in get_args(CacheState)
    clock.advance(timedelta(minutes=50))
    assert cache.inspect()["state"] == "advisory"
    clock.advance(59 * 60.0)
    assert cache.inspect()["state"] in get_args(CacheState)


def test_limiter_stats_have_the_typed_keys() -> None:
    limiter = creds_core.Limiter(max_concurrency=2, rate=10.0)
    stats: LimiterStats = limiter.stats()
    assert set(stats) == set(LimiterStats.__annotations__)
    assert stats["breaker"] in get_args(BreakerState)
    assert limiter.breaker in get_args(BreakerState)


def test_readme_links_and_images_work_from_an_index_page() -> None:
    # PyPI renders README.md alone: no docs/ beside it, and no ids on headings (so an in-page
    # #anchor goes nowhere there). Every link and image must be an absolute URL.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    readme = re.sub(r"```.*?```", "", readme, flags=re.DOTALL)  # code blocks hold no links
    readme = re.sub(r"`[^`\n]*`", "", readme)
    targets = re.findall(r"\]\(\s*<?([^)\s>]*)", readme)  # [text](x) and ![alt](x)
    targets += re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?\s*$", readme, flags=re.MULTILINE)
    targets += re.findall(
        r"""<(?:img|a|source)\b[^>]*?\b(?:src|href|srcset)=["']([^"']*)""", readme
    )
    relative = [t for t in targets if not re.match(r"(https?|mailto):", t)]
    assert targets
    assert relative == []
