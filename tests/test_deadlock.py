"""The cognitect aws-api #137 scenario: many distinct assume-role caches fetch at once while
each one's source credentials need a refresh too, on the smallest pools there are.

cognitect's client ran credential fetches on a fixed pool of 4 threads; an assume-role fetch
calls STS, which needs credentials of its own, so with 4 or more distinct providers fetching
at once every pool thread waited on work queued behind it, forever.  Here the shared runtime
is cut down to one async worker and ONE blocking thread (``configure_runtime(worker_threads=1,
max_blocking_threads=1)``), and N = 4, 64 and 1,000 distinct role caches are asked at the same
moment, each with a source cache that is empty or expired.

N = 4 and 64 use the real thing: role sessions from ``creds_core.boto3.assume_role`` whose
sources are role sessions themselves (role chaining), so every source refresh is an STS
AssumeRole call too, against the project's StsServer over HTTP.  N = 1,000 uses Python
providers making the same nested ``get()`` (STS at that scale only measures HTTP).

Every caller must get credentials within a generous bound (a deadlock fails the bound instead
of hanging the run: callers are daemon threads), and the source calls are counted exactly.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import boto3
import pytest
from botocore.config import Config

import creds_core
import creds_core.boto3 as cb
from creds_core import CredentialCache, Credentials, Provider
from creds_core.testing import ManualClock
from helpers import SECRET, creds
from server_fixtures import StsServer

pytestmark = pytest.mark.usefixtures("isolated_aws")

REGION = "us-east-1"
#: Generous: a deadlock never finishes; the real runs take a few seconds at most.
BOUND = 60.0
#: No botocore retries (and no retry sleeps): one AssumeRole request per refresh, so the
#: server's counts are the refresh counts.  One object, so the STS clients can be shared.
NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1})

T = TypeVar("T")


@pytest.fixture
def minimal_pool(runtime_sizes: Callable[..., None]) -> None:
    """The shared runtime at its minimum: 1 async worker, 1 provider thread; restored after."""
    runtime_sizes(worker_threads=1, max_blocking_threads=1)
    assert creds_core.runtime_config() == (1, 1)


def all_at_once(calls: Sequence[Callable[[], T]], bound: float = BOUND) -> tuple[list[T], float]:
    """Run every call on its own daemon thread, released together; their results in order and
    the wall time.  Fails (without hanging) when some call has not returned within ``bound``."""
    n = len(calls)
    results: list[Any] = [None] * n
    errors: list[tuple[int, BaseException]] = []
    barrier = threading.Barrier(n + 1)
    done = threading.Semaphore(0)

    def run(i: int) -> None:
        try:
            barrier.wait(30)
            results[i] = calls[i]()
        except BaseException as exc:
            errors.append((i, exc))
        finally:
            done.release()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait(30)
    started = time.monotonic()
    finished = 0
    while finished < n:
        left = bound - (time.monotonic() - started)
        if left <= 0 or not done.acquire(timeout=left):
            break
        finished += 1
    took = time.monotonic() - started
    assert finished == n, f"{n - finished} of {n} callers still waiting after {bound:.0f}s"
    assert not errors, f"{len(errors)} callers failed, e.g. #{errors[0][0]}: {errors[0][1]!r}"
    return results, took


def _arn(kind: str, i: int) -> str:
    return f"arn:aws:iam::123456789012:role/{kind}-{i:04d}-{uuid.uuid4().hex[:8]}"


def _frozen_key(session: boto3.Session) -> str:
    """What botocore's signer does for every request: the frozen credentials' access key."""
    credentials = session.get_credentials()
    assert credentials is not None
    frozen = credentials.get_frozen_credentials()
    assert frozen.secret_key and frozen.token
    return str(frozen.access_key)


# --- N = 4 and 64: real assume-role sessions against the StsServer ------------------------------


@pytest.mark.parametrize("n", [4, 64])
def test_role_caches_whose_sources_are_roles_too_complete_on_the_minimal_pool(
    n: int, minimal_pool: None, sts_server: StsServer
) -> None:
    clock = ManualClock(time.time())
    sts_server.clock = clock.time  # issued credentials expire on the test's clock
    url = sts_server.url
    options = {"clock": clock, "load_timeout": BOUND}  # no fallback may hide a stuck refresh
    base = boto3.Session(
        region_name=REGION, aws_access_key_id="AKIADEADLOCKBASE0001", aws_secret_access_key=SECRET
    )
    source_arns = [_arn("source", i) for i in range(n)]
    role_arns = [_arn("role", i) for i in range(n)]
    sources = [
        cb.assume_role(base, arn, endpoint_url=url, client_config=NO_RETRY, cache_options=options)
        for arn in source_arns
    ]
    roles = [
        cb.assume_role(src, arn, endpoint_url=url, client_config=NO_RETRY, cache_options=options)
        for src, arn in zip(sources, role_arns)
    ]
    # (Whatever Limiter assume_role shares per STS endpoint by default is in play too: the
    # nested source refreshes must not wait for its slots.)
    caches = [cb.get_cache(s) for s in [*sources, *roles]]

    for rounds, state in ((1, "empty"), (2, "expired")):
        if state == "expired":
            clock.advance(3600 + 1)  # every source and every role expired at once
        assert {c.inspect()["state"] for c in caches if c is not None} == {state}

        keys, took = all_at_once([functools.partial(_frozen_key, r) for r in roles])

        assert took < BOUND
        calls = [c for c in sts_server.calls if c.action == "AssumeRole"]
        assert {c.outcome for c in calls} == {"ok"}
        per_role = Counter(c.role_arn for c in calls)
        assert per_role == Counter({arn: rounds for arn in [*source_arns, *role_arns]})
        for cache in caches:
            assert cache is not None and cache.stats()["source_calls"] == rounds
        # Each role was assumed with its own source's credentials of this round (refreshed,
        # not the expired ones), and each caller got what STS issued for its role this round.
        last = {c.role_arn: c for c in calls}
        for i in range(n):
            source_call, role_call = last[source_arns[i]], last[role_arns[i]]
            assert source_call.signer_access_key_id == "AKIADEADLOCKBASE0001"
            assert role_call.signer_access_key_id == source_call.issued_access_key_id
            assert keys[i] == role_call.issued_access_key_id


# --- N = 1,000: Python providers doing nested get() --------------------------------------------


class Threads:
    """Which OS threads providers ran on, and how many role providers ran at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.roles: set[int] = set()
        self.sources: set[int] = set()
        self.active = 0
        self.peak = 0


