"""The one adapter between a :class:`~creds_core.CredentialCache` and botocore.

:class:`CacheCredentials` is a botocore ``Credentials`` subclass that holds no key of its own:
every read asks the cache.  botocore's signer calls ``get_frozen_credentials()`` once per
request; here that *is* the cache's ``get_frozen`` (Rust, no Python frame), which answers
botocore's own ``ReadOnlyCredentials`` namedtuple, built once per cached entry and then handed
out as is.  ``method`` is botocore's method string of the provider that served the cached
credentials (``env``, ``shared-credentials-file``, ``assume-role``, ``sso``, ``iam-role``...).

Used by ``creds_core.boto3`` (sessions) and by the STS clients of the assume-role providers
(``providers._sts``, which *pins* the credentials a refresh just read, see :meth:`pin`).
The async door (``creds_core.aiobotocore.AioCacheCredentials``) is the same adapter
(:class:`CacheAdapter`) on aiobotocore's ``AioCredentials``, with awaitable reads.
"""

from __future__ import annotations

import threading
from typing import Any

from botocore.credentials import Credentials as BotocoreCredentials
from botocore.credentials import ReadOnlyCredentials

from creds_core._core import CredentialCache, CredentialsError
from creds_core._core import Credentials as CoreCredentials

__all__ = ["METHOD", "CacheAdapter", "CacheCredentials", "FrozenCredentials", "frozen_credentials"]

#: The ``method`` of credentials whose provider has no botocore name.
METHOD = "creds-core"


class CacheAdapter:
    """What botocore credentials over a CredentialCache are, for either door (a mixin, put
    before botocore's or aiobotocore's credentials class): the cache, ``method``, botocore's
    synchronous attributes (``access_key``, ``secret_key``, ``token``, ``account_id``: each a
    read of the cache, as in botocore), ``refresh_needed()``, no copies, and a repr without
    secrets.  Subclasses add ``get_frozen_credentials`` (sync, or awaitable)."""

    def __init__(self, cache: CredentialCache, *, method: str | None = None) -> None:
        # botocore's __init__ would store fixed keys: this object has none of its own.
        self._cache = cache
        self._method = method

    @property
    def cache(self) -> CredentialCache:
        """The cache these credentials come from."""
        return self._cache

    def _current(self) -> CoreCredentials:
        """The credentials a read gets (the cache's blocking door)."""
        return self._cache.get()

    def _served(self) -> CoreCredentials | None:
        """The credentials ``method`` names (None: not known)."""
        try:
            return self._current()
        except CredentialsError:
            return None

    @property
    def method(self) -> str:
        if self._method is not None:
            return self._method
        served = self._served()
        return (served.provider_name if served is not None else None) or METHOD

    @method.setter
    def method(self, value: str | None) -> None:
        self._method = value

    @property
    def access_key(self) -> str:
        return self._current().access_key_id

    @property
    def secret_key(self) -> str:
        return self._current().secret_access_key

    @property
    def token(self) -> str | None:
        return self._current().session_token

    @property
    def account_id(self) -> str | None:
        return self._current().account_id

    def refresh_needed(self, refresh_in: float | None = None) -> bool:
        """Always False: the cache refreshes on its own schedule (botocore API parity)."""
        return False

    def __deepcopy__(self, memo: dict[int, Any]) -> CacheAdapter:
        return self  # a handle on a shared cache; copies would share it anyway

    def __repr__(self) -> str:
        # Never waits, never a secret: the method of what the cache holds now.
        held = self._cache._last_good()
        method = self._method or (held.provider_name if held is not None else None) or METHOD
        return f"{type(self).__name__}(cache={self._cache.name!r}, method={method!r})"


class CacheCredentials(CacheAdapter, BotocoreCredentials):  # type: ignore[override]  # botocore: plain attributes
    """botocore credentials that are always the current credentials of a CredentialCache.

    ``get_frozen_credentials()`` returns botocore's ``ReadOnlyCredentials`` (a lock-free read
    while the credentials are fresh; the refresh policy of the cache applies).
    ``access_key``, ``secret_key``, ``token`` and ``account_id`` read the cache too (each on
    its own, as in botocore).  ``method``: the ``provider_name`` of the cached credentials
    (botocore's method string for creds_core's providers).  Its repr shows no secret.

    ``pin(credentials)`` makes the calls of the current thread use exactly those credentials
    until ``pin(None)`` (a provider that just read its source blames an error on the key
    that signed); pinning costs nothing to threads that never pin.
    """

    def __init__(self, cache: CredentialCache, *, method: str | None = None) -> None:
        CacheAdapter.__init__(self, cache, method=method)
        self._pinned: threading.local | None = None
        # The signer's per-request call goes straight to the Rust cache: no Python frame.
        self.get_frozen_credentials = cache.get_frozen  # type: ignore[method-assign]

    def _current(self) -> CoreCredentials:
        pinned = self._pinned
        if pinned is not None:
            value: CoreCredentials | None = getattr(pinned, "value", None)
            if value is not None:
                return value
        return self._cache.get()

    def pin(self, credentials: CoreCredentials | None) -> None:
        """Sign this thread's calls with ``credentials`` (None: the cache again)."""
        if self._pinned is None:
            self._pinned = threading.local()
            self.get_frozen_credentials = self._frozen_pinned  # type: ignore[method-assign]
        self._pinned.value = credentials

    def _frozen_pinned(self) -> ReadOnlyCredentials:
        return self._current().to_botocore()

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        # Shadowed on every instance by the cache's own get_frozen (see __init__).
        return self._current().to_botocore()

    def _refresh(self) -> None:
        # botocore's RefreshableCredentials API, for code that pokes at it: a cache read.
        self._cache.get()


class FrozenCredentials(ReadOnlyCredentials):
    """botocore's ``ReadOnlyCredentials`` whose repr does not show the secret or the token."""

    __slots__ = ()

    def __repr__(self) -> str:
        token = ", token='***'" if self.token else ""
        account = getattr(self, "account_id", None)
        account_text = f", account_id={account!r}" if account else ""
        return (
            f"FrozenCredentials(access_key={self.access_key!r}, secret_key='***'{token}"
            f"{account_text})"
        )


# botocore 1.35 added ``account_id`` to ReadOnlyCredentials; older versions have 3 fields.
_HAS_ACCOUNT_ID = "account_id" in ReadOnlyCredentials._fields


def frozen_credentials(
    access_key: str, secret_key: str, token: str | None, account_id: str | None
) -> FrozenCredentials:
    """The ``ReadOnlyCredentials`` botocore itself would build for these values."""
    if _HAS_ACCOUNT_ID:
        return FrozenCredentials(access_key, secret_key, token, account_id)
    return FrozenCredentials(access_key, secret_key, token)
