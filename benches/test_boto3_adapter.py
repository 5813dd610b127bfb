"""The boto3 adapter: what botocore's signer calls once per request.

A creds_core session's ``get_credentials().get_frozen_credentials()`` (the cache's own
``get_frozen``, answering botocore's ``ReadOnlyCredentials`` built once per cached entry)
against botocore's ``RefreshableCredentials.get_frozen_credentials()``, both with fresh
credentials.  The creds_core row must be at least 50 times faster.

make bench            (or: .venv/bin/python -m pytest benches -q --benchmark-only)
"""

from __future__ import annotations

import timeit
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.credentials import ReadOnlyCredentials, RefreshableCredentials

import creds_core.boto3
from creds_core import Credentials

GROUP = "boto3 adapter: get_frozen_credentials(), fresh credentials, 1 thread"
EXPIRY = datetime.now(timezone.utc) + timedelta(hours=6)
MIN_SPEEDUP = 50.0


def _metadata() -> dict[str, Any]:
    return {
        "access_key": "ASIABENCH",
        "secret_key": "bench-secret",
        "token": "bench-token",
        "expiry_time": EXPIRY.isoformat(),
    }


def _botocore_credentials() -> RefreshableCredentials:
    return RefreshableCredentials.create_from_metadata(_metadata(), _metadata, "bench")


def _botocore_seconds_per_call() -> float:
    frozen = _botocore_credentials().get_frozen_credentials
    number = 2000
    return min(timeit.repeat(frozen, number=number, repeat=5)) / number


@pytest.mark.benchmark(group=GROUP)
def test_creds_core_session_get_frozen_credentials(benchmark: Any) -> None:
    session = creds_core.boto3.session(
        lambda: Credentials("ASIABENCH", "bench-secret", "bench-token", EXPIRY),
        region_name="us-east-1",
    )
    credentials = session.get_credentials()
    assert credentials is not None
    frozen = credentials.get_frozen_credentials
    frozen()
    result = benchmark(frozen)
    assert isinstance(result, ReadOnlyCredentials) and result.access_key == "ASIABENCH"
    assert frozen() is result  # one object per cached entry: no allocation per call
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        ours = stats.stats.median
        speedup = _botocore_seconds_per_call() / ours
        assert speedup >= MIN_SPEEDUP, f"only {speedup:.1f}x faster than botocore"


@pytest.mark.benchmark(group=GROUP)
def test_botocore_refreshable_get_frozen_credentials(benchmark: Any) -> None:
    result = benchmark(_botocore_credentials().get_frozen_credentials)
    assert result.access_key == "ASIABENCH"
