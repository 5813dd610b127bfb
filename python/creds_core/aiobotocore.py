"""asyncio glue: aiobotocore sessions whose credentials come from a creds_core cache.

Needs the extra: ``pip install 'creds_core[aio]'``.

::

    import creds_core.aiobotocore as ca

    session = ca.session()                                  # botocore's default chain
    role = ca.assume_role(session, "arn:aws:iam::123456789012:role/reader")
    async with role.create_client("sts") as sts:
        await sts.get_caller_identity()

How the credentials reach aiobotocore
-------------------------------------

aiobotocore's signer awaits ``credentials.get_frozen_credentials()`` once per request.  A
session gets an :class:`AioCacheCredentials`: creds_core's one botocore adapter
(``creds_core._botocore.CacheAdapter``, as the sync door's ``CacheCredentials``) on
aiobotocore's ``AioCredentials``.  Its ``get_frozen_credentials`` awaits the cache's
``get_frozen_async()``: on fresh credentials an awaitable already done, so the hot path takes
no lock (aiobotocore's refreshable credentials take an ``asyncio.Lock`` on every call) and
schedules nothing.  It answers botocore's own ``ReadOnlyCredentials``, built once per cached
entry (the same object the sync door hands out).

``shared=`` (a :class:`creds_core.redis.RedisTier`) on :func:`assume_role` and
``creds_core.fanout.fan_out_async``: one AssumeRole per role and refresh across a fleet.

Refreshes never run on the caller's event loop: a sync provider runs on creds_core's provider
threads, a coroutine provider on creds_core's own event loop.  :func:`assume_role` makes its
STS calls as coroutines on that loop, with one aiobotocore STS client per source and region
kept there across refreshes, through the same per-endpoint :class:`~creds_core.Limiter` as
:func:`creds_core.boto3.assume_role`.

When a call fails with ``ExpiredToken``, ``ExpiredTokenException`` or ``RequestExpired``, the
cache entry for the key that signed it is invalidated and the call retried once, as in
:mod:`creds_core.boto3`.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import inspect
import logging
import os
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

try:
    from aiobotocore.config import AioConfig
    from aiobotocore.credentials import AioCredentials
    from aiobotocore.hooks import AioHierarchicalEmitter
    from aiobotocore.session import AioSession
except ImportError as exc:  # pragma: no cover - tested in a subprocess without aiobotocore
    raise ImportError(
        "creds_core.aiobotocore needs aiobotocore, which is not installed: "
        "pip install 'creds_core[aio]'"
    ) from exc

import botocore.session
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import ClientError

from creds_core import _aio_loop
from creds_core._botocore import METHOD, CacheAdapter
from creds_core._core import (
    THROTTLING_CODES,
    CredentialCache,
    CredentialCycleError,
    Credentials,
    CredentialsError,
    Limiter,
)
from creds_core._sessions import PersistentTrie, copy_emitter
from creds_core.api_limits import _CALL, _HOOKED, ApiHooks, ApiLimits
from creds_core.boto3 import (
    _API_LIMITS,
    _KEYED_ARGUMENTS,
    _freeze,
    _role_cache,
    _use_api_limits,
    sts_limiter,
)
from creds_core.boto3 import (
    _RejectedCredentialsHooks as _SyncRejectedCredentialsHooks,
)
from creds_core.providers._sts import quiet_botocore
from creds_core.providers.assume_role import (
    _SOURCE_REJECTED,
    AssumeRoleProvider,
    credentials_from_sts,
)
from creds_core.providers.errors import from_exception, recoverable
from creds_core.types import ProviderLike

if TYPE_CHECKING:  # the shared tier needs the extra creds_core[redis]
    from creds_core.redis import RedisTier

__all__ = [
    "METHOD",
    "AioApiHooks",
    "AioAssumeRoleProvider",
    "AioCacheCredentials",
    "assume_role",
    "get_cache",
    "install",
    "session",
]

LOG = logging.getLogger(__name__)

_HOOK_IDS = {
    "request-created": "creds_core.aiobotocore.signed-by",
    "needs-retry": "creds_core.aiobotocore.retry-expired",
}


class AioCacheCredentials(CacheAdapter, AioCredentials):  # type: ignore[misc]
    """aiobotocore credentials that are always the current credentials of a CredentialCache:
    creds_core's one botocore adapter (:class:`creds_core._botocore.CacheAdapter`) with
    aiobotocore's awaitable reads.

    ``await get_frozen_credentials()`` is the cache's ``get_frozen_async()``: botocore's
    ``ReadOnlyCredentials`` of the cached entry (built once per entry), by the cache's refresh
    policy, without a lock; on fresh credentials an awaitable already done.
    ``await get_account_id()`` (and ``get_access_key()``, ``get_secret_key()``,
    ``get_token()``) read the cache the same way.  The synchronous attributes
    (``access_key``, ...) are the cache's blocking door, as botocore's properties are.
    ``method`` is botocore's method name of the provider that served what the cache holds
    (``assume-role``, ``env``, ...); it never waits (aiobotocore reads it on the event loop).
    The object holds no key or secret of its own and its repr shows none.
    """

    def __init__(self, cache: CredentialCache, *, method: str | None = None) -> None:
        CacheAdapter.__init__(self, cache, method=method)
        self._get_async = cache.get_async
        self._get_frozen_async = cache.get_frozen_async

    def _served(self) -> Credentials | None:
        return self._cache._last_good()  # never waits: read on the event loop

    async def get_frozen_credentials(self) -> ReadOnlyCredentials:
        # A coroutine, as aiobotocore's (``asyncio.run``/``create_task`` take it; the cache's
        # slow path needs the running loop, which exists only once this is awaited).
        return await self._get_frozen_async()

    async def get_account_id(self) -> str | None:
        return (await self._get_async()).account_id

    async def get_access_key(self) -> str:
        return (await self._get_async()).access_key_id

    async def get_secret_key(self) -> str:
        return (await self._get_async()).secret_access_key

    async def get_token(self) -> str | None:
        return (await self._get_async()).session_token


class _Resolver:
    """The ``credential_provider`` component of a creds_core AioSession: one object."""

    def __init__(self, credentials: AioCacheCredentials) -> None:
        self._credentials = credentials

    async def load_credentials(self) -> AioCacheCredentials:
        return self._credentials


class _RejectedCredentialsHooks(_SyncRejectedCredentialsHooks):
    """aiobotocore event hooks: retry a call once when the service rejects its credentials
    (creds_core.boto3's rules; the fresh credentials are awaited, never waited for on the
    loop)."""

    async def needs_retry(  # type: ignore[override]
        self,
        response: tuple[Any, Mapping[str, Any]] | None = None,
        request_dict: Mapping[str, Any] | None = None,
        **_: Any,
    ) -> int | None:
        rejected = self._rejected_call(response, request_dict)
        if rejected is None:
            return None
        try:
            fresh = await self._cache.get_async()
        except CredentialsError as exc:
            return self._verdict(rejected, None, exc)
        return self._verdict(rejected, fresh, None)


class AioApiHooks(ApiHooks):
    """The :class:`~creds_core.ApiLimits` hooks of the asyncio door: an attempt waits for its
    token with ``await asyncio.sleep`` on the caller's loop (never blocking it), and the
    account is read with ``await cache.get_async()``."""

    async def before_sign(  # type: ignore[override]
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
            account = await self._account_async(request_signer)
            call = self._start(request, request_signer, operation_name, account)
            if call is None:
                return
        else:
            call = request.context[_CALL]
        wait = self._admit(call)
        if wait > 0.0:
            await asyncio.sleep(wait)

    async def _account_async(self, request_signer: Any) -> str | None:
        if getattr(request_signer, _HOOKED, None) is None:
            return None
        credentials = getattr(request_signer, "_credentials", None)
        if isinstance(credentials, CacheAdapter):
            current = await credentials.cache.get_async()
            return current.account_id or current.access_key_id
        if credentials is None:
            return "anonymous"
        frozen = credentials.get_frozen_credentials()
        if inspect.isawaitable(frozen):
            frozen = await frozen
        account = getattr(frozen, "account_id", None)
        return str(account or getattr(frozen, "access_key", None) or "anonymous")


def _attach(
    aio_session: AioSession, cache: CredentialCache, *, new: bool = False
) -> AioCacheCredentials:
    credentials = AioCacheCredentials(cache)
    aio_session.register_component("credential_provider", _Resolver(credentials))
    aio_session._credentials = credentials
    hooks = _RejectedCredentialsHooks(cache)
    for event, handler in (
        ("request-created", hooks.signed_by),
        ("needs-retry", hooks.needs_retry),
    ):
        # A new role session's emitter has no such hook yet, and these plain event names have
        # no aliases: its emitter's own registration, without the signature checks (guarded:
        # a botocore without it takes the public path).
        direct = getattr(getattr(aio_session, "_original_handler", None), "_register", None)
        if new and callable(direct):
            direct(event, handler, _HOOK_IDS[event], False)
            continue
        aio_session.unregister(event, unique_id=_HOOK_IDS[event])
        aio_session.register(event, handler, unique_id=_HOOK_IDS[event])
    return credentials


def _check_session(aio_session: Any) -> AioSession:
    if not isinstance(aio_session, AioSession):
        raise TypeError(f"expected an aiobotocore AioSession, not {type(aio_session).__name__}")
    return aio_session


def get_cache(aio_session: AioSession) -> CredentialCache | None:
    """The CredentialCache an AioSession signs with, or None if it is not a creds_core one."""
    loaded = getattr(_check_session(aio_session), "_credentials", None)
    return loaded.cache if isinstance(loaded, AioCacheCredentials) else None


def _like(aio_session: AioSession) -> botocore.session.Session:
    """A plain botocore session configured like ``aio_session`` (for the sync providers)."""
    from creds_core.providers._config import new_session

    return new_session(like=aio_session)


def _provider_for(aio_session: AioSession) -> Any:
    loaded = getattr(aio_session, "_credentials", None)
    if isinstance(loaded, AioCacheCredentials):
        return loaded.cache.provider
    if loaded is not None and type(loaded) is AioCredentials:  # set_credentials() in code
        from creds_core.providers.static import StaticProvider

        given: Any = loaded
        if given.access_key and given.secret_key:
            return StaticProvider(
                given.access_key,
                given.secret_key,
                given.token,
                account_id=getattr(given, "account_id", None),
            )
    from creds_core.providers import default_chain

    return default_chain(session=_like(aio_session))


def install(
    aio_session: AioSession,
    provider: ProviderLike | None = None,
    *,
    cache_options: Mapping[str, Any] | None = None,
    api_limits: ApiLimits | None = None,
    **options: Any,
) -> CredentialCache:
    """Make ``aio_session`` sign every request through a CredentialCache.

    ``provider``: anything :class:`CredentialCache` takes (a coroutine provider runs on
    creds_core's event loop), or an existing CredentialCache to share (``cache_options`` must
    be empty then); None uses what the session would: credentials set on it in code, else
    ``creds_core.providers.default_chain`` for its profile.  ``cache_options`` are passed to
    :class:`CredentialCache`, as ``cache_options={...}`` like everywhere else in creds_core, or
    as keyword arguments.  ``api_limits``: a :class:`~creds_core.ApiLimits` every API call of
    the clients created afterwards draws from (its waits are awaited on the caller's loop).
    Clients created afterwards use the cache.  Returns the cache.
    """
    aio_session = _check_session(aio_session)
    merged = {**(cache_options or {}), **options}
    if isinstance(provider, CredentialCache):
        if merged:
            raise TypeError("cache options cannot be given with an existing CredentialCache")
        cache = provider
    else:
        if provider is None:
            provider = _provider_for(aio_session)
        profile = aio_session.instance_variables().get("profile")
        merged.setdefault("name", f"aiobotocore profile {profile}" if profile else "aio")
        cache = CredentialCache(provider, **merged)
    _attach(aio_session, cache)
    _use_api_limits(aio_session, api_limits, AioApiHooks)
    return cache


def session(
    provider: ProviderLike | None = None,
    *,
    cache_options: Mapping[str, Any] | None = None,
    api_limits: ApiLimits | None = None,
    **aio_session_kwargs: Any,
) -> AioSession:
    """A new ``AioSession(**aio_session_kwargs)`` that signs through a CredentialCache
    (``provider``, ``cache_options`` and ``api_limits`` as in :func:`install`; the cache is
    :func:`get_cache` of it)."""
    result = AioSession(**aio_session_kwargs)
    install(result, provider, cache_options=cache_options, api_limits=api_limits)
    return result


# --- assume_role ------------------------------------------------------------------------------

#: The aiobotocore STS clients' configuration: as creds_core.boto3's (one retry, short
#: timeouts; the cache backs off).
_CLIENT_CONFIG = AioConfig(
    retries={"mode": "standard", "total_max_attempts": 2},
    connect_timeout=5,
    read_timeout=15,
)

_THROTTLING = frozenset(THROTTLING_CODES)


def _report_throttling(response: tuple[Any, Any] | None = None, **_: Any) -> None:
    """``needs-retry`` observer: a throttled answer reaches the refresh's Limiter at once."""
    if response is None:
        return
    http, parsed = response
    code = (parsed.get("Error") or {}).get("Code")
    if code in _THROTTLING or getattr(http, "status_code", None) == 429:
        flight = _aio_loop.current_flight.get()
        if flight is not None:
            flight.note_throttled()


# STS clients live on creds_core's loop (they are bound to it): created and used only there,
# so this registry is touched by that one thread; a forked child starts with none.  It holds
# them weakly: the role providers that use a client hold it, and once none does (their
# sessions are gone) it is closed; the ones still in use are closed at exit, so that aiohttp
# never reports an unclosed session.
class _StsClient:
    """One shared aiobotocore STS client (``made``: its creation on creds_core's loop)."""

    __slots__ = ("__weakref__", "closer", "keep", "made")

    def __init__(self, made: asyncio.Future[Any], keep: tuple[Any, ...]) -> None:
        self.made = made
        # What the key's ids name, alive as long as the client (so those ids stay unique).
        self.keep = keep
        self.closer = weakref.finalize(self, _close_client, made, made.get_loop(), os.getpid())
        self.closer.atexit = False  # _close_at_exit closes (and waits for) the live ones


_STS_CLIENTS: weakref.WeakValueDictionary[tuple[Any, ...], _StsClient] = (
    weakref.WeakValueDictionary()
)


def _forget_sts_clients() -> None:
    _STS_CLIENTS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_sts_clients)


