"""A local IMDS (v1 and v2) for the tests: the paths, headers, status codes and bodies of
EC2's instance metadata service, with the fault modes of ``server.mode``."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets

from creds_core.testing._server import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_ROLE_NAME,
    SENTINEL_SECRET,
    SENTINEL_TOKEN,
    Clock,
    CredentialServer,
    Mode,
    _iso,
    _Request,
    _Response,
)

__all__ = ["ImdsServer"]

_IMDS_HTML = (
    '<?xml version="1.0" encoding="iso-8859-1"?>\n'
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
    '\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
    '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
    " <head>\n  <title>{code} - {reason}</title>\n </head>\n"
    " <body>\n  <h1>{code} - {reason}</h1>\n </body>\n</html>\n"
)
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
}
# A credentials document cut short: what a proxy or a crashing agent produces.
_TRUNCATED_JSON = b'{\n  "Code" : "Success",\n  "LastUpdated" : "2024-01-01T00:00:00Z",\n  "Acce'


class ImdsServer(CredentialServer):
    """EC2 Instance Metadata Service (IMDSv2, optionally IMDSv1) for the role credentials paths.

    Serves exactly what botocore's ``InstanceMetadataFetcher`` uses: ``PUT /latest/api/token``
    then ``GET /latest/meta-data/iam/security-credentials/`` (role name) and
    ``GET /latest/meta-data/iam/security-credentials/<role>`` (credentials JSON), plus
    ``GET /latest/meta-data/iam/info``.  Counter kinds: ``token``, ``role``, ``credentials``,
    ``info``, ``other``; outcomes ``unauthorized`` (401) and ``bad_request`` (400).

    botocore 1.43's fetcher requests no ``security-credentials-extended`` path and has no 404
    fallback between paths, so none is served; unknown paths answer 404 as IMDS does.

    Faults apply to every path; ``bad_json`` and ``expired`` change the credentials document.
    """

    default_key_prefix = "ASIAIMDS"
    TOKEN_PATH = "/latest/api/token"
    CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials/"
    INFO_PATH = "/latest/meta-data/iam/info"

    def __init__(
        self,
        *,
        role_name: str = DEFAULT_ROLE_NAME,
        require_token: bool = True,
        supports_token: bool = True,
        account_id: str = DEFAULT_ACCOUNT_ID,
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
        #: Role name listed by the metadata service; other names answer 404.
        self.role_name = role_name
        #: IMDSv2 only: GETs without a session token answer 401 (IMDSv1 refused).
        self.require_token = require_token
        #: False makes the token endpoint answer 404, as on hosts without IMDSv2.
        self.supports_token = supports_token
        self.account_id = account_id
        self._tokens: dict[str, datetime.datetime] = {}

    @property
    def tokens_issued(self) -> int:
        """Session tokens handed out (same as ``counts["token"]`` minus refused PUTs)."""
        with self._lock:
            return len(self._tokens)

    def _observe(self, request: _Request) -> str:
        path = request.path
        if path == self.TOKEN_PATH and request.method == "PUT":
            return "token"
        if request.method != "GET":
            return "other"
        if path in (self.CREDENTIALS_PATH, self.CREDENTIALS_PATH.rstrip("/")):
            return "role"
        if path.startswith(self.CREDENTIALS_PATH):
            return "credentials"
        if path == self.INFO_PATH:
            return "info"
        return "other"

    def _page(self, status: int, outcome: str | None = None) -> _Response:
        if outcome is not None:
            self._bump(outcome)
        body = _IMDS_HTML.format(code=status, reason=_REASONS.get(status, "Error"))
        return _Response(status, body.encode("iso-8859-1"), "text/html")

    @staticmethod
    def _text(body: str) -> _Response:
        return _Response(200, body.encode("utf-8"), "text/plain")

    def _respond(self, request: _Request, kind: str, mode: Mode) -> _Response:
        if mode == "error":
            return self._page(500, "errors")
        if mode == "throttle":
            return self._page(429, "throttled")
        if kind == "token":
            return self._token(request)
        if request.path == self.TOKEN_PATH:
            return self._page(405)
        if request.method != "GET":
            return self._page(405)
        token = request.headers.get("x-aws-ec2-metadata-token")
        now = self._now()
        if token is not None:
            with self._lock:
                expires = self._tokens.get(token)
            if expires is None or expires <= now:
                return self._page(401, "unauthorized")
        elif self.require_token:
            return self._page(401, "unauthorized")
        if kind == "role":
            return self._text(self.role_name)
        if kind == "info":
            return self._info(now)
        if kind == "credentials":
            role = request.path[len(self.CREDENTIALS_PATH) :]
            if role != self.role_name:
                return self._page(404)
            return self._credentials(mode, now)
        return self._page(404)

    def _token(self, request: _Request) -> _Response:
        if not self.supports_token:
            return self._page(404)
        if "x-forwarded-for" in request.headers:
            return self._page(403)  # IMDS refuses tokens requested through a proxy
        raw = request.headers.get("x-aws-ec2-metadata-token-ttl-seconds", "")
        try:
            ttl = int(raw)
        except ValueError:
            return self._page(400, "bad_request")
        if not 1 <= ttl <= 21600:
            return self._page(400, "bad_request")
        token = base64.b64encode(b"AQAEA" + secrets.token_bytes(39)).decode("ascii")
        with self._lock:
            self._tokens[token] = self._now() + datetime.timedelta(seconds=ttl)
        return _Response(
            200,
            token.encode("ascii"),
            "text/plain",
            (("X-aws-ec2-metadata-token-ttl-seconds", str(ttl)),),
        )

    def _credentials(self, mode: Mode, now: datetime.datetime) -> _Response:
        if mode == "bad_json":
            return _Response(200, _TRUNCATED_JSON, "text/plain")
        creds = self._issue(mode)
        document = {
            "Code": "Success",
            "LastUpdated": _iso(now),
            "Type": "AWS-HMAC",
            "AccessKeyId": creds.access_key_id,
            "SecretAccessKey": creds.secret_access_key,
            "Token": creds.session_token,
            "Expiration": _iso(creds.expiration),
        }
        return _Response(200, json.dumps(document, indent=2).encode("utf-8"), "text/plain")

    def _info(self, now: datetime.datetime) -> _Response:
        digest = hashlib.sha256(self.role_name.encode("utf-8")).hexdigest().upper()
        document = {
            "Code": "Success",
            "LastUpdated": _iso(now),
            "InstanceProfileArn": (
                f"arn:aws:iam::{self.account_id}:instance-profile/{self.role_name}"
            ),
            "InstanceProfileId": "AIPA" + digest[:17],
        }
        return _Response(200, json.dumps(document, indent=2).encode("utf-8"), "text/plain")
