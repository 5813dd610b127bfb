"""The refresh policy, seen from Python: single flight, windows, timeouts, fallbacks,
static stability, backoff, invalidation, bad input."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any, Callable

import pytest

from creds_core import (
    CredentialCache,
    Credentials,
    CredentialsError,
    CredentialsNotLoaded,
    NonRecoverableError,
    ProviderChain,
    ProviderError,
    ProviderTimedOut,
)
from creds_core.testing import ManualClock
from helpers import SECRET, TOKEN, Scripted, creds, wait_until


def in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_fresh_credentials_are_served_without_calling_the_source_again() -> None:
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=3600))
    cache = CredentialCache(p)
    first = cache.get()
    assert [cache.get().access_key_id for _ in range(100)] == ["AK1"] * 100
    assert cache.get() is first  # the pre-built object, not a copy
    assert p.calls == 1
    assert cache.stats()["source_calls"] == 1


def test_credentials_without_expiry_never_refresh() -> None:
    clock = ManualClock()
    p = Scripted(lambda n: creds(f"AK{n}"))
    cache = CredentialCache(p, clock=clock)
    cache.get()
    clock.advance(timedelta(days=3650))
    assert cache.get().access_key_id == "AK1"
    assert p.calls == 1


def test_many_callers_on_an_empty_cache_make_one_source_call() -> None:
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=3600))
    p.gate = threading.Event()
    cache = CredentialCache(p)
    threads = [in_thread(cache.get) for _ in range(200)]
    assert p.entered.wait(30)
    # Every caller has joined the refresh before the source answers (a condition, not a sleep).
    wait_until(lambda: cache.stats()["waits"] >= 200, "all 200 callers waiting", timeout=30)
    assert cache.stats()["waits"] == 200
    p.gate.set()
    for t, _ in threads:
        t.join(30)
    assert {out["value"].access_key_id for _, out in threads} == {"AK1"}
    assert p.calls == 1


def test_windows_follow_the_credential_lifetime() -> None:
    clock = ManualClock()
    for lifetime, advisory in ((900, 300), (3600, 900), (6 * 3600, 3600)):
        cache = CredentialCache(
            lambda lt=lifetime: creds("AK", lifetime=lt, now=clock.now()), clock=clock
        )
        cache.get()
        info = cache.inspect()
        assert (info["advisory_window"], info["mandatory_window"]) == (advisory, 60)
        assert info["expiry"] == clock.now() + timedelta(seconds=lifetime)
        assert info["state"] == "fresh"


def test_configured_advisory_window_overrides_the_table() -> None:
    clock = ManualClock()
    cache = CredentialCache(
        lambda: creds("AK", lifetime=3600, now=clock.now()), clock=clock, advisory_window=120
    )
    cache.get()
    assert cache.inspect()["advisory_window"] == 120


def test_advisory_window_starts_one_background_refresh_and_nobody_waits() -> None:
    clock = ManualClock()
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=3600, now=clock.now()))
    cache = CredentialCache(p, clock=clock)
    cache.get()
    p.gate = threading.Event()
    p.entered.clear()  # set by the first call: from now on, set by the background refresh
    clock.advance(50 * 60)  # inside the 15-minute advisory window, outside the mandatory one
    assert [cache.get().access_key_id for _ in range(50)] == ["AK1"] * 50
    assert p.entered.wait(30)
    assert cache.inspect()["refreshing"] is True
    p.gate.set()
    wait_until(lambda: cache.get().access_key_id == "AK2", "the background refresh landed")
    assert p.calls == 2
    assert cache.stats()["background_refreshes"] == 1


def test_inline_advisory_refresh_makes_the_winner_wait_for_the_new_credentials() -> None:
    clock = ManualClock()
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=3600, now=clock.now()))
    cache = CredentialCache(p, clock=clock, advisory_refresh="inline")
    cache.get()
    clock.advance(50 * 60)
    assert cache.get().access_key_id == "AK2"
    assert p.calls == 2


def test_mandatory_window_waits_for_the_refresh() -> None:
    clock = ManualClock()
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=3600, now=clock.now()))
    cache = CredentialCache(p, clock=clock)
    cache.get()
    clock.advance(3600 - 30)
    assert cache.get().access_key_id == "AK2"


def test_timeout_serves_the_provider_fallback_then_adopts_the_late_result() -> None:
    clock = ManualClock()
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=3600, now=clock.now()))
    p.gate = threading.Event()
    p.fallback = creds("FALLBACK", lifetime=60, now=clock.now())
    cache = CredentialCache(p, clock=clock, load_timeout=5)
    t, out = in_thread(cache.get)
    wait_until(lambda: clock.sleepers >= 1, "the caller waiting on the clock")
    clock.advance(5)
    t.join(10)
    assert out["value"].access_key_id == "FALLBACK"
    assert cache.stats()["fallbacks"] == 1 and cache.stats()["timeouts"] == 1
    p.gate.set()
    wait_until(lambda: cache.stats()["late_results"] == 1, "the late result adopted")
    assert cache.get().access_key_id == "AK1"
    assert p.calls == 1


def test_timeout_without_provider_fallback_serves_last_good_credentials() -> None:
    clock = ManualClock()
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=900, now=clock.now()))
    cache = CredentialCache(p, clock=clock, load_timeout=5)
    cache.get()
    clock.advance(900 + 10)  # expired
    p.gate = threading.Event()
    t, out = in_thread(cache.get)
    wait_until(lambda: clock.sleepers >= 1, "the caller waiting on the clock")
    clock.advance(5)
    t.join(10)
    assert out["value"].access_key_id == "AK1"
    assert cache.stats()["static_stability"] == 1
    p.gate.set()


def test_timeout_with_nothing_to_fall_back_on_raises_provider_timed_out() -> None:
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=3600))
    p.gate = threading.Event()
    cache = CredentialCache(p, load_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(ProviderTimedOut, match="load timeout"):
        cache.get()
    assert time.monotonic() - started < 5
    p.gate.set()


def test_recoverable_failure_keeps_serving_expired_credentials_and_backs_off() -> None:
    clock = ManualClock()

    def answer(n: int) -> Credentials:
        if n == 1:
            return creds("AK1", lifetime=900, now=clock.now())
        raise ConnectionError("source is down")

    p = Scripted(answer)
    cache = CredentialCache(p, clock=clock)
    cache.get()
    clock.advance(900 + 60)  # expired
    assert cache.get().access_key_id == "AK1"  # static stability
    assert p.calls == 2
    allowed = cache.inspect()["next_refresh_allowed_at"]
    assert clock.now() + timedelta(seconds=299) < allowed <= clock.now() + timedelta(seconds=600)
    for _ in range(10):
        assert cache.get().access_key_id == "AK1"
    assert p.calls == 2
    assert cache.stats()["rate_limited"] == 10
    assert "ConnectionError" in cache.inspect()["last_error"]
    clock.set(allowed + timedelta(milliseconds=1))
    cache.get()
    assert p.calls == 3


def test_recoverable_failure_with_nothing_cached_is_raised_and_briefly_cached() -> None:
    clock = ManualClock()
    p = Scripted(lambda n: (_ for _ in ()).throw(ConnectionError("down")))
    cache = CredentialCache(p, clock=clock)
    with pytest.raises(ProviderError, match="ConnectionError: down"):
        cache.get()
    with pytest.raises(ProviderError):
        cache.get()
    assert p.calls == 1
    clock.advance(5)
    with pytest.raises(ProviderError):
        cache.get()
    assert p.calls == 2


def test_non_recoverable_failure_is_raised_at_once_and_cached_for_one_to_five_seconds() -> None:
    clock = ManualClock()

    def answer(n: int) -> Credentials:
        if n == 1:
            return creds("AK1", lifetime=900, now=clock.now())
        raise NonRecoverableError("AccessDenied: not authorized to assume the role")

    p = Scripted(answer)
    cache = CredentialCache(p, clock=clock)
    cache.get()
    clock.advance(900 - 30)  # mandatory window
    with pytest.raises(NonRecoverableError, match="AccessDenied"):
        cache.get()
    with pytest.raises(NonRecoverableError):
        cache.get()
    assert p.calls == 2
    assert cache.inspect()["next_refresh_allowed_at"] <= clock.now() + timedelta(seconds=5)
    clock.advance(5)
    with pytest.raises(NonRecoverableError):
        cache.get()
    assert p.calls == 3


def test_stale_answer_counts_as_a_failure() -> None:
    clock = ManualClock()
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=-10, now=clock.now()))
    cache = CredentialCache(p, clock=clock)
    with pytest.raises(ProviderError, match="already expired"):
        cache.get()
    assert cache.stats()["stale_answers"] == 1


def test_invalidate_sends_a_matching_key_down_the_mandatory_path() -> None:
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=3600))
    cache = CredentialCache(p)
    cache.get()
    assert cache.invalidate("SOMEONE-ELSE") is False
    assert cache.get().access_key_id == "AK1"
    assert cache.invalidate("AK1") is True
    assert cache.get().access_key_id == "AK2"
    assert cache.invalidate("AK1") is False  # no longer matches
    assert p.calls == 2


def test_invalidate_does_not_break_an_active_backoff() -> None:
    clock = ManualClock()

    def answer(n: int) -> Credentials:
        if n == 1:
            return creds("AK1", lifetime=900, now=clock.now())
        raise ConnectionError("down")

    p = Scripted(answer)
    cache = CredentialCache(p, clock=clock)
    cache.get()
    clock.advance(890)
    cache.get()  # fails, backoff starts
    assert cache.invalidate("AK1") is True
    assert cache.get().access_key_id == "AK1"
    assert p.calls == 2


# What a provider answers that cannot be converted to credentials: the same source would
# answer the same again, so the refresh fails as non-recoverable (raised, briefly cached).
UNUSABLE_ANSWERS = [
    (lambda: 42, "expected Credentials, a mapping or None, got int"),
    (lambda: {"AccessKeyId": "AK"}, "no secret access key"),
    (lambda: {"AccessKeyId": "AK", "SecretAccessKey": ""}, "SecretAccessKey is empty"),
    (
        lambda: {"AccessKeyId": "AK", "SecretAccessKey": SECRET, "Expiration": "later"},
        "Expiration",
    ),
    (
        lambda: {
            "AccessKeyId": "AK",
            "SecretAccessKey": SECRET,
            "Expiration": "2030-02-30T00:00:00Z",  # no such day
        },
        "Expiration",
    ),
]


def _good_then(answer: Callable[[], Any], clock: ManualClock) -> CredentialCache:
    """A cache of a provider named "flaky-source" that answers credentials for 15 minutes
    first, then `answer()`; filled, and 30 s before expiry (the mandatory window)."""
    calls = {"n": 0}

    def provider() -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            return creds("GOOD", lifetime=900, now=clock.now())
        return answer()

    provider.name = "flaky-source"  # type: ignore[attr-defined]
    cache = CredentialCache(provider, clock=clock)
    cache.get()
    clock.advance(900 - 30)
    return cache


@pytest.mark.parametrize(("answer", "message"), UNUSABLE_ANSWERS)
def test_an_unusable_answer_is_a_non_recoverable_error_naming_the_provider(
    answer: Any, message: str
) -> None:
    clock = ManualClock()
    empty = CredentialCache(lambda: answer(), name="empty", clock=clock)
    with pytest.raises(NonRecoverableError, match=message) as info:
        empty.get()
    assert SECRET not in str(info.value)
    cache = _good_then(answer, clock)
    with pytest.raises(NonRecoverableError, match="flaky-source") as info:
        cache.get()
    assert SECRET not in str(info.value)
    assert message.split(":")[0] in cache.inspect()["last_error"]


def test_a_provider_that_raises_a_plain_exception_leaves_the_cache_serving() -> None:
    def bad() -> Any:
        raise ValueError("bad config value")

    clock = ManualClock()
    with pytest.raises(CredentialsError, match="ValueError: bad config value"):
        CredentialCache(bad, name="empty", clock=clock).get()
    cache = _good_then(bad, clock)
    assert cache.get().access_key_id == "GOOD"
    assert "ValueError: bad config value" in cache.inspect()["last_error"]
    assert "flaky-source" in cache.inspect()["last_error"]


def test_keyboard_interrupt_in_a_provider_is_raised_as_it_is() -> None:
    def provider() -> Any:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        CredentialCache(provider).get()


def test_none_means_not_loaded() -> None:
    with pytest.raises(CredentialsNotLoaded):
        CredentialCache(lambda: None).get()


def test_async_provider_is_run_to_completion() -> None:
    async def provider() -> Credentials:
        await asyncio.sleep(0.01)
        return creds("ASYNC", lifetime=3600)

    assert CredentialCache(provider).get().access_key_id == "ASYNC"


def test_get_async_awaits_the_same_single_flight() -> None:
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=3600))
    cache = CredentialCache(p)

    async def main() -> set[str]:
        got = await asyncio.gather(*(cache.get_async() for _ in range(50)))
        return {c.access_key_id for c in got}

    assert asyncio.run(main()) == {"AK1"}
    assert p.calls == 1


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"load_timeout": -1}, ValueError),
        ({"load_timeout": 0}, ValueError),
        ({"mandatory_window": float("nan")}, ValueError),
        ({"advisory_window": -5}, ValueError),
        ({"refresh_backoff": (600, 300)}, ValueError),
        ({"error_cache": (5, 1)}, ValueError),
        ({"refresh_backoff": "soon"}, TypeError),
        ({"advisory_refresh": "eventually"}, ValueError),
        ({"clock": object()}, TypeError),
        ({"limiter": object()}, TypeError),
    ],
)
def test_out_of_range_options_are_rejected_at_construction(
    options: dict[str, Any], error: type
) -> None:
    with pytest.raises(error):
        CredentialCache(lambda: None, **options)


def test_a_provider_of_the_wrong_kind_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="a provider must be"):
        CredentialCache(42)
    with pytest.raises(ValueError, match="precedence"):
        ProviderChain([lambda: None], fallback="newest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        ProviderChain([])


def test_nothing_the_cache_shows_contains_a_secret() -> None:
    clock = ManualClock()
    p = Scripted(lambda n: creds(f"AK{n}", lifetime=900, now=clock.now()) if n == 1 else 1 / 0)
    cache = CredentialCache(p, clock=clock)
    cache.get()
    clock.advance(899)
    cache.get()
    shown = " ".join(map(str, (cache, repr(cache), cache.stats(), cache.inspect(), cache.get())))
    assert "AK1" in shown
    assert SECRET not in shown and TOKEN not in shown


# --- chains -----------------------------------------------------------------------------------


def test_chain_moves_on_from_not_loaded_and_stops_at_any_other_error() -> None:
    def boom() -> Any:
        raise NonRecoverableError("broken profile")

    chain = ProviderChain([lambda: None, lambda: creds("SECOND", lifetime=3600)])
    assert CredentialCache(chain).get().access_key_id == "SECOND"
    stopper = ProviderChain([lambda: None, boom, lambda: creds("NEVER")])
    with pytest.raises(NonRecoverableError, match="broken profile"):
        CredentialCache(stopper).get()
    with pytest.raises(CredentialsNotLoaded, match="no provider in the chain"):
        CredentialCache(ProviderChain([lambda: None])).get()


def test_chain_fallback_policies_precedence_and_recency() -> None:
    early, late = Scripted(lambda n: None), Scripted(lambda n: None)
    early.fallback = creds("EARLY", lifetime=60)
    late.fallback = creds("LATE", lifetime=3600)
    fb = ProviderChain([early, late]).fallback_on_interrupt()
    assert fb is not None and fb.access_key_id == "EARLY"
    fb = ProviderChain([early, late], fallback="recency").fallback_on_interrupt()
    assert fb is not None and fb.access_key_id == "LATE"
    nested = ProviderChain(
        [ProviderChain([early, late], fallback="recency"), Scripted(lambda n: None)]
    )
    fb = nested.fallback_on_interrupt()
    assert fb is not None and fb.access_key_id == "LATE"


class RememberingProvider(Scripted):
    """A provider whose fallback is the last credentials it served (as the RFC's provider 2)."""

    def provide(self) -> Any:
        answer = super().provide()
        if isinstance(answer, Credentials):
            self.fallback = answer
        return answer


def test_rfc_case_1_timeout_while_the_serving_provider_runs_returns_its_fallback() -> None:
    clock = ManualClock()
    p1 = Scripted(lambda n: None, name="p1")
    p2 = RememberingProvider(lambda n: creds(f"P2-{n}", lifetime=900, now=clock.now()), name="p2")
    cache = CredentialCache(ProviderChain([p1, p2]), clock=clock, load_timeout=5)
    assert cache.get().access_key_id == "P2-1"
    clock.advance(900 - 30)
    p2.gate = threading.Event()
    t, out = in_thread(cache.get)
    wait_until(lambda: p2.entered.is_set() and clock.sleepers >= 1, "p2 called, the caller waiting")
    clock.advance(5)
    t.join(10)
    assert out["value"].access_key_id == "P2-1"
    assert cache.stats()["fallbacks"] == 1
    p2.gate.set()


def test_rfc_case_2_timeout_while_an_earlier_provider_runs_still_returns_the_serving_ones() -> None:
    clock = ManualClock()
    p1 = Scripted(lambda n: None, name="p1")
    p2 = RememberingProvider(lambda n: creds(f"P2-{n}", lifetime=900, now=clock.now()), name="p2")
    inner = ProviderChain([p1, p2])
    cache = CredentialCache(ProviderChain([inner]), clock=clock, load_timeout=5)
    assert cache.get().access_key_id == "P2-1"
    clock.advance(900 - 30)
    p1.gate = threading.Event()
    p1.entered.clear()
    t, out = in_thread(cache.get)
    wait_until(lambda: p1.entered.is_set() and clock.sleepers >= 1, "p1 called, the caller waiting")
    clock.advance(5)
    t.join(10)
    assert out["value"].access_key_id == "P2-1"
    assert out["value"].provider_name == "p2"
    p1.gate.set()
