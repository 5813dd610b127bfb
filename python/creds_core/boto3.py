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
gets a :class:`CacheCredentials` object whose ``get_frozen_credentials`` *is* the cache's bound
``get`` method (creds_core :class:`~creds_core.Credentials` carry botocore's attribute names),
so signing costs one lock-free cache read and not a single Python frame more.  The object is
installed both as the session's loaded credentials (what ``Session.get_credentials()`` and
``create_client()`` use) and as its ``credential_provider`` component (a botocore
``CredentialResolver`` whose only provider answers it), so every client made from the session
afterwards signs through the cache, and so does anything that resolves credentials again.

Rejected credentials
--------------------

When a call fails with ``ExpiredToken``, ``ExpiredTokenException`` or ``RequestExpired``, the
session's ``needs-retry`` hook invalidates the cache entry for the access key that signed that
request (``CredentialCache.invalidate``: only if it is still the cached one, so many failing
calls cause one refresh) and has botocore retry the call once, at once.  botocore builds and
signs a new request for every attempt, so the retry is signed with the fresh credentials.  The
signed request is noted by a ``request-created`` hook that runs after botocore's signer (the
access key is parsed from it only when a call fails).  No retry when the key is not one this
cache served (a client given keys of its own), when the source answers the same key again, or
when no fresh credentials can be had: the service's error is raised as botocore would.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import boto3
import botocore.session
from botocore.awsrequest import AWSRequest
from botocore.credentials import CredentialProvider, CredentialResolver, ReadOnlyCredentials
from botocore.credentials import Credentials as BotocoreCredentials

from creds_core._core import CredentialCache, CredentialsError

__all__ = [
    "EXPIRED_TOKEN_CODES",
    "METHOD",
    "CacheCredentials",
    "assume_role",
    "get_cache",
    "install",
    "session",
]

LOG = logging.getLogger(__name__)

#: Error codes meaning "these credentials are no longer accepted": the cache entry is
#: invalidated and the call retried once with fresh credentials.
EXPIRED_TOKEN_CODES: frozenset[str] = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}
)

#: The ``method`` botocore sees on the credentials of a creds_core session.
METHOD = "creds-core"

# Keys this module keeps in botocore's per-call request context.
_SIGNED = "creds_core.signed_request"
_RETRIED = "creds_core.retried_expired"
_REJECTED_KEYS_KEPT = 16
_HOOK_IDS = {
    "request-created": "creds_core.boto3.signed-by",
    "needs-retry": "creds_core.boto3.retry-expired",
}


class CacheCredentials(BotocoreCredentials):
    """botocore credentials that are always the current credentials of a CredentialCache.

    ``get_frozen_credentials`` is the cache's ``get`` (a lock-free read while the credentials
    are fresh; the refresh policy of the cache applies) and answers one consistent set with
    botocore's attribute names.  ``access_key``, ``secret_key``, ``token`` and ``account_id``
    read the cache too (each on its own, as in botocore).  The object holds no key or secret
    of its own and its repr shows none.
    """

    def __init__(self, cache: CredentialCache, *, method: str = METHOD) -> None:
        # botocore's __init__ would store fixed keys: this object has none of its own.
        self._cache = cache
        self.method = method
        # The signer's per-request call goes straight to the Rust cache: no Python frame.
        # creds_core Credentials carry botocore's ReadOnlyCredentials attribute names.
        self.get_frozen_credentials = cache.get  # type: ignore[method-assign,assignment]

    @property
    def cache(self) -> CredentialCache:
        """The cache these credentials come from."""
        return self._cache

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        # Shadowed on every instance by the cache's own bound get() (see __init__).
        return self._cache.get()  # type: ignore[return-value]

    @property
    def access_key(self) -> str:  # type: ignore[override]
        return self._cache.get().access_key_id

    @property
    def secret_key(self) -> str:  # type: ignore[override]
        return self._cache.get().secret_access_key

    @property
    def token(self) -> str | None:  # type: ignore[override]
        return self._cache.get().session_token

    @property
    def account_id(self) -> str | None:
        return self._cache.get().account_id

    def refresh_needed(self, refresh_in: float | None = None) -> bool:
        """Always False: the cache refreshes on its own schedule (botocore API parity)."""
        return False

    def _refresh(self) -> None:
        # botocore's RefreshableCredentials API, for code that pokes at it: a cache read.
        self._cache.get()

    def __deepcopy__(self, memo: dict[int, Any]) -> CacheCredentials:
        return self  # a handle on a shared cache; copies would share it anyway

    def __repr__(self) -> str:
        return f"CacheCredentials(cache={self._cache.name!r}, method={self.method!r})"


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
    """botocore event hooks: retry a call once when the service rejects its credentials."""

    def __init__(self, credentials: CacheCredentials) -> None:
        self._cache = credentials.cache
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
        cache = self._cache
        if cache.invalidate(key):
            self._rejected.append(key)
        elif key not in self._rejected:
            # Not a key this cache served (a client made with keys of its own), or one it
            # replaced before this call failed: nothing to invalidate, nothing to retry with.
            return None
        context[_RETRIED] = True
        try:
            fresh = cache.get()
        except CredentialsError as exc:
            LOG.warning(
                "%s: credentials rejected (%s) and no fresh ones: %s", cache.name, code, exc
            )
            return None
        if fresh.access_key_id == key:
            LOG.warning(
                "%s: credentials rejected (%s) but the source answers the same ones again; "
                "not retrying",
                cache.name,
                code,
            )
            return None
        LOG.info("%s: credentials rejected (%s); retrying once with fresh ones", cache.name, code)
        return 0


