"""One asyncio fan-out case, in a fresh process: ``python aio_fanout_worker.py CASE N URL``.

Prepares N ready per-account aiobotocore S3 clients (each account's role assumed through the
StsServer at URL, credentials resolved) from one event loop, at most ``CONCURRENCY`` accounts
at a time, holds them all, and prints one JSON line: wall time, caller failures, the longest
stall of the event loop (a ticker task sleeping 1 ms measures the largest gap between its
turns), the resident memory the N held clients add (RSS after minus before, /proc/self/statm)
and the peak RSS.  The STS side (calls, throttled answers) is counted by the server, in the
parent process.

Cases:

* ``creds_core``: ``creds_core.fanout.fan_out_async`` (``creds_core.aiobotocore.assume_role``
  per account: a cache per role behind the STS endpoint's Limiter, STS calls as coroutines on
  creds_core's own loop, role sessions from a shared template), ``fn`` makes the S3 client.
* ``creds_core-nogc``: the same with Python's cyclic garbage collector off during the fan-out:
  with a thousand clients held, a full collection stalls the loop for most of a second,
  whatever made the clients; this case shows the stalls that are not the collector's.
* ``aiobotocore``: the hand-written way: one STS client of the source AioSession calls
  ``assume_role`` per account (aiobotocore's default retries), then a new ``AioSession`` per
  account given the role's keys makes the S3 client.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import sys
import time
from typing import Any

CONCURRENCY = 64
CASES = ("creds_core", "creds_core-nogc", "aiobotocore")
REGION = "us-east-1"
SOURCE_KEY = "AKIAAIOFANOUTBENCH01"
SOURCE_SECRET = "aio-fanout-bench-source-secret-not-real"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def role_arn(i: int) -> str:
    return f"arn:aws:iam::{100_000_000_000 + i}:role/aio-fanout"


class Ticker:
    """The longest gap between turns of the running loop, beyond the 1 ms it sleeps."""

    def __init__(self) -> None:
        self.max_gap = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.001)
            self.max_gap = max(self.max_gap, loop.time() - before - 0.001)


async def run(case: str, accounts: int, url: str) -> dict[str, Any]:
    from aiobotocore.session import AioSession

    held: list[Any] = []
    failures = 0

    if case in ("creds_core", "creds_core-nogc"):
        import creds_core.aiobotocore as ca
        from creds_core.fanout import fan_out_async

        source = ca.session(lambda: {"AccessKeyId": SOURCE_KEY, "SecretAccessKey": SOURCE_SECRET})
        source.set_config_variable("region", REGION)

        async def fan() -> None:
            nonlocal failures

            async def make_client(session: Any, i: int) -> Any:
                return await session.create_client("s3", region_name=REGION).__aenter__()

            result = await fan_out_async(
                make_client,
                range(accounts),
                session=source,
                role_arn=role_arn,
                endpoint_url=url,
                role_session_name="aio-fanout",
                max_concurrency=CONCURRENCY,
                progress=False,
            )
            held.extend(result.results.values())
            failures = result.failed

    elif case == "aiobotocore":
        source = AioSession()
        source.set_credentials(SOURCE_KEY, SOURCE_SECRET)

        async def fan() -> None:
            nonlocal failures
            gate = asyncio.Semaphore(CONCURRENCY)
            async with source.create_client("sts", region_name=REGION, endpoint_url=url) as sts:

                async def one(i: int) -> None:
                    nonlocal failures
                    async with gate:
                        try:
                            answer = await sts.assume_role(
                                RoleArn=role_arn(i), RoleSessionName="aio-fanout"
                            )
                            creds = answer["Credentials"]
                            session = AioSession()
                            session.set_credentials(
                                creds["AccessKeyId"],
                                creds["SecretAccessKey"],
                                creds["SessionToken"],
                            )
                            client = session.create_client("s3", region_name=REGION)
                            held.append(await client.__aenter__())
                        except Exception:  # a failed account is reported, the others go on
                            failures += 1

                await asyncio.gather(*(one(i) for i in range(accounts)))

    else:
        raise SystemExit(f"unknown case {case!r}; expected one of {CASES}")

    gc.collect()
    before = _rss_mb()
    ticker = Ticker()
    tick = asyncio.ensure_future(ticker.run())
    await asyncio.sleep(0.01)
    if case.endswith("-nogc"):
        gc.disable()
    started = time.perf_counter()
    await fan()
    elapsed = time.perf_counter() - started
    gc.enable()
    tick.cancel()
    gc.collect()
    after = _rss_mb()
    result = {
        "case": case,
        "accounts": accounts,
        "seconds": elapsed,
        "failures": failures,
        "held_clients": len(held),
        "max_loop_stall": ticker.max_gap,
        "held_mb": after - before,
        "held_mb_per_account": (after - before) / max(1, len(held)),
        "peak_rss_mb": _peak_rss_mb(),
    }
    for client in held:
        await client.__aexit__(None, None, None)
    return result


def main() -> None:
    case, accounts, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from harness import offline_environ

    offline_environ(os.environ, url)
    print(json.dumps(asyncio.run(run(case, accounts, url))))


if __name__ == "__main__":
    main()
