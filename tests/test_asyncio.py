"""The async door: an already-done awaitable on fresh credentials, many waiting coroutines
served by one refresh without stalling the loop, and coroutine providers on creds_core's one
long-lived event loop (timeouts, fallbacks and fork as for sync providers)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from creds_core import CredentialCache, Credentials, Provider, ProviderTimedOut
from helpers import Scripted, creds, wait_until, wait_until_async


class Ticker:
    """Measures the longest gap between turns of the running loop (a stall)."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.max_gap = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.max_gap = max(self.max_gap, loop.time() - before - self.interval)

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.ensure_future(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


def _run_without_a_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine by hand: it must finish on its first step, never yielding to a loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("the coroutine yielded: something was scheduled")


# -- 1. the async fast path ------------------------------------------------------------------


def test_get_async_on_fresh_credentials_is_already_done_and_schedules_nothing() -> None:
    cache = CredentialCache(lambda: creds("FRESH", lifetime=3600))
    cached = cache.get()

    async def twice() -> tuple[Credentials, Credentials]:
        awaitable = cache.get_async()
        return await awaitable, await awaitable  # done, so it may be awaited again

    first, second = _run_without_a_loop(twice())
    assert first is cached and second is cached


def test_get_async_works_with_asyncio_helpers_on_both_paths() -> None:
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=3600))
    cache = CredentialCache(p)

    async def main() -> list[str]:
        waited = await asyncio.wait_for(cache.get_async(), 30)  # nothing cached: a future
        fresh = await asyncio.wait_for(cache.get_async(), 30)  # fresh: already done
        task = await asyncio.ensure_future(cache.get_async())
        gathered = await asyncio.gather(cache.get_async(), cache.get_async())
        return [c.access_key_id for c in (waited, fresh, task, *gathered)]

    assert asyncio.run(main()) == ["AK1"] * 5
    assert p.calls == 1


def test_get_async_raises_the_cache_error_to_every_waiter() -> None:
    release = threading.Event()

    def failing() -> Credentials:
        release.wait(30)
        raise ProviderTimedOut("not a secret")  # any CredentialsError subclass

    cache = CredentialCache(failing, load_timeout=30)

    async def main() -> list[BaseException | Credentials]:
        waiters = [cache.get_async() for _ in range(20)]
        release.set()  # every waiter is in before the source answers: one refresh, one error
        return await asyncio.gather(*waiters, return_exceptions=True)

    results = asyncio.run(main())
    assert len(results) == 20
    assert all(isinstance(r, ProviderTimedOut) for r in results)
    assert len({id(r) for r in results}) == 20  # one exception object per waiter
    assert (cache.stats()["source_calls"], cache.stats()["timeouts"]) == (1, 0)


def test_a_cancelled_waiter_does_not_disturb_the_others() -> None:
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=3600))
    p.gate = threading.Event()
    cache = CredentialCache(p)

    async def main() -> list[str]:
        waiters = [asyncio.ensure_future(cache.get_async()) for _ in range(10)]
        # The refresh is in the source and the loop's waiters wait for it (one shared wait).
        await wait_until_async(
            lambda: p.entered.is_set() and cache.stats()["waits"] >= 1, "the waiters waiting"
        )
        waiters[3].cancel()
        assert p.gate is not None
        p.gate.set()
        done = await asyncio.gather(*waiters, return_exceptions=True)
        return [d.access_key_id if isinstance(d, Credentials) else type(d).__name__ for d in done]

    got = asyncio.run(main())
    assert got[3] == "CancelledError"
    assert got[:3] + got[4:] == ["AK1"] * 9


# -- 2. many waiters ---------------------------------------------------------------------------


