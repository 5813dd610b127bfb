"""Hot path: fresh credentials, what every signed request asks for.

creds_core's ``CredentialCache.get()`` and the boto3 adapter's ``get_frozen_credentials()``
(``creds_core.boto3.assume_role`` on the local StsServer) against botocore's
``RefreshableCredentials``, boto3-refresh-session's and aws-assume-role-lib's credentials
objects.  Every peer holds fresh credentials; its refresh function would call a local stub or
the local StsServer, never AWS.

* 1 thread: pytest-benchmark's time per call.
* 8 threads: throughput, total calls per second of 8 threads calling in a loop for a fixed
  time (``extra_info["calls_per_second"]``, best of 3 rounds).

make bench     (or: .venv/bin/python -m pytest benches/test_hot_path.py --benchmark-only)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from harness import (
    QUICK,
    StubSource,
    arl_session,
    botocore_refreshable,
    brs_sts,
    creds_core_role,
    source_session,
    throughput,
)

from creds_core import CredentialCache
from creds_core.testing import StsServer

ONE = "hot path: fresh credentials, 1 thread"
EIGHT = "hot path: fresh credentials, 8 threads"
THREADS = 8
SECONDS = 0.3 if QUICK else 1.0
ROUNDS = 3

# name -> builder of (the zero-argument call signing would make, its expected access key prefix)
Target = tuple[Callable[[], Any], str]


def _creds_core_cache(sts: StsServer) -> Target:
    cache = CredentialCache(StubSource().creds_core)
    cache.get()
    return cache.get, "ASIASTUB"


def _creds_core_adapter(sts: StsServer) -> Target:
    session = creds_core_role(source_session(), sts.url, 0)
    credentials = session.get_credentials()
    assert credentials is not None
    return credentials.get_frozen_credentials, "ASIASTS"


def _botocore(sts: StsServer) -> Target:
    return botocore_refreshable(StubSource()).get_frozen_credentials, "ASIASTUB"


def _brs(sts: StsServer) -> Target:
    return brs_sts(sts.url, 1).get_credentials().get_frozen_credentials, "ASIASTS"


def _arl(sts: StsServer) -> Target:
    return arl_session(source_session(), 2).get_credentials().get_frozen_credentials, "ASIASTS"


TARGETS: dict[str, Callable[[StsServer], Target]] = {
    "creds_core CredentialCache.get()": _creds_core_cache,
    "creds_core boto3 adapter get_frozen_credentials()": _creds_core_adapter,
    "botocore RefreshableCredentials": _botocore,
    "boto3-refresh-session (sts)": _brs,
    "aws-assume-role-lib": _arl,
}


def _ready(name: str, sts: StsServer) -> Callable[[], Any]:
    call, prefix = TARGETS[name](sts)
    first = call()  # the deferred peers fetch here, once
    assert first.access_key.startswith(prefix), first.access_key
    return call


@pytest.mark.parametrize("name", list(TARGETS))
def test_one_thread(benchmark: Any, sts: StsServer, name: str) -> None:
    benchmark.group = ONE
    benchmark.name = name
    call = _ready(name, sts)
    calls_before = sts.counts["AssumeRole"]
    result = benchmark(call)
    assert result.access_key == call().access_key
    assert sts.counts["AssumeRole"] == calls_before, "fresh credentials must not refresh"


@pytest.mark.parametrize("name", list(TARGETS))
def test_eight_threads(benchmark: Any, sts: StsServer, name: str) -> None:
    benchmark.group = EIGHT
    benchmark.name = name
    call = _ready(name, sts)
    calls_before = sts.counts["AssumeRole"]
    rates: list[float] = []

    def run() -> None:
        rates.append(throughput(call, THREADS, SECONDS))

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    benchmark.extra_info.update(
        threads=THREADS,
        seconds_per_round=SECONDS,
        calls_per_second=max(rates),
        calls_per_second_rounds=rates,
    )
    assert min(rates) > 0
    assert sts.counts["AssumeRole"] == calls_before, "fresh credentials must not refresh"
