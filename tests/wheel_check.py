"""`make wheel-check`: install the one abi3 wheel in dist/ into a fresh virtual environment of
the lowest and of the newest CPython (3.9+) found on this machine, and run a short smoke test
in each. Only one CPython found: a notice, and the check runs on that one.

Usage: python tests/wheel_check.py DIST_DIR WORK_DIR
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: What the wheel promises (pyproject.toml's requires-python).
LOWEST = (3, 9)

SMOKE = """
import sys
import creds_core, creds_core._core as core
assert 'botocore' not in sys.modules, 'import creds_core imported botocore'
cache = creds_core.CredentialCache(lambda: creds_core.Credentials('AK', 's', 't'))
assert cache.get().access_key_id == 'AK'
assert cache.inspect()['state'] == 'fresh'
assert cache.get().to_botocore().access_key == 'AK'
import creds_core.boto3
fixed = creds_core.Credentials('AKSESSION', 's')
session = creds_core.boto3.session(fixed, region_name='us-east-1')
assert session.get_credentials().get_frozen_credentials().access_key == 'AKSESSION'
print('wheel ok on Python %d.%d:' % sys.version_info[:2], core.__file__)
"""


def _candidates() -> list[str]:
    found = [sys.executable]
    for minor in range(LOWEST[1], 20):
        path = shutil.which(f"python3.{minor}")
        if path:
            found.append(path)
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    for root in filter(None, roots):
        found += sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python3")))
    return found


def _version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.implementation.name, *sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    if len(out) != 3 or out[0] != "cpython":
        return None
    version = (int(out[1]), int(out[2]))
    return version if version >= LOWEST else None


def interpreters() -> list[tuple[tuple[int, int], str]]:
    """The lowest and the newest CPython found (one entry when they are the same)."""
    by_version: dict[tuple[int, int], str] = {}
    for python in _candidates():
        version = _version(python)
        if version is not None:
            by_version.setdefault(version, python)
    if not by_version:
        raise SystemExit("wheel-check: no CPython 3.9+ found")
    ordered = sorted(by_version.items())
    return [ordered[0]] if len(ordered) == 1 else [ordered[0], ordered[-1]]


def main(dist: str, work: str) -> None:
    wheels = glob.glob(os.path.join(dist, "*-abi3-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"wheel-check: expected one abi3 wheel in {dist}, found {wheels}")
    wheel = os.path.abspath(wheels[0])
    chosen = interpreters()
    if len(chosen) == 1:
        print(
            f"wheel-check: only one CPython found ({chosen[0][0][0]}.{chosen[0][0][1]}); "
            "the lowest/newest check runs on it alone"
        )
    for (major, minor), python in chosen:
        venv = Path(work).resolve() / f"wheel-venv-{major}.{minor}"
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--disable-pip-version-check", wheel], check=True)
        # Outside the source tree, so that the installed wheel is what gets imported.
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", SMOKE], check=True, cwd="/", timeout=300
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