def test_ten_thousand_coroutines_share_one_refresh_without_stalling_the_loop() -> None:
    latency = 0.2
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=3600))
    original = p.answer
    p.answer = lambda n: (time.sleep(latency), original(n))[1]
    p.gate = threading.Event()  # the source answers (after its latency) once the test counted
    cache = CredentialCache(p, load_timeout=30)
    threads_before = threading.active_count()

    async def main() -> tuple[list[Credentials], float, float, int]:
        async with Ticker() as ticker:
            start = time.perf_counter()
            waiters = [asyncio.ensure_future(cache.get_async()) for _ in range(10_000)]
            await wait_until_async(
                lambda: p.entered.is_set() and cache.stats()["waits"] >= 1,
                "the refresh in the source, the coroutines waiting",
            )
            threads_while_waiting = threading.active_count()
            assert p.gate is not None
            p.gate.set()
            got = await asyncio.gather(*waiters)
            took = time.perf_counter() - start
        return got, took, ticker.max_gap, threads_while_waiting

    got, took, stall, threads_while_waiting = asyncio.run(main())
    assert p.calls == 1
    assert {c.access_key_id for c in got} == {"AK1"}
    # Waiting coroutines hold no thread: a handful at most (the provider's, the runtime's).
    assert threads_while_waiting - threads_before < 20
    # Generous bounds for a busy machine; benches/test_asyncio.py measures the real figures
    # (served within the latency plus a few ms, loop stalls of a few ms).
    assert took < latency + 5.0
    assert stall < 1.0


