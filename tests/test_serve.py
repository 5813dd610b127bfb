"""``creds-core serve`` hardening: the Host header (DNS rebinding) and 1,000 clients at once.

The server runs in a subprocess, as users run it, with credentials from the environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from creds_core._cli import serve
from creds_core._cli.serve import is_loopback_host
from creds_core._net import bind_exclusively
from helpers import posix_signals, serve_variables

try:
    import resource
except ImportError:  # Windows: no per-process descriptor limit to raise
    resource = None  # type: ignore[assignment]

pytestmark = pytest.mark.usefixtures("isolated_aws")

SRC = Path(__file__).resolve().parents[1] / "python"
KEY = "AKIASERVETESTKEY0001"
SECRET = "serve-SENTINEL-secret"
TOKEN = "serve-SENTINEL-token"
CLIENTS = 1000


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST:8080",
        "localhost.",
        "127.0.0.1",
        "127.0.0.1:49152",
        "127.1.2.3:80",
        "[::1]",
        "[::1]:8080",
        "::1",
    ],
)
def test_loopback_hosts_are_accepted(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "evil.example.com",
        "evil.example.com:8080",
        "127.0.0.1.nip.io",
        "localhost.evil.example.com",
        "10.0.0.1",
        "0.0.0.0:80",
        "[::]:80",
        "[::1",
        "[::1]x",
        "127.0.0.1:http",
        "169.254.169.254",
        "1.2.3.4:80",
    ],
)
def test_other_hosts_are_refused(host: str | None) -> None:
    assert not is_loopback_host(host)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int, str]]:
    """``creds-core serve`` in a subprocess: (host, port, token)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE) if resource else (0, 0)
    wanted = 4 * CLIENTS
    if (
        resource and soft < wanted
    ):  # both processes hold a socket per client (the child inherits this)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID=KEY,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_SESSION_TOKEN=TOKEN,
        PYTHONPATH=str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "creds_core", "serve", "--max-seconds", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        variables = serve_variables(proc)
        url = urlsplit(variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
        assert url.hostname is not None and url.port is not None
        yield url.hostname, url.port, variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        if resource:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _exchange(
    host: str, port: int, headers: dict[str, str], request_line: str
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one raw request."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        lines = [request_line, *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join([*lines, "Connection: close", "", ""])).encode())
        await writer.drain()
        raw = await reader.read()  # HTTP/1.0 answers: the server closes
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split(" ", 2)[1]), {k.lower(): v for k, v in fields.items()}, body


async def _request(host: str, port: int, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    status, _, body = await _exchange(host, port, headers, "GET /credentials HTTP/1.1")
    return status, json.loads(body)


def _get(host: str, port: int, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    return asyncio.run(asyncio.wait_for(_request(host, port, headers), 60))


def _raw(
    host: str, port: int, headers: dict[str, str], request_line: str
) -> tuple[int, dict[str, str], bytes]:
    return asyncio.run(asyncio.wait_for(_exchange(host, port, headers, request_line), 60))


@pytest.mark.parametrize(
    "target",
    [
        "//credentials",
        "/credentials/",
        "/credentials?x",
        "/credentials?x=1",
        "/credentials#x",
        "///credentials",
        "/Credentials",
        "/",
    ],
)
def test_only_the_exact_credentials_path_is_served(
    served: tuple[str, int, str], target: str
) -> None:
    host, port, token = served
    ok = {"Host": f"{host}:{port}", "Authorization": token}
    status, _, body = _raw(host, port, ok, f"GET {target} HTTP/1.1")
    assert status == 404, (target, status)
    assert json.loads(body)["code"] == "NotFound"
    assert b"SENTINEL" not in body and KEY.encode() not in body


def test_head_answers_like_get_without_a_body_and_checks_the_token(
    served: tuple[str, int, str],
) -> None:
    host, port, token = served
    ok = {"Host": f"{host}:{port}", "Authorization": token}
    got_status, got_headers, got_body = _raw(host, port, ok, "GET /credentials HTTP/1.1")
    status, headers, body = _raw(host, port, ok, "HEAD /credentials HTTP/1.1")
    assert (status, body) == (200, b"")
    assert got_status == 200 and json.loads(got_body)["AccessKeyId"] == KEY
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == got_headers["content-length"]
    assert _raw(host, port, {**ok, "Authorization": "wrong"}, "HEAD /credentials HTTP/1.1")[
        :3:2
    ] == (403, b"")
    assert _raw(host, port, {"Host": ok["Host"]}, "HEAD /credentials HTTP/1.1")[0] == 401
    assert _raw(host, port, ok, "HEAD //credentials HTTP/1.1")[0] == 404
    assert _raw(host, port, ok, "POST /credentials HTTP/1.1")[0] == 405


def test_a_request_through_another_host_name_is_refused(served: tuple[str, int, str]) -> None:
    host, port, token = served
    ok = {"Host": f"{host}:{port}", "Authorization": token}
    status, body = _get(host, port, ok)
    assert status == 200 and body["AccessKeyId"] == KEY
    assert _get(host, port, {**ok, "Host": f"localhost:{port}"})[0] == 200
    for bad in (f"rebind.example.com:{port}", "attacker.test", f"10.0.0.1:{port}"):
        status, body = _get(host, port, {**ok, "Host": bad})
        assert status == 403 and body["code"] == "InvalidHost"
        assert "SENTINEL" not in json.dumps(body) and KEY not in json.dumps(body)
    # No Host header at all (what no SDK and no browser sends): refused too.
    status, body = _get(host, port, {"Authorization": token})
    assert status == 403 and body["code"] == "InvalidHost"


@pytest.mark.timeout(300)
def test_a_thousand_concurrent_clients_are_all_served_from_the_cache(
    served: tuple[str, int, str],
) -> None:
    host, port, token = served
    headers = {"Host": f"{host}:{port}", "Authorization": token}

    async def everyone() -> list[tuple[int, dict[str, str]] | BaseException]:
        return await asyncio.gather(
            *(asyncio.wait_for(_request(host, port, headers), 120) for _ in range(CLIENTS)),
            return_exceptions=True,
        )

    answers = asyncio.run(everyone())
    failures = [a for a in answers if isinstance(a, BaseException) or a[0] != 200]
    assert failures == [], failures[:3]
    assert all(
        not isinstance(a, BaseException)
        and (a[1]["AccessKeyId"], a[1]["SecretAccessKey"], a[1]["Token"]) == (KEY, SECRET, TOKEN)
        for a in answers
    )


# --- Windows forms, where they can run here --------------------------------------------------


@posix_signals
def test_serve_stops_on_ctrl_break_where_the_platform_has_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only Windows has SIGBREAK: here SIGUSR1 stands in for it, and is really delivered.
    monkeypatch.setattr(signal, "SIGBREAK", signal.SIGUSR1, raising=False)
    assert signal.SIGUSR1 in serve.stop_signals()
    before = signal.getsignal(signal.SIGUSR1)
    stop = threading.Event()
    restore = serve._install_signals(stop)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.wait(10)
    finally:
        restore()
    assert signal.getsignal(signal.SIGUSR1) is before


def test_http_servers_keep_so_reuseaddr_off_windows() -> None:
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler, False)
    try:
        bind_exclusively(server)
        reuse = server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert bool(reuse) is (os.name != "nt")
    finally:
        server.server_close()


class _RecordingSocket:
    def __init__(self) -> None:
        self.options: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options.append((level, option, value))

    def bind(self, address: tuple[str, int]) -> None:
        self.address = address

    def getsockname(self) -> tuple[str, int]:
        return self.address


def test_on_windows_a_server_binds_with_so_exclusiveaddruse_not_so_reuseaddr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Windows' option on a socket that records it (Linux has no SO_EXCLUSIVEADDRUSE).
    monkeypatch.setattr(socket, "SO_EXCLUSIVEADDRUSE", -5, raising=False)
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler, False)
    real = server.socket
    recorder = _RecordingSocket()
    server.socket = recorder  # type: ignore[assignment]
    try:
        bind_exclusively(server)
    finally:
        real.close()
    assert recorder.options == [(socket.SOL_SOCKET, -5, 1)]
    assert not server.allow_reuse_address
