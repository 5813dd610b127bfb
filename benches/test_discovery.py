"""A prezidig-like discovery against the local EC2 with EC2's real default quotas:
creds_core's ApiLimits against botocore's retry modes, and a fleet of processes sharing
ApiLimits through Redis.

10 accounts (static keys the server maps to their accounts), 32 threads: per account the
instances are listed 5 a page through botocore's paginator (60 pages: 60 DescribeInstances
calls), and each page describes the volumes of each of its instances (300 DescribeVolumes
calls) and its instances' security groups (60 DescribeSecurityGroups calls): see
``creds_core._cli.discovery``.  The Ec2Server (``creds_core.testing.Ec2Server``: a bucket of
100 tokens refilled at 20 a second per account, Region and API, ``RequestLimitExceeded``
beyond it, 5 ms per answer) runs in this process; each case runs in fresh processes
(``discovery_worker.py``), so that the server's CPU is not the clients'.

The quota floor: no client can do better than the server's buckets allow, and each account's
DescribeVolumes bucket has to serve 300 calls from a bucket of 100 refilled at 20 a second:
(300 - 100) / 20 = 10 s (the other buckets serve 60 calls each, within their burst).  The
buckets of all accounts refill in parallel, so the floor of the whole discovery is the floor
of one bucket.  The fleet row: 3 processes, each a third
of the pages of the same 10 accounts (so the same 300 calls per bucket: the same floor), with
``ApiLimits(shared=RedisTier(...))`` on a local redis-server.  A client per work item is
measured for creds_core and botocore's adaptive mode only: that layout is bound by making the
clients (about 35 s a row), not by the quotas.

make bench     (or: .venv/bin/python -m pytest benches/test_discovery.py --benchmark-only -s)
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from harness import QUICK

from creds_core._cli.discovery import PAGE_SIZE, quota_floor
from creds_core._ec2_quotas import EC2_CATEGORIES
from creds_core.testing import Ec2Server

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).with_name("discovery_worker.py")
GROUP = "api limits: discovery"
ACCOUNTS = 10
THREADS = 32
PAGES = 12 if QUICK else 60  # DescribeInstances pages per account, a volumes call per instance
DELAY = 0.005
FLEET = 3
KEY = base64.b64encode(b"d" * 32).decode()
KEYS = {f"AKIABENCHDISCOVER{n:03d}": f"{100000000000 + n:012d}" for n in range(ACCOUNTS)}

#: (id, library, retry mode, total attempts, client layout, processes)
CASES = [
    ("creds_core-account", "creds_core", "standard", 3, "account", 1),
    ("creds_core-item", "creds_core", "standard", 3, "item", 1),
    ("creds_core-fleet", "creds_core", "standard", 3, "account", FLEET),
    *(
        (f"{mode}-{attempts}-account", "botocore", mode, attempts, "account", 1)
        for mode in ("legacy", "standard", "adaptive")
        for attempts in (3, 10)
    ),
    ("adaptive-3-item", "botocore", "adaptive", 3, "item", 1),
    ("adaptive-10-item", "botocore", "adaptive", 10, "item", 1),
]


def label(library: str, mode: str, attempts: int, layout: str, processes: int) -> str:
    clients = "a client per account" if layout == "account" else "a client per work item"
    if library == "creds_core":
        fleet = f", {processes} processes sharing Redis" if processes > 1 else ""
        return f"creds_core ApiLimits ({clients}{fleet})"
    return f"botocore {mode}, {attempts} attempts ({clients})"


def _run_case(
    library: str, mode: str, attempts: int, layout: str, processes: int
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "library": library,
        "mode": mode,
        "attempts": attempts,
        "layout": layout,
        "keys": KEYS,
        "threads": THREADS,
        "max_pages": PAGES // processes,
    }
    with (
        tempfile.TemporaryDirectory() as directory,
        Ec2Server(
            accounts=KEYS,
            instances=PAGES * PAGE_SIZE,
            delay=DELAY,
            max_requests=2_000_000,
            max_seconds=3600,
        ) as ec2,
    ):
        redis = None
        if processes > 1:
            sys.path.insert(0, str(ROOT / "tests"))
            from redis_fixtures import RedisServer

            redis = RedisServer(Path(directory)).start()
            spec |= {"redis_url": redis.url, "redis_key": KEY}
        try:
            spec |= {"url": ec2.url, "start_at": time.time() + 2.0}  # after the imports
            workers = [
                subprocess.Popen(
                    [sys.executable, str(WORKER), json.dumps(spec)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(processes)
            ]
            outputs = [w.communicate(timeout=1800) for w in workers]
        finally:
            if redis is not None:
                redis.stop()
        for worker, (_, err) in zip(workers, outputs):
            assert worker.returncode == 0, err[-4000:]
        infos = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        requests, counts, served = ec2.requests, ec2.counts, ec2.bucket_counts()
    busiest = max(c["requests"] - c["throttled"] for c in served.values())
    floor = quota_floor(PAGES * PAGE_SIZE, *EC2_CATEGORIES["non-mutating"])
    seconds = max(i["seconds"] for i in infos)  # the processes start at the same moment
    return {
        "seconds": seconds,
        "floor_seconds": floor,
        "wall_over_floor": seconds / floor if floor else None,
        "failed": sum(i["failed"] for i in infos),
        "failures_by_code": _merge(i["failures_by_code"] for i in infos),
        "calls": sum(i["calls"] for i in infos),
        "expected_calls": ACCOUNTS * PAGES * (PAGE_SIZE + 2),
        "requests": requests,
        "throttled": counts["throttled"],
        "busiest_bucket_calls": busiest,
        "clients": sum(i["clients"] for i in infos),
        "instances": sum(i["instances"] for i in infos),
        "processes": processes,
        "accounts": ACCOUNTS,
        "pages": PAGES,
        "threads": THREADS,
        "delay": DELAY,
        "redis": [i.get("redis") for i in infos] if processes > 1 else None,
    }


def _merge(dicts: Any) -> dict[str, int]:
    merged: dict[str, int] = {}
    for d in dicts:
        for code, n in d.items():
            merged[code] = merged.get(code, 0) + n
    return merged


@pytest.mark.timeout(3600)
@pytest.mark.parametrize(
    ("library", "mode", "attempts", "layout", "processes"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_discovery(
    benchmark: Any, library: str, mode: str, attempts: int, layout: str, processes: int
) -> None:
    benchmark.group = GROUP
    benchmark.name = label(library, mode, attempts, layout, processes)
    infos: list[dict[str, Any]] = []
    benchmark.pedantic(
        lambda: infos.append(_run_case(library, mode, attempts, layout, processes)),
        rounds=1,
        iterations=1,
    )
    info = infos[0]
    benchmark.extra_info.update(info | {"label": benchmark.name, "layout": layout})
    print(f"\n{benchmark.name}: {json.dumps(info)}")
    if library == "creds_core":
        assert info["failed"] == 0, info
        assert info["calls"] == info["expected_calls"], info
