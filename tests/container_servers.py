"""A local ECS / EKS Pod Identity container credentials endpoint for the tests, with the
fault modes of ``server.mode``."""

from __future__ import annotations

import json

from creds_core.testing._server import (
    DEFAULT_ROLE_ARN,
    SENTINEL_SECRET,
    SENTINEL_TOKEN,
    Clock,
    CredentialServer,
    Mode,
    _iso,
    _Request,
    _Response,
)

__all__ = ["ContainerServer"]


class ContainerServer(CredentialServer):
    """The ECS / EKS Pod Identity container credentials endpoint.

    ``GET <path>`` (``credentials_url`` is the value for ``AWS_CONTAINER_CREDENTIALS_FULL_URI``)
    answers the JSON document the ECS agent sends.  When ``auth_token`` is set, the request's
    ``Authorization`` header must equal it, else 401 with a JSON error and no credentials; the
    last header seen is kept in ``last_authorization`` so tests can check that token files are
    re-read.  Counter kinds: ``credentials``, ``other``; outcome ``unauthorized``.
    """

    default_key_prefix = "ASIACONT"

    def __init__(
        self,
        *,
        path: str | None = "/creds",
        auth_token: str | None = None,
        role_arn: str = DEFAULT_ROLE_ARN,
        account_id: str | None = None,
        secret_access_key: str = SENTINEL_SECRET,
        session_token: str = SENTINEL_TOKEN,
        credential_lifetime: float = 3600.0,
        key_prefix: str | None = None,
        port: int = 0,
        mode: Mode = "ok",
        latency: float = 2.0,
        delay: float = 0.0,
        hang_seconds: float = 30.0,
        max_requests: int = 100_000,
        max_seconds: float = 600.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            secret_access_key=secret_access_key,
            session_token=session_token,
            credential_lifetime=credential_lifetime,
            key_prefix=key_prefix,
            port=port,
            mode=mode,
            latency=latency,
            delay=delay,
            hang_seconds=hang_seconds,
            max_requests=max_requests,
            max_seconds=max_seconds,
            clock=clock,
        )
        if path is not None and not path.startswith("/"):
            raise ValueError("path must start with '/'")
        #: The credentials path; None serves credentials on every path.
        self.path = path
        #: Required Authorization header value; None: not required.  Settable at runtime.
        self.auth_token = auth_token
        self.role_arn = role_arn
        #: Sent as "AccountId" when set (EKS Pod Identity sends it, ECS does not).
        self.account_id = account_id
        self._last_authorization: str | None = None

    @property
    def credentials_url(self) -> str:
        """Full credentials URL, for ``AWS_CONTAINER_CREDENTIALS_FULL_URI``."""
        return self.url + (self.path if self.path is not None else "/creds")

    @property
    def last_authorization(self) -> str | None:
        """The Authorization header of the latest request (None if it had none)."""
        with self._lock:
            return self._last_authorization

    def _observe(self, request: _Request) -> str:
        self._last_authorization = request.headers.get("authorization")
        if request.method == "GET" and (self.path is None or request.path == self.path):
            return "credentials"
        return "other"

    @staticmethod
    def _error(status: int, code: str, message: str) -> _Response:
        body = json.dumps({"code": code, "message": message}).encode("utf-8")
        return _Response(status, body, "application/json")

    def _respond(self, request: _Request, kind: str, mode: Mode) -> _Response:
        if mode == "error":
            self._bump("errors")
            return self._error(500, "InternalServerError", "Internal server error")
        if mode == "throttle":
            self._bump("throttled")
            return self._error(429, "ThrottlingException", "Rate exceeded")
        if kind != "credentials":
            if request.method != "GET":
                return self._error(405, "MethodNotAllowed", "Only GET is supported")
            return self._error(404, "NotFound", "No credentials at this path")
        expected = self.auth_token
        if expected is not None and request.headers.get("authorization") != expected:
            self._bump("unauthorized")
            return self._error(
                401, "AccessDeniedException", "Authorization token is missing or invalid"
            )
        if mode == "bad_json":
            return _Response(200, b'{"AccessKeyId": "ASIA', "application/json")
        creds = self._issue(mode)
        document: dict[str, str] = {
            "AccessKeyId": creds.access_key_id,
            "Expiration": _iso(creds.expiration),
            "RoleArn": self.role_arn,
            "SecretAccessKey": creds.secret_access_key,
            "Token": creds.session_token,
        }
        if self.account_id is not None:
            document["AccountId"] = self.account_id
        return _Response(200, json.dumps(document).encode("utf-8"), "application/json")
