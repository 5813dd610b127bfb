"""The Python side of the provider protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

from botocore.credentials import ReadOnlyCredentials

from creds_core._core import Credentials

#: What ``provide()`` may return: credentials, a mapping of them, or None for "nothing here".
ProviderAnswer = Union[Credentials, Mapping[str, Any], None]


class Provider:
    """Base class of credential providers.

    ``provide()`` returns :class:`Credentials`, a mapping (botocore, STS or credential_process
    keys) or ``None`` ("nothing here", like raising :class:`CredentialsNotLoaded`). It runs on one
    of creds_core's worker threads (Python daemon threads), never on the caller's event loop;
    an ``async def provide()`` runs on creds_core's own event loop (one long-lived loop on a
    thread of its own), so clients it keeps stay usable across refreshes. Raise
    :class:`NonRecoverableError` for failures that retrying will not fix; anything else is
    treated as recoverable.

    ``fallback_on_interrupt()`` returns credentials set aside for when ``provide()`` outlives
    the cache's ``load_timeout``. It must answer from memory at once, never fetch.
    """

    #: Shown in messages, logs and ``Credentials.provider_name``; defaults to the class name.
    name: str | None = None

    def provide(self) -> ProviderAnswer:
        raise NotImplementedError(f"{type(self).__name__}.provide() is not implemented")

    def fallback_on_interrupt(self) -> Credentials | None:
        return None


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
