"""AWS as one shared resource for every API call: :class:`ApiLimits`.

botocore retries a throttled call per client, and its adaptive mode keeps one token bucket
per client: 64 threads and 1,000 clients against one account's quota learn nothing from each
other, and a discovery tool that fans out over many accounts and APIs drowns in throttling
errors.  An :class:`ApiLimits` is one registry of token buckets shared by every client,
thread and session given it (and, with ``shared=``, by every process of a fleet):

* a bucket per (account, region, service, bucket), made on first use.  The bucket of a call
  comes from the first rule that matches ``service:Operation`` (``"ec2:Describe*"``,
  ``"iam"``, ``"s3:ListObjectsV2"``): one bucket per rule, or one per operation with
  ``per_operation=True``.  Without a matching rule, EC2 calls use EC2's documented buckets
  (one per API; see ``creds_core._ec2_quotas``) and any other service starts unlimited and
  adapts once it throttles;
* every attempt of every call waits for its bucket's token before it is signed and sent
  (threads sleep without the GIL; coroutines ``await`` on their own loop);
* a throttling answer (botocore's throttling codes, EC2's ``RequestLimitExceeded``, HTTP 429)
  slows that bucket for everyone (the :class:`~creds_core.Limiter`'s CUBIC curve: halved,
  then recovering with time), and the throttled attempt is retried through the bucket until
  the call's ``max_wait`` has passed: sustained throttling slows the work, it does not fail
  it.  Other errors keep botocore's retry configuration;
* consecutive 5xx answers and connection errors open the bucket's circuit breaker: calls
  fail fast with :class:`ApiCircuitOpen` (naming the service, region and last error) for
  ``cooldown`` seconds, then one probe call goes through.  Throttling never opens it.

Each bucket is a :class:`creds_core.Limiter` (``admit()`` / ``finish()``): the rate, the
adaptive curve and the breaker are the ones credential refreshes use.  Plug it in with one
keyword: ``api_limits=`` on ``creds_core.boto3.session`` / ``install`` / ``assume_role``,
``creds_core.fanout.fan_out`` / ``fan_out_async`` and the ``creds_core.aiobotocore`` doors.
"""

from __future__ import annotations

import fnmatch
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from creds_core._botocore import CacheAdapter
from creds_core._core import THROTTLING_CODES, Limiter
from creds_core._ec2_quotas import UNFILTERED_SENSITIVE, Quota, ec2_bucket
from creds_core._sessions import warn_once
from creds_core.types import ApiBucketStats

if TYPE_CHECKING:
    from creds_core.redis import RedisTier

__all__ = ["ApiCircuitOpen", "ApiLimits", "ApiRule"]

_RULE_KEYS = frozenset({"rate", "burst", "per_operation", "adaptive"})
# A Limiter's concurrency cap is not used by admitted calls; it only has to be valid.
_NO_CONCURRENCY_CAP = 1 << 20
_THROTTLING = frozenset(THROTTLING_CODES)
# Credential fetches are paced by the credential Limiter (creds_core.boto3.sts_limiter), with
# load_timeout and static stability: they do not also queue at an API bucket.
_CREDENTIAL_OPERATIONS = frozenset(
    {
        ("sts", "AssumeRole"),
        ("sts", "AssumeRoleWithWebIdentity"),
        ("sts", "AssumeRoleWithSAML"),
        ("sts", "GetSessionToken"),
        ("sso", "GetRoleCredentials"),
        ("sso-oidc", "CreateToken"),
        ("signin", "CreateOAuth2Token"),
    }
)


def _circuit_open_base() -> type[Exception]:
    from botocore.exceptions import BotoCoreError

    return BotoCoreError


