"""The cache and the limiter log through Python's logging (the Rust ``log`` records are routed
into loggers ``creds_core.cache`` and ``creds_core.limiter``):

=============================================  =========  ==================================
event                                          level      names
=============================================  =========  ==================================
refresh started                                DEBUG      cache and provider
refresh finished, with its duration            INFO       cache and provider
failure: backoff until when                    WARNING    cache (and the provider's error)
failure: error cached until when               WARNING    cache (and the provider's error)
fallback served on timeout                     WARNING    cache and provider
circuit breaker opened / closed                WARNING /  limiter
                                               INFO
=============================================  =========  ==================================
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from botocore.config import Config

from creds_core import (
    CredentialCache,
    Credentials,
    Limiter,
    NonRecoverableError,
    Provider,
    ProviderError,
)
from creds_core.providers import AssumeRoleProvider, StaticProvider
from creds_core.providers._config import new_session
from creds_core.testing import ManualClock
from helpers import SECRET, creds, wait_until
from server_fixtures import StsServer

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
DURATION = re.compile(r" in (\d+(?:\.\d+)?) ms")


class Records(logging.Handler):
    """The records of the ``creds_core`` loggers, in order."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.on_record: Callable[[logging.LogRecord], None] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.on_record is not None:
            self.on_record(record)

    def of(self, logger: str, level: int, *words: str) -> list[logging.LogRecord]:
        return [
            r
            for r in self.records
            if r.name == logger and r.levelno == level and all(w in r.getMessage() for w in words)
        ]

    def one(self, logger: str, level: int, *words: str) -> str:
        found = self.of(logger, level, *words)
        assert len(found) == 1, (
            f"expected one {logging.getLevelName(level)} record on {logger} with {words}, got "
            f"{[r.getMessage() for r in found]}; all: {self.summary()}"
        )
        return found[0].getMessage()

    def summary(self) -> list[str]:
        return [f"{r.name} {r.levelname}: {r.getMessage()}" for r in self.records]

    def clear(self) -> None:
        self.records.clear()


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("creds_core")
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


