"""Loopback-only test servers that speak the real AWS credential protocols.

creds_core is tested against botocore's own clients, so these servers must answer exactly what
IMDS, the ECS/EKS container endpoint and STS answer: same paths, headers, status codes and body
shapes.  On top of the real protocol they inject the failures the cache has to survive (slow,
5xx, throttled, malformed, expired, hanging and dropped answers), switchable at runtime through
``server.mode`` so that a test can, for example, take a source down after its first fetch.

Every server listens on 127.0.0.1 only, on an ephemeral port unless told otherwise, is started
and stopped by the code using it (context manager), and stops serving after ``max_requests``
requests or ``max_seconds`` seconds so that a leaked server can never run unbounded.

Secrets never reach a log line or a repr: the servers log the request line only (method and
path), and the records they keep for tests (:class:`IssuedCredentials`, :class:`StsCall`) hide
secret fields from their repr.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import hashlib
import itertools
import json
import logging
import re
import secrets
import socket
import socketserver
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Literal, TypeVar, Union, cast, get_args
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_CALLER_ARN",
    "DEFAULT_ROLE_ARN",
    "DEFAULT_ROLE_NAME",
    "EXPIRED_AGE",
    "MODES",
    "SENTINEL_SECRET",
    "SENTINEL_TOKEN",
    "STS_NAMESPACE",
    "ContainerServer",
    "CredentialServer",
    "ImdsServer",
    "IssuedCredentials",
    "LocalServer",
    "Mode",
    "StsCall",
    "StsServer",
    "moto_server",
]

LOG = logging.getLogger(__name__)

#: The only address any server here binds to.
LOOPBACK = "127.0.0.1"

Mode = Literal["ok", "slow", "error", "throttle", "bad_json", "expired", "hang", "down"]
#: Every fault mode a server accepts.
MODES: frozenset[str] = frozenset(get_args(Mode))

#: Default secret and token handed out; tests grep logs and reprs for them to prove no leak.
SENTINEL_SECRET = "creds-core-SENTINEL-secret-access-key"
SENTINEL_TOKEN = "creds-core-SENTINEL-session-token"

DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_ROLE_NAME = "creds-core-test-role"
DEFAULT_ROLE_ARN = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/{DEFAULT_ROLE_NAME}"
DEFAULT_CALLER_ARN = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:user/creds-core-test-user"
STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
STS_VERSION = "2011-06-15"

#: In mode "expired", credentials expired this many seconds before they were issued.
EXPIRED_AGE = 300.0

_ACCESS_KEY_LENGTH = 20
_QUERY = re.compile(r"\?[^\s'\"]*")
_MAX_BODY = 1 << 20
_POLL_INTERVAL = 0.05
_ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

Clock = Callable[[], Union[float, int, datetime.datetime]]
DenyRoles = Union[AbstractSet[str], Callable[[str], bool], None]
_ServerT = TypeVar("_ServerT", bound="LocalServer")

# One counter for the whole process, so that access keys are distinct across all servers of a
# test (a chain test must be able to tell which source served the credentials).
_KEY_COUNTER = itertools.count(1)
_KEY_LOCK = threading.Lock()


def _next_access_key(prefix: str) -> str:
    """Return ``prefix`` followed by a process-wide counter, zero padded to 20 characters."""
    with _KEY_LOCK:
        n = next(_KEY_COUNTER)
    return prefix + str(n).zfill(_ACCESS_KEY_LENGTH - len(prefix))


def _iso(when: datetime.datetime) -> str:
    return when.strftime(_ISO_FORMAT)


@dataclass(frozen=True)
class IssuedCredentials:
    """A set of credentials a server handed out; the secret parts are hidden from repr."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime.datetime  # aware UTC, whole seconds, exactly as sent on the wire
    issued_at: datetime.datetime


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]  # lower-cased names
    body: bytes


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


