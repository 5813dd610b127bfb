"""Isolation for tests that resolve AWS credentials: no real config, no real network.

``isolated_aws`` (use it autouse in a module) points HOME, AWS_CONFIG_FILE and
AWS_SHARED_CREDENTIALS_FILE into the test's tmp_path, clears every AWS_* and proxy variable,
disables IMDS and forbids every connection and name lookup that is not loopback, so a bug can
never reach 169.254.169.254 or any other real address.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _is_loopback(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]")
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class NonLoopbackConnection(AssertionError):
    """A test tried to reach a non-loopback address."""


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse (loudly) any connection or name lookup that is not loopback."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if isinstance(address, (str, bytes)):  # AF_UNIX
            return
        if not _is_loopback(host):
            raise NonLoopbackConnection(f"test tried to connect to {host!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host):
            raise NonLoopbackConnection(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield


@pytest.fixture
def isolated_aws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> Iterator[Path]:
    """A clean AWS environment rooted at ``tmp_path``; yields the fake HOME."""
    for name in list(os.environ):
        upper = name.upper()
        if upper.startswith("AWS_") or upper.endswith("_PROXY") or upper == "BOTO_CONFIG":
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("BOTO_CONFIG", str(tmp_path / "boto.cfg"))  # never /etc/boto.cfg
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "*")
    # botocore fixes the SSO token cache directory when it is imported (from the real HOME).
    import botocore.credentials
    import botocore.tokens

    sso_cache = str(home / ".aws" / "sso" / "cache")
    for owner in (botocore.credentials.SSOProvider, botocore.tokens.SSOTokenProvider):
        monkeypatch.setattr(owner, "_SSO_TOKEN_CACHE_DIR", sso_cache, raising=False)
    yield home
