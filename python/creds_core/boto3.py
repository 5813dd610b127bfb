"""boto3 glue: sessions whose credentials come from a creds_core :class:`CredentialCache`.

::

    import creds_core.boto3

    session = creds_core.boto3.session(region_name="eu-west-1")      # botocore's default chain
    s3 = session.client("s3")

    role = creds_core.boto3.assume_role(session, "arn:aws:iam::123456789012:role/reader")
    role.client("sts").get_caller_identity()

How the credentials reach botocore
----------------------------------

botocore's request signer calls ``credentials.get_frozen_credentials()`` once per request and
reads ``access_key``, ``secret_key``, ``token`` and ``account_id`` from the answer.  A session
gets a :class:`CacheCredentials` object (``creds_core._botocore``) whose
``get_frozen_credentials`` *is* the cache's ``get_frozen``: botocore's own
``ReadOnlyCredentials``, built once per cached entry, so signing costs one lock-free cache read
and not a single Python frame more.  Its ``method`` is botocore's method string of the
provider that served (``env``, ``sso``, ``assume-role``...).  The object is
installed both as the session's loaded credentials (what ``Session.get_credentials()`` and
``create_client()`` use) and as its ``credential_provider`` component (a botocore
``CredentialResolver`` whose only provider answers it), so every client made from the session
afterwards signs through the cache, and so does anything that resolves credentials again.

Rejected credentials
--------------------

When a call fails with ``ExpiredToken``, ``ExpiredTokenException`` or ``RequestExpired``, the
session's ``needs-retry`` hook (for sessions from :func:`assume_role`, each client's)
invalidates the cache entry for the access key that signed that request
(``CredentialCache.invalidate``: only if it is still the cached one, so many failing calls
cause one refresh) and has botocore retry the call once, at once.  botocore builds and signs a
new request for every attempt, so the retry is signed with the fresh credentials.  The signed
request is noted by a ``request-created`` hook that runs after botocore's signer (the access
key is parsed from it only when a call fails).  No retry when the key is not one this cache
served (a client given keys of its own), when the source answers the same key again, or when
no fresh credentials can be had: the service's error is raised as botocore would.

Many accounts
-------------

:func:`assume_role` sessions are cheap (see ``creds_core._sessions``): they share the source
session's botocore data loader, parsed models and endpoint data, built-in event handlers,
client classes and endpoint rule sets, and their roles share one :class:`~creds_core.Limiter`
per STS endpoint (:func:`sts_limiter`).  ``creds_core.fanout.fan_out`` runs a function
against many accounts with them.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import boto3
import botocore.session
from botocore.awsrequest import AWSRequest
from botocore.credentials import CredentialProvider, CredentialResolver
from botocore.credentials import Credentials as BotocoreCredentials

from creds_core._botocore import METHOD, CacheCredentials
from creds_core._core import CredentialCache, CredentialsError, Limiter
from creds_core._core import Credentials as CoreCredentials
from creds_core._sessions import template_for
from creds_core.types import ProviderLike

if TYPE_CHECKING:
    from creds_core.api_limits import ApiLimits
    from creds_core.redis import RedisTier

__all__ = [
    "DEFAULT_STS_LIMITER",
    "EXPIRED_TOKEN_CODES",
    "METHOD",
    "CacheCredentials",
    "api_limits_of",
    "assume_role",
    "get_cache",
    "install",
    "session",
    "sts_endpoint",
    "sts_limiter",
]

LOG = logging.getLogger(__name__)

#: Error codes meaning "these credentials are no longer accepted": the cache entry is
#: invalidated and the call retried once with fresh credentials.
EXPIRED_TOKEN_CODES: frozenset[str] = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}
)

# Keys this module keeps in botocore's per-call request context.
_SIGNED = "creds_core.signed_request"
_RETRIED = "creds_core.retried_expired"
_REJECTED_KEYS_KEPT = 16
_HOOK_IDS = {
    "request-created": "creds_core.boto3.signed-by",
    "needs-retry": "creds_core.boto3.retry-expired",
}


class _CacheCredentialProvider(CredentialProvider):
    """The botocore credential provider of a creds_core session: always one object."""

    METHOD = METHOD
    CANONICAL_NAME = "creds_core"

    def __init__(self, credentials: CacheCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> CacheCredentials:
        return self._credentials


def _botocore_session(session: boto3.Session | botocore.session.Session) -> Any:
    if isinstance(session, boto3.Session):
        return session._session
    if isinstance(session, botocore.session.Session):
        return session
    raise TypeError(f"expected a boto3 or botocore Session, not {type(session).__name__}")


def get_cache(session: boto3.Session | botocore.session.Session) -> CredentialCache | None:
    """The CredentialCache a session signs with, or None if it is not a creds_core session."""
    loaded = getattr(_botocore_session(session), "_credentials", None)
    return loaded.cache if isinstance(loaded, CacheCredentials) else None


class _SignedRequest:
    """What the rejected-credentials hook needs of a signed request: its signing access key,
    parsed only when a call fails.  Kept in botocore's request context, which botocore may
    log, so its repr shows nothing (the headers hold a session token)."""

    __slots__ = ("_headers", "_url")

    def __init__(self, request: AWSRequest) -> None:
        self._headers = request.headers
        self._url = request.url

    def access_key(self) -> str | None:
        """The access key id that signed the request (SigV4/SigV4a header or query, SigV2)."""
        auth = self._headers.get("Authorization")
        if auth:
            start = auth.find("Credential=")
            if start >= 0:
                start += len("Credential=")
                end = auth.find("/", start)
                return auth[start:end] if end > start else None
            if auth.startswith("AWS ") and ":" in auth:  # SigV2 / S3 "AWS key:signature"
                return auth[4 : auth.index(":")].strip() or None
            return None
        url = self._url or ""
        start = url.find("X-Amz-Credential=")
        if start >= 0:
            start += len("X-Amz-Credential=")
            end = url.find("%2F", start)
            return url[start:end] if end > start else None
        return None

    def __repr__(self) -> str:
        return "<signed request>"


class _RejectedCredentialsHooks:
    """botocore event hooks: retry a call once when the service rejects its credentials.

    The asyncio door subclasses it (``creds_core.aiobotocore``) and only awaits the fresh
    credentials instead of waiting for them: which calls are retried is decided here.
    """

    def __init__(self, cache: CredentialCache) -> None:
        self._cache = cache
        # Keys this hook invalidated lately: calls that were signed with one of them and fail
        # after another call already refreshed the cache are retried too (no new refresh).
        self._rejected: deque[str] = deque(maxlen=_REJECTED_KEYS_KEPT)

    def signed_by(self, request: AWSRequest | None = None, **_: Any) -> None:
        # request-created, registered at the least specific level so that it runs after the
        # client's signer (request-created.<service>): keep the signed request's headers.
        if request is not None:
            request.context[_SIGNED] = _SignedRequest(request)

    def needs_retry(
        self,
        response: tuple[Any, Mapping[str, Any]] | None = None,
        request_dict: Mapping[str, Any] | None = None,
        **_: Any,
    ) -> int | None:
        rejected = self._rejected_call(response, request_dict)
        if rejected is None:
            return None
        try:
            fresh = self._cache.get()
        except CredentialsError as exc:
            return self._verdict(rejected, None, exc)
        return self._verdict(rejected, fresh, None)

    def _rejected_call(
        self,
        response: tuple[Any, Mapping[str, Any]] | None,
        request_dict: Mapping[str, Any] | None,
    ) -> tuple[str, str] | None:
        """(error code, rejected key) of a call to retry with fresh credentials, once; the
        cache is invalidated for that key. None: not ours to retry."""
        if response is None or request_dict is None:
            return None
        error = response[1].get("Error")
        code = error.get("Code") if isinstance(error, Mapping) else None
        if code not in EXPIRED_TOKEN_CODES:
            return None
        context = request_dict.get("context")
        if not isinstance(context, dict) or context.get(_RETRIED):
            return None
        signed = context.get(_SIGNED)
        key = signed.access_key() if isinstance(signed, _SignedRequest) else None
        if not key:
            return None
        if self._cache.invalidate(key):
            self._rejected.append(key)
        elif key not in self._rejected:
            # Not a key this cache served (a client made with keys of its own), or one it
            # replaced before this call failed: nothing to invalidate, nothing to retry with.
            return None
        context[_RETRIED] = True
        return str(code), key

    def _verdict(
        self,
        rejected: tuple[str, str],
        fresh: CoreCredentials | None,
        error: CredentialsError | None,
    ) -> int | None:
        """botocore's needs-retry answer: 0 (retry now) with new credentials, else None."""
        name, (code, key) = self._cache.name, rejected
        if fresh is None:
            LOG.warning("%s: credentials rejected (%s) and no fresh ones: %s", name, code, error)
            return None
        if fresh.access_key_id == key:
            LOG.warning(
                "%s: credentials rejected (%s) but the source answers the same ones again; "
                "not retrying",
                name,
                code,
            )
            return None
        LOG.info("%s: credentials rejected (%s); retrying once with fresh ones", name, code)
        return 0


