"""A short tour of the cache over a slow credential source: a timeout, the fallback served,
later calls of the same refresh answered at once (one wait per refresh), and the late result
adopted when it finally arrives. Runs with no AWS account.

    python -m creds_core.demo
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from creds_core import CredentialCache, Credentials, Provider


class SlowSource(Provider):
    """A source that answers after `delay` seconds, and remembers what it served last."""

    name = "slow-source"

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0
        self.last: Credentials | None = None

    def provide(self) -> Credentials:
        self.calls += 1
        time.sleep(self.delay)
        expiry = datetime.now(timezone.utc) + timedelta(hours=1)
        self.last = Credentials(f"ASIADEMO{self.calls:012d}", "demo-secret", "demo-token", expiry)
        return self.last

    def fallback_on_interrupt(self) -> Credentials | None:
        return self.last


def _line(what: str, started: float, creds: Credentials | None = None) -> None:
    took = (time.perf_counter() - started) * 1000
    shown = f" -> {creds.access_key_id}" if creds is not None else ""
    print(f"  {what:<58} {took:8.1f} ms{shown}")


def main() -> None:
    source = SlowSource(delay=0.05)
    cache = CredentialCache(source, load_timeout=0.5, name="demo")
    print("creds_core demo: a cache over a credential source that becomes slow\n")

    t = time.perf_counter()
    first = cache.get()
    _line("1. first get(): the source answers in 50 ms", t, first)

    t = time.perf_counter()
    for _ in range(100_000):
        cache.get()
    per_call = (time.perf_counter() - t) / 100_000 * 1e9
    print(f"  2. 100,000 fresh get() calls: {per_call:.0f} ns per call (lock-free read)")

    source.delay = 2.0
    cache.invalidate(first.access_key_id)
    t = time.perf_counter()
    served = cache.get()
    _line("3. source now takes 2 s; load_timeout is 0.5 s: fallback served", t, served)
    stats = cache.stats()
    print(f"     timeouts={stats['timeouts']} fallbacks={stats['fallbacks']}")

    t = time.perf_counter()
    again = cache.get()
    _line("   the same refresh still runs: the next get() does not wait", t, again)

    t = time.perf_counter()
    while cache.stats()["late_results"] == 0:
        time.sleep(0.05)
    adopted = cache.get()
    _line("4. the timed-out call finishes: its late result is adopted", t, adopted)
    print(f"\n  source calls in all: {source.calls}; stats: {cache.stats()}")
    print(
        f"  inspect(): state={cache.inspect()['state']}, "
        f"advisory_window={cache.inspect()['advisory_window']:.0f}s"
    )


if __name__ == "__main__":
    main()
