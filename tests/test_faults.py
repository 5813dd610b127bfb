"""Fault survival: hung providers, every kind of raised error, stale answers, an STS outage of
a simulated hour (fork, Ctrl-C and interpreter exit: test_lifecycle.py).

Sources are real where they can be: AssumeRoleProvider and ``creds_core.boto3.assume_role``
against the project's StsServer (over HTTP, with its fault modes), and subprocesses for what
only a whole interpreter shows (signals, exit).
"""

from __future__ import annotations

import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import creds_core.boto3 as cb
from creds_core import (
    CredentialCache,
    CredentialCycleError,
    Credentials,
    CredentialsError,
    CredentialsNotLoaded,
    Limiter,
    NonRecoverableError,
    Provider,
    ProviderError,
    ProviderTimedOut,
)
from creds_core.testing import ManualClock
from helpers import (
    NO_RETRY,
    assume_role_provider,
    creds,
    static_source,
    timed,
    unique_role_arn,
    wait_until,
)
from server_fixtures import StsServer

pytestmark = pytest.mark.usefixtures("isolated_aws")


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__
    return chain


# --- a provider that hangs forever ----------------------------------------------------------------


class Hung(Provider):
    """Never answers until the test is over (then it is released, so no thread leaks)."""

    def __init__(self, release: threading.Event, fallback: Credentials | None = None) -> None:
        self.release = release
        self.fallback = fallback
        self.calls = 0
        self.entered = threading.Event()
        self.name = "hung"

    def provide(self) -> Credentials:
        self.calls += 1
        self.entered.set()
        self.release.wait()
        return creds("LATE", lifetime=3600)

    def fallback_on_interrupt(self) -> Credentials | None:
        return self.fallback


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


LOAD_TIMEOUT = 0.2
#: What "within load_timeout" may overshoot by: the runtime's timer and the thread hand-off.
SLACK = 0.05


def assert_within_load_timeout(took: list[float]) -> None:
    """Every wait lasted load_timeout, and at least one ended within SLACK of it (the others
    may be late by a busy machine's scheduling, never by more than a second)."""
    assert all(LOAD_TIMEOUT <= t < LOAD_TIMEOUT + 1.0 for t in took), took
    assert min(took) <= LOAD_TIMEOUT + SLACK, took


def assert_one_wait_per_refresh(took: list[float]) -> None:
    """The first call waited load_timeout; the later calls of the same (hung) refresh were
    answered at once (one wait per refresh)."""
    assert_within_load_timeout(took[:1])
    assert all(t < LOAD_TIMEOUT for t in took[1:]), took


def test_a_hung_provider_costs_its_callers_load_timeout_then_its_fallback(
    release: threading.Event,
) -> None:
    provider = Hung(release, fallback=creds("FALLBACK", lifetime=600))
    cache = CredentialCache(provider, load_timeout=LOAD_TIMEOUT)
    took = []
    for _ in range(3):  # the first call waits load_timeout, the later ones not at all
        got, seconds = timed(cache.get)
        assert got.access_key_id == "FALLBACK"
        took.append(seconds)
    assert_one_wait_per_refresh(took)
    assert provider.calls == 1  # callers do not pile more calls onto the hung source
    stats = cache.stats()
    assert (stats["source_calls"], stats["timeouts"], stats["fallbacks"]) == (1, 1, 3)


def test_a_hung_refresh_serves_the_last_good_credentials_within_load_timeout(
    release: threading.Event,
) -> None:
    answers = iter([creds("GOOD", lifetime=3600)])

    class HangsAfterFirst(Hung):
        def provide(self) -> Credentials:
            if self.calls == 0:
                self.calls += 1
                return next(answers)
            return super().provide()

    provider = HangsAfterFirst(release)
    cache = CredentialCache(provider, load_timeout=LOAD_TIMEOUT)
    cache.get()
    assert cache.invalidate("GOOD")  # the next callers must wait for a refresh: it hangs
    took = []
    for _ in range(3):
        got, seconds = timed(cache.get)
        assert got.access_key_id == "GOOD"
        took.append(seconds)
    assert_one_wait_per_refresh(took)
    assert cache.stats()["static_stability"] == 3
    assert provider.calls == 2


