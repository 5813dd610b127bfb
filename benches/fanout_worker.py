"""One multi-account fan-out case, in a fresh process:
``python fanout_worker.py CASE N URL STS_RATE``.

Prepares N ready-to-use per-account S3 clients (credentials of the account's role resolved
through the StsServer at URL) with a ThreadPoolExecutor of ``WORKERS`` threads, holds them
all, and prints one JSON line: wall time, caller failures, the resident memory the N held
clients add (current RSS after minus before, from /proc/self/statm) and the process's peak
RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``).  The STS side (calls, throttled
answers) is counted by the server, in the parent process.

Cases:

* ``creds_core-fanout``: ``creds_core.fanout.fan_out(lambda session, i: session.client("s3"),
  ...)`` with the same workers and ``Limiter`` as the next case (it assumes each role through
  ``creds_core.boto3.assume_role`` and resolves its credentials before calling the function).
* ``creds_core``: ``creds_core.boto3.assume_role(source, role, limiter=...)`` per account
  (one process-wide cache per role; sessions share the source session's botocore data
  loader), then ``session.client("s3")``.  The shared ``Limiter`` is set as a user would set
  it for a known STS quota: ``rate`` = the server's STS_RATE, and ``burst`` a tenth under the
  server's bucket (which holds one second of its rate), so that jitter in arrival times never
  empties the server's bucket.
* ``boto3``: the common pattern (what botocove does): ``sts.assume_role`` with one shared STS
  client, then a new ``boto3.Session(<the role's keys>)`` and ``session.client("s3")``.
* ``boto3-clients``: as ``boto3`` but without a Session per account: one client per account
  from the one source session, given the role's keys (the careful hand-written variant of
  ``benches/fanout_compare.py``).
* ``aws-assume-role-lib``: ``aws_assume_role_lib.assume_role(source, role)`` per account
  (a new botocore session per account, refreshable), then ``session.client("s3")``.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

WORKERS = 20  # botocove's default thread_workers
LIMITER_BURST_SHARE = 0.9  # of the server's bucket (one second of its rate)
LIMITER_CONCURRENCY = 20
CASES = ("creds_core-fanout", "creds_core", "boto3", "boto3-clients", "aws-assume-role-lib")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(case: str, accounts: int, url: str, sts_rate: float) -> dict[str, Any]:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from harness import REGION, offline_environ, resolve, role_arn, source_session

    offline_environ(os.environ, url)
    import boto3

    import creds_core.boto3
    from creds_core import Limiter

    source = source_session()
    limiter = Limiter(
        max_concurrency=LIMITER_CONCURRENCY,
        rate=sts_rate,
        burst=sts_rate * LIMITER_BURST_SHARE,
        name="sts",
    )
    if case == "creds_core-fanout":
        from creds_core.fanout import fan_out

        def fan(accounts: int) -> tuple[list[Any], int]:
            result = fan_out(
                lambda session, i: session.client("s3"),
                range(accounts),
                session=source,
                role_arn=role_arn,
                max_workers=WORKERS,
                progress=False,
                limiter=limiter,
                endpoint_url=url,
                role_session_name="fanout",
            )
            return list(result.results.values()), result.failed

    elif case == "creds_core":

        def one(i: int) -> Any:
            session = creds_core.boto3.assume_role(
                source, role_arn(i), role_session_name="fanout", endpoint_url=url, limiter=limiter
            )
            resolve(session)  # what its first signed request does
            return session.client("s3")

    elif case == "boto3":
        sts = source.client("sts", endpoint_url=url)

        def one(i: int) -> Any:
            creds = sts.assume_role(RoleArn=role_arn(i), RoleSessionName="fanout")["Credentials"]
            session = boto3.Session(
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
                region_name=REGION,
            )
            return session.client("s3")

    elif case == "boto3-clients":
        sts = source.client("sts", endpoint_url=url)

        def one(i: int) -> Any:
            creds = sts.assume_role(RoleArn=role_arn(i), RoleSessionName="fanout")["Credentials"]
            return source.client(
                "s3",
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
            )

    elif case == "aws-assume-role-lib":
        from aws_assume_role_lib.aws_assume_role_lib import assume_role

        def one(i: int) -> Any:
            session = assume_role(source, role_arn(i), RoleSessionName="fanout")
            resolve(session)
            return session.client("s3")

    else:
        raise SystemExit(f"unknown case {case!r}; expected one of {CASES}")

    if case != "creds_core-fanout":

        def fan(accounts: int) -> tuple[list[Any], int]:
            failures = 0
            lock = threading.Lock()

            def guarded(i: int) -> Any:
                nonlocal failures
                try:
                    return one(i)
                except Exception:  # botocove reports a failed account and goes on
                    with lock:
                        failures += 1
                    return None

            with ThreadPoolExecutor(WORKERS) as pool:
                return list(pool.map(guarded, range(accounts))), failures

    gc.collect()
    before = _rss_mb()
    began = time.perf_counter()
    clients, failures = fan(accounts)
    wall = time.perf_counter() - began
    gc.collect()
    held = _rss_mb() - before
    ready = [c for c in clients if c is not None]
    for client in ready:
        assert client.meta.service_model.service_name == "s3"
    return {
        "case": case,
        "accounts": accounts,
        "workers": WORKERS,
        "wall_seconds": wall,
        "seconds_per_account": wall / accounts,
        "caller_failures": failures,
        "ready_clients": len(ready),
        "held_mb": held,
        "held_mb_per_account": held / accounts,
        "peak_rss_mb": _peak_rss_mb(),
        "baseline_rss_mb": before,
    }


if __name__ == "__main__":
    name, count, endpoint, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    print(json.dumps(run(name, count, endpoint, rate)))