class CountedSource(Provider):
    """A source that answers new credentials (expiring on `clock`) and counts its calls."""

    def __init__(self, i: int, clock: ManualClock, threads: Threads) -> None:
        self.name = f"source-{i}"
        self.i = i
        self.clock = clock
        self.threads = threads
        self.calls = 0

    def provide(self) -> Credentials:
        with self.threads.lock:
            self.calls += 1
            n = self.calls
            self.threads.sources.add(threading.get_native_id())
        return creds(f"SRC{self.i}-{n}", lifetime=3600, now=self.clock.now())


class NestedRole(Provider):
    """An assume-role provider in miniature: a nested lookup in its source cache, then the
    "STS call" (answers credentials derived from the source key it was given)."""

    def __init__(
        self, i: int, source: CredentialCache, clock: ManualClock, threads: Threads
    ) -> None:
        self.name = f"role-{i}"
        self.i = i
        self.source = source
        self.clock = clock
        self.threads = threads
        self.calls = 0

    def provide(self) -> Credentials:
        with self.threads.lock:
            self.calls += 1  # single flight: never two at once for one cache
            self.threads.roles.add(threading.get_native_id())
            self.threads.active += 1
            self.threads.peak = max(self.threads.peak, self.threads.active)
        try:
            source = self.source.get()  # the nested lookup, from the pool's only thread
        finally:
            with self.threads.lock:
                self.threads.active -= 1
        return creds(f"ROLE{self.i}-{source.access_key_id}", lifetime=3600, now=self.clock.now())


def _thousand(
    clock: ManualClock, threads: Threads
) -> tuple[list[CountedSource], list[CredentialCache]]:
    sources = [CountedSource(i, clock, threads) for i in range(1000)]
    roles = [
        CredentialCache(
            NestedRole(i, CredentialCache(s, clock=clock, load_timeout=BOUND), clock, threads),
            clock=clock,
            load_timeout=BOUND,
            name=f"role-{i}",
        )
        for i, s in enumerate(sources)
    ]
    return sources, roles


@pytest.mark.parametrize("door", ["threads", "asyncio"])
def test_a_thousand_nested_refreshes_at_once_complete_on_the_minimal_pool(
    door: str, minimal_pool: None
) -> None:
    clock = ManualClock(time.time())
    threads = Threads()
    sources, roles = _thousand(clock, threads)

    async def everyone() -> list[Credentials]:
        return list(await asyncio.gather(*(role.get_async() for role in roles)))

    def run_loop() -> list[Credentials]:
        return asyncio.run(asyncio.wait_for(everyone(), BOUND))

    for rounds, state in ((1, "empty"), (2, "expired")):
        if state == "expired":
            clock.advance(3600 + 1)  # every source and every role expired at once
        assert {r.inspect()["state"] for r in roles} == {state}
        if door == "threads":
            got, took = all_at_once([role.get for role in roles])
        else:
            (got,), took = all_at_once([run_loop])

        assert took < BOUND
        assert [c.access_key_id for c in got] == [f"ROLE{i}-SRC{i}-{rounds}" for i in range(1000)]
        assert [s.calls for s in sources] == [rounds] * 1000
        assert [r.provider.calls for r in roles] == [rounds] * 1000
        assert all(r.stats()["source_calls"] == rounds for r in roles)
    # The pool really was one thread: the role providers ran one at a time, and every nested
    # source refresh ran on a thread of its own, never on the thread waiting for it.
    assert threads.peak == 1
    assert not threads.roles & threads.sources