def test_hung_providers_do_not_delay_other_caches(release: threading.Event) -> None:
    hung = [
        CredentialCache(Hung(release, creds(f"FB{i}", lifetime=600)), load_timeout=30)
        for i in range(8)
    ]
    waiting = [threading.Thread(target=c.get, daemon=True) for c in hung]
    for t in waiting:
        t.start()
    for c in hung:
        assert c.provider.entered.wait(5)  # 8 provider threads are now stuck
    others = [
        CredentialCache(lambda i=i: creds(f"OTHER{i}", lifetime=3600), load_timeout=30)
        for i in range(50)
    ]
    started = time.perf_counter()
    slowest = 0.0
    for i, other in enumerate(others):
        got, took = timed(other.get)
        assert got.access_key_id == f"OTHER{i}"
        slowest = max(slowest, took)
    assert slowest < 1.0  # their load timeout is 30 s: nobody waited on a hung thread
    assert time.perf_counter() - started < 5.0
    assert all(t.is_alive() for t in waiting)  # the hung ones are still hung meanwhile


def test_a_hung_provider_on_a_full_pool_delays_others_only_until_their_load_timeout(
    release: threading.Event, runtime_sizes: Callable[..., None]
) -> None:
    runtime_sizes(max_blocking_threads=1)
    hung = CredentialCache(Hung(release), load_timeout=30)
    threading.Thread(target=hung.get, daemon=True).start()
    assert hung.provider.entered.wait(5)
    other = CredentialCache(lambda: creds("OTHER", lifetime=3600), load_timeout=1.0)
    # Queued behind the hung call on the one pool thread: the first caller times out...
    with pytest.raises(ProviderTimedOut):
        other.get()
    # ...and the timed-out work then runs on a thread of its own: its late result lands.
    wait_until(lambda: other.stats()["late_results"] >= 1, "the queued refresh ran")
    # Served from the cache: no wait and no source call (not a matter of speed).
    before = other.stats()
    assert other.get().access_key_id == "OTHER"
    after = other.stats()
    assert (after["waits"], after["source_calls"]) == (before["waits"], before["source_calls"])
    assert not release.is_set()  # the hung call is still hung


def test_a_hung_call_whose_caller_timed_out_gives_its_pool_slot_back(
    release: threading.Event, runtime_sizes: Callable[..., None]
) -> None:
    runtime_sizes(max_blocking_threads=1)
    threads: list[str] = []

    def hang() -> Credentials:
        threads.append(threading.current_thread().name)
        release.wait()
        return creds("LATE", lifetime=3600)

    hung = CredentialCache(hang, load_timeout=0.5)
    with pytest.raises(ProviderTimedOut):
        hung.get()
    # Its call took the one pool slot (it did not start on a thread of its own after the
    # timeout), and hangs on.
    assert threads and threads[0].startswith("creds-core-provider-")
    # The timed-out call no longer counts against the pool: the next refresh does not wait for
    # it (nor for its own load timeout of 10 s).
    other = CredentialCache(lambda: creds("OTHER", lifetime=3600), load_timeout=10)
    got, took = timed(other.get)
    assert got.access_key_id == "OTHER"
    assert took < 2.0
    assert other.stats()["timeouts"] == 0
    assert not release.is_set()  # the hung call is still hung


# --- every kind of raised error -----------------------------------------------------------------


