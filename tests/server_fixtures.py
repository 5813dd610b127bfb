"""pytest plugin: the project's local credential servers as fixtures.

Each credential server is function scoped, so a test can change its ``mode`` and read its
counters without seeing another test's traffic; moto is session scoped because it is slow to
start and tests isolate themselves in it by unique names.  Registered once in conftest.py
(``pytest_plugins``).  ``servers`` is the servers' common module (fault modes, sentinel
secrets, default names, the logger).

The STS server ships in the package (``creds_core.testing``, for users' own tests and the
demo); the IMDS, container and moto servers are the test suite's own (``tests/``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from container_servers import ContainerServer
from imds_servers import ImdsServer
from moto_servers import moto_server

from creds_core.testing import StsServer
from creds_core.testing import _server as servers

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
