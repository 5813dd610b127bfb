"""A shared credential tier on Redis: a fleet of processes makes one source call per role.

::

    from creds_core.redis import RedisTier
    import creds_core.boto3

    tier = RedisTier("redis://cache.internal:6379/0", key=os.environ["CREDS_CORE_TIER_KEY"])
    role = creds_core.boto3.assume_role(session, role_arn, shared=tier)
    result = creds_core.fanout.fan_out(fn, account_ids, role_name="Auditor", shared=tier)
    # asyncio: creds_core.aiobotocore.assume_role(..., shared=tier), fan_out_async(..., shared=tier)

    cache = CredentialCache(tier.wrap(MySource(), "my-source"))   # any provider
    tier.stats()   # hits, misses, lease_waits, lease_takeovers, local_fallbacks, redis_errors...

Each process keeps its own :class:`~creds_core.CredentialCache` (the hot path never touches
Redis); the tier is what the cache's *provider* asks when the cache refreshes:

1. Read the shared entry.  Used while it is outside its advisory window (the cache's table:
   5 / 15 / 60 min for lifetimes up to 20 min / 20-90 min / longer, widened by the cache's
   10 % refresh jitter, so that a cache refreshing early never gets the entry it already has).
2. Otherwise take the lease (``SET lease token NX PX lease_ttl``, ``token`` random: a
   fencing token), read again, call the real source and write its answer, encrypted, with a
   TTL to its expiry; the write and the release of the lease are one script that writes only
   while the lease is still this caller's, so a holder whose lease ran out never overwrites
   the entry of the one that took over (it still returns its credentials to its caller).
3. Everyone else waits for that write (polling, at most half the cache's ``load_timeout``),
   takes the lease over if it is released or expires with nothing written (a holder that
   died), and else calls the source itself.

Entries are AES-256-GCM encrypted and authenticated (``cryptography``'s ``AESGCM``, a random
96-bit nonce per write) with the namespace and entry name as associated data.  The key (32
bytes, or their base64) comes from the user: keep it in an environment variable or a
secrets manager, never in code.  ``key`` may be a list: entries are decrypted with any of
them and written with the first, so a key is rotated by prepending the new one everywhere,
then dropping the old one once its entries have expired.  An entry that no key opens (a
wrong key, a corrupt or a foreign entry: another name's entry copied over) is a miss: never
served, never an error, and overwritten by the next write.

Redis is never needed for correctness.  Every Redis call has redis-py's socket timeouts
(``socket_timeout``, default 0.5 s) and no retries beyond one reconnect; an error of any kind
(connection refused, timeout, OOM, READONLY, ...) counts in ``redis_errors``, sends that
caller down the local path (the real source, as without the tier) and opens the tier's
breaker: for ``cooldown`` seconds every refresh goes straight to the local path without
touching Redis.  The first failure is logged at WARNING (the exception type and redis-py's
message, never a key or a secret), later ones at DEBUG until Redis answers again (INFO).
Nothing is ever raised to a caller because of Redis.

Cluster and Sentinel: pass a redis-py client instead of a URL
(``RedisTier(redis.cluster.RedisCluster.from_url(url), key=...)``,
``RedisTier(Sentinel([(host, 26379)]).master_for("creds"), key=...)``), or ``cluster=True``
with a URL.  An entry and its lease share a hash tag, so the script touches one slot.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import inspect
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Literal, TypedDict, Union
from urllib.parse import urlsplit, urlunsplit

try:
    import redis as redis_py
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as _exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "creds_core.redis needs redis-py and cryptography: pip install 'creds_core[redis]'"
    ) from _exc

from creds_core import _aio_loop
from creds_core._core import CredentialCache, Credentials, _current_flight
from creds_core._provider import Provider
from creds_core.types import ProviderLike

__all__ = ["RedisTier", "SharedProvider", "TierStats"]

LOG = logging.getLogger("creds_core.redis")

Key = Union[bytes, str]

_VERSION = b"\x01"
_NONCE = 12
_MINUTE = 60.0
#: The cache's refresh jitter moves its refresh up to this fraction of the advisory window
#: earlier; the tier treats entries as due that early, so an early refresher gets new ones.
_JITTER = 0.1
_POLL_FIRST = 0.01
_POLL_MAX = 0.1

# Write the entry and release the lease, only while the lease is still ours (fencing).
_PUBLISH = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
"""
# Release the lease only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Fleet-wide API buckets (creds_core.ApiLimits(shared=tier)): GCRA in Redis, on Redis's own
# clock (TIME), so that hosts whose clocks differ share one schedule.  A hash per bucket:
# tat (theoretical arrival time), rate (tokens/s now), cut_at and before (the last halving and
# the rate before it: the CUBIC recovery curve, as creds_core.Limiter's).
#   ARGV: capacity, ceiling rate, want (tokens wanted if available now)
#   returns {granted, wait_of_last_ms}: every token available now, up to want, or else one
#   token reserved in the future (wait > 0).
_DRAW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local capacity = tonumber(ARGV[1])
local ceiling = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'cut_at', 'before')
local tat = tonumber(h[1]) or now
local rate = tonumber(h[2]) or ceiling
local cut_at = tonumber(h[3])
if cut_at then
  local before = tonumber(h[4]) or ceiling
  local k = ((before * 0.5) / 0.4) ^ (1 / 3)
  local curve = 0.4 * (now - cut_at - k) ^ 3 + before
  rate = math.min(ceiling, math.max(rate, curve, 0.5))