def _iso_in(message: str) -> datetime:
    match = ISO.search(message)
    assert match, message
    return datetime.strptime(match.group(0), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _whole_seconds(when: datetime) -> datetime:
    return when.replace(microsecond=0)


class Named(Provider):
    """A provider with a name, answering from a script of callables."""

    def __init__(self, name: str, *answers: Callable[[], Any]) -> None:
        self.name = name
        self.answers = list(answers)
        self.calls = 0
        self.fallback: Credentials | None = None

    def provide(self) -> Any:
        self.calls += 1
        return self.answers[min(self.calls, len(self.answers)) - 1]()

    def fallback_on_interrupt(self) -> Credentials | None:
        return self.fallback


def _raise(exc: BaseException) -> Callable[[], Any]:
    def answer() -> Any:
        raise exc

    return answer


# --- refresh started / finished ---------------------------------------------------------------


def test_refresh_started_at_debug_and_finished_at_info_with_its_duration(
    records: Records,
) -> None:
    def slow() -> Credentials:
        time.sleep(0.05)
        return creds("AKIALOG", lifetime=3600)

    cache = CredentialCache(Named("the-source", slow), name="the-cache")
    cache.get()
    started = records.one("creds_core.cache", logging.DEBUG, "'the-cache'", "the-source")
    assert "refresh" in started
    finished = records.one("creds_core.cache", logging.INFO, "'the-cache'", "the-source")
    duration = DURATION.search(finished)
    assert duration, finished
    assert 50 <= float(duration.group(1)) < 5000
    expiry = cache.get().expiry
    assert expiry is not None and _iso_in(finished) == _whole_seconds(expiry)
    assert [r.levelno for r in records.records] == [logging.DEBUG, logging.INFO]
    cache.get()  # fresh: nothing more is logged
    assert len(records.records) == 2


def test_levels_set_after_import_apply_to_the_rust_records(records: Records) -> None:
    logger = logging.getLogger("creds_core.cache")
    before = logger.level
    try:
        logger.setLevel(logging.WARNING)
        CredentialCache(Named("quiet", lambda: creds("AK", lifetime=3600))).get()
        assert records.records == []
        logger.setLevel(logging.INFO)
        CredentialCache(Named("informed", lambda: creds("AK", lifetime=3600))).get()
        assert [r.levelno for r in records.records] == [logging.INFO]
    finally:
        logger.setLevel(before)


# --- failures: backoff until when, error cached until when ------------------------------------


def test_recoverable_failure_warns_with_the_backoff_end(records: Records) -> None:
    clock = ManualClock()
    provider = Named(
        "flaky-source",
        lambda: creds("AKIAGOOD", lifetime=900, now=clock.now()),
        _raise(ProviderError("connection refused")),
    )
    cache = CredentialCache(provider, clock=clock, name="flaky-cache")
    cache.get()
    clock.advance(900 - 30)
    records.clear()
    cache.get()
    message = records.one("creds_core.cache", logging.WARNING, "'flaky-cache'")
    assert "flaky-source" in message and "connection refused" in message
    assert "serving the last good credentials" in message
    allowed = cache.inspect()["next_refresh_allowed_at"]
    assert _iso_in(message) == _whole_seconds(allowed)
    assert [r.levelno for r in records.records] == [logging.DEBUG, logging.WARNING]
    for _ in range(3):  # calls during the backoff are served quietly
        cache.get()
    assert len(records.records) == 2


def test_non_recoverable_failure_warns_with_the_end_of_the_error_cache(records: Records) -> None:
    clock = ManualClock()
    provider = Named("denied-source", _raise(NonRecoverableError("AccessDenied: not allowed")))
    cache = CredentialCache(provider, clock=clock, name="denied-cache")
    with pytest.raises(NonRecoverableError):
        cache.get()
    message = records.one("creds_core.cache", logging.WARNING, "'denied-cache'")
    assert "denied-source" in message and "AccessDenied" in message
    assert "re-raised without calling the source until" in message
    assert _iso_in(message) == _whole_seconds(cache.inspect()["error_cached_until"])


def test_a_non_recoverable_failure_after_a_backoff_is_logged_as_raised(records: Records) -> None:
    clock = ManualClock()
    provider = Named(
        "turning-source",
        lambda: creds("AKIAGOOD", lifetime=900, now=clock.now()),
        _raise(ProviderError("throttled")),
        _raise(NonRecoverableError("AccessDenied: the role was deleted")),
    )
    cache = CredentialCache(provider, clock=clock, name="turning-cache", refresh_backoff=(10, 10))
    cache.get()
    clock.advance(900 - 30)
    cache.get()  # recoverable: backoff for 10 s
    clock.advance(20)
    records.clear()
    with pytest.raises(NonRecoverableError):
        cache.get()
    message = records.one("creds_core.cache", logging.WARNING, "'turning-cache'")
    assert "re-raised without calling the source until" in message, message


# --- fallbacks on timeout ---------------------------------------------------------------------


def _waiting_get(cache: CredentialCache, clock: ManualClock, timeout: float) -> Credentials:
    """get() on a thread while the source hangs; the load timeout passes on `clock`."""
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.setdefault("got", cache.get()), daemon=True)
    thread.start()
    wait_until(lambda: clock.sleepers >= 1, "the caller waiting on the clock")
    clock.advance(timeout)
    thread.join(30)
    got: Credentials = out["got"]
    return got


def test_fallback_served_on_timeout_warns_naming_the_cache_and_the_provider(
    records: Records,
) -> None:
    clock = ManualClock()
    gate = threading.Event()
    provider = Named("slow-source", lambda: gate.wait(10) and creds("AKIALATE", lifetime=3600))
    provider.fallback = creds("AKIAFALLBACK", lifetime=60, now=clock.now())
    cache = CredentialCache(provider, clock=clock, load_timeout=5, name="waiting-cache")
    try:
        assert _waiting_get(cache, clock, 5).access_key_id == "AKIAFALLBACK"
    finally:
        gate.set()
    message = records.one("creds_core.cache", logging.WARNING, "'waiting-cache'", "slow-source")
    assert "fallback" in message and "5.000s" in message


def test_last_good_served_on_timeout_warns_naming_the_cache_and_the_provider(
    records: Records,
) -> None:
    clock = ManualClock()
    gate = threading.Event()
    provider = Named(
        "stuck-source",
        lambda: creds("AKIAGOOD", lifetime=900, now=clock.now()),
        lambda: gate.wait(10) and creds("AKIALATE", lifetime=3600),
    )
    cache = CredentialCache(provider, clock=clock, load_timeout=5, name="stuck-cache")
    cache.get()
    clock.advance(900 + 60)
    records.clear()
    try:
        assert _waiting_get(cache, clock, 5).access_key_id == "AKIAGOOD"
    finally:
        gate.set()
    message = records.one("creds_core.cache", logging.WARNING, "'stuck-cache'", "stuck-source")
    assert "last good credentials" in message


# --- the circuit breaker ----------------------------------------------------------------------