def _set_credentials(botocore_session: Any, cache: CredentialCache) -> CacheCredentials:
    """Make ``botocore_session``'s clients made from now on sign with ``cache`` (no hooks)."""
    credentials = CacheCredentials(cache)
    # The component answers anything that resolves credentials again; _credentials is what
    # Session.get_credentials() / create_client() use once loaded, so it is replaced too.
    botocore_session.register_component(
        "credential_provider", CredentialResolver([_CacheCredentialProvider(credentials)])
    )
    botocore_session._credentials = credentials
    return credentials


def _register_hooks(events: Any, credentials: CacheCredentials) -> None:
    """Register the rejected-credentials hooks of ``credentials`` on an event emitter (a
    session's or a client's), replacing hooks registered there before."""
    hooks = _RejectedCredentialsHooks(credentials.cache)
    handlers: dict[str, Callable[..., Any]] = {
        "request-created": hooks.signed_by,
        "needs-retry": hooks.needs_retry,
    }
    for event, handler in handlers.items():
        unique_id = _HOOK_IDS[event]
        events.unregister(event, unique_id=unique_id)
        events.register(event, handler, unique_id=unique_id)


def _attach(botocore_session: Any, cache: CredentialCache) -> CacheCredentials:
    """Make ``botocore_session`` sign with ``cache`` from now on (clients made afterwards)."""
    credentials = _set_credentials(botocore_session, cache)
    _register_hooks(botocore_session, credentials)
    return credentials


