"""Shared pytest setup: make the in-tree package and the test helpers importable."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent
for _path in (_TESTS.parent / "python", _TESTS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

pytest_plugins = ["server_fixtures"]
