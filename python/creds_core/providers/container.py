"""Credentials from the ECS / EKS Pod Identity container credentials endpoint.

``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` is a path on ``http://169.254.170.2``;
``AWS_CONTAINER_CREDENTIALS_FULL_URI`` is a full URL, accepted over https to any host and over
http only to a loopback address or one of the hosts botocore allows (the ECS and EKS agents).
``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`` (preferred, re-read on every fetch because the agent
rotates it) or ``AWS_CONTAINER_AUTHORIZATION_TOKEN`` is sent as the ``Authorization`` header.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import botocore.awsrequest
import botocore.httpsession
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from creds_core._core import Credentials
from creds_core._provider import Provider
from creds_core.providers._util import parse_expiry
from creds_core.providers.errors import (
    THROTTLING_CODES,
    from_exception,
    non_recoverable,
    not_loaded,
    recoverable,
)

__all__ = ["ALLOWED_HOSTS", "ContainerProvider"]

#: Hosts botocore's ``ContainerMetadataFetcher`` accepts over plain http (besides loopback).
ALLOWED_HOSTS: tuple[str, ...] = ("169.254.170.2", "169.254.170.23", "fd00:ec2::23", "localhost")

_NETWORK_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ContainerProvider(Provider):
    """ECS task role / EKS Pod Identity credentials.

    "Nothing here" unless one of the URI variables is set.  ``timeout`` is per attempt;
    ``attempts`` tries are made ``retry_delay`` seconds apart for network failures, 5xx and
    429 answers (botocore: 2 s, 3 attempts, 1 s).  401/403 (a bad or missing authorization
    token) and a disallowed URL are :class:`NonRecoverableError`; everything else that fails
    is a recoverable :class:`ProviderError`.

    ``environ`` defaults to ``os.environ`` (read on every fetch); ``relative_uri_base`` is the
    endpoint of relative URIs (tests point it at a local server).
    """

    name = "container-role"
    canonical_name = "EcsContainer"

    RELATIVE_URI = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
    FULL_URI = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
    AUTH_TOKEN = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
    AUTH_TOKEN_FILE = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
    RELATIVE_URI_BASE = "http://169.254.170.2"

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        timeout: float = 2.0,
        attempts: int = 3,
        retry_delay: float = 1.0,
        relative_uri_base: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._environ = environ
        self.timeout = timeout
        self.attempts = attempts
        self.retry_delay = retry_delay
        self._relative_base = relative_uri_base or self.RELATIVE_URI_BASE
        self._sleep = sleep
        # botocore's stub says int, urllib3 takes a float.
        self._http = botocore.httpsession.URLLib3Session(timeout=timeout)  # type: ignore[arg-type]

    def _env(self) -> Mapping[str, str]:
        return self._environ if self._environ is not None else os.environ

    def url(self) -> str | None:
        """The credentials URL the environment selects (None: not in a container)."""
        env = self._env()
        relative = env.get(self.RELATIVE_URI)
        if relative:
            return self._relative_base.rstrip("/") + relative
        return env.get(self.FULL_URI) or None

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme == "https" and host:
            return
        if parts.scheme == "http" and (_is_loopback(host) or host in ALLOWED_HOSTS):
            return
        raise non_recoverable(
            self.name,
            f"{self.FULL_URI} host {host or _safe_url(url)!r} is not allowed: use https, a "
            f"loopback address or one of {', '.join(ALLOWED_HOSTS)}",
            code="InvalidConfig",
        )

    def _authorization(self) -> str | None:
        env = self._env()
        token: str | None
        path = env.get(self.AUTH_TOKEN_FILE)
        if path:
            try:
                with open(path, encoding="utf-8") as f:
                    token = f.read()
            except OSError as exc:
                raise recoverable(
                    self.name,
                    f"cannot read the authorization token file {path} named by "
                    f"{self.AUTH_TOKEN_FILE} ({exc.strerror or type(exc).__name__})",
                    code="TokenFileUnreadable",
                ) from exc
            source = f"the token file {path}"
        else:
            token = env.get(self.AUTH_TOKEN)
            source = self.AUTH_TOKEN
        if token is None:
            return None
        token = token.strip()
        if "\r" in token or "\n" in token:
            raise non_recoverable(
                self.name,
                f"the authorization token from {source} contains a line break; it must be a "
                "single line",
                code="InvalidToken",
            )
        return token

    def provide(self) -> Credentials:
        url = self.url()
        if url is None:
            raise not_loaded(self.name, f"neither {self.RELATIVE_URI} nor {self.FULL_URI} is set")
        if not self._env().get(self.RELATIVE_URI):  # a relative URI's base is trusted
            self._check_url(url)
        last: Exception | None = None
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(self.retry_delay)
            # The token is read again for every request: the agent rotates the file.
            headers = {"Accept": "application/json"}
            token = self._authorization()
            if token is not None:
                headers["Authorization"] = token
            try:
                return self._fetch(url, headers)
            except _Retry as retry:
                last = retry.error
        assert last is not None
        raise last

    def _fetch(self, url: str, headers: dict[str, str]) -> Credentials:
        request = botocore.awsrequest.AWSRequest(method="GET", url=url, headers=headers)
        try:
            response = self._http.send(request.prepare())
        except _NETWORK_ERRORS as exc:
            error = from_exception(exc, provider=self.name, action=f"GET {_safe_url(url)}")
            error.__cause__ = exc
            raise _Retry(error) from exc
        except Exception as exc:
            raise from_exception(exc, provider=self.name, action=f"GET {_safe_url(url)}") from exc
        status = response.status_code
        body: bytes = response.content or b""
        if status != 200:
            code, message = _error_details(body)
            detail = f" ({code}: {message})" if code or message else ""
            if status in (401, 403):
                raise non_recoverable(
                    self.name,
                    f"the container credentials endpoint refused the request with HTTP "
                    f"{status}{detail}; check {self.AUTH_TOKEN_FILE} / {self.AUTH_TOKEN}",
                    code=code or str(status),
                )
            if status == 429 or status >= 500 or code in THROTTLING_CODES:
                raise _Retry(
                    recoverable(
                        self.name,
                        f"the container credentials endpoint answered HTTP {status}{detail}",
                        code=code or ("Throttling" if status == 429 else str(status)),
                    )
                )
            raise recoverable(
                self.name,
                f"the container credentials endpoint answered HTTP {status}{detail}",
                code=code or str(status),
            )
        return self._parse(body)

    def _parse(self, body: bytes) -> Credentials:
        try:
            document = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _Retry(
                recoverable(
                    self.name,
                    "the container credentials endpoint answered something that is not JSON",
                    code="MalformedResponse",
                )
            ) from None
        if not isinstance(document, dict):
            raise recoverable(
                self.name, "the answer is not a JSON object", code="MalformedResponse"
            )
        missing = [
            k
            for k in ("AccessKeyId", "SecretAccessKey", "Token", "Expiration")
            if not document.get(k)
        ]
        if missing:
            raise recoverable(
                self.name,
                f"the container credentials answer lacks {', '.join(missing)}",
                code="MalformedResponse",
            )
        try:
            return Credentials(
                str(document["AccessKeyId"]),
                str(document["SecretAccessKey"]),
                str(document["Token"]),
                parse_expiry(document["Expiration"], "Expiration"),
                account_id=document.get("AccountId") or None,
                provider_name=self.name,
            )
        except ValueError as exc:
            raise recoverable(
                self.name,
                f"the container credentials answer is unusable: {exc}",
                code="MalformedResponse",
            ) from exc

    def __repr__(self) -> str:
        url = self.url()
        return f"ContainerProvider(url={_safe_url(url) if url else None!r})"


class _Retry(Exception):
    """Internal: a failure worth another attempt; carries the error to raise at the end."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _error_details(body: bytes) -> tuple[str | None, str]:
    try:
        document: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, ""
    if not isinstance(document, dict):
        return None, ""
    code = document.get("code") or document.get("Code")
    message = document.get("message") or document.get("Message") or ""
    return (str(code) if code else None), str(message)[:300]


def _safe_url(url: str) -> str:
    """The URL without its query string (which could carry a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
