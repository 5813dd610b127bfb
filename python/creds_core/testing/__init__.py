"""Test helpers: a manual clock and the project's own local credential servers."""

from __future__ import annotations

from creds_core._core import ManualClock

__all__ = ["ManualClock"]
