"""Bad input never panics (issue 19): the range rule for expiries and duration options.

Every value that crosses into the Rust core either works or is a clear ``ValueError`` /
``TypeError`` / ``ProviderError``: never a ``PanicException`` (a ``BaseException``, which
``except Exception`` does not catch) and never a misleading "dropped before it answered".
The property tests are bounded (a few hundred examples each, no example database).
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creds_core import (
    CredentialCache,
    Credentials,
    CredentialsError,
    Limiter,
    NonRecoverableError,
    ProviderError,
)
from creds_core.providers import EnvironmentProvider, ProcessProvider
from creds_core.providers._util import parse_expiry
from creds_core.testing import ManualClock
from helpers import SECRET, TOKEN

UTC = timezone.utc
LAST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
FIRST = datetime(1, 1, 1, tzinfo=UTC)

# Bounded: each property runs in well under a few seconds; nothing is written to disk.
BOUNDED = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# The inputs of the issue: each panicked (or was accepted and broke `.expiry` later).
OUT_OF_RANGE = [
    1e20,
    "1e20",
    18446744073709551616,
    1e30,
    9.3e18,
    9223372036854775808,
    1e12,
    253402300800,
    "9999-12-31T23:59:59-01:00",  # 10000-01-01 in UTC
    "0001-01-01T00:00:00+01:00",  # year 0 in UTC
    -62135596801,
    10**400,
]
NOT_A_TIME = [float("nan"), float("inf"), -math.inf, "nan", "inf", "tomorrow", True, [1], {}]


def answer(expiry: object) -> dict[str, object]:
    return {
        "AccessKeyId": "AKIDBADINPUT",
        "SecretAccessKey": SECRET,
        "SessionToken": TOKEN,
        "Expiration": expiry,
    }


def assert_clean(exc: BaseException) -> None:
    text = str(exc)
    assert SECRET not in text and TOKEN not in text
    assert "dropped before it answered" not in text


@pytest.mark.parametrize("value", OUT_OF_RANGE, ids=repr)
def test_an_expiry_out_of_range_is_a_value_error_naming_field_and_value(value: object) -> None:
    with pytest.raises(ValueError, match=r"expiry .* is out of range") as info:
        Credentials("AK", SECRET, TOKEN, expiry=value)  # type: ignore[arg-type]
    assert_clean(info.value)
    with pytest.raises(ValueError, match=r"Expiration .* is out of range") as info:
        Credentials.from_mapping(answer(value))
    assert_clean(info.value)
    with pytest.raises(ValueError, match=r"Expiration .* is out of range"):
        parse_expiry(value)


def test_the_message_shows_the_bad_value_as_python_writes_it() -> None:
    with pytest.raises(ValueError, match=r"^Expiration 1e\+20 is out of range"):
        Credentials.from_mapping(answer(1e20))


@pytest.mark.parametrize("value", NOT_A_TIME, ids=repr)
def test_a_value_that_is_not_a_time_is_a_value_error_naming_the_field(value: object) -> None:
    with pytest.raises(ValueError, match="expiry") as info:
        Credentials("AK", SECRET, expiry=value)  # type: ignore[arg-type]
    assert_clean(info.value)
    with pytest.raises(ValueError, match="Expiration") as info:
        Credentials.from_mapping(answer(value))
    assert_clean(info.value)


def test_a_nested_mapping_as_expiry_shows_its_type_not_its_content() -> None:
    with pytest.raises(ValueError, match="not dict") as info:
        Credentials.from_mapping(answer({"SecretAccessKey": SECRET}))
    assert_clean(info.value)


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59.999999+00:00",
        "9999-12-31T23:59:59.999999Z",
        LAST,
        LAST.replace(tzinfo=None),
        253402300799.99998,  # the last float before 10000-01-01
    ],
    ids=repr,
)
def test_the_last_microsecond_of_9999_is_accepted_and_reads_back_everywhere(value: object) -> None:
    creds = Credentials("AK", SECRET, expiry=value)  # type: ignore[arg-type]
    assert creds.expiry is not None and creds.expiry.year == 9999
    if not isinstance(value, float):
        assert creds.expiry == LAST
    assert "9999-12-31T23:59:59" in repr(creds)
    assert Credentials.from_mapping(answer(value)).expiry == creds.expiry
    cache = CredentialCache(lambda: answer(value), clock=ManualClock())
    assert cache.get().expiry == creds.expiry
    inspection = cache.inspect()
    assert inspection["expiry"] == creds.expiry
    assert inspection["state"] == "fresh"


def test_the_first_microsecond_of_year_1_is_accepted_as_an_expired_expiry() -> None:
    creds = Credentials("AK", SECRET, expiry="0001-01-01T00:00:00Z")
    assert creds.expiry == FIRST
    assert Credentials("AK", SECRET, expiry=-62135596800).expiry == FIRST


def test_deadlines_past_9999_show_as_the_last_microsecond_instead_of_raising() -> None:
    clock = ManualClock(LAST - timedelta(seconds=1))
    calls = {"n": 0}

    def provider() -> dict[str, object]:
        calls["n"] += 1
        if calls["n"] == 1:
            return answer(LAST)
        raise ConnectionError("down")

    cache = CredentialCache(provider, clock=clock, refresh_backoff=(600, 600))
    cache.get()
    clock.advance(0.5)  # inside the mandatory window: refresh, fail, back off past 9999
    assert cache.get().expiry == LAST
    inspection = cache.inspect()
    assert inspection["next_refresh_allowed_at"] == LAST
    clock.advance(10**8)  # far past the range: the clock saturates, nothing raises
    assert cache.inspect()["state"] in {"expired", "backoff"}
    assert clock.now() == LAST


def _sync_and_async(value: object) -> list[Any]:
    async def coroutine() -> dict[str, object]:
        return answer(value)

    return [lambda: answer(value), coroutine]


@pytest.mark.parametrize("kind", [0, 1], ids=["sync", "async"])
@pytest.mark.parametrize("value", [1e20, "1e20", 18446744073709551616, 9.3e18, 1e12], ids=repr)
def test_a_provider_answer_out_of_range_is_a_non_recoverable_provider_error(
    value: object, kind: int
) -> None:
    cache = CredentialCache(_sync_and_async(value)[kind], clock=ManualClock())
    with pytest.raises(NonRecoverableError, match=r"Expiration .* is out of range") as info:
        cache.get()
    assert isinstance(info.value, ProviderError)
    assert_clean(info.value)
    assert_clean(Exception(cache.inspect()["last_error"]))


def test_after_a_bad_answer_the_same_cache_works_again_once_the_error_cache_ends() -> None:
    clock = ManualClock()
    expiry: list[object] = [1e20]
    cache = CredentialCache(lambda: answer(expiry[0]), clock=clock, error_cache=(2, 2))
    with pytest.raises(NonRecoverableError, match="out of range"):
        cache.get()
    expiry[0] = clock.now() + timedelta(hours=1)
    with pytest.raises(NonRecoverableError, match="out of range"):
        cache.get()  # still the cached error: the source is not called again yet
    clock.advance(2)
    assert cache.get().expiry == expiry[0]  # the provider thread still runs Python


def test_a_credential_process_answering_expiration_1e20_fails_non_recoverably() -> None:
    document = json.dumps({**answer(1e20), "Version": 1})
    provider = ProcessProvider([sys.executable, "-c", f"print({document!r})"])
    with pytest.raises(NonRecoverableError, match=r"Expiration 1e\+20 is out of range") as info:
        provider.provide()
    assert_clean(info.value)


def test_an_environment_expiration_out_of_range_names_the_variable() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "AKIDENV",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_CREDENTIAL_EXPIRATION": "1e20",
    }
    with pytest.raises(NonRecoverableError, match="AWS_CREDENTIAL_EXPIRATION '1e20'") as info:
        EnvironmentProvider(env).provide()
    assert_clean(info.value)


# -- duration options ------------------------------------------------------------------------

CACHE_DURATIONS = ["load_timeout", "advisory_window", "mandatory_window"]
CACHE_RANGES = ["refresh_backoff", "error_cache"]
BAD_SECONDS = [math.nan, math.inf, -math.inf, -1, -1e-9, 1e10, 1e300, 10**400, True, "5", [1]]


def _make(option: str, value: object) -> object:
    if option in CACHE_RANGES:
        return CredentialCache(lambda: None, **{option: (value, value)})  # type: ignore[arg-type]
    if option in CACHE_DURATIONS:
        return CredentialCache(lambda: None, **{option: value})  # type: ignore[arg-type]
    return Limiter(**{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", BAD_SECONDS, ids=repr)
@pytest.mark.parametrize(
    "option", [*CACHE_DURATIONS, *CACHE_RANGES, "cooldown", "rate", "burst", "max_concurrency"]
)
def test_a_bad_duration_or_rate_option_is_an_error_naming_the_option(
    option: str, value: object
) -> None:
    with pytest.raises((ValueError, TypeError), match=option):
        _make(option, value)


def test_options_at_the_documented_maximum_are_accepted() -> None:
    cache = CredentialCache(
        lambda: None,
        load_timeout=1e9,
        advisory_window=1e9,
        mandatory_window=1e9,
        refresh_backoff=(1e9, 1e9),
        error_cache=(0, 1e9),
    )
    assert cache.inspect()["load_timeout"] == 1e9
    Limiter(rate=1e-9, burst=1e9, cooldown=1e9)
    Limiter(rate=1e9)


def test_a_very_slow_rate_saturates_instead_of_panicking() -> None:
    limiter = Limiter(rate=1e-300, clock=ManualClock())
    assert limiter.admit() is not None
    admitted = limiter.admit()
    assert admitted is not None and admitted[0] <= 1e9


# -- properties ----------------------------------------------------------------------------

offsets = st.builds(
    timezone,
    st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23)),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(),  # NaN, infinities, subnormals, extremes
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(min_value=-7e10, max_value=3e11),
    st.text(max_size=40),
    st.from_regex(r"\A[0-9]{1,5}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z?\Z"),
    st.datetimes(),
    st.datetimes(timezones=offsets),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=15), inner, max_size=3)
    ),
    max_leaves=6,
)


def _outcome(make: Callable[[], Any], errors: tuple[type[Exception], ...]) -> Any:
    """What `make` returns, or None for one of `errors`; anything else (a PanicException is
    a BaseException) fails the test."""
    try:
        return make()
    except errors as exc:
        assert_clean(exc)
        return None


def _check_round_trip(value: object, creds: Credentials) -> None:
    assert creds.expiry is None or FIRST <= creds.expiry <= LAST
    repr(creds)
    if isinstance(value, datetime):
        aware = value if value.utcoffset() is not None else value.replace(tzinfo=UTC)
        assert creds.expiry == aware


@BOUNDED
@given(values)
def test_property_credentials_accept_or_raise_value_error(value: object) -> None:
    made = _outcome(lambda: Credentials("AK", SECRET, expiry=value), (ValueError,))  # type: ignore[arg-type]
    if made is not None:
        _check_round_trip(value, made)
    mapped = _outcome(lambda: Credentials.from_mapping(answer(value)), (ValueError,))
    assert (made is None) == (mapped is None)
    if mapped is not None:
        _check_round_trip(value, mapped)


@BOUNDED
@given(st.one_of(scalars.map(answer), values.map(answer), values))
def test_property_a_provider_answer_is_credentials_or_a_provider_error(answer: object) -> None:
    cache = CredentialCache(lambda: answer, clock=ManualClock())
    got = _outcome(cache.get, (CredentialsError,))
    if got is not None:
        assert got.expiry is None or got.expiry <= LAST
    cache.inspect()


@BOUNDED
@given(
    st.sampled_from([*CACHE_DURATIONS, *CACHE_RANGES, "cooldown", "rate", "burst"]),
    st.one_of(scalars, st.floats(min_value=0, max_value=2e9)),
)
def test_property_an_option_is_accepted_or_a_value_or_type_error(
    option: str, value: object
) -> None:
    _outcome(lambda: _make(option, value), (ValueError, TypeError))


@pytest.mark.parametrize(
    "sizes",
    [{"worker_threads": 10**6}, {"worker_threads": 10**30}, {"max_blocking_threads": -1}],
    ids=repr,
)
def test_runtime_pool_sizes_out_of_range_are_a_value_error(sizes: dict[str, int]) -> None:
    import creds_core

    before = creds_core.runtime_config()
    with pytest.raises(ValueError, match="pool sizes"):
        creds_core.configure_runtime(**sizes)
    assert creds_core.runtime_config() == before
