"""The threading rules: no deadlock with nested lookups on a tiny pool, cycles found, the GIL
released while waiting, safe from asyncio threads, Ctrl-C and fork."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from creds_core import CredentialCache, CredentialCycleError, Credentials, Provider
from helpers import CTRL_C_RAISES, Scripted, creds, posix_signals, wait_until


@pytest.fixture
def tiny_pool(runtime_sizes: Callable[..., None]) -> None:
    runtime_sizes(worker_threads=1, max_blocking_threads=4)


class AssumeRoleLike(Provider):
    """Needs credentials of its own (like an assume-role provider asking its source cache)."""

    def __init__(self, source: CredentialCache, n: int) -> None:
        self.source = source
        self.n = n
        self.name = f"role-{n}"

    def provide(self) -> Credentials:
        source = self.source.get()  # nested lookup, on a provider thread
        time.sleep(0.001)  # the "STS call"
        return creds(f"ROLE{self.n}-{source.access_key_id}", lifetime=3600)


def test_a_thousand_nested_lookups_complete_on_a_pool_of_four(tiny_pool: None) -> None:
    n = 1000
    sources = [
        CredentialCache(Scripted(lambda k, i=i: creds(f"SRC{i}", lifetime=3600))) for i in range(n)
    ]
    roles = [CredentialCache(AssumeRoleLike(sources[i], i)) for i in range(n)]
    started = time.monotonic()
    with ThreadPoolExecutor(64) as pool:
        keys = list(pool.map(lambda c: c.get().access_key_id, roles, timeout=60))
    assert time.monotonic() - started < 60
    assert keys == [f"ROLE{i}-SRC{i}" for i in range(n)]
    assert all(s.stats()["source_calls"] == 1 for s in sources)


def test_nested_lookups_sharing_one_source_complete_on_a_pool_of_four(tiny_pool: None) -> None:
    source_provider = Scripted(lambda k: creds(f"SRC{k}", lifetime=3600))
    source = CredentialCache(source_provider)
    roles = [CredentialCache(AssumeRoleLike(source, i)) for i in range(200)]
    with ThreadPoolExecutor(64) as pool:
        keys = list(pool.map(lambda c: c.get().access_key_id, roles, timeout=60))
    assert keys == [f"ROLE{i}-SRC1" for i in range(200)]
    assert source_provider.calls == 1


def test_a_provider_that_needs_its_own_cache_gets_a_cycle_error() -> None:
    holder: dict[str, CredentialCache] = {}
    holder["self"] = CredentialCache(lambda: holder["self"].get(), name="selfish")
    started = time.monotonic()
    with pytest.raises(CredentialCycleError, match="selfish"):
        holder["self"].get()
    assert time.monotonic() - started < 2


def test_two_providers_that_need_each_other_get_a_cycle_error() -> None:
    holder: dict[str, CredentialCache] = {}
    holder["a"] = CredentialCache(lambda: holder["b"].get(), name="a", load_timeout=30)
    holder["b"] = CredentialCache(lambda: holder["a"].get(), name="b", load_timeout=30)
    started = time.monotonic()
    with pytest.raises(CredentialCycleError):
        holder["a"].get()
    assert time.monotonic() - started < 5


def test_get_from_a_thread_running_an_asyncio_loop_works() -> None:
    cache = CredentialCache(lambda: creds("AK", lifetime=3600))

    async def main() -> tuple[str, str]:
        blocking = cache.get()  # the blocking door, on the loop's thread
        awaited = await cache.get_async()
        return blocking.access_key_id, awaited.access_key_id

    assert asyncio.run(main()) == ("AK", "AK")


def test_waiting_for_a_refresh_releases_the_gil() -> None:
    # The source takes 0.5 s, from its start: the caller waits that long whenever it comes.
    p = Scripted(lambda n: (time.sleep(0.5), creds("AK", lifetime=3600))[1])
    cache = CredentialCache(p)
    counter = {"n": 0}
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            counter["n"] += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    before = counter["n"]
    cache.get()  # waits ~0.5 s
    progressed = counter["n"] - before
    stop.set()
    spinner.join()
    assert progressed > 10_000


@posix_signals
@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_interrupts_a_thread_waiting_for_credentials() -> None:
    gate = threading.Event()
    p = Scripted(lambda n: creds("AK", lifetime=3600))
    p.gate = gate
    cache = CredentialCache(p, load_timeout=30)
    main = threading.main_thread()
    assert threading.current_thread() is main
    interrupted_at: list[float] = []

    def interrupt_once_waiting() -> None:
        # Ctrl-C once the main thread waits for the refresh, not before it called get().
        wait_until(lambda: cache.stats()["waits"] >= 1, "the main thread waiting", 30)
        interrupted_at.append(time.monotonic())
        signal.pthread_kill(main.ident or 0, signal.SIGINT)

    sender = threading.Thread(target=interrupt_once_waiting, daemon=True)
    sender.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            cache.get()
        returned = time.monotonic()
    finally:
        gate.set()
    sender.join(30)
    assert returned - interrupted_at[0] < 10  # at once, not after the 30 s load timeout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_cache_used_before_fork_keeps_working_and_refreshing_in_the_child() -> None:
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=3600))
    cache = CredentialCache(p)
    assert cache.get().access_key_id == "AK1"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            ok = cache.get().access_key_id == "AK1"
            cache.invalidate("AK1")
            ok = ok and cache.get().access_key_id == "AK2"  # a refresh in the child
            code = 0 if ok else 2
        finally:
            os.write(w, bytes([code]))
            os._exit(code)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    assert os.read(r, 1) == b"\x00"
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get().access_key_id == "AK1"  # the parent is untouched


def test_every_provider_call_runs_off_the_calling_thread_and_off_the_loop() -> None:
    seen: list[Any] = []

    def provider() -> Credentials:
        seen.append(threading.get_ident())
        return creds("AK", lifetime=3600)

    cache = CredentialCache(provider)

    async def main() -> None:
        await cache.get_async()

    asyncio.run(main())
    assert seen and seen[0] != threading.get_ident()


def test_providers_run_on_python_threads_with_nested_refreshes_on_threads_of_their_own() -> None:
    # Python-created threads (not Rust threads that Python sees as "dummy" threads): CPython
    # can end them at interpreter exit without unwinding Rust frames.
    seen: dict[str, threading.Thread] = {}

    def source_provider() -> Credentials:
        seen["source"] = threading.current_thread()
        return creds("SRC", lifetime=3600)

    source = CredentialCache(source_provider)

    def role_provider() -> Credentials:
        seen["role"] = threading.current_thread()
        return creds("ROLE-" + source.get().access_key_id, lifetime=3600)

    assert CredentialCache(role_provider).get().access_key_id == "ROLE-SRC"
    assert not isinstance(seen["role"], threading._DummyThread)
    assert not isinstance(seen["source"], threading._DummyThread)
    assert seen["role"].daemon and seen["source"].daemon
    assert seen["role"].name.startswith("creds-core-provider-")
    assert seen["source"].name.startswith("creds-core-nested-")


def test_top_level_provider_calls_share_a_pool_of_max_blocking_threads(
    runtime_sizes: Callable[..., None],
) -> None:
    runtime_sizes(max_blocking_threads=2)
    lock = threading.Condition()
    running = 0
    peak = 0

    def provider() -> Credentials:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            lock.notify_all()
            # The first call waits for a second one to run beside it, however busy the
            # machine (with a pool of one it never comes: peak stays 1)...
            lock.wait_for(lambda: peak >= 2, timeout=30)
        time.sleep(0.1)  # ...then each takes a while, so that a third one at once would show
        with lock:
            running -= 1
        return creds("AK", lifetime=3600)

    caches = [CredentialCache(provider, load_timeout=30) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        keys = list(pool.map(lambda c: c.get().access_key_id, caches, timeout=30))
    assert keys == ["AK"] * 6
    assert peak == 2


def test_resizing_the_runtime_retires_the_old_provider_threads(
    runtime_sizes: Callable[..., None],
) -> None:
    def pool_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("creds-core-")}

    runtime_sizes(max_blocking_threads=3)
    earlier = pool_threads()  # other tests' threads, if any are still ending
    cache = CredentialCache(lambda: creds("AK", lifetime=3600))
    assert cache.get().access_key_id == "AK"
    old = pool_threads() - earlier
    assert any(t.name == "creds-core-spawner" for t in old)
    assert any(t.name.startswith("creds-core-provider-") for t in old)
    runtime_sizes(max_blocking_threads=2)
    # The old pool's idle workers and its spawner end at once, not after their 10 s idle time.
    wait_until(lambda: not any(t.is_alive() for t in old), "the old pool's threads ended", 8)
    # The new pool serves the next refresh.
    assert CredentialCache(lambda: creds("AK2", lifetime=3600)).get().access_key_id == "AK2"
    assert pool_threads() - old


def _runtime_threads() -> int:
    """The shared tokio runtimes' threads in this process (their OS name is creds-core)."""
    count = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                count += comm.read().strip() == "creds-core"
        except OSError:
            continue
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
def test_resizing_the_runtime_again_and_again_does_not_accumulate_threads(
    runtime_sizes: Callable[..., None],
) -> None:
    for i in range(6):
        runtime_sizes(worker_threads=2, max_blocking_threads=4)
        cache = CredentialCache(lambda i=i: creds(f"AK{i}", lifetime=3600))
        assert cache.get().access_key_id == f"AK{i}"
    # The replaced runtimes shut down once their work is done: what is left is the current
    # runtime's 2 workers and at most 4 blocking threads (6 runtimes kept would be 12 or more).
    wait_until(lambda: _runtime_threads() <= 6, "the replaced runtimes' threads ended", 30)
    assert CredentialCache(lambda: creds("AK", lifetime=3600)).get().access_key_id == "AK"