# The ApiLimits each session's clients go through (held weakly by session: a role session
# inherits its source's).
_API_LIMITS: weakref.WeakKeyDictionary[Any, ApiLimits] = weakref.WeakKeyDictionary()


def api_limits_of(session: boto3.Session | botocore.session.Session) -> ApiLimits | None:
    """The :class:`~creds_core.ApiLimits` the clients of ``session`` go through, if any."""
    return _API_LIMITS.get(_botocore_session(session))


def _use_api_limits(
    botocore_session: Any, limits: ApiLimits | None, hooks_class: Any = None
) -> None:
    """Make the clients ``botocore_session`` creates from now on draw from ``limits`` (through
    ``hooks_class``: the sync door's :class:`~creds_core.api_limits.ApiHooks` by default)."""
    if limits is None:
        return
    from creds_core.api_limits import ApiHooks, ApiLimits

    if not isinstance(limits, ApiLimits):
        raise TypeError(f"api_limits must be a creds_core.ApiLimits, not {type(limits).__name__}")
    (hooks_class or ApiHooks)(limits).register(botocore_session)
    _API_LIMITS[botocore_session] = limits


def _hook_client(botocore_session: Any, client: Any) -> None:
    """``on_client`` of role sessions: a client that signs with the session's cache gets the
    rejected-credentials hooks on its own emitter (the session's emitter stays shared)."""
    credentials = getattr(botocore_session, "_credentials", None)
    if not isinstance(credentials, CacheCredentials):
        return
    signer = getattr(client, "_request_signer", None)
    signs_with_cache = getattr(signer, "_credentials", None) is credentials
    if signs_with_cache:  # not a client given keys of its own, not an unsigned one
        _register_hooks(client.meta.events, credentials)


def _explicit_profile(botocore_session: Any) -> str | None:
    value = botocore_session.instance_variables().get("profile")
    return str(value) if value is not None else None