def _attach(botocore_session: Any, cache: CredentialCache) -> CacheCredentials:
    """Make ``botocore_session`` sign with ``cache`` from now on (clients made afterwards)."""
    credentials = CacheCredentials(cache)
    # The component answers anything that resolves credentials again; _credentials is what
    # Session.get_credentials() / create_client() use once loaded, so it is replaced too.
    botocore_session.register_component(
        "credential_provider", CredentialResolver([_CacheCredentialProvider(credentials)])
    )
    botocore_session._credentials = credentials
    hooks = _RejectedCredentialsHooks(credentials)
    handlers: dict[str, Callable[..., Any]] = {
        "request-created": hooks.signed_by,
        "needs-retry": hooks.needs_retry,
    }
    for event, handler in handlers.items():
        unique_id = _HOOK_IDS[event]
        botocore_session.unregister(event, unique_id=unique_id)
        botocore_session.register(event, handler, unique_id=unique_id)
    return credentials


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
                account_id=frozen.account_id,
            )
    from creds_core.providers import default_chain

    # The chain honours the session's instance variables (profile, config files, region).
    return default_chain(session=botocore_session)


def install(
    session: boto3.Session | botocore.session.Session,
    provider: Any = None,
    **cache_options: Any,
) -> CredentialCache:
    """Make ``session`` (boto3 or botocore) sign every request through a CredentialCache.

    ``provider``: a :class:`~creds_core.Provider`, ProviderChain or callable (see
    :class:`CredentialCache`); None uses what the session would: credentials given to it in
    code, else ``creds_core.providers.default_chain`` for its profile.  It may also be an
    existing :class:`CredentialCache`, which is then shared (e.g. one cache for the boto3
    sessions of many threads); ``cache_options`` must be empty then.  ``cache_options`` are
    passed to :class:`CredentialCache` (``load_timeout``, ``clock``, ``limiter``, ``name``...).

    Clients created from the session afterwards use the cache; clients created before keep
    their old credentials.  Returns the cache.
    """
    botocore_session = _botocore_session(session)
    if isinstance(provider, CredentialCache):
        if cache_options:
            raise TypeError("cache options cannot be given with an existing CredentialCache")
        cache = provider
    else:
        if provider is None:
            provider = _provider_for(botocore_session)
        profile = _explicit_profile(botocore_session)
        cache_options.setdefault("name", f"boto3 profile {profile}" if profile else "boto3")
        cache = CredentialCache(provider, **cache_options)
    _attach(botocore_session, cache)
    return cache


def session(
    provider: Any = None,
    *,
    cache_options: Mapping[str, Any] | None = None,
    **boto3_session_kwargs: Any,
) -> boto3.Session:
    """A new ``boto3.Session(**boto3_session_kwargs)`` that signs through a CredentialCache.

    ``provider`` None: the credentials given as ``aws_access_key_id``... if any, else
    ``creds_core.providers.default_chain`` for ``profile_name`` (botocore's order; without a
    profile, AWS_PROFILE or ``default``).  ``cache_options``: passed to
    :class:`CredentialCache`.  The cache is ``creds_core.boto3.get_cache(session)``.
    """
    if provider is not None and boto3_session_kwargs.get("aws_access_key_id") is not None:
        raise TypeError("give either a provider or aws_access_key_id/aws_secret_access_key")
    result = boto3.Session(**boto3_session_kwargs)
    install(result, provider, **dict(cache_options or {}))
    return result