# Closings in progress on the loop (the loop keeps only weak references to its tasks).
_CLOSING: set[asyncio.Future[None]] = set()


def _close_soon(made: asyncio.Future[Any]) -> None:
    """On creds_core's loop: close the client ``made`` gives, without waiting for it."""
    task = asyncio.ensure_future(_close(made))
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


async def _close(made: asyncio.Future[Any]) -> None:
    if not made.done():  # still being made: closed once it is
        made.add_done_callback(lambda _: _close_soon(made))
        return
    if made.cancelled() or made.exception() is not None:
        return
    try:
        await made.result().__aexit__(None, None, None)
    except Exception as exc:  # closing is best effort: the client is not used again
        LOG.debug("closing an STS client failed: %s", type(exc).__name__)


def _close_client(
    made: asyncio.Future[Any], loop: asyncio.AbstractEventLoop, pid: int
) -> concurrent.futures.Future[None] | None:
    """Close a client no provider uses (from whichever thread dropped the last one, without
    waiting for it); None where there is nothing to wait for."""
    if pid != os.getpid() or loop.is_closed():
        return None  # a forked child: the parent's loop and client are not here
    if _aio_loop.on_loop_thread():
        _close_soon(made)
        return None
    try:
        return asyncio.run_coroutine_threadsafe(_close(made), loop)
    except RuntimeError:  # the loop closed meanwhile
        return None


