"""Fixtures of the benchmark suites: an AWS environment that cannot reach AWS, and the
project's own STS server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import offline_env

from creds_core.testing import StsServer


@pytest.fixture(scope="session")
def sts() -> Iterator[StsServer]:
    """An unthrottled local STS; STS clients without an endpoint go there too."""
    with StsServer(max_seconds=3600, max_requests=1_000_000) as server, offline_env(server.url):
        yield server


@pytest.fixture(scope="session", autouse=True)
def _no_aws() -> Iterator[None]:
    """No AWS_* variables, config files or IMDS for any bench (sts re-points STS)."""
    with offline_env():
        yield
