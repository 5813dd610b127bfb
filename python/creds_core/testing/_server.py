"""The plumbing of creds_core's loopback test servers: a threaded HTTP server on 127.0.0.1
that injects faults (``server.mode``) and bounds its own life, and the base of the servers
that hand out credentials. :class:`creds_core.testing.StsServer` is built on it (the
IMDS and container servers of the test suite too).

Every server listens on 127.0.0.1 only, on an ephemeral port unless told otherwise, is started
and stopped by the code using it (context manager), and stops serving after ``max_requests``
requests or ``max_seconds`` seconds so that a leaked server can never run unbounded.

Secrets never reach a log line or a repr: the servers log the request line only (method and
path), and the records they keep (:class:`IssuedCredentials`) hide secret fields from their
repr.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import logging
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Literal, TypeVar, Union, cast, get_args
from urllib.parse import parse_qs, urlsplit

from creds_core._net import bind_exclusively

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_CALLER_ARN",
    "DEFAULT_ROLE_ARN",
    "DEFAULT_ROLE_NAME",
    "EXPIRED_AGE",
    "LOG",
    "MODES",
    "SENTINEL_SECRET",
    "SENTINEL_TOKEN",
    "STS_NAMESPACE",
    "CredentialServer",
    "IssuedCredentials",
    "LocalServer",
    "Mode",
]

LOG = logging.getLogger("creds_core.testing")

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

    def form(self) -> dict[str, str]:
        """The Query-protocol parameters (STS, EC2): the query string's, then the form body's
        (first value of each)."""
        params = {k: v[0] for k, v in self.query.items() if v}
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        for key, values in parse_qs(text, keep_blank_values=True).items():
            if values:
                params[key] = values[0]
        return params


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
        bind_exclusively(self)
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