@atexit.register
def _close_at_exit() -> None:
    pending = [f for f in (c.closer() for c in list(_STS_CLIENTS.values())) if f is not None]
    if pending:
        concurrent.futures.wait(pending, timeout=5.0)


async def _sts_client(
    like: AioSession,
    source: CredentialCache,
    region: str | None,
    endpoint_url: str | None,
    config: AioConfig | None,
) -> _StsClient:
    """The shared aiobotocore STS client for (source, region, endpoint, config): made once on
    creds_core's loop, kept there while a role provider holds it.  It signs with the source
    cache."""
    key = (id(like), id(source), region, endpoint_url, id(config))
    entry = _STS_CLIENTS.get(key)
    if entry is None:
        made = asyncio.ensure_future(_make_sts_client(like, source, region, endpoint_url, config))
        entry = _StsClient(made, (like, source, config))
        _STS_CLIENTS[key] = entry
    try:
        await asyncio.shield(entry.made)
    except BaseException:
        if entry.made.done() and _STS_CLIENTS.get(key) is entry:
            # A failed creation is tried again by the next refresh.
            del _STS_CLIENTS[key]
        raise
    return entry


async def _make_sts_client(
    like: AioSession,
    source: CredentialCache,
    region: str | None,
    endpoint_url: str | None,
    config: AioConfig | None,
) -> Any:
    builder = AioSession()
    for name, value in like.instance_variables().items():
        builder.set_config_variable(name, value)
    builder.register_component("data_loader", like.get_component("data_loader"))
    credentials = AioCacheCredentials(source)
    builder.register_component("credential_provider", _Resolver(credentials))
    builder._credentials = credentials
    merged = _CLIENT_CONFIG if config is None else _CLIENT_CONFIG.merge(config)
    client = await builder.create_client(
        "sts", region_name=region, endpoint_url=endpoint_url, config=merged
    ).__aenter__()
    client.meta.events.register_first("needs-retry.sts", _report_throttling)
    return client


