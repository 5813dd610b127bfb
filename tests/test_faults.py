"""Fault survival: hung providers, every kind of raised error, stale answers, an STS outage of
a simulated hour, fork(), Ctrl-C and interpreter exit with refreshes in flight.

Sources are real where they can be: AssumeRoleProvider and ``creds_core.boto3.assume_role``
against the project's StsServer (over HTTP, with its fault modes), and subprocesses for what
only a whole interpreter shows (signals, exit).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_isolation import isolated_aws, no_network  # noqa: F401  (fixtures)
from botocore.config import Config

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
from creds_core.providers import AssumeRoleProvider, StaticProvider
from creds_core.providers._config import new_session
from creds_core.testing import ManualClock
from helpers import SECRET, creds
from server_fixtures import StsServer

pytestmark = pytest.mark.usefixtures("isolated_aws")

REGION = "us-east-1"
ROOT = Path(__file__).resolve().parents[1]
#: One AssumeRole request per refresh (no botocore retry, no retry sleep); short timeouts.
NO_RETRY = Config(
    retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=5
)


def _arn(name: str) -> str:
    return f"arn:aws:iam::123456789012:role/{name}-{uuid.uuid4().hex[:10]}"


def _static_source(key: str = "AKIAFAULTSSOURCE0001") -> boto3.Session:
    return boto3.Session(region_name=REGION, aws_access_key_id=key, aws_secret_access_key=SECRET)


def _assume_role_provider(url: str, role_arn: str | None = None) -> AssumeRoleProvider:
    """A real assume-role provider (its own botocore session, no retries) against ``url``."""
    return AssumeRoleProvider(
        StaticProvider("AKIAFAULTSSOURCE0001", SECRET),
        role_arn or _arn("faults"),
        endpoint_url=url,
        region=REGION,
        client_config=NO_RETRY,
        session=new_session(),
    )


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


def _timed(fn: Callable[[], Credentials]) -> tuple[Credentials, float]:
    started = time.perf_counter()
    got = fn()
    return got, time.perf_counter() - started


def test_a_hung_provider_costs_its_callers_load_timeout_then_its_fallback(
    release: threading.Event,
) -> None:
    provider = Hung(release, fallback=creds("FALLBACK", lifetime=600))
    cache = CredentialCache(provider, load_timeout=LOAD_TIMEOUT)
    took = []
    for _ in range(3):  # the first call waits load_timeout, the later ones not at all
        got, seconds = _timed(cache.get)
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
        got, seconds = _timed(cache.get)
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
        got, took = _timed(other.get)
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
    deadline = time.monotonic() + 2.0
    while other.stats()["late_results"] == 0:
        assert time.monotonic() < deadline, "the queued refresh never ran"
        time.sleep(0.01)
    got, took = _timed(other.get)
    assert got.access_key_id == "OTHER" and took < 0.25
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
    got, took = _timed(other.get)
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
    role_arn = _arn(fault)
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
        CredentialCache(_assume_role_provider(url, role_arn)).get()
    err = caught.value
    chain = _cause_chain(err)
    assert type(err) is expected and err.code == code and err.provider == "assume-role"
    assert type(chain[-1]).__name__ == bottom
    assert role_arn in str(err)  # the message says which call failed

    # Expired credentials cached (the source was fine when they were fetched).
    sts_server.mode = "ok"
    sts_server.deny_roles = None
    cache = CredentialCache(_assume_role_provider(sts_server.url, role_arn), clock=clock)
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
        CredentialCache(_assume_role_provider(sts_server.url)).get()
    assert type(caught.value) is ProviderError

    sts_server.mode = "ok"
    cache = CredentialCache(_assume_role_provider(sts_server.url), clock=clock)
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
        CredentialCache(_assume_role_provider(sts_server.url)).get()
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
            _static_source(),
            _arn("outage"),
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


# --- fork -----------------------------------------------------------------------------------------


def _in_child(work: Callable[[], dict[str, Any]], timeout: float = 30.0) -> dict[str, Any]:
    """Run ``work`` in a forked child; its JSON answer (or the error it raised)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        code = 1
        try:
            payload = json.dumps(work())
            code = 0
        except BaseException as exc:
            payload = json.dumps({"error": "".join(traceback.format_exception(exc))})
        finally:
            os.write(w, payload.encode())
            os._exit(code)
    os.close(w)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child did not finish in time")
        time.sleep(0.01)
    with os.fdopen(r, "rb") as pipe:
        answer: dict[str, Any] = json.loads(pipe.read() or b'{"error": "no answer"}')
    assert "error" not in answer, answer["error"]
    assert os.waitstatus_to_exitcode(status) == 0
    return answer


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_an_assume_role_cache_used_before_fork_refreshes_in_the_child(
    sts_server: StsServer,
) -> None:
    role = cb.assume_role(
        _static_source("AKIAFORKSOURCE000001"),
        _arn("fork"),
        endpoint_url=sts_server.url,
        client_config=NO_RETRY,
    )
    cache = cb.get_cache(role)
    assert cache is not None
    first = cache.get().access_key_id

    def child() -> dict[str, Any]:
        cached = cache.get().access_key_id  # no STS call: still fresh
        assert cache.invalidate(cached)
        fresh = cache.get().access_key_id  # an AssumeRole call from the child's runtime
        identity = role.client("sts", endpoint_url=sts_server.url).get_caller_identity()
        return {"cached": cached, "fresh": fresh, "arn": identity["Arn"]}

    answer = _in_child(child)
    assume = [c for c in sts_server.calls if c.action == "AssumeRole"]
    assert answer["cached"] == first
    assert len(assume) == 2 and answer["fresh"] == assume[1].issued_access_key_id != first
    assert assume[1].signer_access_key_id == "AKIAFORKSOURCE000001"
    assert ":assumed-role/" in answer["arn"]
    assert sts_server.calls[-1].signer_access_key_id == answer["fresh"]
    assert cache.get().access_key_id == first  # the parent is untouched


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_during_a_refresh_the_child_refreshes_on_its_own() -> None:
    parent = os.getpid()
    calls: list[int] = []
    released = threading.Event()

    def provider() -> Credentials:
        calls.append(os.getpid())
        if os.getpid() == parent:  # the parent's refresh is in flight during the fork
            released.wait(30)
            return creds("PARENT", lifetime=3600)
        return creds("CHILD", lifetime=3600)

    cache = CredentialCache(provider, load_timeout=30)
    waiter = threading.Thread(target=cache.get, daemon=True)
    waiter.start()
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.005)
    assert cache.inspect()["refreshing"]

    def child() -> dict[str, Any]:
        # The parent's flight will never finish here: the child must not wait on it.
        got, took = _timed(cache.get)
        return {"key": got.access_key_id, "took": took}

    try:
        answer = _in_child(child)
    finally:
        released.set()
    waiter.join(10)
    assert answer["key"] == "CHILD" and answer["took"] < 2
    assert cache.get().access_key_id == "PARENT"


