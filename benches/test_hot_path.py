"""Hot path: a fresh CredentialCache.get() against botocore's RefreshableCredentials.

make bench            (or: .venv/bin/python -m pytest benches -q --benchmark-only)
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.credentials import RefreshableCredentials

from creds_core import CredentialCache, Credentials

EXPIRY = datetime.now(timezone.utc) + timedelta(hours=6)


def _metadata() -> dict[str, Any]:
    return {
        "access_key": "ASIABENCH",
        "secret_key": "bench-secret",
        "token": "bench-token",
        "expiry_time": EXPIRY.isoformat(),
    }


@pytest.mark.benchmark(group="hot-path: fresh credentials, 1 thread")
def test_creds_core_cache_get(benchmark: Any) -> None:
    cache = CredentialCache(lambda: Credentials("ASIABENCH", "bench-secret", "bench-token", EXPIRY))
    cache.get()
    result = benchmark(cache.get)
    assert result.access_key_id == "ASIABENCH"
    assert cache.stats()["source_calls"] == 1


@pytest.mark.benchmark(group="hot-path: fresh credentials, 1 thread")
def test_botocore_refreshable_get_frozen_credentials(benchmark: Any) -> None:
    creds = RefreshableCredentials.create_from_metadata(_metadata(), _metadata, "bench")
    result = benchmark(creds.get_frozen_credentials)
    assert result.access_key == "ASIABENCH"