class AioAssumeRoleProvider(AssumeRoleProvider):
    """:class:`~creds_core.providers.AssumeRoleProvider` whose STS calls are coroutines on
    creds_core's event loop, with one aiobotocore STS client per source and region kept there.

    ``aio_session`` configures the STS client (region, endpoint, profile variables; default:
    a new AioSession).  Everything else is as for the sync provider: when STS rejects the
    source credentials as expired or invalid, the source cache is invalidated and the call
    retried once; errors are classified the same way.
    """

    def __init__(
        self, source: Any, role_arn: str, *, aio_session: AioSession | None = None, **kwargs: Any
    ) -> None:
        super().__init__(source, role_arn, **kwargs)
        self._aio_session = aio_session
        self._sts_entry: _StsClient | None = None

    async def _source_credentials_async(self) -> Credentials:
        try:
            return await self._source.get_async()
        except CredentialCycleError:
            raise
        except CredentialsError as exc:
            raise self._source_error(exc) from exc

    async def provide(self) -> Credentials:  # type: ignore[override]
        source_creds = await self._source_credentials_async()
        like = self._aio_session if self._aio_session is not None else _default_like()
        action = f"sts:AssumeRole on {self.role_arn}"
        try:
            entry = await _sts_client(
                like, self._source, self.region, self.endpoint_url, self._client_config
            )
        except Exception as exc:
            raise from_exception(exc, provider=self.name, action="creating the STS client") from exc
        # Held while this provider lives (and after a fork, the child's own one replaces it).
        self._sts_entry = entry
        client = entry.made.result()
        for attempt in range(2):
            params = self._call_params()
            try:
                # botocore's secret-bearing DEBUG loggers stay quiet on creds_core's loop
                # thread while an STS call is in flight (balanced on that one thread).
                with quiet_botocore():
                    response = await client.assume_role(**params)
            except ClientError as exc:
                code = (exc.response.get("Error") or {}).get("Code")
                if attempt == 0 and code in _SOURCE_REJECTED:
                    self._source.invalidate(source_creds.access_key_id)
                    source_creds = await self._source_credentials_async()
                    continue
                raise from_exception(exc, provider=self.name, action=action) from exc
            except Exception as exc:
                raise from_exception(exc, provider=self.name, action=action) from exc
            try:
                return credentials_from_sts(response, self.METHOD)
            except (KeyError, TypeError, ValueError) as exc:
                raise recoverable(
                    self.name, f"the {action} answer is unusable", code="MalformedResponse"
                ) from exc
        raise AssertionError("unreachable")

    def __repr__(self) -> str:
        return f"Aio{super().__repr__()}"