def _provider_for(botocore_session: Any) -> Any:
    """What ``botocore_session`` would use: its credentials given in code, else the chain."""
    loaded = getattr(botocore_session, "_credentials", None)
    if isinstance(loaded, CacheCredentials):
        return loaded.cache.provider
    if type(loaded) is BotocoreCredentials:  # explicit keys (boto3.Session(aws_access_key_id=))
        from creds_core.providers.static import StaticProvider

        frozen = loaded.get_frozen_credentials()
        if frozen.access_key and frozen.secret_key:
            return StaticProvider(
                frozen.access_key,
                frozen.secret_key,
                frozen.token,
                account_id=getattr(frozen, "account_id", None),
            )
    from creds_core.providers import default_chain

    # The chain honours the session's instance variables (profile, config files, region).
    return default_chain(session=botocore_session)


def install(
    session: boto3.Session | botocore.session.Session,
    provider: ProviderLike | None = None,
    *,
    cache_options: Mapping[str, Any] | None = None,
    api_limits: ApiLimits | None = None,
    **options: Any,
) -> CredentialCache:
    """Make ``session`` (boto3 or botocore) sign every request through a CredentialCache.

    ``provider``: a :class:`~creds_core.Provider`, ProviderChain or callable (see
    :class:`CredentialCache`); None uses what the session would: credentials given to it in
    code, else ``creds_core.providers.default_chain`` for its profile.  It may also be an
    existing :class:`CredentialCache`, which is then shared (e.g. one cache for the boto3
    sessions of many threads); ``cache_options`` must be empty then.  ``cache_options`` are
    passed to :class:`CredentialCache` (``load_timeout``, ``clock``, ``limiter``, ``name``...),
    as ``cache_options={...}`` like everywhere else in creds_core, or as keyword arguments.

    ``api_limits``: a :class:`~creds_core.ApiLimits`; every API call of the clients created
    from the session afterwards waits for its (account, region, service) bucket's token,
    shared with every other session given the same ApiLimits.

    Clients created from the session afterwards use the cache; clients created before keep
    their old credentials.  Returns the cache.
    """
    botocore_session = _botocore_session(session)
    merged = {**(cache_options or {}), **options}
    if isinstance(provider, CredentialCache):
        if merged:
            raise TypeError("cache options cannot be given with an existing CredentialCache")
        cache = provider
    else:
        if provider is None:
            provider = _provider_for(botocore_session)
        profile = _explicit_profile(botocore_session)
        merged.setdefault("name", f"boto3 profile {profile}" if profile else "boto3")
        cache = CredentialCache(provider, **merged)
    _attach(botocore_session, cache)
    _use_api_limits(botocore_session, api_limits)
    return cache


def session(
    provider: ProviderLike | None = None,
    *,
    cache_options: Mapping[str, Any] | None = None,
    api_limits: ApiLimits | None = None,
    **boto3_session_kwargs: Any,
) -> boto3.Session:
    """A new ``boto3.Session(**boto3_session_kwargs)`` that signs through a CredentialCache.

    ``provider`` None: the credentials given as ``aws_access_key_id``... if any, else
    ``creds_core.providers.default_chain`` for ``profile_name`` (botocore's order; without a
    profile, AWS_PROFILE or ``default``).  ``cache_options``: passed to
    :class:`CredentialCache`.  ``api_limits``: a :class:`~creds_core.ApiLimits` every API
    call of the session's clients draws from.  The cache is
    ``creds_core.boto3.get_cache(session)``.
    """
    if provider is not None and boto3_session_kwargs.get("aws_access_key_id") is not None:
        raise TypeError("give either a provider or aws_access_key_id/aws_secret_access_key")
    result = boto3.Session(**boto3_session_kwargs)
    install(result, provider, api_limits=api_limits, **dict(cache_options or {}))
    return result


# --- assume_role ------------------------------------------------------------------------------

# One process-wide cache per (source, role, session name, external id, policy, tags, duration,
# ...), kept while some session uses it: the registry holds caches weakly, so a service that
# assumes roles under ever new session names does not keep every one it ever made.  The lock
# guards lookups and creation only, never a fetch: caches fetch lazily.
_ROLE_LOCK = threading.Lock()
_ROLE_CACHES: weakref.WeakValueDictionary[tuple[Any, ...], CredentialCache] = (
    weakref.WeakValueDictionary()
)
# The botocore session each source cache's STS clients are configured from (the first seen
# that is still alive; the role providers hold it strongly while they live).
_STS_SESSIONS: weakref.WeakKeyDictionary[CredentialCache, weakref.ref[Any]] = (
    weakref.WeakKeyDictionary()
)