end
local interval = 1 / rate
local tolerance = math.max(capacity - 1, 0) * interval
if tat < now then tat = now end
local granted = 0
local wait = 0
while granted < want do
  local start = math.max(now, tat - tolerance)
  if start > now then
    if granted == 0 then
      granted = 1
      wait = start - now
      tat = tat + interval
    end
    break
  end
  granted = granted + 1
  tat = tat + interval
end
redis.call('HSET', KEYS[1], 'tat', tostring(tat), 'rate', tostring(rate))
redis.call('PEXPIRE', KEYS[1], 3600000)
return {granted, math.floor(wait * 1000000)}
"""
# A throttling answer: halve the fleet's rate (at most once a second) and drop any burst.
_CUT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local ceiling = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'cut_at')
local rate = tonumber(h[2]) or ceiling
local cut_at = tonumber(h[3])
if cut_at and now - cut_at < 1 then return 0 end
local slower = math.max(rate * 0.5, 0.5)
local tat = math.max(tonumber(h[1]) or now, now + 1 / slower)
redis.call('HSET', KEYS[1], 'tat', tostring(tat), 'rate', tostring(slower),
           'cut_at', tostring(now), 'before', tostring(rate))
redis.call('PEXPIRE', KEYS[1], 3600000)
return 1
"""


class TierStats(TypedDict):
    """What :meth:`RedisTier.stats` answers (counters since the tier was made)."""

    hits: int  # refreshes answered by a shared entry (also after waiting for a lease)
    misses: int  # refreshes that found no usable entry
    lease_waits: int  # refreshes that found the lease held by another caller and waited
    lease_takeovers: int  # waiters that took the lease after it was released or expired
    local_fallbacks: int  # refreshes that called the source without the tier's coordination
    redis_errors: int  # Redis calls that failed (connection, timeout, OOM, READONLY, ...)
    source_calls: int  # calls of the real source through this tier
    writes: int  # entries written
    bucket_draws: int  # draws from fleet-wide API buckets (creds_core.ApiLimits(shared=))
    bucket_cuts: int  # throttling answers that slowed a fleet-wide API bucket down
    # "closed" (using Redis) or "open" (local path only, until the cooldown)
    breaker: Literal["closed", "open"]


class _Entry:
    __slots__ = ("credentials", "fetched_at")

    def __init__(self, credentials: Credentials, fetched_at: float) -> None:
        self.credentials = credentials
        self.fetched_at = fetched_at


class _Unavailable(Exception):
    """A Redis call failed (or the breaker is open): take the local path."""