# --- assume_role ------------------------------------------------------------------------------

# One process-wide cache per (source, role, session name, external id, policy, tags, duration,
# ...).  The lock guards lookups and creation only, never a fetch: caches fetch lazily.
_ROLE_LOCK = threading.Lock()
_ROLE_CACHES: dict[tuple[Any, ...], CredentialCache] = {}
# The botocore session each source cache's STS clients are configured from (the first seen).
_STS_SESSIONS: dict[CredentialCache, Any] = {}

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


def _source_cache(botocore_session: Any) -> CredentialCache:
    """The source session's cache, installing one (under the lock, no fetch) if it has none."""
    with _ROLE_LOCK:
        cache = get_cache(botocore_session)
        if cache is None:
            cache = install(botocore_session)
        return cache


def _role_session(source: Any, cache: CredentialCache) -> boto3.Session:
    """A new boto3 session configured like ``source`` that signs with ``cache``."""
    fresh = botocore.session.Session()
    for name, value in source.instance_variables().items():
        fresh.set_config_variable(name, value)
    _attach(fresh, cache)
    result = boto3.Session(botocore_session=fresh)
    # Clients use the source's data loader, so service models are read from disk once for a
    # source and all its roles.  Swapped in after boto3.Session() because boto3 appends its
    # resource path to the loader of every session it wraps (it keeps its own for resources).
    fresh.register_component("data_loader", source.get_component("data_loader"))
    return result


def assume_role(
    session: boto3.Session | botocore.session.Session,
    role_arn: str,
    *,
    role_session_name: str | None = None,
    external_id: str | None = None,
    duration_seconds: int | None = None,
    limiter: Any = None,
    cache_options: Mapping[str, Any] | None = None,
    **assume_role_kwargs: Any,
) -> boto3.Session:
    """A new boto3 session with the credentials of ``role_arn``, assumed from ``session``.

    The source session's credentials come through creds_core too: a cache is installed on it
    (see :func:`install`) if it has none.  The role's credentials live in one process-wide
    cache per (source cache, role ARN, session name, external id, policy, tags, duration and
    the other AssumeRole arguments), so every session returned for the same role shares one
    cache and concurrent callers cause one STS call.  Sessions returned here may be sources in
    turn (role chaining).

    ``assume_role_kwargs`` go to :class:`~creds_core.providers.AssumeRoleProvider`:
    ``policy``, ``policy_arns``, ``tags``, ``transitive_tag_keys``, ``source_identity``, MFA
    with ``serial_number`` and ``mfa_token`` (a callable returning the code, called only when
    STS is called), and ``region`` / ``endpoint_url`` / ``client_config`` for the STS client
    (default: the source session's configuration).  One STS client per source and region is
    built and reused across refreshes.  ``limiter`` and ``cache_options`` are passed to the
    :class:`CredentialCache` when the role's cache is created (the first caller's win).
    """
    from creds_core.providers.assume_role import AssumeRoleProvider

    if not isinstance(role_arn, str) or not role_arn:
        raise ValueError("role_arn must be a non-empty string")
    source = _botocore_session(session)
    source_cache = _source_cache(source)
    key = (
        source_cache,
        role_arn,
        role_session_name,
        external_id,
        duration_seconds,
        tuple((name, _freeze(assume_role_kwargs.get(name))) for name in _KEYED_ARGUMENTS),
    )
    provider_kwargs = dict(assume_role_kwargs)
    if provider_kwargs.get("region") is None:
        # Explicit, so that the STS client is per (source, region) whatever session asks.
        provider_kwargs["region"] = source.get_config_variable("region")
    with _ROLE_LOCK:
        cache = _ROLE_CACHES.get(key)
        if cache is None:
            # STS clients are shared per (botocore session, source, region, endpoint, config):
            # with one botocore session per source cache, every role assumed from a source
            # in a region uses one client (built once, reused across refreshes).
            sts_session = _STS_SESSIONS.setdefault(source_cache, source)
            provider = AssumeRoleProvider(
                source_cache,
                role_arn,
                role_session_name=role_session_name,
                external_id=external_id,
                duration_seconds=duration_seconds,
                session=sts_session,
                **provider_kwargs,
            )
            options: dict[str, Any] = {"name": f"assume-role:{role_arn}"}
            options.update(cache_options or {})
            cache = CredentialCache(provider, limiter=limiter, **options)
            _ROLE_CACHES[key] = cache
    return _role_session(source, cache)