def test_waiters_on_two_event_loops_are_each_served() -> None:
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=3600))
    p.gate = threading.Event()
    cache = CredentialCache(p)
    results: dict[str, set[str]] = {}

    def on_its_own_loop(name: str) -> None:
        async def main() -> set[str]:
            got = await asyncio.gather(*(cache.get_async() for _ in range(100)))
            return {c.access_key_id for c in got}

        results[name] = asyncio.run(main())

    threads = [threading.Thread(target=on_its_own_loop, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    assert p.entered.wait(30)
    # One wait per event loop (its coroutines share it): both loops wait for the refresh.
    wait_until(lambda: cache.stats()["waits"] == 2, "the waiters of both loops waiting")
    assert p.gate is not None
    p.gate.set()
    for t in threads:
        t.join(30)
    assert results == {"a": {"AK1"}, "b": {"AK1"}}
    assert p.calls == 1


# -- 3. one loop for coroutine providers -------------------------------------------------------


class LoopBound(Provider):
    """An async provider that keeps a loop-bound client: an asyncio.Queue made on first use
    and a future of that loop, both unusable from any other loop. It answers after `delay`
    seconds and, given `release`, not before that event is set (awaited, never blocking the
    loop)."""

    name = "loop-bound"

    def __init__(self, delay: float = 0.0, release: threading.Event | None = None) -> None:
        self.delay = delay
        self.release = release
        self.calls = 0
        self.loops: set[int] = set()
        self.threads: set[str] = set()
        self.queue: asyncio.Queue[int] | None = None
        self.fallback: Credentials | None = None

    async def provide(self) -> Credentials:
        self.calls += 1
        self.loops.add(id(asyncio.get_running_loop()))
        self.threads.add(threading.current_thread().name)
        if self.queue is None:
            self.queue = asyncio.Queue()
        self.queue.put_nowait(self.calls)
        await self.queue.get()  # fails on a loop other than the one it is bound to
        await asyncio.sleep(self.delay)
        if self.release is not None:
            await wait_until_async(self.release.is_set, "the test releasing the source", 60)
        return creds(f"LOOP{self.calls}", lifetime=3600)

    def fallback_on_interrupt(self) -> Credentials | None:
        return self.fallback


def test_a_coroutine_provider_keeps_its_loop_bound_client_across_refreshes_and_doors() -> None:
    p = LoopBound()
    cache = CredentialCache(p)
    assert cache.get().access_key_id == "LOOP1"
    cache.invalidate()

    async def from_a_loop() -> str:
        return (await cache.get_async()).access_key_id

    assert asyncio.run(from_a_loop()) == "LOOP2"
    cache.invalidate()
    assert asyncio.run(from_a_loop()) == "LOOP3"
    cache.invalidate()
    assert cache.get().access_key_id == "LOOP4"
    assert len(p.loops) == 1
    assert p.threads == {"creds-core-loop"}


def test_async_providers_of_many_caches_run_concurrently_on_the_one_loop() -> None:
    providers = [LoopBound(delay=0.2) for _ in range(50)]
    caches = [CredentialCache(p) for p in providers]

    async def main() -> set[str]:
        got = await asyncio.gather(*(c.get_async() for c in caches))
        return {g.access_key_id for g in got}

    start = time.perf_counter()
    assert asyncio.run(main()) == {"LOOP1"}
    # 50 times 0.2 s one after the other would take 10 s: they overlap on the loop.
    assert time.perf_counter() - start < 8.0
    assert {t for p in providers for t in p.threads} == {"creds-core-loop"}


def test_a_slow_coroutine_provider_times_out_into_its_fallback_like_a_sync_one() -> None:
    release = threading.Event()  # the source answers only once the test is done waiting
    p = LoopBound(release=release)
    p.fallback = creds("FALLBACK", lifetime=3600)
    cache = CredentialCache(p, load_timeout=0.1)
    try:
        assert cache.get().access_key_id == "FALLBACK"

        async def from_a_loop() -> str:
            return (await cache.get_async()).access_key_id

        assert asyncio.run(from_a_loop()) == "FALLBACK"
        assert cache.stats()["fallbacks"] >= 1
        assert p.calls == 1  # the second caller joined the refresh still running
    finally:
        release.set()
    # The timed-out call is not abandoned: its late result is adopted.
    wait_until(lambda: cache.get().access_key_id == "LOOP1", "the late result adopted", 30)
    assert cache.stats()["late_results"] == 1


def test_a_slow_coroutine_provider_without_fallback_raises_provider_timed_out() -> None:
    release = threading.Event()  # the source answers only once the test is done
    cache = CredentialCache(LoopBound(release=release), load_timeout=0.1)

    async def from_a_loop() -> Credentials:
        return await cache.get_async()

    try:
        with pytest.raises(ProviderTimedOut):
            asyncio.run(from_a_loop())
        with pytest.raises(ProviderTimedOut):
            cache.get()
    finally:
        release.set()


def test_a_coroutine_provider_awaiting_another_cache_is_a_nested_lookup() -> None:
    source = CredentialCache(LoopBound(delay=0.01), name="source")

    class Role(Provider):
        name = "role"

        async def provide(self) -> Credentials:
            src = await source.get_async()
            return creds(f"ROLE-{src.access_key_id}", lifetime=3600)

    assert CredentialCache(Role()).get().access_key_id == "ROLE-LOOP1"


def test_a_coroutine_provider_that_needs_its_own_cache_gets_a_cycle_error() -> None:
    from creds_core import CredentialCycleError

    holder: list[CredentialCache] = []

    class Selfish(Provider):
        async def provide(self) -> Credentials:
            return await holder[0].get_async()

    holder.append(CredentialCache(Selfish(), load_timeout=5.0))
    with pytest.raises(CredentialCycleError):
        holder[0].get()


def test_a_callable_returning_an_awaitable_runs_it_on_creds_core_loop() -> None:
    threads: list[str] = []

    async def work() -> Credentials:
        threads.append(threading.current_thread().name)
        return creds("AWAITABLE", lifetime=3600)

    cache = CredentialCache(lambda: work())
    assert cache.get().access_key_id == "AWAITABLE"
    assert threads == ["creds-core-loop"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_the_loop_of_coroutine_providers_is_rebuilt_in_a_forked_child() -> None:
    p = LoopBound()
    cache = CredentialCache(p)
    assert cache.get().access_key_id == "LOOP1"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            p.queue = None  # the parent's loop-bound client is not the child's
            cache.invalidate()
            ok = cache.get().access_key_id == "LOOP2"

            async def from_a_loop() -> str:
                cache.invalidate()
                return (await cache.get_async()).access_key_id

            ok = ok and asyncio.run(from_a_loop()) == "LOOP3"
            code = 0 if ok else 2
        finally:
            os.write(w, bytes([code]))
            os._exit(code)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    assert os.read(r, 1) == b"\x00"
    assert os.waitstatus_to_exitcode(status) == 0
    cache.invalidate()
    assert cache.get().access_key_id == "LOOP2"  # the parent's loop goes on