_DEFAULT_LIKE: AioSession | None = None


def _default_like() -> AioSession:
    global _DEFAULT_LIKE
    if _DEFAULT_LIKE is None:
        _DEFAULT_LIKE = AioSession()
    return _DEFAULT_LIKE


_ROLE_LOCK = threading.Lock()
_ROLE_CACHES: weakref.WeakValueDictionary[tuple[Any, ...], CredentialCache] = (
    weakref.WeakValueDictionary()
)
# Role caches stay alive while a session made for them does.


def _source_cache(source: Any) -> tuple[CredentialCache, AioSession | None]:
    """The source's cache (installing one on an AioSession that has none) and the AioSession
    whose configuration the STS client takes, if the source is one."""
    if isinstance(source, CredentialCache):
        return source, None
    if isinstance(source, AioSession):
        with _ROLE_LOCK:
            cache = get_cache(source)
            if cache is None:
                cache = install(source)
        return cache, source
    import boto3

    import creds_core.boto3 as cb

    if isinstance(source, (botocore.session.Session, boto3.Session)):
        botocore_session = cb._botocore_session(source)
        with cb._ROLE_LOCK:
            cache = cb.get_cache(botocore_session) or cb.install(botocore_session)
        return cache, None
    raise TypeError(
        "source must be an aiobotocore AioSession, a boto3 or botocore Session or a "
        f"CredentialCache, not {type(source).__name__}"
    )


