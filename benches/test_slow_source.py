"""Slow source: the refresh takes 30 s, scaled down here to 3 s so that the bench stays short.
How long do callers wait to be served while it runs?

8 caller threads call ``get()`` / ``get_frozen_credentials()`` in a loop for 4 s from the
moment the credentials enter a refresh window (1 h credentials; time moved with a
ManualClock that then follows real time, or a shifted ``time_fetcher`` for botocore):

* advisory window (expiry in 12 min; both libraries call this advisory): creds_core refreshes
  in the background; botocore refreshes inline in the caller that takes its lock.
* mandatory window (expiry in 30 s): creds_core callers wait at most ``load_timeout`` (1 s)
  once and are then served the still-valid cached credentials (fallback, static stability);
  once the refresh has outlived ``load_timeout``, later calls are answered at once (one wait
  per refresh); botocore callers all block on its refresh lock until the source answers.
* expired (1 s ago): as mandatory, but what creds_core serves after ``load_timeout`` is the
  last good, already expired, credentials (static stability; a service would answer
  ExpiredToken, which the boto3 adapter turns into one invalidation and a retry).

boto3-refresh-session and aws-assume-role-lib use botocore's ``RefreshableCredentials``
classes and its lock, so they behave as the botocore rows do.

make bench     (or: .venv/bin/python -m pytest benches/test_slow_source.py --benchmark-only)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from harness import QUICK, ShiftedTime, StubSource, Ticker, botocore_refreshable

from creds_core import CredentialCache
from creds_core.testing import ManualClock

GROUP = "slow source: refresh takes 3 s (30 s scaled down), 8 callers"
DELAY = 1.0 if QUICK else 3.0
RUN = DELAY + 1.0
CALLERS = 8
LOAD_TIMEOUT = 1.0
SLOW = 0.1  # a call slower than this waited for the source
THINK = 0.001  # between a caller's calls (a caller signs requests, it does not spin)
LIFETIME = 3600.0
WINDOWS = {"advisory": LIFETIME - 12 * 60, "mandatory": LIFETIME - 30, "expired": LIFETIME + 1}


def _callers(call: Callable[[], Any]) -> dict[str, Any]:
    first = [0.0] * CALLERS
    longest = [0.0] * CALLERS
    counts = [0] * CALLERS
    slow = [0] * CALLERS
    waited = [0.0] * CALLERS
    errors = [0] * CALLERS
    start = threading.Barrier(CALLERS + 1)

    def caller(slot: int) -> None:
        start.wait()
        began = time.perf_counter()
        while (t := time.perf_counter()) - began < RUN:
            try:
                call()
            except Exception:
                errors[slot] += 1
            took = time.perf_counter() - t
            if counts[slot] == 0:
                first[slot] = took
            counts[slot] += 1
            longest[slot] = max(longest[slot], took)
            slow[slot] += took > SLOW
            waited[slot] += took if took > SLOW else 0.0
            time.sleep(THINK)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(CALLERS)]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join()
    return {
        "all_served_after": max(first),
        "longest_wait": max(longest),
        "calls": sum(counts),
        "calls_waiting_over_100ms": sum(slow),
        "seconds_waited_over_100ms": sum(waited),
        "errors": sum(errors),
    }


def _creds_core(jump: float) -> dict[str, Any]:
    clock = ManualClock()
    source = StubSource(0.0, now=clock.now)
    cache = CredentialCache(source.creds_core, clock=clock, load_timeout=LOAD_TIMEOUT)
    cache.get()
    waits_before = cache.stats()["waits"]
    source.delay = DELAY
    clock.advance(jump)
    with Ticker(clock):
        info = _callers(cache.get)
        while cache.inspect()["refreshing"]:
            time.sleep(0.05)
    stats = cache.stats()
    info |= {"source_calls": source.calls - 1, "timeouts": stats["timeouts"]}
    info["caller_waits"] = stats["waits"] - waits_before
    info["static_stability"] = stats["static_stability"]
    return info


def _botocore(jump: float) -> dict[str, Any]:
    shift = ShiftedTime()
    source = StubSource(0.0, now=shift)
    creds = botocore_refreshable(source, shift)
    source.delay = DELAY
    shift.offset += jump
    info = _callers(creds.get_frozen_credentials)
    info["source_calls"] = source.calls - 1
    return info


CASES = [(lib, window) for window in WINDOWS for lib in ("creds_core", "botocore")]


@pytest.mark.parametrize(("lib", "window"), CASES, ids=[f"{w}-{lib}" for lib, w in CASES])
def test_slow_source(benchmark: Any, lib: str, window: str) -> None:
    benchmark.group = GROUP
    benchmark.name = f"{window} window: {lib}"
    run = _creds_core if lib == "creds_core" else _botocore
    infos: list[dict[str, Any]] = []
    benchmark.pedantic(lambda: infos.append(run(WINDOWS[window])), rounds=1, iterations=1)
    info = infos[0] | {"window": window, "source_delay": DELAY, "callers": CALLERS}
    if lib == "creds_core":
        info["load_timeout"] = LOAD_TIMEOUT
    benchmark.extra_info.update(info)
    assert info["errors"] == 0, info
    assert info["source_calls"] == 1, info
    if lib == "creds_core":
        if window == "advisory":
            assert info["caller_waits"] == 0, info  # nobody waits for the source at all
        else:  # nobody waits longer than load_timeout (plus scheduling slack)
            assert info["longest_wait"] < LOAD_TIMEOUT + 0.5, info
            # One wait per refresh: each caller waits once, then is answered at once.
            assert info["calls_waiting_over_100ms"] <= CALLERS, info
            assert info["caller_waits"] <= CALLERS, info
