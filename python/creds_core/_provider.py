"""The Python side of the provider protocol."""

from __future__ import annotations

from creds_core._core import Credentials
from creds_core.types import ProviderAnswer

__all__ = ["Provider", "ProviderAnswer"]


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
