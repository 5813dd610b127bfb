"""Credentials of an IAM role, assumed with STS AssumeRole from source credentials.

The source is a creds_core :class:`~creds_core.CredentialCache` (any other provider is wrapped
in one, so source credentials are cached and refreshed on their own schedule).  One botocore
STS client per (botocore session, source, region, endpoint) is built once and reused by every
refresh; it signs each call with the source cache's current credentials, and its own retries
are minimal because the cache does the backing off.
"""

from __future__ import annotations

import getpass
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.utils import ArnParser

from creds_core._core import (
    CredentialCache,
    CredentialCycleError,
    Credentials,
    CredentialsError,
    CredentialsNotLoaded,
    NonRecoverableError,
    ProviderError,
    UserActionRequired,
)
from creds_core._provider import Provider
from creds_core.providers._config import new_session
from creds_core.providers._sts import ClientEntry, quiet_botocore, sts_client
from creds_core.providers.errors import (
    from_exception,
    make_error,
    needs_user,
    non_recoverable,
    recoverable,
)

__all__ = ["AssumeRoleProvider", "default_session_name", "shared_session"]

#: Error codes meaning "the source credentials were rejected": the source is invalidated and
#: the call retried once with fresh source credentials.
_SOURCE_REJECTED = frozenset({"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId"})

PolicyArns = Iterable[Union[str, Mapping[str, str]]]
Tags = Union[Mapping[str, str], Iterable[Mapping[str, str]]]

_SHARED_LOCK = threading.Lock()
_SHARED: botocore.session.Session | None = None


def shared_session() -> botocore.session.Session:
    """The process-wide botocore session used when a provider is given none."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = new_session()
        return _SHARED


def default_session_name() -> str:
    """botocore's default role session name: ``botocore-session-<epoch seconds>``."""
    return f"botocore-session-{int(time.time())}"


def _account_of(arn: Any) -> str | None:
    if isinstance(arn, str) and ArnParser.is_arn(arn):
        account = ArnParser().parse_arn(arn).get("account")
        return str(account) if account else None
    return None


def credentials_from_sts(response: Mapping[str, Any], provider_name: str) -> Credentials:
    """Credentials from an AssumeRole* response (account id taken from the assumed role ARN)."""
    creds = response["Credentials"]
    return Credentials(
        creds["AccessKeyId"],
        creds["SecretAccessKey"],
        creds.get("SessionToken"),
        creds.get("Expiration"),
        account_id=_account_of((response.get("AssumedRoleUser") or {}).get("Arn")),
        provider_name=provider_name,
    )


def as_source_cache(
    source: Any, *, name: str, options: Mapping[str, Any] | None = None
) -> CredentialCache:
    """``source`` itself when it is a CredentialCache, else a cache around it."""
    if isinstance(source, CredentialCache):
        return source
    kwargs: dict[str, Any] = {"load_timeout": 30.0, "name": name}
    kwargs.update(options or {})
    return CredentialCache(source, **kwargs)


