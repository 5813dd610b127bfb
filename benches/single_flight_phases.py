"""Where the time of a single flight goes: the benchmark's stub case (1,000 threads leave a
barrier together on credentials that have just expired; the source takes 100 ms), with each
phase timed, for creds_core's CredentialCache and botocore's RefreshableCredentials.

* start: from the first call to the start of the source call;
* delivery: from the end of the source call to the last caller's return;
* all served: from the first call to the last return (the benchmark's figure);
* gap p50: the median time between two consecutive returns during the delivery (µs).

.venv/bin/python benches/single_flight_phases.py [ROUNDS]      (default 10; medians printed)
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from harness import ShiftedTime

from creds_core import CredentialCache, Credentials
from creds_core.testing import ManualClock

THREADS = 1000
DELAY = 0.1
PAST_EXPIRY = 3601.0


class Source:
    """A 100 ms source that notes when its last call started and ended (perf_counter)."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        self.began = self.ended = 0.0

    def _call(self) -> datetime:
        self.began = time.perf_counter()
        time.sleep(DELAY)
        self.ended = time.perf_counter()
        return self.now() + timedelta(hours=1)

    def creds_core(self) -> Credentials:
        return Credentials("ASIASTUB", "stub-secret", "stub-token", self._call())

    def botocore(self) -> dict[str, str]:
        expiry = self._call().isoformat()
        return {"access_key": "ASIASTUB", "secret_key": "s", "token": "t", "expiry_time": expiry}


def _creds_core() -> tuple[Callable[[], Any], Source]:
    clock = ManualClock()
    source = Source(clock.now)
    cache = CredentialCache(source.creds_core, clock=clock, load_timeout=30.0)
    cache.get()
    clock.advance(PAST_EXPIRY)
    return cache.get, source


def _botocore() -> tuple[Callable[[], Any], Source]:
    from botocore.credentials import RefreshableCredentials

    shift = ShiftedTime()
    source = Source(shift)
    creds: Any = RefreshableCredentials.create_from_metadata(
        source.botocore(), source.botocore, "bench"
    )
    creds._time_fetcher = shift
    shift.offset += PAST_EXPIRY
    return creds.get_frozen_credentials, source


def one_round(make: Callable[[], tuple[Callable[[], Any], Source]]) -> dict[str, float]:
    call, source = make()
    starts = [0.0] * THREADS
    ends = [0.0] * THREADS
    barrier = threading.Barrier(THREADS)

    def one(slot: int) -> None:
        barrier.wait()
        starts[slot] = time.perf_counter()
        call()
        ends[slot] = time.perf_counter()

    workers = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    first, last = min(starts), max(ends)
    returns = sorted(ends)
    gaps = [b - a for a, b in zip(returns, returns[1:])]
    return {
        "start": source.began - first,
        "delivery": last - source.ended,
        "all served": last - first,
        "gap p50": statistics.median(gaps) * 1000,  # µs once scaled to ms below
    }


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    cases = {
        "creds_core CredentialCache": _creds_core,
        "botocore RefreshableCredentials": _botocore,
    }
    seen: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, make in cases.items():  # interleaved, so both see the same machine
            seen[name].append(one_round(make))
    print(
        f"{THREADS} threads, {DELAY * 1000:.0f} ms source, median of {rounds} rounds (ms; gap µs):"
    )
    for name, results in seen.items():
        medians = {k: statistics.median(r[k] for r in results) * 1000 for k in results[0]}
        low = min(r["start"] for r in results) * 1000
        high = max(r["start"] for r in results) * 1000
        line = "  ".join(
            f"{k} {v:.0f}" if k == "gap p50" else f"{k} {v:.1f}" for k, v in medians.items()
        )
        print(f"  {name}: {line}  (start {low:.1f}-{high:.1f})")


if __name__ == "__main__":
    main()
