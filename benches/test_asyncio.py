"""asyncio: the async hot path, ten thousand coroutines waiting for one refresh, and a
1,000-role async fan-out.

* Hot path (fresh credentials, in a running event loop): time per call of ``cache.get()``,
  ``await cache.get_async()``, ``await credentials.get_frozen_credentials()`` of
  ``creds_core.aiobotocore`` and of aiobotocore's ``AioRefreshableCredentials``, all measured
  in this process, the same way (best of 5 rounds of ``LOOPS`` iterations, the loop
  included); and of the peer aioboto3-assume, measured the same way in a virtual environment
  of its own (``aio_peer_worker.py``; it pins an older aiobotocore), built on first use in
  ``target/aio-peer-venv`` (skipped when it cannot be installed).
* Many waiters: ``WAITERS`` coroutines (tasks) awaiting one refresh whose source answers
  after 200 ms; when the last one is served, the longest stall of the loop while they wait
  and are woken (a ticker task sleeping 1 ms), source calls.  creds_core against
  aiobotocore's ``AioRefreshableCredentials`` (its
  refresh under an ``asyncio.Lock``).
* Fan-out: ready per-account aiobotocore S3 clients for 1,000 roles through the local
  StsServer (100 calls/s, 20 ms per answer), each case in a fresh process
  (``aio_fanout_worker.py``): ``fan_out_async`` against an ``AioSession`` per account made by
  hand (``PEER_ACCOUNTS`` accounts: at about 12 MB each, 1,000 would need 12 GB).  The
  fan-out is run a second time with Python's cyclic GC off: its full collections over a
  thousand held clients are most of the longest loop stall.

make bench     (or: .venv/bin/python -m pytest benches/test_asyncio.py --benchmark-only)
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from harness import QUICK, StubSource

from creds_core import CredentialCache
from creds_core.testing import StsServer

HOT = "asyncio hot path: fresh credentials, in a running loop"
WAIT = "asyncio many waiters: one refresh"
FAN = "asyncio fan-out: per-account S3 clients"
LOOPS = 20_000 if QUICK else 200_000
WAITERS = 10_000
SOURCE_LATENCY = 0.2
ROUNDS = 3
ACCOUNTS = int(os.environ.get("CREDS_CORE_BENCH_AIO_ACCOUNTS", 100 if QUICK else 1000))
PEER_ACCOUNTS = int(os.environ.get("CREDS_CORE_BENCH_AIO_PEERS", 20 if QUICK else 200))
ROOT = Path(__file__).resolve().parents[1]
PEER_VENV = ROOT / "target" / "aio-peer-venv"
PEER_PACKAGE = "aioboto3-assume"


def _expiry(seconds: float = 3600) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


def _metadata(key: str, seconds: float = 3600) -> dict[str, str]:
    return {
        "access_key": key,
        "secret_key": "bench-secret-not-real",
        "token": "bench-token",
        "expiry_time": _expiry(seconds).isoformat(),
    }


# --- hot path ------------------------------------------------------------------------------------


def _per_call(make: Callable[[], Any], awaited: bool) -> float:
    """Best of 5 rounds: seconds per iteration of a loop calling (and awaiting) ``make()``."""

    async def rounds() -> float:
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            if awaited:
                for _ in range(LOOPS):
                    await make()
            else:
                for _ in range(LOOPS):
                    make()
            best = min(best, (time.perf_counter() - started) / LOOPS)
        return best

    return asyncio.run(rounds())


def _creds_core_get() -> tuple[Callable[[], Any], bool]:
    cache = CredentialCache(StubSource().creds_core)
    cache.get()
    return cache.get, False


def _creds_core_get_async() -> tuple[Callable[[], Any], bool]:
    cache = CredentialCache(StubSource().creds_core)
    cache.get()
    return cache.get_async, True


def _creds_core_aiobotocore() -> tuple[Callable[[], Any], bool]:
    import creds_core.aiobotocore as ca

    session = ca.session(StubSource().creds_core)
    credentials = asyncio.run(session.get_credentials())
    asyncio.run(credentials.get_frozen_credentials())
    return credentials.get_frozen_credentials, True


def _aiobotocore() -> tuple[Callable[[], Any], bool]:
    from aiobotocore.credentials import AioRefreshableCredentials

    async def refresh() -> dict[str, str]:
        return _metadata("ASIAREFRESHED")

    credentials = AioRefreshableCredentials.create_from_metadata(
        _metadata("ASIAAIOBOTOCORE"), refresh_using=refresh, method="sts-assume-role"
    )
    return credentials.get_frozen_credentials, True


HOT_TARGETS: dict[str, Callable[[], tuple[Callable[[], Any], bool]]] = {
    "creds_core CredentialCache.get() (sync, in the loop)": _creds_core_get,
    "creds_core await CredentialCache.get_async()": _creds_core_get_async,
    "creds_core.aiobotocore get_frozen_credentials()": _creds_core_aiobotocore,
    "aiobotocore AioRefreshableCredentials.get_frozen_credentials()": _aiobotocore,
}


@pytest.mark.parametrize("name", list(HOT_TARGETS))
def test_hot_path(benchmark: Any, name: str) -> None:
    benchmark.group = HOT
    benchmark.name = name
    make, awaited = HOT_TARGETS[name]()
    seconds: list[float] = []
    benchmark.pedantic(lambda: seconds.append(_per_call(make, awaited)), rounds=1, iterations=1)
    benchmark.extra_info.update(seconds_per_call=min(seconds), loops=LOOPS)


def _peer_python() -> Path | None:
    """The peer's virtual environment (built once from the package registry), or None."""
    python = PEER_VENV / "bin" / "python"
    if python.exists():
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", PEER_PACKAGE],
            check=True,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    return python