class _RoleSession(AioSession):  # type: ignore[misc]
    """An AioSession made by a template: its configuration store (some 50 config chains,
    half the cost of a session) is built when first asked for, not up front."""

    def _register_config_store(self) -> None:
        def build() -> Any:
            AioSession._register_config_store(self)
            return self._components.get_component("config_store")

        self._components.lazy_register_component("config_store", build)


class _AioTemplate:
    """What the role sessions made for one data loader share (as creds_core.boto3's session
    templates): the loader, the built-in event handlers (registered once, in a persistent trie
    that session copies share), the endpoint resolver, exceptions factory and response parser
    factory.  A plain ``AioSession()`` registers some 6,000 handlers: about 4 ms each."""

    def __init__(self, loader: Any) -> None:
        emitter: Any = AioHierarchicalEmitter()
        emitter._handlers = PersistentTrie()
        base: Any = AioSession(event_hooks=emitter)  # the one full build
        base.register_component("data_loader", loader)
        self.loader = loader
        self.emitter = emitter
        self._internal = {
            name: base._get_internal_component(name)
            for name in ("endpoint_resolver", "exceptions_factory", "default_config_resolver")
        }
        self._parser_factory = base.get_component("response_parser_factory")

    def session(self, instance_variables: Mapping[str, Any]) -> AioSession:
        result: Any = _RoleSession(
            event_hooks=copy_emitter(self.emitter), include_builtin_handlers=False
        )
        result.register_component("data_loader", self.loader)
        result.register_component("response_parser_factory", self._parser_factory)
        for name, component in self._internal.items():
            result._internal_components.register_component(name, component)
        for name, value in instance_variables.items():
            result.set_config_variable(name, value)
        return cast(AioSession, result)


_TEMPLATES_LOCK = threading.Lock()
_TEMPLATES: weakref.WeakValueDictionary[int, _AioTemplate] = weakref.WeakValueDictionary()


def _template_for(loader: Any) -> _AioTemplate:
    with _TEMPLATES_LOCK:
        template = _TEMPLATES.get(id(loader))
        if template is None:
            template = _AioTemplate(loader)
            _TEMPLATES[id(loader)] = template
        return template


