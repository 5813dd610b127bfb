"""``make bench`` cases of ``shared_tier.py``: a fleet with and without the Redis tier, memory
per role in Redis, and ``creds-core serve`` with 1,000 concurrent clients.

make bench     (or: .venv/bin/python -m pytest benches/test_shared_tier.py --benchmark-only)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shared_tier
from harness import QUICK
from shared_tier import FLEET, MEMORY, SERVE, RedisServer

ROLES = int(os.environ.get("CREDS_CORE_BENCH_TIER_ROLES", 200 if QUICK else 1000))
PROCESSES = [2] if QUICK else [2, 4]
CASES = [(n, shared) for n in PROCESSES for shared in (False, True)]


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory() as directory, RedisServer(Path(directory)) as server:
        yield server


def _once(benchmark: Any, fn: Any) -> dict[str, Any]:
    infos: list[dict[str, Any]] = []
    benchmark.pedantic(lambda: infos.append(fn()), rounds=1, iterations=1)
    return infos[0]


@pytest.mark.timeout(3600)
@pytest.mark.parametrize(
    ("processes", "shared"), CASES, ids=[f"{n}x-{'tier' if s else 'local'}" for n, s in CASES]
)
def test_fleet(benchmark: Any, redis: RedisServer, processes: int, shared: bool) -> None:
    benchmark.group = FLEET
    benchmark.name = (
        f"{processes} processes x {ROLES:,} roles, {'with' if shared else 'without'} tier"
    )
    info = _once(benchmark, lambda: shared_tier.run_fleet(processes, ROLES, shared, redis.url))
    benchmark.extra_info.update(info)
    assert info["caller_failures"] == 0, info
    if shared:
        assert info["assume_role_calls"] <= ROLES * 1.1, info


def test_memory_per_role(benchmark: Any, redis: RedisServer) -> None:
    benchmark.group = MEMORY
    benchmark.name = "MEMORY USAGE per role entry"
    info = _once(benchmark, lambda: shared_tier.memory_per_role(redis))
    benchmark.extra_info.update(info)
    assert info["entries"] == info["roles"]


@pytest.mark.timeout(600)
def test_serve_concurrent_clients(benchmark: Any) -> None:
    benchmark.group = SERVE
    benchmark.name = "creds-core serve, 1,000 concurrent clients"
    info = _once(benchmark, lambda: shared_tier.serve_load(1000))
    benchmark.extra_info.update(info)
    assert info["errors"] == 0, info
