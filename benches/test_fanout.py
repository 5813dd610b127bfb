"""Multi-account fan-out: ready-to-use per-account S3 clients for many roles, through the
local StsServer (100 requests/s token bucket, 50 ms per answer), 20 worker threads.

Each case runs in a fresh process (``fanout_worker.py``), so that its peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``) and the memory its held clients add are its own; the
StsServer runs here and counts AssumeRole calls and throttled answers.

* creds_core (``creds_core.fanout.fan_out``, and ``creds_core.boto3.assume_role`` by hand,
  both with a shared ``Limiter`` at the server's rate, its burst a tenth under the server's
  bucket): 1,000 roles, and the fan-out helper with the
  peers' count for a like-for-like row.
* one boto3 session and a client per account made with the role's keys (the careful
  hand-written variant; its clients cannot refresh): 1,000 roles.
* the common pattern (a new boto3 Session and client per account, what botocove does) and
  aws-assume-role-lib: ``CREDS_CORE_BENCH_FANOUT_PEERS`` roles (default 200: at about 0.25 s
  and 13 MB per account, 1,000 accounts would take some 4 minutes and 13 GB per case on the
  2-core bench machine).  Their time and memory grow linearly with the number of accounts;
  the report compares per-account figures.

make bench     (or: .venv/bin/python -m pytest benches/test_fanout.py --benchmark-only)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import QUICK

from creds_core.testing import StsServer

GROUP = "fan-out: per-account S3 clients through the local StsServer"
WORKER = Path(__file__).with_name("fanout_worker.py")
ACCOUNTS = int(os.environ.get("CREDS_CORE_BENCH_FANOUT_ACCOUNTS", 100 if QUICK else 1000))
PEER_ACCOUNTS = int(os.environ.get("CREDS_CORE_BENCH_FANOUT_PEERS", 20 if QUICK else 200))
STS_RATE = 100.0
STS_DELAY = 0.05
NAMES = {
    "creds_core-fanout": "creds_core.fanout.fan_out + Limiter",
    "creds_core": "creds_core.boto3.assume_role + Limiter",
    "boto3": "new boto3 Session + client per account (botocove)",
    "boto3-clients": "one boto3 session, a client per account (static keys)",
    "aws-assume-role-lib": "aws-assume-role-lib",
}
CASES = [
    ("creds_core-fanout", ACCOUNTS),
    ("creds_core", ACCOUNTS),
    ("boto3-clients", ACCOUNTS),
    ("creds_core-fanout", PEER_ACCOUNTS),
    ("boto3", PEER_ACCOUNTS),
    ("aws-assume-role-lib", PEER_ACCOUNTS),
]
CASES = list(dict.fromkeys(CASES))  # one row when both counts are equal


def _run_case(case: str, accounts: int) -> dict[str, Any]:
    with StsServer(
        rate=STS_RATE, burst=STS_RATE, delay=STS_DELAY, max_seconds=3600, max_requests=100_000
    ) as sts:
        done = subprocess.run(
            [sys.executable, str(WORKER), case, str(accounts), sts.url, str(STS_RATE)],
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        info: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        counts = sts.counts
    info["sts_calls"] = counts["AssumeRole"]
    info["throttled"] = counts["throttled"]
    info["sts_rate"] = STS_RATE
    info["sts_delay"] = STS_DELAY
    return info


@pytest.mark.timeout(3600)
@pytest.mark.parametrize(("case", "accounts"), CASES, ids=[f"{c}-{n}" for c, n in CASES])
def test_fanout(benchmark: Any, case: str, accounts: int) -> None:
    benchmark.group = GROUP
    benchmark.name = f"{NAMES[case]} ({accounts:,} accounts)"
    infos: list[dict[str, Any]] = []
    benchmark.pedantic(lambda: infos.append(_run_case(case, accounts)), rounds=1, iterations=1)
    info = infos[0]
    benchmark.extra_info.update(info | {"label": NAMES[case]})
    assert info["ready_clients"] + info["caller_failures"] == accounts, info
    if case.startswith("creds_core"):
        # One AssumeRole per role, under the server's rate: no throttling, no failure.
        assert info["caller_failures"] == 0, info
        assert info["throttled"] == 0, info
        assert info["sts_calls"] == accounts, info
