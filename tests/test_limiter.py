"""A Limiter shared by many caches: concurrency cap, breaker with static stability."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from creds_core import CredentialCache, Credentials, Limiter
from creds_core.testing import ManualClock
from helpers import creds


def test_a_shared_limiter_caps_concurrent_source_calls_across_caches() -> None:
    limiter = Limiter(max_concurrency=3)
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def provider() -> Credentials:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return creds("AK", lifetime=3600)

    caches = [CredentialCache(provider, limiter=limiter, load_timeout=30) for _ in range(30)]
    with ThreadPoolExecutor(30) as pool:
        list(pool.map(lambda c: c.get(), caches, timeout=60))
    assert state["peak"] <= 3
    assert limiter.stats()["acquired"] == 30
    assert caches[0].limiter is limiter


def test_open_breaker_fails_fast_and_caches_keep_serving_what_they_have() -> None:
    clock = ManualClock()
    limiter = Limiter(failure_threshold=2, cooldown=60, clock=clock)
    calls = {"n": 0}

    def provider() -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            return creds(f"AK{calls['n']}", lifetime=900, now=clock.now())
        raise ConnectionError("STS is down")

    a = CredentialCache(provider, limiter=limiter, clock=clock, refresh_backoff=(1, 1))
    b = CredentialCache(provider, limiter=limiter, clock=clock, refresh_backoff=(1, 1))
    assert (a.get().access_key_id, b.get().access_key_id) == ("AK1", "AK2")
    clock.advance(900)
    assert a.get().access_key_id == "AK1"  # failure 1, static stability
    assert b.get().access_key_id == "AK2"  # failure 2: the breaker opens
    assert limiter.breaker == "open"
    clock.advance(2)
    assert a.get().access_key_id == "AK1"  # fails fast: the source is not called
    assert calls["n"] == 4
    assert limiter.stats()["rejected_open"] == 1
    assert "circuit breaker" in (a.inspect()["last_error"] or "")


def test_limiter_options_are_checked() -> None:
    for bad in ({"max_concurrency": 0}, {"rate": 0}, {"rate": -1.0}, {"failure_threshold": 0}):
        with pytest.raises(ValueError):
            Limiter(**bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"creds_core\.Limiter"):
        CredentialCache(lambda: None, limiter="fast")  # type: ignore[arg-type]


def test_a_throttled_refresh_is_tried_again_under_a_limiter_before_it_fails() -> None:
    from creds_core import ProviderError

    calls = {"n": 0}

    def provider() -> Credentials:
        calls["n"] += 1
        if calls["n"] < 3:
            err = ProviderError("Rate exceeded")
            err.code = "Throttling"
            raise err
        return creds("AK", lifetime=3600)

    limiter = Limiter(rate=50.0)
    cache = CredentialCache(provider, limiter=limiter, load_timeout=10)
    assert cache.get().access_key_id == "AK"
    assert calls["n"] == 3
    assert limiter.stats()["throttled"] == 2
    assert cache.stats()["source_calls"] == 1  # one refresh, three attempts inside it


def test_without_a_limiter_a_throttled_refresh_fails_at_once() -> None:
    from creds_core import ProviderError

    def provider() -> Credentials:
        err = ProviderError("Rate exceeded")
        err.code = "Throttling"
        raise err

    with pytest.raises(ProviderError, match="Rate exceeded"):
        CredentialCache(provider).get()


def test_the_rate_is_shared_in_order_of_arrival() -> None:
    limiter = Limiter(rate=20.0, burst=1)
    caches = [
        CredentialCache(lambda: creds("AK", lifetime=3600), limiter=limiter, load_timeout=30)
        for _ in range(10)
    ]
    started = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda c: c.get(), caches, timeout=60))
    took = time.monotonic() - started
    assert 0.4 <= took < 5  # 10 calls at 20/s: about 0.45 s, never all at once
    assert limiter.stats()["waited_for_rate"] >= 8


def test_every_throttled_sts_answer_reaches_the_limiter_also_those_botocore_retries() -> None:
    from creds_core.providers import AssumeRoleProvider, StaticProvider
    from creds_core.testing import StsServer

    limiter = Limiter()
    with StsServer(rate=0.5, burst=1) as sts:
        caches = [
            CredentialCache(
                AssumeRoleProvider(
                    StaticProvider("AKIALIMITSOURCE00001", "source-secret"),
                    f"arn:aws:iam::123456789012:role/paced-{i}",
                    endpoint_url=sts.url,
                    region="us-east-1",
                ),
                limiter=limiter,
                load_timeout=60,
            )
            for i in range(2)
        ]
        # The second refresh finds STS's bucket empty: throttled (and retried) until it refills.
        keys = [cache.get().access_key_id for cache in caches]
        answers = [c.outcome for c in sts.calls if c.action == "AssumeRole"]
    assert len(set(keys)) == 2
    assert answers.count("ok") == 2
    throttled = answers.count("throttled")
    assert throttled >= 1
    assert limiter.stats()["throttled"] == throttled
    # One slot per refresh attempt; botocore's own retry happens inside one attempt.
    assert 2 <= limiter.stats()["acquired"] <= 2 + throttled
