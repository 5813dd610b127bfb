"""Loopback stand-ins for the IAM Identity Center and sign-in endpoints, and their token files.

One :class:`IdentityServer` on 127.0.0.1 answers the three calls botocore makes for
IAM Identity Center (SSO) and ``aws login`` profiles, in the wire format of botocore's models
(rest-json):

* the SSO portal's ``GetRoleCredentials`` (``GET /federation/credentials``, bearer token in
  ``x-amz-sso_bearer_token``): role credentials for a valid access token, 401
  ``UnauthorizedException`` for any other;
* SSO OIDC ``CreateToken`` (``POST /token``, refresh grant): a new access token for the
  current refresh token, 400 ``InvalidGrantException`` otherwise;
* sign-in ``CreateOAuth2Token`` (``POST /v1/token``, refresh grant with a DPoP header): new
  credentials for the current refresh token, 400 ``AccessDeniedException`` (``TOKEN_EXPIRED``)
  otherwise.

Tests point botocore and creds_core at it with ``AWS_ENDPOINT_URL_SSO``,
``AWS_ENDPOINT_URL_SSO_OIDC`` and ``AWS_ENDPOINT_URL_SIGNIN``.  The helpers below write the
token cache files where botocore reads them.  Every request loop is bounded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

ACCOUNT = "123456789012"
_COUNTER = itertools.count(1)
MAX_REQUESTS = 10_000


@dataclass(frozen=True)
class Issued:
    """Credentials the server handed out (no secret)."""

    access_key_id: str
    role: str
    account: str


def _key(prefix: str) -> str:
    return f"{prefix}{next(_COUNTER):0{20 - len(prefix)}d}"


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class IdentityServer:
    """The SSO portal, SSO OIDC and sign-in endpoints on one loopback port."""

    def __init__(self, *, credential_lifetime: float = 3600.0) -> None:
        self.credential_lifetime = credential_lifetime
        self.valid_access_tokens: set[str] = set()
        #: OIDC refresh token -> the access token CreateToken hands out for it.
        self.oidc_refresh_tokens: dict[str, str] = {}
        #: sign-in refresh tokens CreateOAuth2Token accepts.
        self.signin_refresh_tokens: set[str] = set()
        #: what the portal answers instead of credentials (e.g. 429, 500, 403), if set.
        self.portal_status: int | None = None
        self.counts: Counter[str] = Counter()
        #: Every set of credentials issued.
        self.issued: list[Issued] = []
        self.dpop_headers: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> IdentityServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner._handle(self, "GET")

            def do_POST(self) -> None:
                owner._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> IdentityServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- protocol -----------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            total = sum(self.counts.values())
        if total >= MAX_REQUESTS:
            self._send(request, 503, {"message": "request budget spent"}, "ServiceUnavailable")
            return
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        url = urlparse(request.path)
        if method == "GET" and url.path == "/federation/credentials":
            self._role_credentials(request, parse_qs(url.query))
        elif method == "POST" and url.path == "/token":
            self._oidc_token(request, json.loads(body or b"{}"))
        elif method == "POST" and url.path == "/v1/token":
            self._signin_token(request, json.loads(body or b"{}"))
        else:
            self._send(request, 404, {"message": "no such path"}, "ResourceNotFound")

    def _send(
        self,
        request: BaseHTTPRequestHandler,
        status: int,
        document: dict[str, Any],
        error_type: str | None = None,
    ) -> None:
        data = json.dumps(document).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        if error_type is not None:
            request.send_header("x-amzn-ErrorType", error_type)
        request.end_headers()
        request.wfile.write(data)

    def _role_credentials(self, request: BaseHTTPRequestHandler, query: dict[str, Any]) -> None:
        token = request.headers.get("x-amz-sso_bearer_token")
        with self._lock:
            self.counts["GetRoleCredentials"] += 1
            valid = token in self.valid_access_tokens
            status = self.portal_status
        if not valid:
            self._send(request, 401, {"message": "Session token not found or invalid"},
                       "UnauthorizedException")  # fmt: skip
            return
        if status == 403:
            self._send(request, 403, {"message": "No access"}, "ForbiddenException")
            return
        if status == 429:
            self._send(request, 429, {"message": "Slow down"}, "TooManyRequestsException")
            return
        if status is not None:
            self._send(request, status, {"message": "boom"}, "InternalServerException")
            return
        role = query.get("role_name", [""])[0]
        account = query.get("account_id", [""])[0]
        key = _key("ASIASSO")
        with self._lock:
            self.issued.append(Issued(key, role, account))
        expiration = utcnow() + dt.timedelta(seconds=self.credential_lifetime)
        self._send(
            request,
            200,
            {
                "roleCredentials": {
                    "accessKeyId": key,
                    "secretAccessKey": f"sso-secret-{key}",
                    "sessionToken": f"sso-token-{key}",
                    "expiration": int(expiration.timestamp() * 1000),
                }
            },
        )

    def _oidc_token(self, request: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        with self._lock:
            self.counts["CreateToken"] += 1
            refresh = body.get("refreshToken")
            access = self.oidc_refresh_tokens.pop(refresh, None) if refresh else None
            if access is not None:
                new_refresh = _key("refresh-")
                self.oidc_refresh_tokens[new_refresh] = _key("access-")
                self.valid_access_tokens.add(access)
        if access is None:
            self._send(request, 400, {"error": "invalid_grant", "error_description": "expired"},
                       "InvalidGrantException")  # fmt: skip
            return
        self._send(
            request,
            200,
            {
                "accessToken": access,
                "tokenType": "Bearer",
                "expiresIn": 28800,
                "refreshToken": new_refresh,
            },
        )

    def _signin_token(self, request: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        with self._lock:
            self.counts["CreateOAuth2Token"] += 1
            self.dpop_headers.append(request.headers.get("DPoP") or "")
            refresh = body.get("refreshToken")
            ok = refresh in self.signin_refresh_tokens
            if ok:
                self.signin_refresh_tokens.discard(refresh)
                new_refresh = _key("login-refresh-")
                self.signin_refresh_tokens.add(new_refresh)
        if not ok:
            self._send(request, 400, {"error": "TOKEN_EXPIRED", "message": "expired"},
                       "AccessDeniedException")  # fmt: skip
            return
        key = _key("ASIALOGIN")
        with self._lock:
            self.issued.append(Issued(key, "login", ACCOUNT))
        self._send(
            request,
            200,
            {
                "accessToken": {
                    "accessKeyId": key,
                    "secretAccessKey": f"login-secret-{key}",
                    "sessionToken": f"login-token-{key}",
                },
                "tokenType": "aws_sigv4",
                "expiresIn": 900,
                "refreshToken": new_refresh,
            },
        )


# -- token cache files ---------------------------------------------------------------------------


def sso_cache_file(cache_dir: Path, session_or_start_url: str) -> Path:
    """Where botocore keeps the token of an sso-session (by name) or a legacy start URL."""
    digest = hashlib.sha1(session_or_start_url.encode()).hexdigest()
    return cache_dir / f"{digest}.json"


def write_sso_token(
    server: IdentityServer,
    cache_dir: Path,
    name: str,
    *,
    expires_in: float = 8 * 3600,
    refreshable: bool = True,
    registration_expires_in: float = 90 * 86400,
    valid: bool = True,
    start_url: str = "https://d-123.awsapps.com/start",
    region: str = "us-east-1",
) -> Path:
    """An SSO access token in the cache (valid at the portal unless ``valid=False``); with
    ``refreshable``, the OIDC registration and refresh token botocore refreshes with."""
    access = _key("access-")
    if valid and expires_in > 0:  # the portal, like the real one, rejects an expired token
        server.valid_access_tokens.add(access)
    token: dict[str, Any] = {
        "startUrl": start_url,
        "region": region,
        "accessToken": access,
        "expiresAt": iso(utcnow() + dt.timedelta(seconds=expires_in)),
    }
    if refreshable:
        refresh = _key("refresh-")
        server.oidc_refresh_tokens[refresh] = _key("access-")
        token.update(
            {
                "clientId": "client-id",
                "clientSecret": "client-secret",
                "refreshToken": refresh,
                "registrationExpiresAt": iso(
                    utcnow() + dt.timedelta(seconds=registration_expires_in)
                ),
            }
        )
    path = sso_cache_file(cache_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(token))
    return path


def login_cache_file(cache_dir: Path, session: str) -> Path:
    digest = hashlib.sha256(session.encode()).hexdigest()
    return cache_dir / f"{digest}.json"


def _dpop_key_pem() -> str:
    """A fresh P-256 private key in PEM (SEC1 DER), as ``aws login`` stores it."""
    import base64

    from awscrt.crypto import EC, ECType  # type: ignore[import-not-found]

    # awscrt cannot read back some of the keys it exports (about 1 in 300 here: "Key format
    # is not supported", presumably a private scalar with a leading zero byte); botocore reads
    # the key with awscrt, so only a key that reads back is a usable `aws login` key.
    for _ in range(100):
        der = EC.new_generate(ECType.P_256).export_key(_sec1_format())
        try:
            EC.new_key_from_der_data(der)
        except (RuntimeError, ValueError):
            continue
        break
    text = base64.b64encode(der).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return (
        "-----BEGIN EC PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END EC PRIVATE KEY-----\n"
    )


def _sec1_format() -> Any:
    from awscrt.crypto import ECExportFormat  # type: ignore[import-not-found]

    return ECExportFormat.SEC1


def write_login_token(
    server: IdentityServer,
    cache_dir: Path,
    session: str,
    *,
    expires_in: float = 900,
    drop: tuple[str, ...] = (),
    sign_in_region: str | None = "us-east-1",
) -> Path:
    """An ``aws login`` session in the cache: credentials, refresh token and DPoP key."""
    refresh = _key("login-refresh-")
    server.signin_refresh_tokens.add(refresh)
    key = _key("ASIALOGINCACHE")[:20]
    token: dict[str, Any] = {
        "accessToken": {
            "accessKeyId": key,
            "secretAccessKey": f"login-secret-{key}",
            "sessionToken": f"login-token-{key}",
            "accountId": ACCOUNT,
            "expiresAt": iso(utcnow() + dt.timedelta(seconds=expires_in)),
        },
        "tokenType": "aws_sigv4",
        "refreshToken": refresh,
        "idToken": "id-token",
        "clientId": "arn:aws:signin:::devtools/same-device",
        "dpopKey": _dpop_key_pem(),
    }
    if sign_in_region:
        token["signInRegion"] = sign_in_region
    for name in drop:
        token.pop(name, None)
    path = login_cache_file(cache_dir, session)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(token))
    return path