def test_hot_path_of_the_async_peer(benchmark: Any) -> None:
    benchmark.group = HOT
    benchmark.name = "aioboto3-assume get_frozen_credentials() (own venv)"
    python = _peer_python()
    if python is None:
        pytest.skip(f"{PEER_PACKAGE} could not be installed in {PEER_VENV}")
    answers: list[dict[str, Any]] = []
    with StsServer(max_seconds=600) as sts:

        def run() -> None:
            done = subprocess.run(
                [
                    str(python),
                    str(Path(__file__).with_name("aio_peer_worker.py")),
                    sts.url,
                    str(LOOPS),
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
            answers.append(json.loads(done.stdout.strip().splitlines()[-1]))

        benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(
        seconds_per_call=answers[0]["seconds_per_await"],
        loops=LOOPS,
        versions=answers[0]["versions"],
    )


# --- many waiters --------------------------------------------------------------------------------


async def _storm(await_one: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """WAITERS coroutines awaiting at once: (seconds until the last is served, the longest
    stall of the loop while they wait and are woken).  Starting ten thousand tasks takes one
    turn of the loop of its own (tens of ms, whatever they await): the ticker starts after it."""
    loop = asyncio.get_running_loop()
    stall = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal stall
        while not stop:
            before = loop.time()
            await asyncio.sleep(0.001)
            stall = max(stall, loop.time() - before - 0.001)

    async def waiter() -> Any:
        return await await_one()

    started = time.perf_counter()
    waiters = [asyncio.ensure_future(waiter()) for _ in range(WAITERS)]
    await asyncio.sleep(0)  # every waiter takes its first step (and waits)
    tick = asyncio.ensure_future(ticker())
    await asyncio.gather(*waiters)
    served = time.perf_counter() - started
    stop = True
    await tick
    return served, stall


def _creds_core_storm() -> tuple[float, float, int]:
    source = StubSource(delay=SOURCE_LATENCY)
    cache = CredentialCache(source.creds_core)
    served, stall = asyncio.run(_storm(cache.get_async))
    return served, stall, source.calls


def _aiobotocore_storm() -> tuple[float, float, int]:
    from aiobotocore.credentials import AioRefreshableCredentials

    calls = 0

    async def refresh() -> dict[str, str]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(SOURCE_LATENCY)
        return _metadata("ASIAREFRESHED")

    async def main() -> tuple[float, float]:
        credentials = AioRefreshableCredentials.create_from_metadata(
            _metadata("ASIAEXPIRED", seconds=-60), refresh_using=refresh, method="sts-assume-role"
        )
        return await _storm(credentials.get_frozen_credentials)

    served, stall = asyncio.run(main())
    return served, stall, calls


WAIT_TARGETS = {
    "creds_core await get_async()": _creds_core_storm,
    "aiobotocore AioRefreshableCredentials": _aiobotocore_storm,
}


@pytest.mark.parametrize("name", list(WAIT_TARGETS))
def test_many_waiters(benchmark: Any, name: str) -> None:
    benchmark.group = WAIT
    benchmark.name = name
    runs: list[tuple[float, float, int]] = []
    benchmark.pedantic(lambda: runs.append(WAIT_TARGETS[name]()), rounds=ROUNDS, iterations=1)
    benchmark.extra_info.update(
        waiters=WAITERS,
        source_latency=SOURCE_LATENCY,
        served_after=[r[0] for r in runs],
        max_loop_stall=[r[1] for r in runs],
        source_calls=[r[2] for r in runs],
    )
    assert all(r[2] == 1 for r in runs)


# --- fan-out -------------------------------------------------------------------------------------

FAN_CASES = [
    ("creds_core", ACCOUNTS),
    ("creds_core-nogc", ACCOUNTS),
    ("aiobotocore", PEER_ACCOUNTS),
]
FAN_NAMES = {
    "creds_core": "creds_core fan_out_async",
    "creds_core-nogc": "creds_core fan_out_async (cyclic GC off)",
    "aiobotocore": "aiobotocore: an AioSession per account",
}


@pytest.mark.parametrize(("case", "accounts"), FAN_CASES)
def test_fan_out(benchmark: Any, case: str, accounts: int) -> None:
    benchmark.group = FAN
    benchmark.name = f"{FAN_NAMES[case]}, {accounts} accounts"
    worker = Path(__file__).with_name("aio_fanout_worker.py")
    answers: list[dict[str, Any]] = []
    with StsServer(rate=100, delay=0.02, max_requests=100_000, max_seconds=900) as sts:

        def run() -> None:
            done = subprocess.run(
                [sys.executable, str(worker), case, str(accounts), sts.url],
                capture_output=True,
                text=True,
                check=True,
                timeout=900,
            )
            answers.append(json.loads(done.stdout.strip().splitlines()[-1]))

        benchmark.pedantic(run, rounds=1, iterations=1)
        counts = sts.counts
    info = answers[0]
    info.update(
        assume_role_calls=counts["AssumeRole"],
        throttled=counts["throttled"],
        seconds_per_account=info["seconds"] / accounts,
    )
    benchmark.extra_info.update(info)
    assert info["held_clients"] + info["failures"] == accounts