class ApiCircuitOpen(_circuit_open_base()):  # type: ignore[misc]
    """A call failed fast: its bucket's circuit breaker is open after repeated 5xx answers or
    connection errors.  A ``botocore.exceptions.BotoCoreError``, so code that handles
    botocore's connection errors handles it too."""

    fmt = (
        "creds_core: {service} in {region} (account {account}) is failing ({last_error}); "
        "calls fail fast for up to {cooldown:.0f}s, then one probe call is sent"
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service: str = kwargs["service"]
        self.region: str = kwargs["region"]
        self.account: str = kwargs["account"]
        self.last_error: str = kwargs["last_error"]


def _positive(name: str, value: Any, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number <= minimum or number > 1e9:
        raise ValueError(
            f"{name} must be a finite number > {minimum:g} (and at most 1e9), not {value!r}"
        )
    return number


@dataclass(frozen=True)
class ApiRule:
    """One rule: calls matching ``pattern`` (``service`` or ``service:OperationGlob``) draw
    from a bucket of ``burst`` tokens refilled at ``rate`` a second (None: unlimited until
    the service throttles), one per rule or, with ``per_operation``, one per operation."""

    pattern: str
    rate: float | None
    burst: float | None
    per_operation: bool = False
    adaptive: bool = True

    @classmethod
    def parse(cls, pattern: str, spec: Mapping[str, Any]) -> ApiRule:
        if not isinstance(pattern, str) or not pattern.strip(":"):
            raise ValueError(f"a rule is named 'service' or 'service:Operation*', not {pattern!r}")
        if not isinstance(spec, Mapping):
            raise TypeError(f"rule {pattern!r}: expected a mapping like {{'rate': 10}}")
        unknown = set(spec) - _RULE_KEYS
        if unknown:
            raise ValueError(
                f"rule {pattern!r}: unknown keys {sorted(unknown)}; known: {sorted(_RULE_KEYS)}"
            )
        rate = spec.get("rate")
        burst = spec.get("burst")
        return cls(
            pattern=pattern,
            rate=None if rate is None else _positive(f"rule {pattern!r} rate", rate),
            burst=None
            if burst is None
            else _positive(f"rule {pattern!r} burst", burst, minimum=0.0),
            per_operation=bool(spec.get("per_operation", False)),
            adaptive=bool(spec.get("adaptive", True)),
        )

    def matches(self, service: str, operation: str) -> bool:
        rule_service, _, rule_operation = self.pattern.partition(":")
        if rule_service != service:
            return False
        return not rule_operation or fnmatch.fnmatchcase(operation, rule_operation)


class _Bucket:
    """One bucket: its Limiter, its key, and the last error that counted against it."""

    __slots__ = (
        "_lock",
        "_slots",
        "account",
        "batch",
        "bucket",
        "fleet_capacity",
        "last_error",
        "limiter",
        "quota",
        "region",
        "service",
        "shared",
        "shared_name",
    )

    def __init__(
        self,
        key: tuple[str, str, str, str],
        quota: Quota | None,
        rule: ApiRule | None,
        limits: ApiLimits,
    ) -> None:
        self.account, self.region, self.service, self.bucket = key
        self.quota = quota
        self.last_error = ""
        rate = quota.refill if quota is not None else None
        burst = None
        if quota is not None and quota.capacity is not None:
            # Keep a margin of the bucket unspent, so that arrival jitter never empties the
            # service's bucket while ours still has tokens.
            burst = max(1.0, quota.capacity * (1.0 - limits.headroom))
        self.limiter = Limiter(
            _NO_CONCURRENCY_CAP,
            rate,
            rule.adaptive if rule is not None else True,
            limits.clock,
            burst=burst,
            failure_threshold=limits.failure_threshold,
            cooldown=limits.cooldown,
            name=f"{self.service} {self.region} {self.account} {self.bucket}",
        )
        # Fleet-wide (ApiLimits(shared=tier)) only where the quota is known: an unknown one
        # is learned per process.
        self.shared = limits.shared if quota is not None else None
        self.shared_name = "api-bucket\x00" + "\x00".join(key)
        # Tokens drawn from the fleet's bucket and not used yet (local monotonic start times),
        # drawn in batches of up to a tenth of the capacity so that most calls do not pay a
        # Redis round trip.
        self._slots: deque[float] = deque()
        self._lock = threading.Lock()
        self.fleet_capacity = burst or 1.0
        self.batch = max(1, int(self.fleet_capacity // 10))

    def admit(self) -> tuple[float, bool] | None:
        """(seconds to wait, probe) for one attempt; None while the breaker is open."""
        admitted = self.limiter.admit()
        if admitted is None or self.shared is None:
            return admitted
        wait = self._fleet_wait()
        if wait is None:  # Redis unavailable: the local bucket alone
            return admitted
        return max(admitted[0], wait), admitted[1]

    def _fleet_wait(self) -> float | None:
        now = time.monotonic()
        with self._lock:
            if self._slots:
                return max(0.0, self._slots.popleft() - now)
        assert self.shared is not None and self.quota is not None
        waits = self.shared.draw_tokens(
            self.shared_name, self.fleet_capacity, self.quota.refill, self.batch
        )
        if not waits:
            return None
        now = time.monotonic()
        with self._lock:
            self._slots.extend(now + w for w in waits[1:])
        return waits[0]

    def throttled(self) -> None:
        """A throttling answer: tell the fleet (the local limiter has been told already)."""
        if self.shared is not None and self.quota is not None:
            self.shared.report_throttle(self.shared_name, self.quota.refill)

    def circuit_open(self, cooldown: float) -> ApiCircuitOpen:
        return ApiCircuitOpen(
            service=self.service,
            region=self.region,
            account=self.account,
            last_error=self.last_error or "repeated failures",
            cooldown=cooldown,
        )


class ApiLimits:
    """A registry of token buckets keyed by (account, region, service, bucket), shared by
    every client, thread and session it is given to (see the module documentation).

    ``rules``: ``{"ec2:Describe*": {"rate": 20, "burst": 100}, "iam": {"rate": 10}}``; the
    first matching rule wins (in the order given), before EC2's defaults.  Keys of a rule:
    ``rate`` (tokens a second; None: unlimited until throttled), ``burst`` (the bucket's
    capacity, default ``max(1, rate)``), ``per_operation`` (a bucket per operation instead of
    one per rule) and ``adaptive`` (slow down on throttling, default True).
    ``ec2_defaults``: use EC2's documented buckets for EC2 calls no rule matches.
    ``max_wait``: how long a call's throttled attempts are retried through its bucket
    (seconds from the call's start), after which botocore's retry configuration decides.
    ``headroom``: the fraction of each known bucket's capacity left unspent (arrival jitter).
    ``failure_threshold`` / ``cooldown``: the circuit breaker of each bucket.
    ``shared``: a :class:`creds_core.redis.RedisTier`, to share the buckets across processes.
    """

    def __init__(
        self,
        rules: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        ec2_defaults: bool = True,
        max_wait: float = 60.0,
        headroom: float = 0.1,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        shared: RedisTier | None = None,
        clock: Any = None,
    ) -> None:
        if rules is not None and not isinstance(rules, Mapping):
            raise TypeError("rules must be a mapping of 'service[:Operation]' to a rule mapping")
        self._rules = tuple(ApiRule.parse(p, s) for p, s in (rules or {}).items())
        self.ec2_defaults = bool(ec2_defaults)
        self.max_wait = _positive("max_wait", max_wait)
        if isinstance(headroom, bool) or not isinstance(headroom, (int, float)):
            raise TypeError("headroom must be a number")
        if not 0.0 <= float(headroom) < 1.0:
            raise ValueError(f"headroom must be in [0, 1), not {headroom!r}")
        self.headroom = float(headroom)
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int):
            raise TypeError("failure_threshold must be an int")
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown = _positive("cooldown", cooldown)
        self.clock = clock
        self.shared = shared
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, str, str], _Bucket] = {}
        # (service, operation, unfiltered) -> (bucket name, quota, rule): rules are matched
        # once per operation, not once per call.
        self._routes: dict[tuple[str, str, bool], tuple[str, Quota | None, ApiRule | None]] = {}

    @property
    def rules(self) -> tuple[ApiRule, ...]:
        return self._rules

    def _route(
        self, service: str, operation: str, unfiltered: bool
    ) -> tuple[str, Quota | None, ApiRule | None]:
        key = (service, operation, unfiltered)
        route = self._routes.get(key)
        if route is not None:
            return route
        for rule in self._rules:
            if rule.matches(service, operation):
                name = operation if rule.per_operation else rule.pattern
                quota = None
                if rule.rate is not None:
                    quota = Quota(
                        rule.burst if rule.burst is not None else max(1.0, rule.rate), rule.rate
                    )
                route = (name, quota, rule)
                break
        else:
            if service == "ec2" and self.ec2_defaults:
                name, quota = ec2_bucket(operation, {} if unfiltered else None)
                route = (name, quota, None)
            else:
                route = (service, None, None)
        self._routes[key] = route
        return route

    def bucket(
        self,
        account: str,
        region: str | None,
        service: str,
        operation: str,
        params: Mapping[str, Any] | None = None,
    ) -> _Bucket:
        """The bucket a call of ``service``'s ``operation`` for ``account`` in ``region``
        draws from (made on first use).  ``params``: the call's serialized parameters (EC2's
        unfiltered and unpaginated calls have smaller buckets)."""
        unfiltered = (
            service == "ec2"
            and operation in UNFILTERED_SENSITIVE
            and params is not None
            and ec2_bucket(operation, params)[0].endswith(":unfiltered")
        )
        name, quota, rule = self._route(service, operation, unfiltered)
        key = (account, region or "aws-global", service, name)
        bucket = self._buckets.get(key)
        if bucket is None:
            with self._lock:
                bucket = self._buckets.get(key)
                if bucket is None:
                    bucket = _Bucket(key, quota, rule, self)
                    self._buckets[key] = bucket
        return bucket

    def stats(self) -> dict[str, ApiBucketStats]:
        """Per bucket (``"account/region/service/bucket"``): calls admitted, how many waited
        for the rate, throttled answers, failures, calls failed fast, the current rate and the
        breaker's state."""
        with self._lock:
            buckets = list(self._buckets.values())
        out: dict[str, ApiBucketStats] = {}
        for b in buckets:
            s = b.limiter.stats()
            out[f"{b.account}/{b.region}/{b.service}/{b.bucket}"] = ApiBucketStats(
                account=b.account,
                region=b.region,
                service=b.service,
                bucket=b.bucket,
                capacity=b.quota.capacity if b.quota is not None else None,
                refill=b.quota.refill if b.quota is not None else None,
                acquired=s["acquired"],
                waited=s["waited_for_rate"],
                throttled=s["throttled"],
                failures=s["failures"],
                rejected_open=s["rejected_open"],
                current_rate=s["current_rate"],
                breaker=s["breaker"],
                last_error=b.last_error or None,
            )
        return out

    def totals(self) -> dict[str, int]:
        """The counters of :meth:`stats` summed over every bucket."""
        totals = {"acquired": 0, "waited": 0, "throttled": 0, "failures": 0, "rejected_open": 0}
        for s in self.stats().values():
            for name in totals:
                totals[name] += int(s[name])  # type: ignore[literal-required]
        return totals

    def __repr__(self) -> str:
        return (
            f"ApiLimits(rules={len(self._rules)}, buckets={len(self._buckets)}, "
            f"max_wait={self.max_wait:g})"
        )


# --- botocore hooks -------------------------------------------------------------------------

# Keys this module keeps in botocore's per-call request context.
_CALL = "creds_core.api_call"
_HOOKED = "_creds_core_api_limits"
_HOOK_IDS = {
    "before-call": "creds_core.api_limits.before-call",
    "before-sign": "creds_core.api_limits.before-sign",
    "needs-retry": "creds_core.api_limits.needs-retry",
}

Outcome = Literal["success", "throttled", "failure"]


class _CallState:
    """What the hooks keep for one call across its attempts (in its request context)."""

    __slots__ = ("bucket", "deadline", "probe")

    def __init__(self, bucket: _Bucket, deadline: float) -> None:
        self.bucket = bucket
        self.deadline = deadline
        self.probe = False

    def __repr__(self) -> str:
        return f"<api call of bucket {self.bucket.bucket}>"


class _ClientSite:
    """What the hooks know of one client (kept on its request signer): its service, and the
    bucket of each (account, operation) it called, so a call finds its bucket in one lookup."""

    __slots__ = ("buckets", "hooks", "service")

    def __init__(self, hooks: ApiHooks, service: str) -> None:
        self.hooks = hooks
        self.service = service
        self.buckets: dict[tuple[str, str, bool], _Bucket | None] = {}

    def bucket(self, account: str, region: str | None, operation: str, data: Any) -> _Bucket | None:
        unfiltered = (
            operation in UNFILTERED_SENSITIVE
            and self.service == "ec2"
            and type(data) is dict
            and ec2_bucket(operation, data)[0].endswith(":unfiltered")
        )
        key = (account, operation, unfiltered)
        try:
            return self.buckets[key]
        except KeyError:
            pass
        found: _Bucket | None = None
        if (self.service, operation) not in _CREDENTIAL_OPERATIONS:
            found = self.hooks.limits.bucket(
                account, region, self.service, operation, {} if unfiltered else None
            )
        self.buckets[key] = found
        return found


def classify(response: Any, caught_exception: BaseException | None) -> tuple[Outcome, str]:
    """How an attempt ended, for its bucket: (outcome, a short description without secrets)."""
    if caught_exception is not None:
        return "failure", f"{type(caught_exception).__name__}: {caught_exception}"
    if response is None:
        return "success", ""
    http, parsed = response
    status = getattr(http, "status_code", 200)
    if status < 300:
        return "success", ""
    error = parsed.get("Error") if isinstance(parsed, Mapping) else None
    code = error.get("Code") if isinstance(error, Mapping) else None
    if status == 429 or code in _THROTTLING:
        return "throttled", f"HTTP {status} {code or ''}".rstrip()
    if status >= 500:
        return "failure", f"HTTP {status} {code or ''}".rstrip()
    return "success", ""


def _account_of_frozen(frozen: Any) -> str:
    account = getattr(frozen, "account_id", None)
    return str(account or getattr(frozen, "access_key", None) or "anonymous")


class ApiHooks:
    """The botocore event hooks of an :class:`ApiLimits` (the sync door; the asyncio door
    subclasses it and only awaits where this one sleeps).

    ``before-call`` runs on each client's first call only: it notes the client's service on
    its request signer, registers ``needs-retry`` on the client's own emitter (at the
    service's level and first, so that it answers before botocore's retry handler) and then
    unregisters itself from that client.  ``before-sign`` (every attempt, before it is
    signed) waits for the bucket's token; ``needs-retry`` (every attempt) reports how the
    attempt ended and retries a throttled one through the bucket until the call's deadline.
    """

    def __init__(self, limits: ApiLimits) -> None:
        self.limits = limits

    def register(self, events: Any) -> None:
        """Register on a session's (or a client's) event emitter, replacing earlier hooks."""
        for event, handler in (
            ("before-call", self.before_call),
            ("before-sign", self.before_sign),
        ):
            unique_id = _HOOK_IDS[event]
            events.unregister(event, unique_id=unique_id)
            events.register(event, handler, unique_id=unique_id)

    def before_call(self, model: Any = None, request_signer: Any = None, **_: Any) -> None:
        site = getattr(request_signer, _HOOKED, None)
        if site is not None and site.hooks is self:
            return
        events = getattr(request_signer, "_event_emitter", None)
        service_id = getattr(request_signer, "_service_id", None)
        if events is None or service_id is None or model is None:
            warn_once(
                "RequestSigner has no _event_emitter/_service_id: API calls are not paced by "
                "creds_core.ApiLimits"
            )
            return
        try:
            setattr(request_signer, _HOOKED, _ClientSite(self, model.service_model.service_name))
        except AttributeError:
            return
        events.register_first(
            f"needs-retry.{service_id.hyphenize()}",
            self.needs_retry,
            unique_id=_HOOK_IDS["needs-retry"],
        )
        # This client is known now: its later calls need no before-call hook.
        events.unregister("before-call", unique_id=_HOOK_IDS["before-call"])

    def _start(
        self, request: Any, request_signer: Any, operation_name: Any, account: str | None
    ) -> _CallState | None:
        """The first attempt of a call: its bucket and deadline, kept in its context."""
        site = getattr(request_signer, _HOOKED, None)
        if site is None or site.hooks is not self or account is None:
            return None
        context = request.context
        region = getattr(request_signer, "region_name", None) or context.get("client_region")
        bucket = site.bucket(account, region, operation_name, getattr(request, "data", None))
        if bucket is None:
            return None
        call = _CallState(bucket, time.monotonic() + self.limits.max_wait)
        context[_CALL] = call
        return call

    def _admit(self, call: _CallState) -> float:
        """The seconds this attempt waits for its token; raises while the breaker is open."""
        admitted = call.bucket.admit()
        if admitted is None:
            raise call.bucket.circuit_open(self.limits.cooldown)
        wait, call.probe = admitted
        return wait

    @staticmethod
    def _new_call(request: Any) -> bool | None:
        """True on a call's first attempt, False on a retry, None: not ours to pace (no
        context, a presigned URL)."""
        context = getattr(request, "context", None)
        if type(context) is not dict or context.get("is_presign_request"):
            return None
        return _CALL not in context

    def before_sign(
        self,
        request: Any = None,
        request_signer: Any = None,
        operation_name: Any = None,
        **_: Any,
    ) -> None:
        new = self._new_call(request)
        if new is None:
            return
        if new:
            call = self._start(
                request, request_signer, operation_name, self._account(request_signer)
            )
            if call is None:
                return
        else:
            call = request.context[_CALL]
        wait = self._admit(call)
        if wait > 0.0:
            time.sleep(wait)

    def _account(self, request_signer: Any) -> str | None:
        if getattr(request_signer, _HOOKED, None) is None:
            return None
        credentials = getattr(request_signer, "_credentials", None)
        if isinstance(credentials, CacheAdapter):
            current = credentials.cache.get()
            return current.account_id or current.access_key_id
        if credentials is None:
            return "anonymous"
        return _account_of_frozen(credentials.get_frozen_credentials())

    def needs_retry(
        self,
        response: Any = None,
        caught_exception: BaseException | None = None,
        request_dict: Any = None,
        **_: Any,
    ) -> int | None:
        try:
            call = request_dict["context"][_CALL]
        except (TypeError, KeyError):
            return None
        probe, call.probe = call.probe, False
        limiter = call.bucket.limiter
        if caught_exception is None and response is not None:
            if getattr(response[0], "status_code", 200) < 300:  # the common case, first
                limiter.finish(probe, "success")
                return None
        outcome, description = classify(response, caught_exception)
        limiter.finish(probe, outcome)
        if outcome == "failure":
            call.bucket.last_error = description
        elif outcome == "throttled":
            call.bucket.throttled()
            if time.monotonic() < call.deadline:
                return 0  # retry now: the next attempt waits for its token in before-sign
        return None
