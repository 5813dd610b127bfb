"""Single flight: 1,000 threads ask at once for credentials that have just expired, and the
source takes 100 ms.  How many source calls, and how long does each caller wait?

* creds_core ``CredentialCache`` and botocore ``RefreshableCredentials`` (its refresh runs
  under one ``threading.Lock``) over a 100 ms stub function; boto3-refresh-session
  (``method="custom"``) over the same stub.
* ``creds_core.boto3.assume_role`` and aws-assume-role-lib over the local StsServer answering
  AssumeRole after 100 ms.

Time is moved past expiry with a ManualClock (creds_core) or a shifted ``time_fetcher``
(botocore-based peers), so nothing sleeps for an hour.  A caller's wait runs from its own
call to its return.  Results: ``extra_info`` (median of the rounds for the wait figures).

make bench     (or: .venv/bin/python -m pytest benches/test_single_flight.py --benchmark-only)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any, NamedTuple

import pytest
from harness import (
    QUICK,
    ShiftedTime,
    StubSource,
    arl_session,
    botocore_refreshable,
    brs_custom,
    concurrent_waits,
    creds_core_role,
    offline_env,
    source_session,
    summary,
)

from creds_core import CredentialCache
from creds_core.testing import ManualClock, StsServer

GROUP = "single flight: 1,000 threads, credentials just expired, 100 ms source"
THREADS = 100 if QUICK else 1000
DELAY = 0.1
ROUNDS = 1 if QUICK else 9  # the concurrent figures swing run to run: the median of 9
PAST_EXPIRY = 3601.0  # lifetimes are 1 h


class Case(NamedTuple):
    call: Callable[[], Any]  # what a caller does
    expire: Callable[[], None]  # move time just past expiry
    source_calls: Callable[[], int]


def _stub_cache(stack: ExitStack) -> Case:
    clock = ManualClock()
    source = StubSource(DELAY, now=clock.now)
    cache = CredentialCache(source.creds_core, clock=clock, load_timeout=30.0)
    cache.get()
    return Case(cache.get, lambda: clock.advance(PAST_EXPIRY), lambda: source.calls)


def _stub_botocore(stack: ExitStack) -> Case:
    shift = ShiftedTime()
    source = StubSource(DELAY, now=shift)
    creds = botocore_refreshable(source, shift)
    return Case(creds.get_frozen_credentials, _advance(shift), lambda: source.calls)


def _stub_brs(stack: ExitStack) -> Case:
    shift = ShiftedTime()
    source = StubSource(DELAY, now=shift)
    creds = brs_custom(source).get_credentials()
    creds._time_fetcher = shift  # DeferredRefreshableCredentials takes no time_fetcher argument
    creds.get_frozen_credentials()
    return Case(creds.get_frozen_credentials, _advance(shift), lambda: source.calls)


def _sts_creds_core(stack: ExitStack) -> Case:
    clock = ManualClock(time.time())
    server = stack.enter_context(StsServer(delay=DELAY, clock=clock.now, max_seconds=600))
    options = {"clock": clock, "load_timeout": 30.0}
    session = creds_core_role(source_session(), server.url, 0, cache_options=options)
    frozen = session.get_credentials().get_frozen_credentials
    frozen()
    return Case(frozen, lambda: clock.advance(PAST_EXPIRY), _assume_role_calls(server))


def _sts_arl(stack: ExitStack) -> Case:
    shift = ShiftedTime()
    server = stack.enter_context(StsServer(delay=DELAY, clock=shift, max_seconds=600))
    stack.enter_context(offline_env(server.url))  # its STS client finds the server by env
    fetcher_cache: dict[str, Any] = {}
    creds = arl_session(source_session(), 0, fetcher_cache).get_credentials()
    creds._time_fetcher = shift
    creds.get_frozen_credentials()

    def expire() -> None:
        shift.offset += PAST_EXPIRY
        fetcher_cache.clear()  # its response cache holds the old (now expired) answer

    return Case(creds.get_frozen_credentials, expire, _assume_role_calls(server))


def _advance(shift: ShiftedTime) -> Callable[[], None]:
    def expire() -> None:
        shift.offset += PAST_EXPIRY

    return expire


def _assume_role_calls(server: StsServer) -> Callable[[], int]:
    return lambda: server.counts["AssumeRole"]


CASES: dict[str, tuple[Callable[[ExitStack], Case], bool]] = {
    # name: (builder, is creds_core)
    "creds_core CredentialCache (stub)": (_stub_cache, True),
    "botocore RefreshableCredentials (stub)": (_stub_botocore, False),
    "boto3-refresh-session custom (stub)": (_stub_brs, False),
    "creds_core.boto3.assume_role (StsServer)": (_sts_creds_core, True),
    "aws-assume-role-lib (StsServer)": (_sts_arl, False),
}


@contextmanager
def _built(builder: Callable[[ExitStack], Case]) -> Iterator[Case]:
    with ExitStack() as stack:
        yield builder(stack)


def _round(builder: Callable[[ExitStack], Case]) -> dict[str, Any]:
    manager: AbstractContextManager[Case] = _built(builder)
    with manager as case:
        before = case.source_calls()
        case.expire()
        waits, results, span = concurrent_waits(case.call, THREADS)
        calls = case.source_calls() - before
    errors = [r for r in results if isinstance(r, BaseException)]
    keys = {r.access_key for r in results if not isinstance(r, BaseException)}
    return {"source_calls": calls, "errors": len(errors), "keys": len(keys), "span": span} | {
        f"wait_{k}": v for k, v in summary(waits).items()
    }


@pytest.mark.parametrize("name", list(CASES))
def test_single_flight(benchmark: Any, name: str) -> None:
    benchmark.group = GROUP
    benchmark.name = name
    builder, ours = CASES[name]
    rounds: list[dict[str, Any]] = []
    benchmark.pedantic(lambda: rounds.append(_round(builder)), rounds=ROUNDS, iterations=1)
    info: dict[str, Any] = {"threads": THREADS, "source_delay": DELAY, "rounds": len(rounds)}
    info["source_calls"] = max(r["source_calls"] for r in rounds)
    info["errors"] = sum(r["errors"] for r in rounds)
    for key in ("wait_p50", "wait_p99", "wait_max", "wait_mean", "span"):
        info[key] = statistics.median(r[key] for r in rounds)
    benchmark.extra_info.update(info)
    assert info["errors"] == 0, rounds
    if ours:
        # The point of the design: one source call for 1,000 callers, one answer for all.
        assert all(r["source_calls"] == 1 and r["keys"] == 1 for r in rounds), rounds
