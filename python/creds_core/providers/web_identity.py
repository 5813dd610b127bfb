"""Credentials from STS AssumeRoleWithWebIdentity (EKS IRSA, GitHub Actions OIDC...).

Settings, like botocore's ``AssumeRoleWithWebIdentityProvider``: ``AWS_WEB_IDENTITY_TOKEN_FILE``,
``AWS_ROLE_ARN`` and ``AWS_ROLE_SESSION_NAME`` (ignored when environment variables are
disabled, i.e. for an explicitly selected profile), else the profile's
``web_identity_token_file``, ``role_arn`` and ``role_session_name``.  The token file is read
again for every call (whatever writes it rotates it).  The call is unsigned.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

from creds_core._core import Credentials, CredentialsError
from creds_core._provider import Provider
from creds_core.providers._config import ConfigSource
from creds_core.providers._sts import ClientEntry, quiet_botocore, sts_client
from creds_core.providers.assume_role import credentials_from_sts, default_session_name
from creds_core.providers.errors import (
    from_exception,
    non_recoverable,
    not_loaded,
    recoverable,
)

__all__ = ["WebIdentityProvider"]

_ENV = {
    "web_identity_token_file": "AWS_WEB_IDENTITY_TOKEN_FILE",
    "role_arn": "AWS_ROLE_ARN",
    "role_session_name": "AWS_ROLE_SESSION_NAME",
}


class WebIdentityProvider(Provider):
    """AssumeRoleWithWebIdentity with a token read from a file.

    Explicit ``role_arn`` / ``token_file`` / ``role_session_name`` override the environment and
    the profile.  "Nothing here" when no token file is configured; a token file without a role
    ARN is a :class:`NonRecoverableError`.  ``duration_seconds``, ``policy`` and
    ``policy_arns`` are passed to STS.  ``region`` / ``endpoint_url`` / ``session`` /
    ``client_config``: as for :class:`~creds_core.providers.AssumeRoleProvider` (by default the
    botocore session of the selected profile, so ``AWS_ENDPOINT_URL_STS`` and the profile's
    ``endpoint_url`` apply).
    """

    name = "assume-role-with-web-identity"

    def __init__(
        self,
        *,
        role_arn: str | None = None,
        token_file: str | None = None,
        role_session_name: str | None = None,
        duration_seconds: int | None = None,
        policy: str | None = None,
        policy_arns: list[str] | None = None,
        profile: str | None = None,
        config: ConfigSource | None = None,
        disable_env_vars: bool | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        session: botocore.session.Session | None = None,
        client_config: Config | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._role_arn = role_arn
        self._token_file = token_file
        self._role_session_name = role_session_name
        self._duration_seconds = duration_seconds
        self._policy = policy
        self._policy_arns = policy_arns
        self._profile = profile
        self._config = config if config is not None else ConfigSource(profile, session=session)
        self._disable_env = disable_env_vars
        self.region = region
        self.endpoint_url = endpoint_url
        self._session = session
        self._client_config = client_config
        self._environ = environ
        self._default_session_name = default_session_name()
        self._entry: ClientEntry | None = None
        self._entry_session: botocore.session.Session | None = None
        self._lock = threading.Lock()

    def _settings(self) -> tuple[str | None, str | None, str | None, botocore.session.Session]:
        env = self._environ if self._environ is not None else os.environ
        disable_env = (
            self._disable_env if self._disable_env is not None else self._config.explicit_profile
        )
        snapshot = self._config.snapshot(self.name)
        profile = snapshot.profile(self._profile)

        def setting(key: str, explicit: str | None) -> str | None:
            if explicit is not None:
                return explicit
            if not disable_env and _ENV[key] in env:
                return env[_ENV[key]]
            value = profile.get(key)
            return None if value is None else str(value)

        return (
            setting("web_identity_token_file", self._token_file),
            setting("role_arn", self._role_arn),
            setting("role_session_name", self._role_session_name),
            self._session if self._session is not None else snapshot.session,
        )

    def _client(self, session: botocore.session.Session) -> ClientEntry:
        with self._lock:
            if self._entry is None or self._entry_session is not session:
                self._entry = sts_client(
                    session,
                    None,
                    region=self.region,
                    endpoint_url=self.endpoint_url,
                    config=self._client_config,
                )
                self._entry_session = session
            return self._entry

    def provide(self) -> Credentials:
        try:
            token_file, role_arn, session_name, session = self._settings()
        except CredentialsError:
            raise
        except Exception as exc:
            raise from_exception(exc, provider=self.name, action="reading the settings") from exc
        if not token_file:
            raise not_loaded(self.name, "no web identity token file is configured")
        if not role_arn:
            raise non_recoverable(
                self.name,
                "a web identity token file is configured but no role ARN; set AWS_ROLE_ARN or "
                "the profile's role_arn",
                code="InvalidConfigError",
            )
        try:
            with open(os.path.expanduser(token_file), encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise recoverable(
                self.name,
                f"cannot read the web identity token file {token_file} "
                f"({exc.strerror or type(exc).__name__})",
                code="TokenFileUnreadable",
            ) from exc
        params: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": session_name or self._default_session_name,
            "WebIdentityToken": token,
        }
        if self._duration_seconds is not None:
            params["DurationSeconds"] = self._duration_seconds
        if self._policy is not None:
            params["Policy"] = self._policy
        if self._policy_arns is not None:
            params["PolicyArns"] = [{"arn": a} for a in self._policy_arns]
        action = f"sts:AssumeRoleWithWebIdentity on {role_arn}"
        try:
            entry = self._client(session)
            with quiet_botocore():
                response = entry.client.assume_role_with_web_identity(**params)
        except (ClientError, Exception) as exc:
            raise from_exception(exc, provider=self.name, action=action) from exc
        try:
            return credentials_from_sts(response, self.name)
        except (KeyError, TypeError, ValueError) as exc:
            raise recoverable(
                self.name, f"the {action} answer is unusable", code="MalformedResponse"
            ) from exc

    def __repr__(self) -> str:
        return f"WebIdentityProvider(role_arn={self._role_arn!r}, profile={self._profile!r})"
