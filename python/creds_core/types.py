"""The types of what creds_core answers: ``stats()`` and ``inspect()`` dicts, state labels, and
what counts as a provider. For type checkers; nothing here changes behaviour.

``CredentialCache.stats()`` is a :class:`CacheStats`, ``CredentialCache.inspect()`` a
:class:`CacheInspection` (its ``state`` a :data:`CacheState`), ``Limiter.stats()`` a
:class:`LimiterStats` and ``creds_core.redis.RedisTier.stats()`` a ``TierStats``.
"""

# No ``from __future__ import annotations``: these TypedDicts are evaluated on Python 3.9 too.
from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import Any, Callable, Literal, Optional, Protocol, TypedDict, Union

from creds_core._core import CredentialCache, Credentials, ProviderChain

__all__ = [
    "ApiBucketStats",
    "BreakerState",
    "CacheInspection",
    "CacheState",
    "CacheStats",
    "LimiterStats",
    "ProviderAnswer",
    "ProviderLike",
    "SupportsProvide",
]

#: What ``provide()`` may return: credentials, a mapping of them, or None for "nothing here".
ProviderAnswer = Union[Credentials, Mapping[str, Any], None]

#: The state of a cache, as ``inspect()["state"]`` names it (the core's refresh policy):
#: nothing cached, expired, in a backoff after a recoverable failure, fresh, in the advisory
#: window, invalidated, or in the mandatory window.
CacheState = Literal["empty", "expired", "backoff", "fresh", "advisory", "invalidated", "mandatory"]

#: A Limiter's circuit breaker (``Limiter.breaker``, ``Limiter.stats()["breaker"]``).
BreakerState = Literal["closed", "open", "half-open"]


class SupportsProvide(Protocol):
    """An object with ``provide()`` (a :class:`creds_core.Provider` or anything shaped like
    one); an optional ``fallback_on_interrupt()`` and ``name`` are used when present."""

    def provide(self) -> Union[ProviderAnswer, Awaitable[ProviderAnswer]]: ...


#: Anything a CredentialCache, a ProviderChain or the boto3 glue takes as a provider.
ProviderLike = Union[
    SupportsProvide,
    ProviderChain,
    CredentialCache,
    Credentials,
    Callable[[], Union[ProviderAnswer, Awaitable[ProviderAnswer]]],
]


class CacheStats(TypedDict):
    """``CredentialCache.stats()``: counters since the cache was made."""

    source_calls: int  # calls of the provider
    refreshes_succeeded: int
    refreshes_failed: int
    background_refreshes: int  # advisory refreshes that ran while callers were served
    waits: int  # callers that waited for a refresh
    rate_limited: int  # calls served from cache during a backoff
    timeouts: int  # waits that outlived load_timeout
    fallbacks: int  # answers from the provider's fallback_on_interrupt()
    static_stability: int  # last good credentials served after a failure or a timeout
    late_results: int  # timed-out source calls whose result still updated the cache
    cached_errors: int  # errors re-raised from the error cache
    invalidations: int
    stale_answers: int  # answers that were already expired (counted as failures)


class CacheInspection(TypedDict):
    """``CredentialCache.inspect()``: the state for humans and tests. Never a secret; times
    are aware UTC datetimes, windows and timeouts seconds."""

    name: str
    provider: str
    state: CacheState
    access_key_id: Optional[str]
    expiry: Optional[datetime]
    advisory_window: Optional[float]
    mandatory_window: Optional[float]
    refresh_at: Optional[datetime]
    mandatory_at: Optional[datetime]
    next_refresh_allowed_at: Optional[datetime]
    error_cached_until: Optional[datetime]
    last_error: Optional[str]
    refreshing: bool
    invalidated: bool
    load_timeout: float


class LimiterStats(TypedDict):
    """``Limiter.stats()``: counters since the limiter was made, and its current state."""

    acquired: int  # permits handed out (source calls started)
    waited_for_rate: int  # acquisitions that waited for the rate
    throttled: int  # throttling answers seen
    failures: int
    rejected_open: int  # calls failed fast while the breaker was open
    breaker_opened: int
    breaker_closed: int
    current_rate: Optional[float]  # calls per second now (None: no rate limit)
    breaker: BreakerState


class ApiBucketStats(TypedDict):
    """``ApiLimits.stats()[key]``: one bucket of an :class:`creds_core.ApiLimits`."""

    account: str
    region: str
    service: str
    bucket: str  # the rule, the operation, or EC2's per-API bucket name
    capacity: Optional[float]  # tokens the bucket holds (None: no known quota)
    refill: Optional[float]  # tokens a second (None: no known quota)
    acquired: int  # attempts admitted (sent or about to be)
    waited: int  # attempts that waited for the rate
    throttled: int  # throttling answers
    failures: int  # 5xx answers and connection errors
    rejected_open: int  # calls failed fast while the breaker was open
    current_rate: Optional[float]  # tokens a second now (None: unlimited)
    breaker: BreakerState
    last_error: Optional[str]  # the last failure counted (no secret)
