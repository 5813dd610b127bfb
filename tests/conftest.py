"""Shared pytest setup: make the in-tree package and the test helpers importable."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
for _path in (_TESTS.parent / "python", _TESTS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# Fixtures shared by every test module, registered once (no imports of fixtures).
pytest_plugins = ["aws_isolation", "server_fixtures", "redis_fixtures"]


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """Python's own Ctrl-C handler (KeyboardInterrupt) for one test, however the test run was
    started: a run started in the background of a non-interactive shell inherits SIGINT
    ignored, and Python then installs no handler (scripts that the tests run set it too, see
    ``helpers.CTRL_C_RAISES``)."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.fixture
def runtime_sizes() -> Iterator[Callable[..., None]]:
    """``runtime_sizes(worker_threads=..., max_blocking_threads=...)`` resizes the shared
    runtime and its provider pool for one test; the sizes before are restored after it."""
    import creds_core

    before = creds_core.runtime_config()
    try:
        yield creds_core.configure_runtime
    finally:
        creds_core.configure_runtime(worker_threads=before[0], max_blocking_threads=before[1])
    assert creds_core.runtime_config() == before