def _parse_key(key: Key) -> bytes:
    if isinstance(key, str):
        try:
            raw = base64.b64decode(key.strip(), validate=True)
        except (binascii.Error, ValueError):
            try:
                raw = base64.urlsafe_b64decode(key.strip())
            except (binascii.Error, ValueError):
                raise ValueError("key: not valid base64") from None
    elif isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
    else:
        raise TypeError(f"key must be bytes or a base64 str, not {type(key).__name__}")
    if len(raw) != 32:
        raise ValueError(f"key must be 32 bytes (AES-256), or their base64; got {len(raw)} bytes")
    return raw


def _masked_url(url: str) -> str:
    """``url`` without its password (for reprs and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _advisory_window(lifetime: float) -> float:
    if lifetime <= 20 * _MINUTE:
        return 5 * _MINUTE
    if lifetime < 90 * _MINUTE:
        return 15 * _MINUTE
    return 60 * _MINUTE


class RedisTier:
    """A shared credential tier on Redis or Valkey (see the module's documentation).

    ``url``: a redis-py URL (``redis://``, ``rediss://``, ``unix://``; ``cluster=True`` for a
    Cluster) or a redis-py client (``Redis``, ``RedisCluster``, a Sentinel ``master_for``)
    made with ``decode_responses=False``.  ``key``: the AES-256 key, 32 bytes or their base64,
    or a list of them (decrypt with any, write with the first).  ``namespace`` prefixes every
    Redis key (and is authenticated with each entry).  ``lease_ttl``: seconds a holder may
    take for one source call before others take over.  ``socket_timeout`` and
    ``socket_connect_timeout`` bound each Redis call (URL form only); ``cooldown``: seconds the
    breaker stays open after a Redis error.  ``advisory_window``: seconds before expiry from
    which an entry is due for a refresh (default: the cache's table).  ``no_expiry_ttl``:
    seconds entries without expiry are kept.
    """

    def __init__(
        self,
        url: str | Any,
        *,
        key: Key | Sequence[Key],
        namespace: str = "creds_core",
        lease_ttl: float = 10.0,
        socket_timeout: float = 0.5,
        socket_connect_timeout: float = 0.5,
        cooldown: float = 5.0,
        advisory_window: float | None = None,
        no_expiry_ttl: float = 3600.0,
        cluster: bool = False,
        **redis_options: Any,
    ) -> None:
        keys: list[Any] = (
            [key] if isinstance(key, (str, bytes, bytearray, memoryview)) else list(key)
        )
        if not keys:
            raise ValueError("key: give at least one key")
        self._ciphers = [AESGCM(_parse_key(k)) for k in keys]
        if not namespace or not isinstance(namespace, str):
            raise ValueError("namespace must be a non-empty string")
        for name, value in (
            ("lease_ttl", lease_ttl),
            ("socket_timeout", socket_timeout),
            ("socket_connect_timeout", socket_connect_timeout),
            ("no_expiry_ttl", no_expiry_ttl),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive")
        if cooldown < 0:
            raise ValueError("cooldown must be >= 0")
        if advisory_window is not None and advisory_window < 0:
            raise ValueError("advisory_window must be >= 0 or None")
        self.namespace = namespace
        self.lease_ttl = float(lease_ttl)
        self.cooldown = float(cooldown)
        self.advisory_window = advisory_window
        self.no_expiry_ttl = float(no_expiry_ttl)
        if isinstance(url, str):
            self._where = _masked_url(url)
            options: dict[str, Any] = {
                "socket_timeout": socket_timeout,
                "socket_connect_timeout": socket_connect_timeout,
            }
            options.update(redis_options)
            if cluster:
                from redis.cluster import RedisCluster

                self.client: Any = RedisCluster.from_url(url, **options)
            else:
                # One reconnect for a pooled connection that Redis closed (a restart); no
                # backoff: the breaker, not retries, handles a Redis that is gone.
                options.setdefault("retry", Retry(NoBackoff(), 1))
                self.client = redis_py.Redis.from_url(url, **options)
        else:
            if redis_options or cluster:
                raise TypeError("redis options and cluster= apply to a URL, not to a client")
            self.client = url
            self._where = type(url).__name__
        decode = getattr(getattr(self.client, "connection_pool", None), "connection_kwargs", {})
        if isinstance(decode, Mapping) and decode.get("decode_responses"):
            raise ValueError("the Redis client must be made with decode_responses=False")
        self._publish = self.client.register_script(_PUBLISH)
        self._release = self.client.register_script(_RELEASE)
        self._draw = self.client.register_script(_DRAW)
        self._cut = self.client.register_script(_CUT)
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "hits",
                "misses",
                "lease_waits",
                "lease_takeovers",
                "local_fallbacks",
                "redis_errors",
                "source_calls",
                "writes",
                "bucket_draws",
                "bucket_cuts",
            ),
            0,
        )
        self._open_until = 0.0  # monotonic; the breaker is open before it
        self._failing = False  # between a failure and the next success (logs once)

    @staticmethod
    def generate_key() -> str:
        """A new random key, base64 (e.g. for an environment variable or a secrets manager)."""
        return base64.b64encode(os.urandom(32)).decode("ascii")

    def __repr__(self) -> str:
        return f"RedisTier({self._where!r}, namespace={self.namespace!r})"

    # -- public --------------------------------------------------------------------------

    def wrap(
        self, provider: ProviderLike, name: str, *, load_timeout: float = 5.0
    ) -> SharedProvider:
        """A Provider that answers from the shared entry ``name`` and calls ``provider`` (a
        Provider, a callable, a ProviderChain, a CredentialCache or Credentials) at most once
        per refresh across every process using this tier.  ``name`` identifies the
        credentials fleet-wide (e.g. the role ARN and session parameters); ``load_timeout``
        is that of the cache the provider goes in: waits for another process's lease last at
        most half of it."""
        return SharedProvider(self, provider, name, wait=max(0.0, load_timeout / 2.0))

    def stats(self) -> TierStats:
        """Counters since the tier was made, and the breaker's state."""
        with self._lock:
            counts = dict(self._counts)
        return TierStats(
            hits=counts["hits"],
            misses=counts["misses"],
            lease_waits=counts["lease_waits"],
            lease_takeovers=counts["lease_takeovers"],
            local_fallbacks=counts["local_fallbacks"],
            redis_errors=counts["redis_errors"],
            source_calls=counts["source_calls"],
            writes=counts["writes"],
            bucket_draws=counts["bucket_draws"],
            bucket_cuts=counts["bucket_cuts"],
            breaker="open" if time.monotonic() < self._open_until else "closed",
        )

    def keys_for(self, name: str) -> tuple[str, str]:
        """The Redis keys of entry ``name``: (entry, lease).  The name is hashed (fixed
        length, no role ARN in Redis); the hash is a Cluster hash tag, so both share a slot."""
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]
        return f"{self.namespace}:{{{digest}}}:entry", f"{self.namespace}:{{{digest}}}:lease"

    # -- fleet-wide API buckets (creds_core.ApiLimits(shared=tier)) -----------------------

    def bucket_key(self, name: str) -> str:
        """The Redis key of the fleet-wide API bucket ``name`` (hashed: no account in Redis)."""
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]
        return f"{self.namespace}:{{{digest}}}:bucket"

    def draw_tokens(self, name: str, capacity: float, rate: float, want: int) -> list[float] | None:
        """Tokens of the fleet-wide bucket ``name``: the waits (seconds from now) of the
        tokens granted, every one available now up to ``want``, or one reserved later.  None
        when Redis is unavailable (the caller uses its local bucket)."""
        try:
            granted, wait_us = self._call(
                self._draw, keys=[self.bucket_key(name)], args=[capacity, rate, max(1, want)]
            )
        except _Unavailable:
            return None
        self._count("bucket_draws")
        if int(granted) <= 0:
            return None
        last = int(wait_us) / 1e6
        return [0.0] * (int(granted) - 1) + [last]

    def report_throttle(self, name: str, rate: float) -> None:
        """A throttling answer for the fleet-wide bucket ``name``: slow the fleet down."""
        try:
            cut = self._call(self._cut, keys=[self.bucket_key(name)], args=[rate])
        except _Unavailable:
            return
        if cut:
            self._count("bucket_cuts")

    # -- Redis calls, each behind the breaker -----------------------------------------------

    def _count(self, counter: str) -> None:
        with self._lock:
            self._counts[counter] += 1

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() < self._open_until:
            raise _Unavailable
        try:
            result = fn(*args, **kwargs)
        except redis_py.exceptions.ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):  # a foreign value under our key: a miss
                return None
            self._failed(exc)
            raise _Unavailable from None
        except (redis_py.exceptions.RedisError, OSError) as exc:
            self._failed(exc)
            raise _Unavailable from None
        if self._failing:
            with self._lock:
                recovered, self._failing = self._failing, False
            if recovered:
                LOG.info("shared credential tier %r answers again", self._where)
        return result

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self._counts["redis_errors"] += 1
            first, self._failing = not self._failing, True
            self._open_until = time.monotonic() + self.cooldown
        message = " ".join(str(exc).split())[:200]
        LOG.log(
            logging.WARNING if first else logging.DEBUG,
            "shared credential tier %r failed (%s: %s); refreshing without it for %.0f s",
            self._where,
            type(exc).__name__,
            message,
            self.cooldown,
        )

    # -- entries ---------------------------------------------------------------------------

    def _aad(self, name: str) -> bytes:
        return b"creds_core/redis/v1\x00" + self.namespace.encode() + b"\x00" + name.encode()

    def _seal(self, name: str, creds: Credentials, fetched_at: float) -> bytes:
        expiry = creds.expiry
        document = {
            "k": creds.access_key_id,
            "s": creds.secret_access_key,
            "t": creds.session_token,
            # ISO 8601, exact to the microsecond: a float timestamp of an expiry late in 9999
            # rounds up out of the range Credentials accepts. (Readers accept both forms.)
            "e": expiry.isoformat() if expiry is not None else None,
            "a": creds.account_id,
            "p": creds.provider_name,
            "f": fetched_at,
        }
        nonce = secrets.token_bytes(_NONCE)
        plain = json.dumps(document, separators=(",", ":")).encode("utf-8")
        return _VERSION + nonce + self._ciphers[0].encrypt(nonce, plain, self._aad(name))

    def _open(self, name: str, blob: Any) -> _Entry | None:
        """The entry in ``blob``, or None for anything no key opens or that does not parse."""
        if not isinstance(blob, bytes) or len(blob) <= 1 + _NONCE or blob[:1] != _VERSION:
            return None
        nonce, sealed, aad = blob[1 : 1 + _NONCE], blob[1 + _NONCE :], self._aad(name)
        for cipher in self._ciphers:
            try:
                plain = cipher.decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
            try:
                d = json.loads(plain)
                creds = Credentials(
                    d["k"],
                    d["s"],
                    d["t"],
                    d["e"],
                    account_id=d.get("a"),
                    provider_name=d.get("p"),
                )
                return _Entry(creds, float(d["f"]))
            except Exception:  # authenticated but not ours to read: a miss
                return None
        return None

    def _usable(self, entry: _Entry | None, now: float) -> bool:
        if entry is None:
            return False
        expiry = entry.credentials.expiry
        if expiry is None:
            return True
        expires_at = expiry.timestamp()
        window = self.advisory_window
        if window is None:
            window = _advisory_window(expires_at - entry.fetched_at) * (1.0 + _JITTER)
        return now < expires_at - window

    def _read(self, name: str, entry_key: str) -> _Entry | None:
        return self._open(name, self._call(self.client.get, entry_key))

    def _ttl_ms(self, creds: Credentials, now: float) -> int:
        expiry = creds.expiry
        seconds = self.no_expiry_ttl if expiry is None else expiry.timestamp() - now
        return int(seconds * 1000)

    # -- the refresh -------------------------------------------------------------------------

    def _refresh(self, name: str, source: Callable[[], Credentials | None], wait: float) -> Any:
        entry_key, lease_key = self.keys_for(name)
        try:
            if self._usable(entry := self._read(name, entry_key), time.time()):
                self._count("hits")
                return entry.credentials  # type: ignore[union-attr]
            self._count("misses")
            token = secrets.token_hex(16)
            lease_ms = max(1, int(self.lease_ttl * 1000))
            if self._call(self.client.set, lease_key, token, nx=True, px=lease_ms):
                return self._as_holder(name, source, entry_key, lease_key, token)
            self._count("lease_waits")
            deadline = time.monotonic() + wait
            pause = _POLL_FIRST
            while time.monotonic() < deadline:
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 2, _POLL_MAX)
                if self._usable(entry := self._read(name, entry_key), time.time()):
                    self._count("hits")
                    return entry.credentials  # type: ignore[union-attr]
                if self._call(self.client.set, lease_key, token, nx=True, px=lease_ms):
                    self._count("lease_takeovers")
                    return self._as_holder(name, source, entry_key, lease_key, token)
        except _Unavailable:
            pass
        # Redis failed, or the holder did not write in time: the source, as without the tier.
        self._count("local_fallbacks")
        return self._call_source(source)

    def _call_source(self, source: Callable[[], Credentials | None]) -> Credentials | None:
        self._count("source_calls")
        return source()

    def _as_holder(
        self,
        name: str,
        source: Callable[[], Credentials | None],
        entry_key: str,
        lease_key: str,
        token: str,
    ) -> Credentials | None:
        try:
            # Someone may have written between our read and our lease.
            if self._usable(entry := self._read(name, entry_key), time.time()):
                self._count("hits")
                self._give_back(lease_key, token)
                return entry.credentials  # type: ignore[union-attr]
        except _Unavailable:
            self._count("local_fallbacks")
            return self._call_source(source)
        try:
            creds = self._call_source(source)
        except BaseException:
            self._give_back(lease_key, token)
            raise
        now = time.time()
        ttl_ms = self._ttl_ms(creds, now) if creds is not None else 0
        if creds is None or ttl_ms <= 0:
            self._give_back(lease_key, token)
            return creds
        try:
            blob = self._seal(name, creds, now)
            if self._call(self._publish, keys=[entry_key, lease_key], args=[token, blob, ttl_ms]):
                self._count("writes")
        except _Unavailable:
            pass
        return creds

    def _give_back(self, lease_key: str, token: str) -> None:
        try:
            self._call(self._release, keys=[lease_key], args=[token])
        except _Unavailable:
            pass  # the lease expires on its own