class AssumeRoleProvider(Provider):
    """Assume ``role_arn`` with credentials from ``source``.

    ``source``: a :class:`CredentialCache`, or any provider (wrapped in a cache built with
    ``source_cache_options``).  The other arguments are AssumeRole's: ``role_session_name``
    (default ``botocore-session-<epoch>``, fixed for the provider's life, as in botocore),
    ``external_id``, ``duration_seconds``, ``policy`` (JSON text or a mapping),
    ``policy_arns``, ``tags`` (mapping or ``[{"Key":..., "Value":...}]``),
    ``transitive_tag_keys``, ``source_identity``, and MFA: ``serial_number`` with
    ``mfa_token``, a callable returning the current code, called only when STS is called.

    ``region`` / ``endpoint_url`` default to the botocore ``session``'s configuration (region,
    ``AWS_ENDPOINT_URL_STS``, the profile's ``endpoint_url``...); ``session`` defaults to a
    process-wide one.  ``client_config`` is merged over the default (2 attempts in standard
    mode, 5 s connect and 15 s read timeouts).

    When STS rejects the source credentials as expired or invalid, the source cache is
    invalidated and the call retried once.  The returned credentials' ``provider_name`` is
    ``assume-role``.
    """

    name = "assume-role"
    #: botocore's method name, set as provider_name on the credentials.
    METHOD = "assume-role"

    def __init__(
        self,
        source: Any,
        role_arn: str,
        *,
        role_session_name: str | None = None,
        external_id: str | None = None,
        duration_seconds: int | None = None,
        policy: str | Mapping[str, Any] | None = None,
        policy_arns: PolicyArns | None = None,
        tags: Tags | None = None,
        transitive_tag_keys: Iterable[str] | None = None,
        source_identity: str | None = None,
        serial_number: str | None = None,
        mfa_token: Callable[[], str] | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        session: botocore.session.Session | None = None,
        client_config: Config | None = None,
        source_cache_options: Mapping[str, Any] | None = None,
        source_label: str | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(role_arn, str) or not role_arn:
            raise ValueError("role_arn must be a non-empty string")
        if serial_number is not None and mfa_token is None:
            raise ValueError("serial_number needs mfa_token, a callable returning the MFA code")
        if duration_seconds is not None and (
            isinstance(duration_seconds, bool) or not isinstance(duration_seconds, int)
        ):
            raise TypeError("duration_seconds must be an int")
        if name is not None:
            self.name = name
        self.role_arn = role_arn
        self.role_session_name = role_session_name or default_session_name()
        self.region = region
        self.endpoint_url = endpoint_url
        self._source = as_source_cache(
            source, name=f"source of {role_arn}", options=source_cache_options
        )
        self._source_label = source_label or f"the source of {role_arn}"
        self._session = session
        self._client_config = client_config
        self._mfa_token = mfa_token
        self._serial_number = serial_number
        self._entry: ClientEntry | None = None
        self._entry_lock = threading.Lock()

        params: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": self.role_session_name,
        }
        if external_id is not None:
            params["ExternalId"] = external_id
        if duration_seconds is not None:
            params["DurationSeconds"] = duration_seconds
        if policy is not None:
            params["Policy"] = policy if isinstance(policy, str) else json.dumps(policy)
        if policy_arns is not None:
            params["PolicyArns"] = [
                {"arn": p} if isinstance(p, str) else dict(p) for p in policy_arns
            ]
        if tags is not None:
            params["Tags"] = (
                [{"Key": k, "Value": v} for k, v in tags.items()]
                if isinstance(tags, Mapping)
                else [dict(t) for t in tags]
            )
        if transitive_tag_keys is not None:
            params["TransitiveTagKeys"] = list(transitive_tag_keys)
        if source_identity is not None:
            params["SourceIdentity"] = source_identity
        if serial_number is not None:
            params["SerialNumber"] = serial_number
        self._params = params

    @property
    def source(self) -> CredentialCache:
        """The cache the source credentials come from."""
        return self._source

    @property
    def client(self) -> Any:
        """The (shared) botocore STS client, built on first use."""
        return self._client_entry().client

    def _client_entry(self) -> ClientEntry:
        with self._entry_lock:
            if self._entry is None:
                session = self._session if self._session is not None else shared_session()
                try:
                    self._entry = sts_client(
                        session,
                        self._source,
                        region=self.region,
                        endpoint_url=self.endpoint_url,
                        config=self._client_config,
                    )
                except Exception as exc:
                    raise from_exception(
                        exc, provider=self.name, action="creating the STS client"
                    ) from exc
            return self._entry

    def _source_credentials(self) -> Credentials:
        try:
            return self._source.get()
        except CredentialCycleError:
            raise
        except CredentialsError as exc:
            raise self._source_error(exc) from exc

    def _source_error(self, exc: CredentialsError) -> CredentialsError:
        """What a failure of the source cache becomes for this role (both doors)."""
        if isinstance(exc, CredentialsNotLoaded):
            return non_recoverable(
                self.name,
                f"{self._source_label} has no credentials ({exc}); configure credentials for it",
                code="NoSourceCredentials",
            )
        if isinstance(exc, NonRecoverableError):
            # A source that needs the user (e.g. `aws sso login`) keeps that kind: the role's
            # cache then serves its valid credentials and raises at once after, as the source.
            return make_error(
                UserActionRequired if isinstance(exc, UserActionRequired) else NonRecoverableError,
                self.name,
                f"{self._source_label} failed: {exc}",
                code=exc.code,
            )
        return make_error(
            ProviderError, self.name, f"{self._source_label} failed: {exc}", code=exc.code
        )

    def _call_params(self) -> dict[str, Any]:
        params = dict(self._params)
        if self._serial_number is not None:
            assert self._mfa_token is not None
            try:
                params["TokenCode"] = self._mfa_token()
            except CredentialsError:
                raise
            except Exception as exc:
                raise needs_user(
                    self.name,
                    f"the MFA token callable failed ({type(exc).__name__}); an MFA code for "
                    f"{self._serial_number} is needed to assume {self.role_arn}: give one "
                    "(mfa_token) from a terminal or a program that can ask the user",
                    code="MfaTokenUnavailable",
                ) from exc
        return params

    def provide(self) -> Credentials:
        source_creds = self._source_credentials()
        entry = self._client_entry()
        assert entry.credentials is not None
        action = f"sts:AssumeRole on {self.role_arn}"
        for attempt in range(2):
            params = self._call_params()
            entry.credentials.pin(source_creds)
            try:
                with quiet_botocore():
                    response = entry.client.assume_role(**params)
            except ClientError as exc:
                code = (exc.response.get("Error") or {}).get("Code")
                if attempt == 0 and code in _SOURCE_REJECTED:
                    self._source.invalidate(source_creds.access_key_id)
                    source_creds = self._source_credentials()
                    continue
                raise from_exception(exc, provider=self.name, action=action) from exc
            except Exception as exc:
                raise from_exception(exc, provider=self.name, action=action) from exc
            finally:
                entry.credentials.pin(None)
            try:
                return credentials_from_sts(response, self.METHOD)
            except (KeyError, TypeError, ValueError) as exc:
                raise recoverable(
                    self.name, f"the {action} answer is unusable", code="MalformedResponse"
                ) from exc
        raise AssertionError("unreachable")

    def __repr__(self) -> str:
        return (
            f"AssumeRoleProvider(role_arn={self.role_arn!r}, "
            f"role_session_name={self.role_session_name!r}, source={self._source.name!r})"
        )


def prompt_mfa(serial_number: str) -> Callable[[], str]:
    """An ``mfa_token`` callable that asks on the terminal, as botocore does."""

    def ask() -> str:
        return getpass.getpass(f"Enter MFA code for {serial_number}: ")

    return ask
