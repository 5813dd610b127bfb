"""Fixed credentials given in code (botocore calls them ``explicit``)."""

from __future__ import annotations

from datetime import datetime

from creds_core._core import Credentials
from creds_core._provider import Provider

__all__ = ["StaticProvider"]


class StaticProvider(Provider):
    """Always the same credentials.

    ``StaticProvider(access_key_id, secret_access_key, session_token=None, expiry=None, *,
    account_id=None)`` or ``StaticProvider(credentials=Credentials(...))``.  Their
    ``provider_name`` is ``explicit`` (botocore's method name for credentials given in code)
    unless the given Credentials already have one.
    """

    name = "explicit"

    def __init__(
        self,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        expiry: datetime | str | float | None = None,
        *,
        account_id: str | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        if credentials is not None:
            if access_key_id is not None or secret_access_key is not None:
                raise TypeError("give either credentials or the access key and secret, not both")
            if credentials.provider_name is None:
                credentials = Credentials(
                    credentials.access_key_id,
                    credentials.secret_access_key,
                    credentials.session_token,
                    credentials.expiry,
                    account_id=credentials.account_id,
                    provider_name=self.name,
                )
            self._credentials = credentials
            return
        if not access_key_id or not secret_access_key:
            raise TypeError("StaticProvider needs an access key id and a secret access key")
        self._credentials = Credentials(
            access_key_id,
            secret_access_key,
            session_token,
            expiry,
            account_id=account_id,
            provider_name=self.name,
        )

    @property
    def credentials(self) -> Credentials:
        return self._credentials

    def provide(self) -> Credentials:
        return self._credentials

    def fallback_on_interrupt(self) -> Credentials | None:
        return self._credentials

    def __repr__(self) -> str:
        return f"StaticProvider({self._credentials!r})"
