"""Small providers for tests: counted, scripted, blocking on an event."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from creds_core import Credentials, Provider

SECRET = "SECRET-SENTINEL-wJalrXUtnFEMI"
TOKEN = "TOKEN-SENTINEL-FwoGZXIvYXdzE"


def creds(
    key: str,
    expiry: datetime | None = None,
    *,
    lifetime: float | None = None,
    now: datetime | None = None,
) -> Credentials:
    """Credentials with sentinel secrets, expiring at `expiry` or `lifetime` seconds from `now`."""
    if expiry is None and lifetime is not None:
        expiry = (now or datetime.now(timezone.utc)) + timedelta(seconds=lifetime)
    return Credentials(key, SECRET, TOKEN, expiry)


class Scripted(Provider):
    """Answers with `answer(call_number)`, counting calls; optionally blocks on `gate` first."""

    def __init__(self, answer: Callable[[int], Any], *, name: str = "scripted") -> None:
        self.answer = answer
        self.calls = 0
        self.name = name
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fallback: Credentials | None = None
        self._lock = threading.Lock()

    def provide(self) -> Any:
        with self._lock:
            self.calls += 1
            n = self.calls
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        return self.answer(n)

    def fallback_on_interrupt(self) -> Credentials | None:
        return self.fallback