# --- Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_interrupts_a_main_thread_waiting_on_a_hung_sts_call(sts_server: StsServer) -> None:
    sts_server.mode = "hang"  # the AssumeRole request is never answered
    cache = CredentialCache(_assume_role_provider(sts_server.url), load_timeout=30)
    main = threading.main_thread()
    assert threading.current_thread() is main
    timer = threading.Timer(0.3, signal.pthread_kill, (main.ident or 0, signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        cache.get()
    assert time.monotonic() - started < 0.3 + 1.0  # the load timeout is 30 s
    assert sts_server.counts["hung"] == 1
    sts_server.mode = "ok"


def _script(*parts: str) -> str:
    head = """
import asyncio, os, sys, threading, time
from creds_core import CredentialCache, Credentials
from helpers import creds
"""
    return head + "".join(textwrap.dedent(part) for part in parts)


def _run(
    code: str,
    *,
    interrupt_after_ready: float | None = None,
    timeout: float = 20.0,
) -> tuple[int, str, str, float]:
    """Run ``code`` in a fresh interpreter (faulthandler on); optionally send SIGINT once it
    printed "ready".  Returns (exit code, stdout, stderr, seconds from signal or start to
    exit)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), str(ROOT / "tests")])
    env["PYTHONFAULTHANDLER"] = "1"
    env["RUST_BACKTRACE"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(ROOT),
    )
    started = time.monotonic()
    first = ""
    try:
        if interrupt_after_ready is not None:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            if first.strip() == "ready":
                time.sleep(interrupt_after_ready)
                started = time.monotonic()
                proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the interpreter did not exit within {timeout}s\n{out}\n{err}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if interrupt_after_ready is not None:
        assert first.strip() == "ready", f"{first}{out}\n{err}"
    return proc.returncode, out, err, time.monotonic() - started


def _assert_clean(stderr: str) -> None:
    for bad in ("Traceback", "panicked", "Fatal Python error", "Segmentation fault"):
        assert bad not in stderr, stderr


_HUNG = """
release = threading.Event()

def hung():
    release.wait()
    return creds("LATE", lifetime=3600)
"""


def test_ctrl_c_reaches_a_waiting_main_thread_and_a_waiting_daemon_thread_holds_no_exit() -> None:
    code = _script(
        _HUNG,
        """
        other = CredentialCache(hung, load_timeout=60, name="daemon-waiter")
        threading.Thread(target=other.get, daemon=True).start()
        main = CredentialCache(hung, load_timeout=60, name="main-waiter")
        print("ready", flush=True)
        try:
            main.get()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(0)
        """,
    )
    rc, out, err, took = _run(code, interrupt_after_ready=0.3)
    assert rc == 0, err
    assert "interrupted" in out
    assert took < 3.0  # the load timeout is 60 s: neither waiter held the exit up
    _assert_clean(err)


def test_after_ctrl_c_a_waiting_non_daemon_thread_holds_exit_no_longer_than_load_timeout() -> None:
    code = _script(
        _HUNG,
        """
        other = CredentialCache(hung, load_timeout=1.5, name="worker-waiter")

        def work():
            try:
                other.get()
            except Exception as exc:  # ProviderTimedOut: nothing to fall back on
                print(type(exc).__name__, flush=True)

        threading.Thread(target=work).start()
        main = CredentialCache(hung, load_timeout=60, name="main-waiter")
        print("ready", flush=True)
        try:
            main.get()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """,
    )
    rc, out, err, took = _run(code, interrupt_after_ready=0.3)
    assert rc == 0, err
    assert out.split() == ["interrupted", "ProviderTimedOut"]
    assert took < 1.5 + 1.5
    _assert_clean(err)


# --- interpreter exit with refreshes in flight ----------------------------------------------------

_IN_FLIGHT = """
from creds_core.providers import AssumeRoleProvider, StaticProvider
from creds_core.testing import ManualClock
from server_fixtures import StsServer

def slow():
    time.sleep(SLOW)
    return creds("SLOW", lifetime=3600)

# Blocking callers on daemon threads, each waiting for a slow refresh.
for i in range(4):
    cache = CredentialCache(slow, load_timeout=60, name=f"thread-{i}")
    threading.Thread(target=cache.get, daemon=True).start()

# get_async: one awaited past a timeout, and one never awaited at all.
async def main():
    try:
        await asyncio.wait_for(CredentialCache(slow, name="async-1").get_async(), 0.05)
    except asyncio.TimeoutError:
        pass
    CredentialCache(slow, name="async-2").get_async()

asyncio.run(main())

# A background (advisory) refresh in flight.
clock = ManualClock()
calls = []

def advisory():
    calls.append(1)
    if len(calls) > 1:
        time.sleep(SLOW)
    return creds("ADVISORY", lifetime=3600, now=clock.now())

background = CredentialCache(advisory, clock=clock, name="background")
background.get()
clock.advance(3000)
background.get()  # starts the background refresh

# An AssumeRole request in flight against a slow STS (its client built beforehand, so that
# the provider thread is waiting for the answer, not running Python, when the program ends).
sts = StsServer(mode="slow", latency=SLOW).start()
provider = AssumeRoleProvider(
    StaticProvider("AKIAEXITSOURCE000001", "secret"),
    "arn:aws:iam::123456789012:role/exit",
    endpoint_url=sts.url, region="us-east-1",
)
provider.client
role = CredentialCache(provider, load_timeout=0.05, name="assume-role")
try:
    role.get()
except Exception:
    pass
deadline = time.monotonic() + 5
while sts.counts["AssumeRole"] < 1 and time.monotonic() < deadline:
    time.sleep(0.01)
print("exiting", flush=True)
"""


def test_interpreter_exit_with_refreshes_in_flight_is_clean() -> None:
    rc, out, err, took = _run(_script("SLOW = 2.0\n", _IN_FLIGHT))
    assert rc == 0, err
    assert out.strip() == "exiting"
    assert took < 10
    _assert_clean(err)


_FINISHING = {
    # Slow refreshes whose provider calls return while the interpreter finalizes.
    "returning": """
        import atexit
        release = threading.Event()

        def provider():
            release.wait()
            return creds("LATE", lifetime=3600)

        atexit.register(release.set)  # runs before finalization; the calls end during it
        """,
    # Refreshes whose provider calls are still running Python code when the program ends,
    # long after creds_core's exit hook has given up waiting for them.
    "running": """
        def provider():
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                pass
            return creds("BUSY", lifetime=3600)
        """,
    # Providers waiting on a source cache (a nested lookup) whose provider returns during
    # finalization, so that the waiting provider thread wakes up inside creds_core then.
    "nested": """
        import atexit
        release = threading.Event()

        def source_provider():
            release.wait()
            return creds("SOURCE", lifetime=3600)

        source = CredentialCache(source_provider, load_timeout=60, name="source")

        def provider():
            source.get()
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                pass
            return creds("ROLE", lifetime=3600)

        atexit.register(release.set)
        """,
}


@pytest.mark.parametrize("logs", ["quiet", "debug-logging"])
@pytest.mark.parametrize("refresh", sorted(_FINISHING))
def test_interpreter_exit_while_refreshes_run_python_is_clean(refresh: str, logs: str) -> None:
    code = _script(
        "import logging\n",
        "logging.basicConfig(level=logging.DEBUG)\n" if logs == "debug-logging" else "",
        _FINISHING[refresh],
        """
        def get(cache):
            try:
                cache.get()
            except Exception:
                pass

        for i in range(4):
            cache = CredentialCache(provider, load_timeout=0.05, name=f"in-flight-{i}")
            get(cache)
        # A daemon thread waiting for one of them, too.
        waiter = CredentialCache(provider, load_timeout=60, name="daemon-waiter")
        threading.Thread(target=get, args=(waiter,), daemon=True).start()
        print("exiting", flush=True)
        """,
    )
    rc, out, err, took = _run(code)
    assert out.strip() == "exiting"
    assert rc == 0, f"exit code {rc}\n{err[-2000:]}"
    assert took < 10  # nothing waited for the 5 s providers
    _assert_clean(err)
    if logs == "debug-logging":
        assert "creds_core" in err  # records were flowing while the program ended