class _HTTPServer(ThreadingHTTPServer):
    """The stdlib threading server, bound to loopback without a reverse DNS lookup."""

    daemon_threads = True
    request_queue_size = 128  # the default 5 drops SYNs when many clients connect at once

    def __init__(self, owner: LocalServer, port: int) -> None:
        self.owner = owner
        super().__init__((LOOPBACK, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a resolver query we do not need.
        socketserver.TCPServer.server_bind(self)
        self.server_name = LOOPBACK
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; clients that time out are expected here.
        LOG.debug("error while serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, lets the owning server decide the answer, and writes it."""

    protocol_version = "HTTP/1.1"
    server_version = "creds-core-test"
    timeout = 60.0  # idle keep-alive connections; stop() closes them sooner

    @property
    def _owner(self) -> LocalServer:
        return cast(_HTTPServer, self.server).owner

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without TCP_NODELAY the body waits for the
        # client's delayed ACK of the headers, about 40 ms on every kept-alive request.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._owner._register(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._owner._unregister(self.connection)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        # Only request lines and statuses are logged, never bodies, and query strings are cut
        # out because a GET to STS may carry a web identity token or a presigned signature.
        text = _QUERY.sub("?<redacted>", format % args)
        LOG.debug("%s %s: %s", type(self._owner).__name__, self.address_string(), text)

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        owner = self._owner
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_BODY:
            self.send_error(413 if length > 0 else 400)
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        request = _Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        response = owner._process(request)
        if response is None:
            # "down", "hang", a stopped server or an exhausted budget: no response at all.
            self.close_connection = True
            return
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers:
                self.send_header(name, value)
            if owner._stopping.is_set():
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its read timeout passed)


class LocalServer:
    """Base of the test servers: lifecycle, bounds, counters and fault modes.

    Subclasses implement :meth:`_observe` (classify a request, record facts about it) and
    :meth:`_respond` (build the answer for modes that answer).  The base applies the modes that
    do not depend on the protocol: ``delay`` (every request), ``slow``, ``hang`` and ``down``.

    Counters: ``requests`` counts every request served; ``counts`` holds one counter per request
    kind (chosen by the subclass) plus outcome counters, among them ``dropped`` (mode down),
    ``hung`` (mode hang), ``errors`` (5xx), ``throttled`` and ``issued`` (credentials handed out).
    """

    def __init__(
        self,
        *,
        port: int = 0,
        mode: Mode = "ok",
        latency: float = 2.0,
        delay: float = 0.0,
        hang_seconds: float = 30.0,
        max_requests: int = 100_000,
        max_seconds: float = 600.0,
        clock: Clock | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, not {port}")
        if max_requests < 0 or max_seconds < 0:
            raise ValueError("max_requests and max_seconds must not be negative")
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._counts: Counter[str] = Counter()
        self._requests = 0
        self._served = 0  # for the max_requests budget; reset_counts() leaves it alone
        self._mode: Mode = "ok"
        self.mode = mode
        #: Seconds a request waits before being answered in mode "slow".
        self.latency = latency
        #: Seconds every request waits before being answered, in every mode.
        self.delay = delay
        #: Longest time a request is held unanswered in mode "hang".
        self.hang_seconds = hang_seconds
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.clock: Clock = clock if clock is not None else time.time
        self._requested_port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._deadline = float("inf")
        self._connections: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self: _ServerT) -> _ServerT:
        """Bind 127.0.0.1 and serve on a background thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError(f"{type(self).__name__} was already started")
        self._httpd = _HTTPServer(self, self._requested_port)
        self._httpd.timeout = _POLL_INTERVAL
        self._deadline = time.monotonic() + self.max_seconds
        self._thread = threading.Thread(
            target=self._serve, name=f"{type(self).__name__}:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release hanging requests and close every open connection."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        with self._lock:
            connections = list(self._connections)
            threads = list(self._handler_threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
                thread.join(timeout=1.0)

    def __enter__(self: _ServerT) -> _ServerT:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        httpd = self._httpd
        assert httpd is not None
        try:
            while not self._stopping.is_set() and not self.exhausted:
                httpd.handle_request()
        finally:
            # New connections are refused from here on; open ones are closed by stop().
            httpd.server_close()

    @property
    def exhausted(self) -> bool:
        """True once ``max_requests`` requests were served or ``max_seconds`` have passed."""
        return self._served >= self.max_requests or time.monotonic() >= self._deadline

    @property
    def serving(self) -> bool:
        """True while the request loop runs."""
        return self._thread is not None and self._thread.is_alive()

    # -- addresses -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{LOOPBACK}:{self.port}"

    # -- mode and counters -----------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        """The fault mode applied to each request from its arrival on; settable at runtime."""
        return self._mode

    @mode.setter
    def mode(self, value: Mode) -> None:
        if value not in MODES:
            raise ValueError(f"unknown mode {value!r}; expected one of {sorted(MODES)}")
        self._mode = value

    @property
    def requests(self) -> int:
        """Requests served so far (every kind, every outcome)."""
        with self._lock:
            return self._requests

    @property
    def counts(self) -> Counter[str]:
        """A snapshot of the per-kind and per-outcome counters (missing keys read as 0)."""
        with self._lock:
            return Counter(self._counts)

    def reset_counts(self) -> None:
        """Zero ``requests`` and ``counts``; the ``max_requests`` budget keeps counting."""
        with self._lock:
            self._requests = 0
            self._counts.clear()

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``n`` requests were served; False if ``timeout`` passed first.

        Tests of background refreshes use it instead of sleeping for a guessed time.
        """
        with self._cond:
            return (
                self._cond.wait_for(lambda: self._requests >= n or self._stopping.is_set(), timeout)
                and self._requests >= n
            )

    def _bump(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def __repr__(self) -> str:
        where = self.url if self._httpd is not None else "not started"
        return f"{type(self).__name__}({where}, mode={self._mode!r}, requests={self._requests})"

    # -- request processing ----------------------------------------------------------------

    def _register(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)
            self._handler_threads.add(threading.current_thread())

    def _unregister(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)
            self._handler_threads.discard(threading.current_thread())

    def _now(self) -> datetime.datetime:
        """The server's notion of now as an aware UTC datetime, from ``clock``."""
        value = self.clock()
        if isinstance(value, datetime.datetime):
            if value.tzinfo is None:
                return value.replace(tzinfo=datetime.timezone.utc)
            return value.astimezone(datetime.timezone.utc)
        return datetime.datetime.fromtimestamp(float(value), tz=datetime.timezone.utc)

    def _process(self, request: _Request) -> _Response | None:
        """Count the request, apply the generic modes, then let the subclass answer.

        None means: close the connection without any response.
        """
        with self._cond:
            if self._stopping.is_set() or self.exhausted:
                return None
            self._requests += 1
            self._served += 1
            kind = self._observe(request)
            self._counts[kind] += 1
            self._cond.notify_all()
        mode = self._mode
        if self.delay > 0:
            self._stopping.wait(self.delay)
        if mode == "down":
            self._bump("dropped")
            return None
        if mode == "hang":
            self._bump("hung")
            self._stopping.wait(self.hang_seconds)
            return None
        if mode == "slow":
            self._stopping.wait(self.latency)
        if self._stopping.is_set():
            return None
        try:
            return self._respond(request, kind, mode)
        except Exception as exc:
            # Never log the exception text: it could quote a request body.
            LOG.warning("%s failed to answer %s: %s", type(self).__name__, kind, type(exc).__name__)
            self._bump("errors")
            return _Response(500, b"internal error in test server", "text/plain")

    def _observe(self, request: _Request) -> str:
        """Return the kind of ``request`` (its counter name); called under the lock."""
        return "request"

    def _respond(self, request: _Request, kind: str, mode: Mode) -> _Response:
        """Answer ``request`` in ``mode`` (never "down" or "hang", which the base handles)."""
        return _Response(404, b"", "text/plain")


class CredentialServer(LocalServer):
    """A server that hands out temporary credentials with distinct access keys."""

    #: Prefix of the access keys a server hands out; a subclass picks its own.
    default_key_prefix: ClassVar[str] = "ASIA"

    def __init__(
        self,
        *,
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
            port=port,
            mode=mode,
            latency=latency,
            delay=delay,
            hang_seconds=hang_seconds,
            max_requests=max_requests,
            max_seconds=max_seconds,
            clock=clock,
        )
        prefix = key_prefix if key_prefix is not None else self.default_key_prefix
        if not prefix.isalnum() or not 4 <= len(prefix) <= 16:
            raise ValueError("key_prefix must be 4 to 16 alphanumeric characters")
        self.key_prefix = prefix
        self.secret_access_key = secret_access_key
        self.session_token = session_token
        self.credential_lifetime = credential_lifetime
        self._issued: list[IssuedCredentials] = []

    @property
    def issued(self) -> list[IssuedCredentials]:
        """Every set of credentials handed out, oldest first (a copy)."""
        with self._lock:
            return list(self._issued)

    @property
    def last_issued(self) -> IssuedCredentials | None:
        with self._lock:
            return self._issued[-1] if self._issued else None

    def _issue(self, mode: Mode, lifetime: float | None = None) -> IssuedCredentials:
        """Mint credentials expiring ``lifetime`` seconds from now (in the past if expired)."""
        now = self._now().replace(microsecond=0)
        seconds = self.credential_lifetime if lifetime is None else lifetime
        offset = -EXPIRED_AGE if mode == "expired" else seconds
        creds = IssuedCredentials(
            access_key_id=_next_access_key(self.key_prefix),
            secret_access_key=self.secret_access_key,
            session_token=self.session_token,
            expiration=now + datetime.timedelta(seconds=offset),
            issued_at=now,
        )
        with self._lock:
            self._issued.append(creds)
            self._counts["issued"] += 1
        return creds


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


@dataclass(frozen=True)
class StsCall:
    """One STS request as the server saw it; token-like fields are hidden from repr."""

    action: str
    outcome: str  # ok, throttled, denied, error, invalid, unauthenticated
    signer_access_key_id: str | None
    role_arn: str | None = None
    role_session_name: str | None = None
    external_id: str | None = None
    serial_number: str | None = None
    token_code: str | None = field(default=None, repr=False)
    duration_seconds: int | None = None
    source_identity: str | None = None
    web_identity_token: str | None = field(default=None, repr=False)
    issued_access_key_id: str | None = None
    request_id: str = ""


_CREDENTIAL_SCOPE = re.compile(r"Credential=([^/,\s]+)/")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]*$")
_SIGNED_ACTIONS = frozenset({"AssumeRole", "GetCallerIdentity"})
_ACTIONS = frozenset({"AssumeRole", "AssumeRoleWithWebIdentity", "GetCallerIdentity"})


class _StsError(Exception):
    """An STS error answer, raised inside the handler and rendered as ErrorResponse XML."""

    def __init__(self, status: int, code: str, message: str, outcome: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.outcome = outcome


class StsServer(CredentialServer):
    """AWS STS over the query protocol: AssumeRole, AssumeRoleWithWebIdentity, GetCallerIdentity.

    Responses and errors use STS's real XML, checked against botocore's sts service model.
    ``rate`` (requests per second, None = unlimited) and ``burst`` form a token bucket over all
    actions, beyond which the real ``Throttling`` error (HTTP 400) is answered; mode "throttle"
    answers it to every request.  Mode "error" answers 500 ``InternalFailure``; "bad_json"
    answers 200 with a body that is not XML.  ``deny_roles`` (a set of role ARNs or a predicate)
    answers 403 ``AccessDenied``.  AssumeRole and GetCallerIdentity need a SigV4
    ``Authorization`` header (else 403 ``MissingAuthenticationToken``, as AWS documents);
    AssumeRoleWithWebIdentity is unsigned.  Signatures are not verified.

    Every request that reaches the protocol layer is recorded in ``calls``.  Counter kinds: the
    action name (``AssumeRole``...); outcomes ``throttled``, ``denied``, ``errors``, ``invalid``,
    ``unauthenticated`` and ``issued``.
    """

    default_key_prefix = "ASIASTS"

    def __init__(
        self,
        *,
        rate: float | None = None,
        burst: float | None = None,
        deny_roles: DenyRoles = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
        caller_arn: str = DEFAULT_CALLER_ARN,
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
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive or None")
        #: Token bucket refill, requests per second; None disables rate limiting.
        self.rate = rate
        #: Token bucket size; None means max(1, rate).
        self.burst = burst
        #: Role ARNs (or a predicate on the role ARN) answered with AccessDenied.
        self.deny_roles: DenyRoles = deny_roles
        self.account_id = account_id
        #: The identity of signers whose keys this server did not issue.
        self.caller_arn = caller_arn
        self._calls: list[StsCall] = []
        self._bucket_lock = threading.Lock()
        self._bucket_tokens: float | None = None
        self._bucket_last = 0.0
        # access key issued here -> (assumed role ARN, assumed role id), for caller identity
        self._sessions: dict[str, tuple[str, str]] = {}

    @property
    def calls(self) -> list[StsCall]:
        """Every recorded request, oldest first (a copy)."""
        with self._lock:
            return list(self._calls)

    # -- parsing ---------------------------------------------------------------------------

    @staticmethod
    def _params(request: _Request) -> dict[str, str]:
        params = {k: v[0] for k, v in request.query.items() if v}
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        for key, values in parse_qs(text, keep_blank_values=True).items():
            if values:
                params[key] = values[0]
        return params

    @staticmethod
    def _signer(request: _Request, params: Mapping[str, str]) -> str | None:
        match = _CREDENTIAL_SCOPE.search(request.headers.get("authorization", ""))
        if match:
            return match.group(1)
        presigned = params.get("X-Amz-Credential")
        return presigned.split("/", 1)[0] if presigned else None

    def _observe(self, request: _Request) -> str:
        action = self._params(request).get("Action")
        return action if action else "unknown"

    # -- rate limiting ---------------------------------------------------------------------

    def _take_token(self) -> bool:
        with self._bucket_lock:
            rate = self.rate
            if rate is None:
                self._bucket_tokens = None
                return True
            burst = self.burst if self.burst is not None else max(1.0, rate)
            now = time.monotonic()
            if self._bucket_tokens is None:
                tokens = burst
            else:
                tokens = min(burst, self._bucket_tokens + (now - self._bucket_last) * rate)
            self._bucket_last = now
            if tokens >= 1.0:
                self._bucket_tokens = tokens - 1.0
                return True
            self._bucket_tokens = tokens
            return False

    # -- answering -------------------------------------------------------------------------

    def _respond(self, request: _Request, kind: str, mode: Mode) -> _Response:
        params = self._params(request)
        request_id = str(uuid.uuid4())
        action = params.get("Action", "")
        signer = self._signer(request, params)
        issued: IssuedCredentials | None = None
        duration = _int_or_none(params.get("DurationSeconds"))
        try:
            self._check(request, params, action, signer, mode)
            if action == "GetCallerIdentity":
                body = self._caller_identity(signer, request_id)
            else:
                issued, body = self._assume(params, action, signer, mode, duration, request_id)
            outcome = "ok"
            response = _Response(
                200,
                body.encode("utf-8"),
                "text/xml",
                (("x-amzn-RequestId", request_id),),
            )
        except _StsError as err:
            outcome = err.outcome
            self._bump(outcome)
            response = self._error(err, request_id)
        call = StsCall(
            action=action,
            outcome=outcome,
            signer_access_key_id=signer,
            role_arn=params.get("RoleArn"),
            role_session_name=params.get("RoleSessionName"),
            external_id=params.get("ExternalId"),
            serial_number=params.get("SerialNumber"),
            token_code=params.get("TokenCode"),
            duration_seconds=duration,
            source_identity=params.get("SourceIdentity"),
            web_identity_token=params.get("WebIdentityToken"),
            issued_access_key_id=issued.access_key_id if issued else None,
            request_id=request_id,
        )
        with self._lock:
            self._calls.append(call)
        if outcome == "ok" and mode == "bad_json":
            return _Response(200, b"<html><body>Service Unavailable", "text/html")
        return response

    def _check(
        self,
        request: _Request,
        params: Mapping[str, str],
        action: str,
        signer: str | None,
        mode: Mode,
    ) -> None:
        """Raise the error STS would answer, in the order STS checks: fault, auth, rate, input."""
        if mode == "error":
            raise _StsError(500, "InternalFailure", "An internal error occurred.", "errors")
        if mode == "throttle":
            raise _StsError(400, "Throttling", "Rate exceeded", "throttled")
        version = params.get("Version", "")
        if not action:
            raise _StsError(400, "MissingAction", "Missing Action", "invalid")
        if version != STS_VERSION:
            raise _StsError(
                400,
                "InvalidAction",
                f"Could not find operation {action} for version {version or 'NO_VERSION'}",
                "invalid",
            )
        if action not in _ACTIONS:
            raise _StsError(
                400,
                "InvalidAction",
                f"Could not find operation {action} for version {version}",
                "invalid",
            )
        if action in _SIGNED_ACTIONS and signer is None:
            raise _StsError(
                403,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
                "unauthenticated",
            )
        if not self._take_token():
            raise _StsError(400, "Throttling", "Rate exceeded", "throttled")
        if action == "GetCallerIdentity":
            return
        self._validate_assume(params, action)
        role_arn = params["RoleArn"]
        if self._denied(role_arn):
            if action == "AssumeRole":
                caller = self._caller_arn(signer)
                message = (
                    f"User: {caller} is not authorized to perform: sts:AssumeRole "
                    f"on resource: {role_arn}"
                )
            else:
                message = "Not authorized to perform sts:AssumeRoleWithWebIdentity"
            raise _StsError(403, "AccessDenied", message, "denied")

    @staticmethod
    def _validate_assume(params: Mapping[str, str], action: str) -> None:
        required = ["RoleArn", "RoleSessionName"]
        if action == "AssumeRoleWithWebIdentity":
            required.append("WebIdentityToken")
        for name in required:
            if not params.get(name):
                member = name[0].lower() + name[1:]
                raise _StsError(
                    400,
                    "ValidationError",
                    f"1 validation error detected: Value null at '{member}' failed to satisfy "
                    "constraint: Member must not be null",
                    "invalid",
                )
        session = params["RoleSessionName"]
        if not 2 <= len(session) <= 64:
            bound = "greater than or equal to 2" if len(session) < 2 else "less than or equal to 64"
            raise _StsError(
                400,
                "ValidationError",
                f"1 validation error detected: Value '{session}' at 'roleSessionName' failed "
                f"to satisfy constraint: Member must have length {bound}",
                "invalid",
            )
        if not _SESSION_NAME.match(session):
            raise _StsError(
                400,
                "ValidationError",
                f"1 validation error detected: Value '{session}' at 'roleSessionName' failed "
                "to satisfy constraint: Member must satisfy regular expression pattern: "
                "[\\w+=,.@-]*",
                "invalid",
            )
        if len(params["RoleArn"]) < 20:
            raise _StsError(
                400,
                "ValidationError",
                "1 validation error detected: Value at 'roleArn' failed to satisfy constraint:"
                " Member must have length greater than or equal to 20",
                "invalid",
            )
        raw = params.get("DurationSeconds")
        if raw is None:
            return
        seconds = _int_or_none(raw)
        if seconds is None:
            raise _StsError(
                400, "ValidationError", f"Invalid value for DurationSeconds: {raw}", "invalid"
            )
        if not 900 <= seconds <= 43200:
            bound = (
                "greater than or equal to 900" if seconds < 900 else "less than or equal to 43200"
            )
            raise _StsError(
                400,
                "ValidationError",
                f"1 validation error detected: Value '{raw}' at 'durationSeconds' failed to "
                f"satisfy constraint: Member must have value {bound}",
                "invalid",
            )

    def _denied(self, role_arn: str) -> bool:
        deny = self.deny_roles
        if deny is None:
            return False
        if callable(deny):
            return bool(deny(role_arn))
        return role_arn in deny

    def _caller_arn(self, signer: str | None) -> str:
        if signer is not None:
            with self._lock:
                session = self._sessions.get(signer)
            if session is not None:
                return session[0]
        return self.caller_arn

    def _assumed_role(self, role_arn: str, session: str) -> tuple[str, str]:
        """The (assumed-role ARN, AssumedRoleId) STS derives from a role ARN and session."""
        parts = role_arn.split(":", 5)
        account = parts[4] if len(parts) == 6 and parts[4] else self.account_id
        partition = parts[1] if len(parts) == 6 and parts[1] else "aws"
        role_name = re.split(r"[/:]", role_arn)[-1]
        digest = hashlib.sha256(role_arn.encode("utf-8")).hexdigest().upper()
        return (
            f"arn:{partition}:sts::{account}:assumed-role/{role_name}/{session}",
            f"AROA{digest[:17]}:{session}",
        )

    def _assume(
        self,
        params: Mapping[str, str],
        action: str,
        signer: str | None,
        mode: Mode,
        duration: int | None,
        request_id: str,
    ) -> tuple[IssuedCredentials, str]:
        session = params["RoleSessionName"]
        arn, role_id = self._assumed_role(params["RoleArn"], session)
        creds = self._issue(mode, None if duration is None else float(duration))
        with self._lock:
            self._sessions[creds.access_key_id] = (arn, role_id)
        parts: list[str] = []
        source_identity = params.get("SourceIdentity")
        if action == "AssumeRoleWithWebIdentity":
            claims = _jwt_claims(params["WebIdentityToken"])
            subject = str(claims.get("sub", "creds-core-test-subject"))
            audience = claims.get("aud", "creds-core-test-audience")
            if isinstance(audience, list):
                audience = audience[0] if audience else ""
            provider = str(claims.get("iss", "creds-core-test-idp"))
            provider = provider.split("://", 1)[-1]
            parts.append(_el("SubjectFromWebIdentityToken", subject))
            parts.append(_el("Audience", str(audience)))
        parts.append(
            "<AssumedRoleUser>"
            + _el("AssumedRoleId", role_id)
            + _el("Arn", arn)
            + "</AssumedRoleUser>"
        )
        parts.append(
            "<Credentials>"
            + _el("AccessKeyId", creds.access_key_id)
            + _el("SecretAccessKey", creds.secret_access_key)
            + _el("SessionToken", creds.session_token)
            + _el("Expiration", _iso(creds.expiration))
            + "</Credentials>"
        )
        if action == "AssumeRoleWithWebIdentity":
            parts.append(_el("Provider", provider))
        if any(k in params for k in ("Policy", "PolicyArns.member.1", "Tags.member.1")):
            parts.append(_el("PackedPolicySize", "6"))
        if source_identity:
            parts.insert(0, _el("SourceIdentity", source_identity))
        return creds, _envelope(action, "".join(parts), request_id)

    def _caller_identity(self, signer: str | None, request_id: str) -> str:
        with self._lock:
            session = self._sessions.get(signer) if signer is not None else None
        if session is not None:
            arn, user_id = session
            account = arn.split(":")[4]
        else:
            arn = self.caller_arn
            parts = arn.split(":")
            account = parts[4] if len(parts) > 4 and parts[4] else self.account_id
            digest = hashlib.sha256(arn.encode("utf-8")).hexdigest().upper()
            user_id = "AIDA" + digest[:17]
        body = _el("UserId", user_id) + _el("Account", account) + _el("Arn", arn)
        return _envelope("GetCallerIdentity", body, request_id)

    @staticmethod
    def _error(err: _StsError, request_id: str) -> _Response:
        kind = "Receiver" if err.status >= 500 else "Sender"
        body = (
            f'<ErrorResponse xmlns="{STS_NAMESPACE}">'
            f"<Error>{_el('Type', kind)}{_el('Code', err.code)}{_el('Message', err.message)}"
            f"</Error>{_el('RequestId', request_id)}</ErrorResponse>\n"
        )
        return _Response(
            err.status,
            body.encode("utf-8"),
            "text/xml",
            (("x-amzn-RequestId", request_id),),
        )


def _int_or_none(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _el(tag: str, text: str) -> str:
    return f"<{tag}>{escape(text)}</{tag}>"


def _envelope(action: str, result: str, request_id: str) -> str:
    return (
        f'<{action}Response xmlns="{STS_NAMESPACE}">\n'
        f"  <{action}Result>{result}</{action}Result>\n"
        f"  <ResponseMetadata>{_el('RequestId', request_id)}</ResponseMetadata>\n"
        f"</{action}Response>\n"
    )


def _jwt_claims(token: str) -> dict[str, Any]:
    """The unverified claims of a JWT, or {} when the token is not one (tests pass any string)."""
    pieces = token.split(".")
    if len(pieces) != 3:
        return {}
    payload = pieces[1] + "=" * (-len(pieces[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


# Parsed by botocore's query and rest-xml error parsers alike (STS, S3, ...).
_MOTO_BUDGET_ERROR = (
    b"<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code>"
    b"<Message>moto test server: request budget exhausted</Message></Error>"
    b"<RequestId>creds-core-moto-budget</RequestId></ErrorResponse>"
)


class _BudgetApp:
    """WSGI middleware that bounds the number of requests a moto server answers."""

    def __init__(self, app: Callable[..., Any], max_requests: int) -> None:
        self._app = app
        self._remaining = max_requests
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with self._lock:
            self._remaining -= 1
            allowed = self._remaining >= 0
        if not allowed:
            start_response("503 Service Unavailable", [("Content-Type", "text/xml")])
            return [_MOTO_BUDGET_ERROR]
        return self._app(environ, start_response)


@contextlib.contextmanager
def moto_server(*, max_requests: int = 100_000, max_seconds: float = 600.0) -> Iterator[str]:
    """Run moto's threaded server on 127.0.0.1 (ephemeral port) and yield its base URL.

    moto serves STS and S3 for tests that need real signed requests.  The server is stopped on
    exit, after ``max_seconds``, and answers 503 once ``max_requests`` requests were served.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    stopped = threading.Event()
    stop_lock = threading.Lock()

    def stop() -> None:
        with stop_lock:
            if not stopped.is_set():
                stopped.set()
                server.stop()

    timer = threading.Timer(max_seconds, stop)
    timer.daemon = True
    timer.start()
    try:
        wsgi = getattr(server, "_server", None)
        if wsgi is not None and hasattr(wsgi, "app"):
            wsgi.app = _BudgetApp(wsgi.app, max_requests)
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        timer.cancel()
        stop()