_FORK_FROM_A_THREAD = (
    CTRL_C_RAISES
    + """
import os, signal, sys, threading, time
from creds_core import CredentialCache, Credentials

CredentialCache(lambda: Credentials("AK", "s")).get()  # the parent's main thread waited once
gate = threading.Event()
codes = []

def slow():
    gate.wait(60)
    return Credentials("AK2", "s")

def fork_here():
    pid = os.fork()
    if pid == 0:  # this thread is the child's main thread
        me = threading.get_ident()
        cache = CredentialCache(slow, load_timeout=20)

        def interrupt_once_waiting():  # Ctrl-C once this thread waits in get(), not before
            while cache.stats()["waits"] < 1:
                time.sleep(0.005)
            signal.pthread_kill(me, signal.SIGINT)

        threading.Thread(target=interrupt_once_waiting, daemon=True).start()
        try:
            cache.get()
            code = 2
        except KeyboardInterrupt:
            code = 0
        except BaseException:
            code = 3
        os._exit(code)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))

thread = threading.Thread(target=fork_here)
thread.start()
thread.join(120)
gate.set()
print(codes)
"""
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_ctrl_c_reaches_a_waiting_main_thread_of_a_child_forked_from_another_thread() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _FORK_FROM_A_THREAD],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip() == "[0]", done.stderr