def _to_credentials(answer: Any) -> Credentials | None:
    if inspect.isawaitable(answer):
        # A coroutine provider behind the tier (creds_core.aiobotocore's assume-role) runs on
        # creds_core's one event loop too, as part of the refresh this worker thread serves:
        # its throttled answers reach the refresh's Limiter, its lookups are nested in it.
        # This thread waits for it (with Redis's polls, never on an event loop).
        answer = _aio_loop.run(answer, _current_flight())
    if answer is None or isinstance(answer, Credentials):
        return answer
    if isinstance(answer, Mapping):
        return Credentials.from_mapping(answer)
    raise TypeError(
        f"a provider returned {type(answer).__name__}; expected Credentials, a mapping or None"
    )


class SharedProvider(Provider):
    """``provider`` behind a :class:`RedisTier` (made by :meth:`RedisTier.wrap`)."""

    def __init__(self, tier: RedisTier, provider: ProviderLike, name: str, *, wait: float) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty string")
        self.tier = tier
        self.source = provider
        self.entry_name = name
        self.wait = wait
        self.name = f"shared:{getattr(provider, 'name', None) or type(provider).__name__}"

    def _call(self) -> Credentials | None:
        source = self.source
        if isinstance(source, Credentials):
            return source
        if isinstance(source, CredentialCache):
            return source.get()
        provide = getattr(source, "provide", None)
        if callable(provide):
            return _to_credentials(provide())
        if callable(source):
            return _to_credentials(source())
        raise TypeError(f"cannot get credentials from a {type(source).__name__}")

    def provide(self) -> Credentials | None:
        return self.tier._refresh(self.entry_name, self._call, self.wait)  # type: ignore[no-any-return]

    def fallback_on_interrupt(self) -> Credentials | None:
        fallback = getattr(self.source, "fallback_on_interrupt", None)
        result = fallback() if callable(fallback) else None
        return result if isinstance(result, Credentials) else None

    def __repr__(self) -> str:
        return f"SharedProvider({self.entry_name!r}, {self.tier!r})"
