"""moto's server (STS, S3, ...) on 127.0.0.1 for the tests, with a request budget."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["moto_server"]

LOOPBACK = "127.0.0.1"

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