def _sts_session(source_cache: CredentialCache, source: Any) -> Any:
    """The botocore session STS clients of ``source_cache`` are built from (under the lock)."""
    seen = _STS_SESSIONS.get(source_cache)
    session = seen() if seen is not None else None
    if session is None:
        session = source
        _STS_SESSIONS[source_cache] = weakref.ref(source)
    return session


def registry_sizes() -> dict[str, int]:
    """How many role caches, STS sessions and limiters the process-wide registries hold (only
    what some live session or cache uses)."""
    with _ROLE_LOCK:
        sizes = {"role_caches": len(_ROLE_CACHES), "sts_sessions": len(_STS_SESSIONS)}
    with _LIMITERS_LOCK:
        sizes["sts_limiters"] = len(_LIMITERS)
    return sizes


# AssumeRoleProvider arguments that change which credentials STS hands out (part of the key);
# the others (region, endpoint_url, client_config, mfa_token...) only say how to ask.
_KEYED_ARGUMENTS = (
    "policy",
    "policy_arns",
    "tags",
    "transitive_tag_keys",
    "source_identity",
    "serial_number",
)


def _freeze(value: Any) -> Any:
    """A hashable, order-insensitive (for mappings) form of an AssumeRole argument."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_freeze(v) for v in value]
        return (
            tuple(sorted(items, key=repr)) if isinstance(value, (set, frozenset)) else tuple(items)
        )
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"unsupported AssumeRole argument value of type {type(value).__name__}")


def _shared_name(role_arn: str, keyed: tuple[Any, ...]) -> str:
    """The fleet-wide name of a role's entry in a shared tier: the role ARN and the
    AssumeRole arguments that change which credentials STS hands out."""
    return "assume-role\x00" + role_arn + "\x00" + repr(keyed)


def _role_cache(
    provider: Any,
    role_arn: str,
    keyed: tuple[Any, ...],
    *,
    shared: RedisTier | None,
    limiter: Limiter | Literal[False] | None,
    cache_options: Mapping[str, Any] | None,
) -> CredentialCache:
    """The process-wide cache of one role (both doors): named after the role, behind the
    shared tier when there is one, under the STS endpoint's limiter."""
    options: dict[str, Any] = {"name": f"assume-role:{role_arn}"}
    options.update(cache_options or {})
    cached: Any = provider
    if shared is not None:
        cached = shared.wrap(
            provider,
            _shared_name(role_arn, keyed),
            load_timeout=float(options.get("load_timeout", 5.0)),
        )
    return CredentialCache(cached, limiter=limiter or None, **options)


def _source_cache(botocore_session: Any) -> CredentialCache:
    """The source session's cache, installing one (under the lock, no fetch) if it has none."""
    with _ROLE_LOCK:
        cache = get_cache(botocore_session)
        if cache is None:
            cache = install(botocore_session)
        return cache


def _role_session(
    source: Any, cache: CredentialCache, api_limits: ApiLimits | None = None
) -> boto3.Session:
    """A new boto3 session configured like ``source`` that signs with ``cache``.

    Role sessions of one data loader (the source's) share it and everything else a
    :class:`~creds_core._sessions.SessionTemplate` shares: models and endpoint data are
    parsed once, built-in handlers registered once, client classes and endpoint rule sets
    built once per service.  Each has its own configuration, credentials and event emitter
    (copied on the first registration).  The rejected-credentials hooks go on each client.
    """
    template = template_for(source.get_component("data_loader"))
    if template is None:  # this botocore lacks an internal the template needs: plain session
        plain = botocore.session.Session()
        for name, value in source.instance_variables().items():
            plain.set_config_variable(name, value)
        plain.register_component("data_loader", source.get_component("data_loader"))
        _attach(plain, cache)
        _use_api_limits(plain, api_limits)
        return boto3.Session(botocore_session=plain)
    fresh = template.botocore_session(source.instance_variables(), on_client=_hook_client)
    _set_credentials(fresh, cache)
    _use_api_limits(fresh, api_limits)
    return template.boto3_session(fresh)


# --- one Limiter per STS endpoint ---------------------------------------------------------------

#: How the Limiter that ``assume_role`` shares per STS endpoint and region is built (see
#: :func:`assume_role`).  Changes apply to limiters built afterwards.
DEFAULT_STS_LIMITER: dict[str, Any] = {
    "max_concurrency": 5,  # see assume_role for the measurements behind it
    "rate": None,
    "adaptive": True,
}

