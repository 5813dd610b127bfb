"""Who waits for a refresh and for how long: one wait per refresh, and queueing at a Limiter
is not a slow source (DESIGN.md). Real time, generous bounds: a busy machine passes."""

from __future__ import annotations

import asyncio
import threading
import time

from creds_core import CredentialCache, Credentials, Limiter
from creds_core.testing import ManualClock
from helpers import creds, wait_until


def test_a_caller_waits_at_most_once_per_refresh_for_a_slow_source() -> None:
    # load_timeout runs on a ManualClock: a call that waits can only end when the test moves
    # it, so "answered at once" is a call that returns while the clock stands still.
    calls = {"n": 0}
    slow = threading.Event()

    def provider() -> Credentials:
        calls["n"] += 1
        if calls["n"] > 1:
            slow.wait(60)  # the refresh outlives load_timeout many times over
        return creds(f"AK{calls['n']}", lifetime=3600)

    clock = ManualClock(time.time())
    cache = CredentialCache(provider, load_timeout=0.3, clock=clock)
    first = cache.get()
    waits_before = cache.stats()["waits"]
    cache.invalidate(first.access_key_id)  # the next call takes the mandatory path

    callers, rounds = 4, 6
    served: list[str] = []
    first_round_done = threading.Barrier(callers + 1)

    def caller() -> None:
        served.append(cache.get().access_key_id)  # waits for load_timeout
        first_round_done.wait(60)
        for _ in range(rounds - 1):
            served.append(cache.get().access_key_id)  # the refresh outlived it: at once

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: cache.stats()["waits"] - waits_before == callers, "4 callers wait")
        assert served == []  # nobody answered before load_timeout
        clock.advance(0.3)
        first_round_done.wait(60)
        for t in threads:
            t.join(20)
        assert not any(t.is_alive() for t in threads), "a later call waited again"
    finally:
        slow.set()
    assert served == ["AK1"] * (callers * rounds)  # the last good credentials, meanwhile
    # Each caller waited once (its load_timeout), then was answered at once.
    assert cache.stats()["waits"] - waits_before == callers
    assert 1 <= cache.stats()["timeouts"] <= callers  # a timer each, or the first one's news
    assert calls["n"] == 2


def test_three_hundred_first_loads_through_a_limiter_at_20_per_second_never_time_out() -> None:
    limiter = Limiter(rate=20.0)
    caches = [
        CredentialCache(
            lambda i=i: creds(f"AK{i:03d}", lifetime=3600), limiter=limiter, load_timeout=1.0
        )
        for i in range(300)
    ]

    async def all_at_once() -> list[object]:
        return await asyncio.gather(*(c.get_async() for c in caches), return_exceptions=True)

    started = time.monotonic()
    results = asyncio.run(asyncio.wait_for(all_at_once(), 120))
    took = time.monotonic() - started
    failures = [r for r in results if not isinstance(r, Credentials)]
    assert failures == [], f"{len(failures)} failed, e.g. {failures[0]!r}"
    assert [r.access_key_id for r in results if isinstance(r, Credentials)] == [
        f"AK{i:03d}" for i in range(300)
    ]
    assert took >= 10  # the limiter paced them: 300 calls at 20/s after a burst of 20
    assert sum(c.stats()["timeouts"] for c in caches) == 0
    assert limiter.stats()["waited_for_rate"] >= 250


def test_a_caller_with_credentials_to_serve_is_not_made_to_wait_for_a_limiter_slot() -> None:
    limiter = Limiter(max_concurrency=1)
    release = threading.Event()
    holding = threading.Event()

    def busy() -> Credentials:
        holding.set()
        release.wait(30)
        return creds("BUSY", lifetime=3600)

    calls = {"n": 0}

    def provider() -> Credentials:
        calls["n"] += 1
        return creds(f"AK{calls['n']}", lifetime=3600)

    cache = CredentialCache(provider, limiter=limiter, load_timeout=10)
    first = cache.get()
    holder = threading.Thread(target=CredentialCache(busy, limiter=limiter, load_timeout=30).get)
    holder.start()
    try:
        assert holding.wait(30)
        cache.invalidate(first.access_key_id)
        t = time.perf_counter()
        assert cache.get().access_key_id == "AK1"
        assert time.perf_counter() - t < 5  # load_timeout is 10 s: it did not wait for it
        assert calls["n"] == 1  # its refresh is queued for the slot
    finally:
        release.set()
        holder.join(30)
    wait_until(lambda: cache.stats()["refreshes_succeeded"] >= 2, "the queued refresh done", 30)
    assert cache.get().access_key_id == "AK2"
    assert cache.stats()["timeouts"] == 0
