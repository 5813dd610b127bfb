"""pytest plugin: the project's local credential servers as fixtures.

Each credential server is function scoped, so a test can change its ``mode`` and read its
counters without seeing another test's traffic; moto is session scoped because it is slow to
start and tests isolate themselves in it by unique names.  Load it with
``pytest_plugins = ["server_fixtures"]``.

The servers are pure Python and must work before the Rust extension is built (they are how the
extension gets tested), so when ``creds_core`` cannot be imported, ``servers.py`` is loaded
straight from the source tree.  Tests import the server classes from here for the same reason.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest


def _load_servers() -> ModuleType:
    try:
        from creds_core.testing import servers as module
    except ImportError:
        path = Path(__file__).resolve().parents[1] / "python/creds_core/testing/servers.py"
        name = "_creds_core_testing_servers"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise
        fallback = importlib.util.module_from_spec(spec)
        sys.modules[name] = fallback  # dataclasses resolve their module through sys.modules
        spec.loader.exec_module(fallback)
        return fallback
    return module


if TYPE_CHECKING:
    from creds_core.testing import servers
    from creds_core.testing.servers import ContainerServer, ImdsServer, StsServer, moto_server
else:
    servers = _load_servers()
    ContainerServer = servers.ContainerServer
    ImdsServer = servers.ImdsServer
    StsServer = servers.StsServer
    moto_server = servers.moto_server

__all__ = [
    "ContainerServer",
    "ImdsServer",
    "StsServer",
    "container_server",
    "imds_server",
    "moto_endpoint",
    "moto_server",
    "servers",
    "sts_server",
]


@pytest.fixture
def imds_server() -> Iterator[ImdsServer]:
    """An IMDSv2 server on 127.0.0.1 with the default role and sentinel secrets."""
    with ImdsServer() as server:
        yield server


@pytest.fixture
def container_server() -> Iterator[ContainerServer]:
    """A container credentials endpoint at ``container_server.credentials_url``, no auth."""
    with ContainerServer() as server:
        yield server


@pytest.fixture
def sts_server() -> Iterator[StsServer]:
    """An unthrottled STS on 127.0.0.1; set ``rate``/``burst``/``deny_roles``/``mode`` as needed."""
    with StsServer() as server:
        yield server


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Base URL of a moto server (STS, S3, ...) shared by the whole session."""
    with moto_server() as url:
        yield url