def _role_session(
    like: AioSession, cache: CredentialCache, api_limits: ApiLimits | None = None
) -> AioSession:
    template = _template_for(like.get_component("data_loader"))
    result = template.session(like.instance_variables())
    _attach(result, cache, new=True)
    _use_api_limits(result, api_limits, AioApiHooks)
    # The role's cache and the template live as long as a session made for them does.
    result._creds_core_role = (cache, template)
    return result


def assume_role(
    source: Any,
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
) -> AioSession:
    """A new AioSession with the credentials of ``role_arn``, assumed from ``source``.

    ``source``: an AioSession (a creds_core cache is installed on it if it has none, see
    :func:`install`: any source creds_core resolves, SSO included), a boto3 or botocore
    Session, or a CredentialCache.  As :func:`creds_core.boto3.assume_role`: one cache per
    role (and AssumeRole arguments) shared process-wide, concurrent callers cause one STS
    call, and the roles of one STS endpoint and region share one Limiter
    (:func:`creds_core.boto3.sts_limiter`; ``limiter=`` your own, or ``False``).  The STS
    calls are coroutines on creds_core's event loop (:class:`AioAssumeRoleProvider`), never
    on the caller's.  ``assume_role_kwargs``: ``policy``, ``policy_arns``, ``tags``,
    ``transitive_tag_keys``, ``source_identity``, ``serial_number`` with ``mfa_token``,
    ``region``, ``endpoint_url``, ``client_config`` (an ``AioConfig``).

    ``shared``: a :class:`creds_core.redis.RedisTier`, as for
    :func:`creds_core.boto3.assume_role`: every process sharing the tier makes one AssumeRole
    per role and refresh (the entry's name is the one the sync module uses, so sync and asyncio
    processes share it).  The tier's Redis calls and waits run on a provider thread of
    creds_core, the STS call still as a coroutine on creds_core's loop: never on the caller's.

    ``api_limits``: the :class:`~creds_core.ApiLimits` of the role session's API calls;
    None inherits the source session's (an AioSession or a boto3/botocore Session given
    ``api_limits=``), ``False`` for none.
    """
    if not isinstance(role_arn, str) or not role_arn:
        raise ValueError("role_arn must be a non-empty string")
    if limiter is not None and limiter is not False and not isinstance(limiter, Limiter):
        raise TypeError("limiter must be a creds_core.Limiter, None (shared) or False (none)")
    source_cache, like = _source_cache(source)
    limits = api_limits or None
    if api_limits is None and not isinstance(source, CredentialCache):
        limits = _API_LIMITS.get(getattr(source, "_session", source))
    config_source = like if like is not None else _default_like()
    provider_kwargs = dict(assume_role_kwargs)
    if provider_kwargs.get("region") is None:
        provider_kwargs["region"] = config_source.get_config_variable("region")
    # As creds_core.boto3's key: what changes the credentials STS hands out (the shared tier's
    # entry is named after these), then where they come from, and the tier.
    keyed = (
        role_session_name,
        external_id,
        duration_seconds,
        tuple((n, _freeze(assume_role_kwargs.get(n))) for n in _KEYED_ARGUMENTS),
    )
    key = (
        id(source_cache),
        role_arn,
        *keyed,
        provider_kwargs.get("region"),
        provider_kwargs.get("endpoint_url"),
        shared,
    )
    with _ROLE_LOCK:
        cache = _ROLE_CACHES.get(key)
        if cache is None:
            if limiter is None:
                limiter = sts_limiter(
                    config_source,
                    region=provider_kwargs["region"],
                    endpoint_url=provider_kwargs.get("endpoint_url"),
                )
            provider = AioAssumeRoleProvider(
                source_cache,
                role_arn,
                aio_session=config_source,
                role_session_name=role_session_name,
                external_id=external_id,
                duration_seconds=duration_seconds,
                **provider_kwargs,
            )
            cache = _role_cache(
                provider,
                role_arn,
                keyed,
                shared=shared,
                limiter=limiter,
                cache_options=cache_options,
            )
            _ROLE_CACHES[key] = cache
    return _role_session(config_source, cache, limits)