def test_breaker_opened_at_warning_and_closed_at_info_naming_the_limiter(
    records: Records,
) -> None:
    clock = ManualClock()
    limiter = Limiter(failure_threshold=2, cooldown=30, clock=clock, name="sts-endpoint")
    down = ProviderError("InternalFailure (HTTP 500)")
    provider = Named(
        "breaker-source",
        lambda: creds("AKIA1", lifetime=900, now=clock.now()),
        _raise(down),
        _raise(down),
        lambda: creds("AKIA2", lifetime=900, now=clock.now()),
    )
    cache = CredentialCache(
        provider, clock=clock, limiter=limiter, refresh_backoff=(1, 1), name="breaker-cache"
    )
    cache.get()
    clock.advance(900 - 30)
    cache.get()  # failure 1
    clock.advance(2)
    cache.get()  # failure 2: the breaker opens
    opened = records.one("creds_core.limiter", logging.WARNING, "'sts-endpoint'", "opened")
    assert "2 consecutive failures" in opened and "30s" in opened
    assert records.of("creds_core.limiter", logging.INFO) == []
    clock.advance(2)
    cache.get()  # fails fast: the cache warns, naming the breaker
    assert records.of("creds_core.cache", logging.WARNING, "'breaker-cache'", "circuit breaker")
    clock.advance(30)
    assert cache.get().access_key_id == "AKIA2"  # the probe call succeeds
    closed = records.one("creds_core.limiter", logging.INFO, "'sts-endpoint'", "closed")
    assert "answers again" in closed
    assert provider.calls == 4


# --- the real thing: an assume-role cache against the StsServer --------------------------------


@pytest.mark.usefixtures("isolated_aws")
def test_assume_role_refresh_and_outage_are_logged(records: Records, sts_server: StsServer) -> None:
    clock = ManualClock(time.time())
    sts_server.clock = clock.time
    role_arn = "arn:aws:iam::123456789012:role/logging-role"
    provider = AssumeRoleProvider(
        StaticProvider("AKIALOGGINGSOURCE001", SECRET),
        role_arn,
        endpoint_url=sts_server.url,
        region="us-east-1",
        client_config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
        session=new_session(),
    )
    cache = CredentialCache(provider, clock=clock, name="logging-role-cache")
    cache.get()
    records.one("creds_core.cache", logging.DEBUG, "'logging-role-cache'", "assume-role")
    records.one("creds_core.cache", logging.INFO, "'logging-role-cache'", "assume-role")
    sts_server.mode = "error"
    clock.advance(3600 - 30)
    cache.get()
    message = records.one("creds_core.cache", logging.WARNING, "'logging-role-cache'")
    assert role_arn in message and "InternalFailure" in message
    assert _iso_in(message) == _whole_seconds(cache.inspect()["next_refresh_allowed_at"])


# --- logging never blocks the cache ------------------------------------------------------------


def test_a_handler_that_reads_the_cache_and_limiter_on_every_record_does_not_deadlock(
    records: Records,
) -> None:
    clock = ManualClock()
    limiter = Limiter(failure_threshold=1, cooldown=30, clock=clock, name="reentrant-limiter")
    gate = threading.Event()
    provider = Named(
        "reentrant-source",
        lambda: creds("AKIA1", lifetime=900, now=clock.now()),
        _raise(ProviderError("down")),
        lambda: gate.wait(10) and creds("AKIA2", lifetime=900, now=clock.now()),
        _raise(NonRecoverableError("denied")),
    )
    provider.fallback = creds("AKIAFALLBACK", lifetime=60, now=clock.now())
    cache = CredentialCache(
        provider, clock=clock, limiter=limiter, load_timeout=5, refresh_backoff=(1, 1)
    )
    seen: list[str] = []

    def reenter(record: logging.LogRecord) -> None:
        # Whatever thread logs (a runtime worker, a provider thread), the cache and the
        # limiter answer at once: nothing is logged under one of their locks.
        seen.append(str(cache.inspect()["state"]))
        cache.stats()
        limiter.stats()
        _ = limiter.breaker

    records.on_record = reenter

    def scenario() -> None:
        cache.get()
        clock.advance(900 - 30)
        cache.get()  # failure: backoff, the breaker opens
        clock.advance(31)
        _waiting_get(cache, clock, 5)  # the probe hangs: the fallback is served
        gate.set()
        wait_until(lambda: cache.stats()["late_results"] >= 1, "the late result adopted")
        clock.advance(3600)
        with pytest.raises(NonRecoverableError):
            cache.get()

    errors: list[BaseException] = []

    def run() -> None:
        try:
            scenario()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    gate.set()
    assert not thread.is_alive(), "a log handler reading the cache deadlocked it"
    assert not errors, errors
    assert len(seen) == len(records.records) >= 8
    levels = {r.levelno for r in records.records}
    assert levels == {logging.DEBUG, logging.INFO, logging.WARNING}
