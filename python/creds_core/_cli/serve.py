"""``creds-core serve``: one credential cache for every process on a host.

It serves the container credentials endpoint protocol (what the ECS agent and EKS Pod Identity
serve, and what every AWS SDK reads through ``AWS_CONTAINER_CREDENTIALS_FULL_URI``): a ``GET``
of exactly ``/credentials`` answers ``{"AccessKeyId", "SecretAccessKey", "Token",
"Expiration", "AccountId"?}``, a ``HEAD`` the same status and headers without the body, and
any other target (``//credentials``, ``/credentials/``, a query string) is a 404.  Every
answer comes from one :class:`~creds_core.CredentialCache` (``get()`` per request: the
lock-free path while the credentials are fresh), so a thousand processes make the refresh
calls of one.

Safety: it listens on a loopback address only (127.0.0.0/8 or ::1; anything else is refused
with exit code 4) and every request must carry a random token (``secrets.token_urlsafe``,
new at each start, compared in constant time) in its ``Authorization`` header: 401 without
one, 403 with a wrong one, and no credentials in either answer.  No CORS header is ever sent,
so a web page cannot read an answer.  A request whose ``Host`` header is not a loopback name
(``localhost``) or address (127.0.0.0/8, ``[::1]``), with or without a port, is refused with
403 before anything else is looked at: a DNS-rebinding page (a name of the attacker's that
resolves to 127.0.0.1) sends its own name as ``Host``.  Requests are logged (at DEBUG) by
method and status only.

The two variables a process exports to use it are printed on stdout as shell lines, together
with lines that unset the variables botocore would prefer to them
(``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI``, ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``), for a
POSIX shell, PowerShell (the default on Windows) or cmd (``--format``).
It stops on SIGINT (Ctrl-C) or SIGTERM, and on Windows on Ctrl-Break (SIGBREAK: Windows
delivers no SIGTERM to a process), with exit code 0; or after ``--max-requests`` connections
or ``--max-seconds`` seconds.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from creds_core._cli.common import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    CliError,
    iso_utc,
    make_cache,
    mask_key,
    one_line,
    selected_profile,
)
from creds_core._cli.shells import DEFAULT_SHELL, shell_lines
from creds_core._core import CredentialCache, Credentials, CredentialsError, ProviderTimedOut
from creds_core._net import bind_exclusively

__all__ = [
    "NO_EXPIRY_LIFETIME",
    "PATH",
    "CredentialEndpoint",
    "check_host",
    "is_loopback_host",
    "run",
]

LOG = logging.getLogger("creds_core.serve")

#: The path credentials are served on.
PATH = "/credentials"
#: Credentials without expiry are served with an Expiration this far ahead (the protocol
#: requires one); clients then simply come back for the same credentials.
NO_EXPIRY_LIFETIME = timedelta(hours=1)
_POLL = 0.1
#: Seconds the first fetch may take (a role with an MFA prompt, a slow credential_process);
#: afterwards each request waits at most the cache's load_timeout (``--timeout``).
STARTUP_TIMEOUT = 60.0
_CLIENT_TIMEOUT = 10.0


def check_host(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The loopback address ``host`` names; CliError (exit code 4) for anything else."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise CliError(
            f"refusing to serve credentials on {host!r}: only a loopback address is allowed "
            "(127.0.0.1, 127.0.0.0/8 or ::1), so that no other host can reach them; use "
            "--host 127.0.0.1",
            EXIT_REFUSED,
        )
    return address


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_loopback_host(value: str | None) -> bool:
    """Whether a ``Host`` header names this host by a loopback name or address (with or
    without a port).  Anything else, or no header, is what a DNS-rebinding page sends."""
    if not value:
        return False
    host = value.strip().lower()
    if host.startswith("["):  # [::1] or [::1]:port
        end = host.find("]")
        name, rest = host[1:end], host[end + 1 :]
        if end < 0 or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return False
    elif host.count(":") == 1:  # name:port or a.b.c.d:port
        name, _, port = host.partition(":")
        if not port.isdigit():
            return False
    else:  # a name, an IPv4 address, or a bare IPv6 address
        name = host
    name = name.rstrip(".")
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class CredentialEndpoint:
    """The protocol: answers one request from the cache, checking the token."""

    def __init__(self, cache: CredentialCache, token: str, path: str = PATH) -> None:
        self.cache = cache
        self.path = path
        self._token = token.encode("utf-8")
        self._lock = threading.Lock()
        self.answered: dict[int, int] = {}

    def _count(self, status: int) -> None:
        with self._lock:
            self.answered[status] = self.answered.get(status, 0) + 1

    def answer(
        self, method: str, target: str, authorization: str | None, host: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) for a request; credentials only for the right token,
        and only when the request's ``Host`` header is a loopback name or address."""
        status, body = self._answer(method, target, authorization, host)
        self._count(status)
        return status, body

    def _answer(
        self, method: str, target: str, authorization: str | None, host: str | None
    ) -> tuple[int, dict[str, Any]]:
        if not is_loopback_host(host):
            return 403, {
                "code": "InvalidHost",
                "message": "the Host header must be a loopback name or address "
                "(localhost, 127.0.0.1, [::1]); requests through other names are refused "
                "(DNS rebinding)",
            }
        if authorization is None:
            return 401, {
                "code": "Unauthorized",
                "message": "no Authorization header; set AWS_CONTAINER_AUTHORIZATION_TOKEN to "
                "the token creds-core serve printed",
            }
        given = authorization.encode("utf-8", "replace")
        if not hmac.compare_digest(given, self._token):
            return 403, {
                "code": "AccessDenied",
                "message": "wrong authorization token; use the one this creds-core serve "
                "printed (a new one is made at every start)",
            }
        # HEAD is GET without the body (RFC 9110), so a client may probe the endpoint.
        if method not in ("GET", "HEAD"):
            return 405, {"code": "MethodNotAllowed", "message": "only GET and HEAD are supported"}
        # The exact path, no query string: SDKs request the URI this server printed as it is,
        # so anything else ("//credentials", "/credentials/", "/credentials?x") is not theirs.
        if target != self.path:
            return 404, {"code": "NotFound", "message": f"credentials are served on {self.path}"}
        try:
            creds = self.cache.get()
        except CredentialsError as exc:
            LOG.warning("no credentials to serve: %s", one_line(str(exc)))
            return 503, {"code": "CredentialsUnavailable", "message": one_line(str(exc))}
        except Exception as exc:  # a provider bug: the type only, its message could be anything
            LOG.error("no credentials to serve: unexpected %s", type(exc).__name__)
            return 500, {"code": "InternalError", "message": type(exc).__name__}
        expiry = creds.expiry
        if expiry is None:
            expiry = datetime.now(timezone.utc) + NO_EXPIRY_LIFETIME
        document: dict[str, Any] = {
            "AccessKeyId": creds.access_key_id,
            "SecretAccessKey": creds.secret_access_key,
            "Token": creds.session_token or "",
            "Expiration": iso_utc(expiry),
        }
        if creds.account_id:
            document["AccountId"] = creds.account_id
        return 200, document


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so that stopping never waits for idle clients.
    protocol_version = "HTTP/1.0"
    server_version = "creds-core"
    timeout = _CLIENT_TIMEOUT

    def version_string(self) -> str:
        return self.server_version

    def _endpoint(self) -> CredentialEndpoint:
        return cast(_Server, self.server).endpoint

    def _target(self) -> str:
        """The request target as the client sent it: ``self.path`` has a leading ``//``
        collapsed to ``/`` by http.server (Python 3.11+), which would serve ``//credentials``."""
        words = self.requestline.split()
        return words[1] if len(words) >= 2 else self.path

    def _handle(self) -> None:
        headers = self.headers
        status, body = self._endpoint().answer(
            self.command, self._target(), headers.get("Authorization"), headers.get("Host")
        )
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = _handle
    do_HEAD = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Method and status only: a query string or header could hold anything.
        LOG.debug("%s %s", self.command, code)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("request from %s: %s", self.client_address[0], one_line(format % args, 200))


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # stopping waits for the answers in flight (bounded by timeouts)
    # Connections waiting to be accepted: a thousand clients arriving at once are queued by
    # the kernel (capped by net.core.somaxconn) instead of being made to retry.
    request_queue_size = 1024

    def __init__(
        self,
        address: ipaddress.IPv4Address | ipaddress.IPv6Address,
        port: int,
        endpoint: CredentialEndpoint,
    ) -> None:
        self.address_family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        self.endpoint = endpoint
        self.connections = 0
        super().__init__((str(address), port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (socket.getfqdn): not needed here.
        bind_exclusively(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1  # in the serving thread: the --max-requests count is exact
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback; a client hanging up is not worth one.
        LOG.debug("error while answering %s", client_address[0], exc_info=True)


def _first_fetch(cache: CredentialCache, limit: float) -> Credentials:
    """The first credentials, waiting up to ``limit`` seconds although each ``get()`` waits
    at most the cache's load_timeout (a timed-out fetch goes on, and its result is adopted)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            return cache.get()
        except ProviderTimedOut:
            if time.monotonic() >= deadline:
                raise
            time.sleep(_POLL)


def _url(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{host}:{port}{PATH}"


def stop_signals() -> list[signal.Signals]:
    """The signals that stop ``serve``: SIGINT and SIGTERM, and SIGBREAK (Ctrl-Break) where it
    exists (Windows, where nothing sends a process SIGTERM)."""
    names = ("SIGINT", "SIGTERM", "SIGBREAK")
    return [getattr(signal, name) for name in names if hasattr(signal, name)]


def _install_signals(stop: threading.Event) -> Callable[[], None]:
    """Stop on :func:`stop_signals` (main thread only); returns what restores the handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in stop_signals()}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def run(
    *,
    profile: str | None,
    host: str,
    port: int,
    timeout: float,
    max_requests: int | None = None,
    max_seconds: float | None = None,
    shell: str = DEFAULT_SHELL,
) -> int:
    """Serve the credentials of ``profile`` until a signal or a bound stops it."""
    address = check_host(host)  # before anything else: never resolve credentials for nothing
    name, how = selected_profile(profile)
    cache = make_cache(profile, timeout, f"creds-core serve ({name})")
    first = _first_fetch(cache, STARTUP_TIMEOUT)  # exit code 1 or 3 when nothing to serve
    token = secrets.token_urlsafe(32)
    endpoint = CredentialEndpoint(cache, token)
    try:
        server = _Server(address, port, endpoint)
    except OSError as exc:
        raise CliError(
            f"cannot listen on {address} port {port}: {exc.strerror or exc}; choose another "
            "--port (0 picks a free one)",
            EXIT_UNAVAILABLE,
        ) from exc
    stop = threading.Event()
    restore = _install_signals(stop)
    try:
        server.timeout = _POLL
        url = _url(address, int(server.server_address[1]))
        # stdout: shell lines for the processes that use the endpoint (the token is their key).
        variables = [
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", None),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", None),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", url),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", token),
        ]
        sys.stdout.write(shell_lines(shell, variables))
        sys.stdout.flush()
        expiry = iso_utc(first.expiry) if first.expiry is not None else "never"
        print(
            f"creds-core serve: credentials of profile {name!r} ({how}) from "
            f"{first.provider_name}, key {mask_key(first.access_key_id)}, expiry {expiry}, "
            f"on {url}; set the variables above in each process; Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        deadline = time.monotonic() + max_seconds if max_seconds is not None else None
        while not stop.is_set():
            if max_requests is not None and server.connections >= max_requests:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            server.handle_request()
    finally:
        restore()
        server.server_close()
    answered = ", ".join(f"{n} x {status}" for status, n in sorted(endpoint.answered.items()))
    print(
        f"creds-core serve: stopped after {server.connections} requests"
        + (f" ({answered})" if answered else ""),
        file=sys.stderr,
        flush=True,
    )
    return EXIT_OK