_LIMITERS_LOCK = threading.Lock()
# Held weakly: a limiter lives while some role cache uses it (its throttling state with it).
_LIMITERS: weakref.WeakValueDictionary[tuple[str, str | None], Limiter] = (
    weakref.WeakValueDictionary()
)


def _configured_sts_endpoint(source: Any) -> str | None:
    """The STS endpoint URL the source's configuration sets (AWS_ENDPOINT_URL_STS,
    AWS_ENDPOINT_URL, the profile's ``endpoint_url`` or ``services`` section), if any."""
    try:
        if source.get_config_variable("ignore_configured_endpoint_urls"):
            return None
        from botocore.configprovider import ConfiguredEndpointProvider

        url = ConfiguredEndpointProvider(
            full_config=source.full_config,
            scoped_config=source.get_scoped_config(),
            client_name="sts",
        ).provide()
    except Exception:  # a broken config file is the STS client's to report
        return None
    return str(url) if url else None


def sts_endpoint(
    session: boto3.Session | botocore.session.Session,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> str:
    """The STS endpoint ``assume_role`` calls for ``session`` (and ``region`` /
    ``endpoint_url``, as given to it): the key of the shared Limiter, with the region."""
    source = _botocore_session(session)
    url = endpoint_url or _configured_sts_endpoint(source)
    if url:
        return url.rstrip("/")
    region = region or source.get_config_variable("region")
    if region:
        template = template_for(source.get_component("data_loader"))
        try:
            resolver = (
                template.endpoint_resolver
                if template is not None
                else source._get_internal_component("endpoint_resolver")
            )
            hostname = (resolver.construct_endpoint("sts", region) or {}).get("hostname")
        except Exception:  # a missing internal, or no endpoint data: the usual host name
            hostname = None
        return f"https://{hostname or f'sts.{region}.amazonaws.com'}"
    return "https://sts.amazonaws.com"


def sts_limiter(
    session: boto3.Session | botocore.session.Session,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> Limiter:
    """The process-wide Limiter ``assume_role`` uses by default for the STS endpoint and region
    of ``session`` (``region`` / ``endpoint_url`` as given to ``assume_role``), built from
    :data:`DEFAULT_STS_LIMITER` on first use."""
    source = _botocore_session(session)
    region = region or source.get_config_variable("region")
    key = (sts_endpoint(source, region=region, endpoint_url=endpoint_url), region)
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None:
            options = dict(DEFAULT_STS_LIMITER)
            options.setdefault("name", f"sts {key[0]} ({key[1] or 'no region'})")
            limiter = Limiter(**options)
            _LIMITERS[key] = limiter
        return limiter


def assume_role(
    session: boto3.Session | botocore.session.Session,
    role_arn: str,
    *,
    role_session_name: str | None = None,
    external_id: str | None = None,
    duration_seconds: int | None = None,
    limiter: Limiter | Literal[False] | None = None,
    cache_options: Mapping[str, Any] | None = None,
    shared: RedisTier | None = None,
    api_limits: ApiLimits | Literal[False] | None = None,
    **assume_role_kwargs: Any,
) -> boto3.Session:
    """A new boto3 session with the credentials of ``role_arn``, assumed from ``session``.

    The source session's credentials come through creds_core too: a cache is installed on it
    (see :func:`install`) if it has none.  The role's credentials live in one process-wide
    cache per (source cache, role ARN, session name, external id, policy, tags, duration and
    the other AssumeRole arguments), so every session returned for the same role shares one
    cache and concurrent callers cause one STS call.  Sessions returned here may be sources in
    turn (role chaining).

    Sessions are cheap (about 2 ms and well under 1 MB each with an S3 client, against about
    0.3 s and 12 MB for ``boto3.Session()``): every session returned for sources with the same
    botocore data loader shares that loader, the parsed service models and endpoint data, the
    built-in event handlers (each session copies them on its first own registration), the
    endpoint resolver, client classes and endpoint rule sets.  Configuration (the source's
    instance variables: profile, region, ...) and credentials are the session's own.

    Throttling: the role caches of one STS endpoint and region share one
    :class:`~creds_core.Limiter` (:func:`sts_limiter`), so that thousands of roles assumed at
    once do not stampede STS.  Its defaults (:data:`DEFAULT_STS_LIMITER`): at most 5
    AssumeRole calls in flight, no fixed rate, adaptive (a throttling answer halves the rate;
    it recovers with time along a CUBIC curve), the circuit breaker's defaults.  A
    refresh that STS throttles is tried again through the limiter before it fails, and every
    throttled answer reaches the limiter as it arrives (also those the STS client's one retry
    absorbs).  Measured against a local STS allowing 100 calls/s with 20 ms latency, 1,000
    roles from 64 threads (``benches/fanout_compare.py``): no throttled answer when only
    AssumeRole calls reach that STS; 15 to 29 throttled answers and no caller failure when each
    role's own call goes to the same STS as well (``--calls-on-sts``, ``tests/test_fanout.py``);
    earlier runs without a limiter: 420 to 470 throttled answers and 90 to 150 callers failing
    with ``Throttling``.  The wall time is set by the 100 calls/s either way,
    and 5 slots still allow 100 calls/s wherever STS answers within 50 ms.  ``limiter``: a
    Limiter of your own instead (e.g. with the ``rate=`` your STS quota allows), or ``False``
    for none.  Like ``cache_options``, it applies when the role's cache is created (the first
    caller's win).

    ``assume_role_kwargs`` go to :class:`~creds_core.providers.AssumeRoleProvider`:
    ``policy``, ``policy_arns``, ``tags``, ``transitive_tag_keys``, ``source_identity``, MFA
    with ``serial_number`` and ``mfa_token`` (a callable returning the code, called only when
    STS is called), and ``region`` / ``endpoint_url`` / ``client_config`` for the STS client
    (default: the source session's configuration).  One STS client per source and region is
    built and reused across refreshes.

    ``shared``: a :class:`creds_core.redis.RedisTier`; the role's refreshes then go through
    it, so that every process sharing the tier makes one AssumeRole call per refresh (the
    entry is named after the role ARN and the AssumeRole arguments that change the answer).

    ``api_limits``: the :class:`~creds_core.ApiLimits` the role session's API calls draw
    from; None (the default) inherits the source session's, ``False`` for none.  The role's
    calls count against the role's account (from the role ARN).
    """
    from creds_core.providers.assume_role import AssumeRoleProvider

    if not isinstance(role_arn, str) or not role_arn:
        raise ValueError("role_arn must be a non-empty string")
    if limiter is not None and limiter is not False and not isinstance(limiter, Limiter):
        raise TypeError("limiter must be a creds_core.Limiter, None (shared) or False (none)")
    source = _botocore_session(session)
    limits = _API_LIMITS.get(source) if api_limits is None else (api_limits or None)
    source_cache = _source_cache(source)
    key = (
        source_cache,
        role_arn,
        role_session_name,
        external_id,
        duration_seconds,
        tuple((name, _freeze(assume_role_kwargs.get(name))) for name in _KEYED_ARGUMENTS),
        shared,
    )
    provider_kwargs = dict(assume_role_kwargs)
    if provider_kwargs.get("region") is None:
        # Explicit, so that the STS client is per (source, region) whatever session asks.
        provider_kwargs["region"] = source.get_config_variable("region")
    with _ROLE_LOCK:
        cache = _ROLE_CACHES.get(key)
    if cache is None:
        if limiter is None:
            limiter = sts_limiter(
                source,
                region=provider_kwargs["region"],
                endpoint_url=provider_kwargs.get("endpoint_url"),
            )
        with _ROLE_LOCK:
            cache = _ROLE_CACHES.get(key)
            if cache is None:
                # STS clients are shared per (botocore session, source, region, endpoint,
                # config): with one botocore session per source cache, every role assumed
                # from a source in a region uses one client (built once, reused).
                sts_session = _sts_session(source_cache, source)
                provider = AssumeRoleProvider(
                    source_cache,
                    role_arn,
                    role_session_name=role_session_name,
                    external_id=external_id,
                    duration_seconds=duration_seconds,
                    session=sts_session,
                    **provider_kwargs,
                )
                cache = _role_cache(
                    provider,
                    role_arn,
                    key[2:-1],
                    shared=shared,
                    limiter=limiter,
                    cache_options=cache_options,
                )
                _ROLE_CACHES[key] = cache
    return _role_session(source, cache, limits)
