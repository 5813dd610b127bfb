"""A real ``redis-server`` for tests: on a free loopback port, in a temporary directory, with
no persistence; stopped (and restartable on the same port) by the test.

``make test`` installs redis-server (the Debian package) first.  A missing binary fails the
tests that need it with a message saying so: it is never a silent skip.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT = 20.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (+10,000) is free too (so at most 55,535)."""
    import random

    for _ in range(200):
        port = random.randint(20_000, 45_000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisServer:
    """``redis-server --port N --bind 127.0.0.1 --save '' --appendonly no`` in a temp dir."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed: the shared-tier tests need a real one. "
                "`make test` installs it (apt-get install redis-server); or install it by hand",
                pytrace=False,
            )
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.directory,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self.client().ping():
                    return self
            except Exception:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with {self.process.returncode} on port {self.port}"
                    ) from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh, empty redis-server of this test's own."""
    with tempfile.TemporaryDirectory(prefix="creds-core-redis-") as directory:
        server = RedisServer(Path(directory))
        try:
            yield server.start()
        finally:
            server.stop()


class _Process:
    """A redis-server process with arbitrary arguments, stopped at the end of the block."""

    def __init__(self, args: list[str], directory: Path) -> None:
        self.args = args
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Process:
        self.process = subprocess.Popen(
            self.args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.directory,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _wait_until(check: Any, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            if check():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def redis_sentinel(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A Sentinel (``redis-server --sentinel``) watching ``redis_server``: (port, master name)."""
    import redis

    port = _free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor creds 127.0.0.1 {redis_server.port} 1\n"
        "sentinel down-after-milliseconds creds 60000\n"
    )
    with _Process([redis_server.binary, str(conf), "--sentinel"], tmp_path):
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        _wait_until(
            lambda: client.execute_command("SENTINEL", "get-master-addr-by-name", "creds"),
            "the sentinel",
        )
        yield port, "creds"


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[list[int]]:
    """A three-master Redis Cluster on loopback (``redis-cli --cluster create``): its ports."""
    import redis

    binary = shutil.which("redis-server")
    cli = shutil.which("redis-cli")
    if binary is None or cli is None:
        pytest.fail("redis-server and redis-cli are needed: `make test` installs them")
    ports: list[int] = []
    while len(ports) < 3:
        port = _free_cluster_port()
        if port not in ports:
            ports.append(port)
    nodes = []
    for port in ports:
        node_dir = tmp_path / f"node-{port}"
        node_dir.mkdir()
        nodes.append(
            _Process(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--dir",
                    str(node_dir),
                    "--cluster-config-file",
                    str(node_dir / "nodes.conf"),
                ],
                node_dir,
            )
        )
    try:
        for node in nodes:
            node.__enter__()
        for port in ports:
            _wait_until(lambda port=port: redis.Redis(port=port, socket_timeout=5).ping(), "a node")
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for port in ports:
            _wait_until(
                lambda port=port: (
                    redis.Redis(port=port, socket_timeout=5).cluster("info")["cluster_state"]
                    == "ok"
                ),
                "the cluster",
            )
        yield ports
    finally:
        for node in nodes:
            node.__exit__()