class Weird(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception fails")


def _coded(cls: type[CredentialsError], message: str, code: str) -> CredentialsError:
    err = cls(message)
    err.code = code
    return err


#: (what the provider raises, the class the caller gets, static stability applies)
RAISED: list[tuple[BaseException, type[BaseException], bool]] = [
    (CredentialsNotLoaded("nothing here"), CredentialsNotLoaded, True),
    (ProviderError("flaky"), ProviderError, True),
    (_coded(ProviderError, "slow down", "Throttling"), ProviderError, True),
    (NonRecoverableError("access denied"), NonRecoverableError, False),
    (_coded(NonRecoverableError, "denied", "AccessDenied"), NonRecoverableError, False),
    (CredentialCycleError("needs itself"), CredentialCycleError, False),
    (CredentialsError("base class"), ProviderError, True),
    (ValueError("bad value"), ProviderError, True),
    (RuntimeError("boom"), ProviderError, True),
    (OSError(5, "I/O error"), ProviderError, True),
    (ConnectionResetError(104, "reset by peer"), ProviderError, True),
    (TimeoutError(), ProviderError, True),
    (ZeroDivisionError("division by zero"), ProviderError, True),
    (Exception(), ProviderError, True),
    (Weird(), ProviderError, True),
]


def _raiser(exc: BaseException, *, good_first: ManualClock | None = None) -> Callable[[], Any]:
    calls = {"n": 0}

    def provider() -> Any:
        calls["n"] += 1
        if good_first is not None and calls["n"] == 1:
            return creds("GOOD", lifetime=900, now=good_first.now())
        raise exc

    provider.name = "raiser"  # type: ignore[attr-defined]
    provider.calls = calls  # type: ignore[attr-defined]
    return provider


@pytest.mark.parametrize(
    ("raised", "expected", "static"), RAISED, ids=[type(r[0]).__name__ for r in RAISED]
)
def test_every_raised_error_ends_in_the_right_class_and_static_stability_where_it_applies(
    raised: BaseException, expected: type[BaseException], static: bool
) -> None:
    # Nothing cached: the caller gets the error, of the right class, chained to the original.
    with pytest.raises(CredentialsError) as caught:
        CredentialCache(_raiser(raised)).get()
    err = caught.value
    assert type(err) is expected
    assert err.__cause__ is raised
    assert err.provider == "raiser" and str(err).startswith("raiser: ")
    assert err.code == getattr(raised, "code", None)
    assert "Traceback" in "".join(traceback.format_exception(err))  # formats, cause and all

    # Expired credentials cached: recoverable failures serve them (and back off).
    clock = ManualClock()
    provider = _raiser(raised, good_first=clock)
    cache = CredentialCache(provider, clock=clock)
    cache.get()
    clock.advance(900 + 60)
    if static:
        assert cache.get().access_key_id == "GOOD"
        assert cache.get().access_key_id == "GOOD"
        stats = cache.stats()
        assert (stats["static_stability"], stats["rate_limited"]) == (1, 1)
        assert cache.inspect()["next_refresh_allowed_at"] >= clock.now()
    else:
        with pytest.raises(expected):
            cache.get()
        with pytest.raises(expected):
            cache.get()  # cached for a moment: the source is not hammered
        assert cache.stats()["cached_errors"] == 1
    assert provider.calls["n"] == 2  # type: ignore[attr-defined]


def test_provider_timed_out_raised_by_a_provider_stays_provider_timed_out() -> None:
    raised = ProviderTimedOut("the upstream call timed out")
    with pytest.raises(ProviderTimedOut):
        CredentialCache(_raiser(raised)).get()


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), SystemExit(3)])
def test_interrupts_raised_by_a_provider_are_raised_as_they_are_and_never_cached(
    interrupt: BaseException,
) -> None:
    provider = _raiser(interrupt)
    cache = CredentialCache(provider)
    for n in (1, 2):
        with pytest.raises(type(interrupt)) as caught:
            cache.get()
        assert caught.value is interrupt
        assert provider.calls["n"] == n  # type: ignore[attr-defined]


# --- botocore errors through the providers' error mapping, over HTTP ------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# (StsServer mode or "denied" / "unreachable", class, code, botocore exception at the bottom)
STS_FAULTS: list[tuple[str, type[CredentialsError], str | None, str | None]] = [
    ("denied", NonRecoverableError, "AccessDenied", "ClientError"),
    ("error", ProviderError, "InternalFailure", "ClientError"),
    ("throttle", ProviderError, "Throttling", "ClientError"),
    ("bad_json", ProviderError, "MalformedResponse", "ResponseParserError"),
    ("down", ProviderError, "ConnectionClosedError", "ConnectionClosedError"),
    ("unreachable", ProviderError, "EndpointConnectionError", "EndpointConnectionError"),
]


@pytest.mark.parametrize(("fault", "expected", "code", "bottom"), STS_FAULTS)
def test_sts_failures_map_to_the_right_class_and_static_stability(
    sts_server: StsServer,
    fault: str,
    expected: type[CredentialsError],
    code: str | None,
    bottom: str | None,
) -> None:
    clock = ManualClock(time.time())
    sts_server.clock = clock.time
    role_arn = unique_role_arn(fault)
    url = f"http://127.0.0.1:{_closed_port()}" if fault == "unreachable" else sts_server.url

    def apply_fault() -> None:
        if fault == "denied":
            sts_server.deny_roles = {role_arn}
        elif fault != "unreachable":
            sts_server.mode = fault  # type: ignore[assignment]
        elif cache is not None:
            sts_server.stop()  # STS goes away: connections are refused from now on

    cache: CredentialCache | None = None

    # Nothing cached.
    apply_fault()
    with pytest.raises(CredentialsError) as caught:
        CredentialCache(assume_role_provider(url, role_arn)).get()
    err = caught.value
    chain = _cause_chain(err)
    assert type(err) is expected and err.code == code and err.provider == "assume-role"
    assert type(chain[-1]).__name__ == bottom
    assert role_arn in str(err)  # the message says which call failed

    # Expired credentials cached (the source was fine when they were fetched).
    sts_server.mode = "ok"
    sts_server.deny_roles = None
    cache = CredentialCache(assume_role_provider(sts_server.url, role_arn), clock=clock)
    good = cache.get().access_key_id
    clock.advance(3600 + 60)
    apply_fault()
    if expected is NonRecoverableError:
        with pytest.raises(NonRecoverableError):
            cache.get()
    else:
        assert cache.get().access_key_id == good
        assert cache.stats()["static_stability"] == 1
        assert role_arn in (cache.inspect()["last_error"] or "")


