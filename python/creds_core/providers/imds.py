"""Credentials of the EC2 instance profile role, from the instance metadata service (IMDSv2).

Settings come from botocore's configuration, like botocore's ``InstanceMetadataFetcher``:
``AWS_EC2_METADATA_DISABLED``; ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` /
``ec2_metadata_service_endpoint``; ``AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE`` /
``ec2_metadata_service_endpoint_mode`` (``ipv4`` or ``ipv6``); ``AWS_METADATA_SERVICE_TIMEOUT``
/ ``metadata_service_timeout``; ``AWS_METADATA_SERVICE_NUM_ATTEMPTS`` /
``metadata_service_num_attempts``; ``AWS_EC2_METADATA_V1_DISABLED`` /
``ec2_metadata_v1_disabled``.

Unlike botocore, the IMDSv2 session token is kept and reused until shortly before its TTL ends
(botocore asks for a new one on every refresh), the provider's last credentials are its
``fallback_on_interrupt()`` (static stability), and a failure after a first success is a
recoverable error rather than "no credentials", so the cache keeps serving.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import botocore.awsrequest
import botocore.httpsession
import botocore.session
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.utils import get_environ_proxies, is_valid_uri, resolve_imds_endpoint_mode

from creds_core._core import Credentials, CredentialsError, ProviderError
from creds_core._provider import Provider
from creds_core.providers._config import ConfigSource
from creds_core.providers._util import parse_expiry
from creds_core.providers.errors import (
    from_exception,
    non_recoverable,
    not_loaded,
    recoverable,
)

__all__ = ["InstanceMetadataProvider"]

LOG = logging.getLogger(__name__)

IPV4_ENDPOINT = "http://169.254.169.254/"
IPV6_ENDPOINT = "http://[fd00:ec2::254]/"
_TOKEN_PATH = "latest/api/token"
_CREDENTIALS_PATH = "latest/meta-data/iam/security-credentials/"
_REQUIRED = ("AccessKeyId", "SecretAccessKey", "Token", "Expiration")
_CONNECT_ERRORS = (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError)


@dataclass(frozen=True)
class _Settings:
    disabled: bool
    base_url: str
    timeout: float
    attempts: int
    v1_disabled: bool


class _Unreachable(Exception):
    """Internal: the metadata service did not answer at all (not on EC2?)."""

    def __init__(self, error: CredentialsError) -> None:
        super().__init__(str(error))
        self.error = error


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


class InstanceMetadataProvider(Provider):
    """EC2 instance profile credentials over IMDSv2 (IMDSv1 only when the token call is
    refused, as botocore does, unless v1 is disabled).

    Explicit arguments override the configuration (``profile`` / ``config`` / ``session``
    select it, see :class:`~creds_core.providers.profile.SharedCredentialsProvider`).
    ``token_ttl``: seconds requested for the IMDSv2 session token, reused until
    ``token_refresh_margin`` seconds before it ends.  ``extend_expired``: like botocore, when
    IMDS serves credentials that are expired or about to expire (an IMDS outage), their expiry
    is pushed 17 to 25 minutes ahead, so that they keep being served and retried.
    """

    name = "iam-role"
    canonical_name = "Ec2InstanceMetadata"

    def __init__(
        self,
        *,
        profile: str | None = None,
        config: ConfigSource | None = None,
        session: botocore.session.Session | None = None,
        endpoint: str | None = None,
        endpoint_mode: str | None = None,
        timeout: float | None = None,
        attempts: int | None = None,
        disabled: bool | None = None,
        v1_disabled: bool | None = None,
        token_ttl: int = 21600,
        token_refresh_margin: float = 300.0,
        extend_expired: bool = True,
        environ: Mapping[str, str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= token_ttl <= 21600:
            raise ValueError("token_ttl must be 1..21600 seconds")
        self._config = config if config is not None else ConfigSource(profile, session=session)
        self._endpoint = endpoint
        self._endpoint_mode = endpoint_mode
        self._timeout = timeout
        self._attempts = attempts
        self._disabled = disabled
        self._v1_disabled = v1_disabled
        self.token_ttl = token_ttl
        self.token_refresh_margin = min(token_refresh_margin, token_ttl / 2)
        self.extend_expired = extend_expired
        self._environ = environ
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._token: tuple[str, str, float] | None = None  # (base_url, token, expires at)
        self._http: tuple[tuple[str, float], botocore.httpsession.URLLib3Session] | None = None
        self._last: Credentials | None = None
        #: Session tokens fetched so far (tests and stats).
        self.tokens_fetched = 0

    # -- settings ----------------------------------------------------------------------------

    def _settings(self) -> _Settings:
        env = self._environ if self._environ is not None else os.environ
        disabled = (
            self._disabled
            if self._disabled is not None
            else env.get("AWS_EC2_METADATA_DISABLED", "false").lower() == "true"
        )
        if disabled:
            return _Settings(True, "", 1.0, 1, False)
        try:
            snapshot = self._config.snapshot(self.name)
            session = snapshot.session
            timeout = (
                self._timeout
                if self._timeout is not None
                else float(session.get_config_variable("metadata_service_timeout") or 1)
            )
            attempts = (
                self._attempts
                if self._attempts is not None
                else int(session.get_config_variable("metadata_service_num_attempts") or 1)
            )
            v1_disabled = (
                self._v1_disabled
                if self._v1_disabled is not None
                else _truthy(session.get_config_variable("ec2_metadata_v1_disabled") or False)
            )
            endpoint = self._endpoint or session.get_config_variable(
                "ec2_metadata_service_endpoint"
            )
            if self._endpoint_mode is not None:
                mode = self._endpoint_mode.lower()
                if mode not in ("ipv4", "ipv6"):
                    raise non_recoverable(
                        self.name,
                        f"endpoint mode {self._endpoint_mode!r} is not ipv4 or ipv6",
                        code="InvalidIMDSEndpointModeError",
                    )
            else:
                mode = resolve_imds_endpoint_mode(session)
        except CredentialsError:
            raise
        except Exception as exc:
            raise from_exception(exc, provider=self.name, action="reading IMDS settings") from exc
        base_url = endpoint or (IPV6_ENDPOINT if mode == "ipv6" else IPV4_ENDPOINT)
        if not is_valid_uri(base_url):
            raise non_recoverable(
                self.name,
                f"the IMDS endpoint {base_url!r} is not a valid URI; fix "
                "AWS_EC2_METADATA_SERVICE_ENDPOINT / ec2_metadata_service_endpoint",
                code="InvalidIMDSEndpointError",
            )
        if not base_url.endswith("/"):
            base_url += "/"
        return _Settings(False, base_url, timeout, max(1, attempts), v1_disabled)

    def _session(self, settings: _Settings) -> botocore.httpsession.URLLib3Session:
        key = (settings.base_url, settings.timeout)
        if self._http is None or self._http[0] != key:
            http = botocore.httpsession.URLLib3Session(
                timeout=settings.timeout,  # type: ignore[arg-type]  # the stub says int
                proxies=get_environ_proxies(settings.base_url),
            )
            self._http = (key, http)
        return self._http[1]

    # -- provider ----------------------------------------------------------------------------

    def provide(self) -> Credentials:
        settings = self._settings()
        if settings.disabled:
            raise not_loaded(self.name, "AWS_EC2_METADATA_DISABLED is true")
        try:
            with self._lock:
                creds = self._fetch(settings)
        except ProviderError as exc:
            if self._last is None and type(exc) is ProviderError:
                # botocore ends with no credentials when IMDS fails before it ever answered
                # (5xx, throttling, a bad answer); after a success the failure is recoverable
                # and the cache keeps serving (static stability).
                raise not_loaded(
                    self.name,
                    f"IMDS did not serve credentials and has not before: {exc}",
                    code=getattr(exc, "code", None),
                ) from exc
            raise
        except CredentialsError:
            raise
        except _Unreachable as exc:
            if self._last is None:
                raise not_loaded(
                    self.name,
                    f"no instance metadata service answered at {settings.base_url} (not on "
                    f"EC2?): {str(exc.error).removeprefix(self.name + ': ')}",
                    code=exc.error.code,
                ) from exc.error.__cause__
            raise exc.error from exc.error.__cause__
        except Exception as exc:
            raise from_exception(exc, provider=self.name, action="reading IMDS") from exc
        self._last = creds
        return creds

    def fallback_on_interrupt(self) -> Credentials | None:
        """The last credentials fetched (static stability while IMDS is slow or down)."""
        return self._last

    @property
    def last_credentials(self) -> Credentials | None:
        return self._last

    def reset_token(self) -> None:
        """Forget the IMDSv2 session token (the next fetch asks for a new one)."""
        with self._lock:
            self._token = None

    # -- protocol ----------------------------------------------------------------------------

    def _send(
        self, settings: _Settings, method: str, path: str, headers: dict[str, str]
    ) -> botocore.awsrequest.AWSResponse:
        request = botocore.awsrequest.AWSRequest(
            method=method, url=settings.base_url + path, headers=headers
        )
        return self._session(settings).send(request.prepare())

    def _fetch_token(self, settings: _Settings) -> str | None:
        """A session token; None when IMDS does not do IMDSv2 (then IMDSv1, as botocore)."""
        now = self._monotonic()
        if self._token is not None:
            base, token, expires = self._token
            if base == settings.base_url and now < expires - self.token_refresh_margin:
                return token
            self._token = None
        last_error: Exception | None = None
        for _ in range(settings.attempts):
            try:
                response = self._send(
                    settings,
                    "PUT",
                    _TOKEN_PATH,
                    {"x-aws-ec2-metadata-token-ttl-seconds": str(self.token_ttl)},
                )
            except ReadTimeoutError:
                return None  # the PUT answer was dropped (hop limit): IMDSv1, as botocore does
            except _CONNECT_ERRORS as exc:
                last_error = exc
                continue
            if response.status_code == 200 and response.text:
                self.tokens_fetched += 1
                ttl = _int(response.headers.get("x-aws-ec2-metadata-token-ttl-seconds"))
                ttl = ttl if ttl is not None and ttl > 0 else self.token_ttl
                self._token = (settings.base_url, response.text, now + ttl)
                return response.text
            if response.status_code in (403, 404, 405):
                return None
            if response.status_code == 400:
                raise recoverable(
                    self.name, "IMDS refused the token request (HTTP 400)", code="BadRequest"
                )
            last_error = _status_error(self.name, response.status_code, "the token request")
        if isinstance(last_error, CredentialsError):
            raise last_error
        assert last_error is not None
        error = from_exception(last_error, provider=self.name, action="IMDS token request")
        error.__cause__ = last_error
        raise _Unreachable(error)

    def _get(self, settings: _Settings, path: str, token: str | None) -> str:
        if token is None and settings.v1_disabled:
            raise recoverable(
                self.name,
                "IMDS did not issue a session token and IMDSv1 is disabled "
                "(ec2_metadata_v1_disabled); check the instance's metadata options",
                code="TokenUnavailable",
            )
        headers = {"x-aws-ec2-metadata-token": token} if token is not None else {}
        last_error: Exception | None = None
        for _ in range(settings.attempts):
            try:
                response = self._send(settings, "GET", path, headers)
            except (*_CONNECT_ERRORS, ReadTimeoutError) as exc:
                last_error = exc
                continue
            status = response.status_code
            if status == 200 and response.content:
                return str(response.text)
            if status == 401:
                raise _TokenRejected()
            if status == 404:
                raise not_loaded(
                    self.name,
                    "the instance has no IAM role attached (IMDS answered 404)",
                    code="NoRole",
                )
            last_error = _status_error(self.name, status, f"GET /{path}")
        if isinstance(last_error, CredentialsError):
            raise last_error
        assert last_error is not None
        error = from_exception(last_error, provider=self.name, action=f"GET /{path}")
        error.__cause__ = last_error
        raise _Unreachable(error)

    def _fetch(self, settings: _Settings) -> Credentials:
        for attempt in range(2):
            token = self._fetch_token(settings)
            try:
                role = self._get(settings, _CREDENTIALS_PATH, token).strip().splitlines()[0]
                document = self._get(settings, _CREDENTIALS_PATH + role, token)
            except _TokenRejected:
                self._token = None  # expired or revoked: one retry with a new token
                if attempt == 0 and token is not None:
                    continue
                raise recoverable(
                    self.name, "IMDS rejected the session token (HTTP 401)", code="Unauthorized"
                ) from None
            return self._parse(document, role)
        raise AssertionError("unreachable")

    def _parse(self, text: str, role: str) -> Credentials:
        try:
            document = json.loads(text)
        except ValueError:
            raise recoverable(
                self.name,
                f"IMDS answered something that is not JSON for role {role!r}",
                code="MalformedResponse",
            ) from None
        if not isinstance(document, dict):
            raise recoverable(self.name, "IMDS answer is not an object", code="MalformedResponse")
        missing = [k for k in _REQUIRED if not document.get(k)]
        if missing:
            code = document.get("Code")
            extra = f" (Code {code}: {str(document.get('Message', ''))[:200]})" if code else ""
            raise recoverable(
                self.name,
                f"IMDS credentials for role {role!r} lack {', '.join(missing)}{extra}",
                code=str(code) if code else "MalformedResponse",
            )
        try:
            expiry = parse_expiry(document["Expiration"], "Expiration")
        except ValueError as exc:
            raise recoverable(
                self.name, f"IMDS sent an unusable Expiration: {exc}", code="MalformedResponse"
            ) from exc
        if self.extend_expired and isinstance(expiry, datetime):
            expiry = self._maybe_extend(expiry)
        return Credentials(
            str(document["AccessKeyId"]),
            str(document["SecretAccessKey"]),
            str(document["Token"]),
            expiry,
            account_id=document.get("AccountId") or None,
            provider_name=self.name,
        )

    def _maybe_extend(self, expiry: datetime) -> datetime:
        now = datetime.now(timezone.utc)
        if expiry - now > timedelta(seconds=60):
            return expiry
        extension = timedelta(seconds=15 * 60 + random.randint(120, 600))
        LOG.warning(
            "IMDS served credentials that expire at %s (an IMDS availability issue?); "
            "using them until %s and retrying before then",
            expiry.isoformat(),
            (now + extension).isoformat(),
        )
        return now + extension

    def __repr__(self) -> str:
        return f"InstanceMetadataProvider(endpoint={self._endpoint!r})"


class _TokenRejected(Exception):
    """Internal: HTTP 401, the session token is no longer valid."""


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _status_error(provider: str, status: int, what: str) -> CredentialsError:
    if status == 429:
        return recoverable(provider, f"IMDS throttled {what} (HTTP 429)", code="Throttling")
    return recoverable(provider, f"IMDS answered HTTP {status} to {what}", code=str(status))
