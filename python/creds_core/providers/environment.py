"""Credentials from environment variables, as botocore's ``EnvProvider`` reads them."""

from __future__ import annotations

import os
from collections.abc import Mapping

from creds_core._core import Credentials
from creds_core._provider import Provider
from creds_core.providers._util import parse_expiry
from creds_core.providers.errors import non_recoverable, not_loaded

__all__ = ["EnvironmentProvider"]


class EnvironmentProvider(Provider):
    """``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` (or botocore's
    older alias ``AWS_SECURITY_TOKEN``, which botocore checks first), ``AWS_CREDENTIAL_EXPIRATION``
    and ``AWS_ACCOUNT_ID``.

    The variables are read again on every ``provide()``, so credentials with an expiration are
    refreshed from the (updated) environment.  ``environ`` defaults to ``os.environ``.
    """

    name = "env"
    #: botocore's canonical name, the value of ``credential_source`` that selects this source.
    canonical_name = "Environment"

    ACCESS_KEY = "AWS_ACCESS_KEY_ID"
    SECRET_KEY = "AWS_SECRET_ACCESS_KEY"
    TOKENS = ("AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN")
    EXPIRY = "AWS_CREDENTIAL_EXPIRATION"
    ACCOUNT_ID = "AWS_ACCOUNT_ID"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ

    def provide(self) -> Credentials:
        env = self._environ if self._environ is not None else os.environ
        access_key = env.get(self.ACCESS_KEY, "")
        if not access_key:
            raise not_loaded(self.name, f"{self.ACCESS_KEY} is not set")
        secret_key = env.get(self.SECRET_KEY, "")
        if not secret_key:
            raise non_recoverable(
                self.name,
                f"{self.ACCESS_KEY} is set but {self.SECRET_KEY} is not; set both (or neither)",
                code="PartialCredentialsError",
            )
        token = next((env[name] for name in self.TOKENS if env.get(name)), None)
        account_id = env.get(self.ACCOUNT_ID) or None
        try:
            expiry = parse_expiry(env.get(self.EXPIRY) or None, self.EXPIRY)
        except ValueError as exc:
            raise non_recoverable(
                self.name,
                f"{exc}; fix or unset it",
                code="InvalidExpiration",
            ) from exc
        return Credentials(
            access_key, secret_key, token, expiry, account_id=account_id, provider_name=self.name
        )