def test_stale_credentials_from_sts_count_as_a_failure(sts_server: StsServer) -> None:
    clock = ManualClock(time.time())
    sts_server.clock = clock.time
    sts_server.mode = "expired"  # AssumeRole answers credentials that expired 5 minutes ago
    with pytest.raises(ProviderError, match="already expired") as caught:
        CredentialCache(assume_role_provider(sts_server.url)).get()
    assert type(caught.value) is ProviderError

    sts_server.mode = "ok"
    cache = CredentialCache(assume_role_provider(sts_server.url), clock=clock)
    good = cache.get().access_key_id
    clock.advance(3600 - 30)  # mandatory window: the refresh answers stale credentials
    sts_server.mode = "expired"
    assert cache.get().access_key_id == good  # still valid for 30 s: served
    stats = cache.stats()
    assert (stats["stale_answers"], stats["refreshes_failed"]) == (1, 1)
    assert cache.inspect()["next_refresh_allowed_at"] > clock.now()  # a backoff, not a loop
    issued = sts_server.counts["issued"]
    for _ in range(5):
        cache.get()
    assert sts_server.counts["issued"] == issued


def test_a_stale_answer_error_names_its_provider(sts_server: StsServer) -> None:
    sts_server.mode = "expired"
    with pytest.raises(ProviderError) as caught:
        CredentialCache(assume_role_provider(sts_server.url)).get()
    assert caught.value.provider == "assume-role"
    assert str(caught.value).startswith("assume-role: ")


# --- STS down for a simulated hour ----------------------------------------------------------------


def test_sts_down_for_an_hour_keeps_signing_with_the_last_good_credentials() -> None:
    clock = ManualClock(time.time())
    step = 60.0
    with StsServer(clock=clock.time) as sts, StsServer() as service:
        # The STS limiter (and its circuit breaker) on the same clock as the cache.
        limiter = Limiter(clock=clock, name="outage-sts")
        role = cb.assume_role(
            static_source(),
            unique_role_arn("outage"),
            endpoint_url=sts.url,
            client_config=NO_RETRY,
            limiter=limiter,
            cache_options={"clock": clock},
        )
        cache = cb.get_cache(role)
        assert cache is not None
        client = role.client("sts", endpoint_url=service.url)  # the service the program uses
        client.get_caller_identity()
        first = sts.last_issued
        assert first is not None and sts.counts["AssumeRole"] == 1

        sts.mode = "error"
        clock.advance(3600 + 60)  # the credentials have expired and STS answers 500
        start = clock.time()
        called_at: list[float] = []
        while clock.time() - start < 3600:
            before = sts.counts["AssumeRole"]
            client.get_caller_identity()  # every request is signed
            if sts.counts["AssumeRole"] > before:
                called_at.append(clock.time() - start)
            clock.advance(step)

        requests = int(3600 / step)
        assert [c.signer_access_key_id for c in service.calls] == [first.access_key_id] * (
            1 + requests
        )
        assert [c.outcome for c in service.calls] == ["ok"] * (1 + requests)
        # The source was called once per backoff (300 to 600 s), never in between.
        assert called_at[0] == 0
        gaps = [b - a for a, b in zip(called_at, called_at[1:])]
        assert all(300 <= gap <= 600 + step for gap in gaps), gaps
        assert 3600 / 600 <= len(called_at) <= 3600 / 300 + 1
        assert sts.counts["AssumeRole"] == 1 + len(called_at)
        stats = cache.stats()
        assert stats["source_calls"] == 1 + len(called_at)
        assert stats["refreshes_failed"] == len(called_at)
        assert stats["rate_limited"] == requests - len(called_at)
        # The breaker opened after repeated failures; every call the cache made after its
        # cooldown was a probe that reached STS (none was refused while the breaker was open).
        assert limiter.breaker == "open" and limiter.stats()["rejected_open"] == 0

        # STS recovers: fresh credentials sign the requests within one backoff.
        sts.mode = "ok"
        recovered_after = 0.0
        while service.calls[-1].signer_access_key_id == first.access_key_id:
            assert recovered_after <= 600 + step, "no fresh credentials within one backoff"
            clock.advance(step)
            recovered_after += step
            client.get_caller_identity()
        fresh = sts.last_issued
        assert fresh is not None and fresh.access_key_id != first.access_key_id
        assert service.calls[-1].signer_access_key_id == fresh.access_key_id
        assert cache.inspect()["state"] == "fresh"
        assert limiter.stats()["breaker"] == "closed"
