"""ApiLimits through the asyncio door: an attempt waits for its token with an await on the
caller's loop (the loop keeps running), throttling slows the work instead of failing it, and
role sessions inherit their source's limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiobotocore.config import AioConfig

import creds_core.aiobotocore as ca
import creds_core.boto3
from creds_core import ApiLimits, Credentials
from creds_core.testing import StsServer

pytestmark = pytest.mark.usefixtures("isolated_aws")

REGION = "us-east-1"
SECRET = "SECRET-SENTINEL-api-limits-aio"
ONE_ATTEMPT = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture
def sts() -> Iterator[StsServer]:
    with StsServer(latency=0.0, max_requests=5_000, max_seconds=120) as server:
        yield server


def _session(limits: ApiLimits, key: str = "AKIAAPILIMITSAIO0001") -> Any:
    session = ca.session(lambda: Credentials(key, SECRET), api_limits=limits)
    session.set_config_variable("region", REGION)
    return session


def test_calls_draw_from_the_bucket_and_throttling_never_fails_them(sts: StsServer) -> None:
    sts.rate, sts.burst = 20.0, 5.0
    limits = ApiLimits()
    session = _session(limits)

    async def main() -> list[Any]:
        async with session.create_client("sts", endpoint_url=sts.url, config=ONE_ATTEMPT) as client:

            async def work() -> None:
                for _ in range(10):
                    await client.get_caller_identity()

            return await asyncio.gather(*(work() for _ in range(8)), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert [o for o in outcomes if o is not None] == []
    (stats,) = limits.stats().values()
    assert sts.counts["throttled"] > 0
    assert stats["throttled"] == sts.counts["throttled"]
    assert stats["acquired"] == sts.counts["GetCallerIdentity"]
    assert sts.counts["GetCallerIdentity"] - sts.counts["throttled"] == 80


def test_a_wait_for_a_token_never_blocks_the_loop(sts: StsServer) -> None:
    # One token a minute: the second call waits about 60 s for its token.  While it waits,
    # the loop must run other work at once; it is then cancelled.
    limits = ApiLimits({"sts": {"rate": 1 / 60, "burst": 1}}, headroom=0.0)
    session = _session(limits)

    async def main() -> tuple[float, bool]:
        async with session.create_client("sts", endpoint_url=sts.url) as client:
            await client.get_caller_identity()  # the burst
            started = time.monotonic()
            waiting = asyncio.ensure_future(client.get_caller_identity())
            stats: dict[str, Any] = {}
            while not stats or stats["waited"] < 1:  # the loop runs while the call waits
                await asyncio.sleep(0.01)
                (stats,) = limits.stats().values()
            seen_after = time.monotonic() - started
            was_waiting = not waiting.done()
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            return seen_after, was_waiting

    seen_after, was_waiting = asyncio.run(main())
    assert was_waiting
    # A blocked loop would only get here after the 60 s wait: generous, not tight.
    assert seen_after < 30.0
    assert sts.counts["GetCallerIdentity"] == 1


def test_role_sessions_inherit_the_sources_limits(sts: StsServer) -> None:
    limits = ApiLimits()
    source = _session(limits)
    arn = "arn:aws:iam::345678901234:role/auditor"
    role = ca.assume_role(source, arn, endpoint_url=sts.url)
    assert creds_core.boto3.api_limits_of(role) is limits
    sync_source = creds_core.boto3.session(
        aws_access_key_id="AKIAAPILIMITSSYNC001",
        aws_secret_access_key=SECRET,
        region_name=REGION,
        api_limits=limits,
    )
    from_sync = ca.assume_role(sync_source, arn, endpoint_url=sts.url)
    assert creds_core.boto3.api_limits_of(from_sync) is limits
    assert creds_core.boto3.api_limits_of(ca.assume_role(source, arn, api_limits=False)) is None

    async def main() -> None:
        async with role.create_client("sts", endpoint_url=sts.url) as client:
            await client.get_caller_identity()

    asyncio.run(main())
    assert {s["account"] for s in limits.stats().values()} == {"345678901234"}


def test_against_a_throttling_ec2_no_call_fails_and_the_loop_keeps_ticking() -> None:
    # EC2's bucket (3 tokens, 10 a second) is smaller than ApiLimits believes (20 at 40/s):
    # 24 calls from 8 coroutines wait for tokens and meet throttled answers for about two
    # seconds.  A ticker on the same loop (every 5 ms) records its gaps: waits that blocked
    # the loop would add up to stalls of about the whole run.
    from creds_core.testing import Ec2Server

    limits = ApiLimits({"ec2:Describe*": {"rate": 40, "burst": 20}}, max_wait=600)
    with Ec2Server(quotas={"non-mutating": (3, 10)}, max_seconds=60) as ec2:
        session = _session(limits, key="AKIAAPILIMITSAIOEC21")

        async def main() -> tuple[list[Any], list[float], float]:
            gaps: list[float] = []
            stop = asyncio.Event()

            async def ticker() -> None:
                last = time.monotonic()
                while not stop.is_set():
                    await asyncio.sleep(0.005)
                    now = time.monotonic()
                    gaps.append(now - last)
                    last = now

            ticking = asyncio.ensure_future(ticker())
            started = time.monotonic()
            async with session.create_client(
                "ec2", endpoint_url=ec2.url, config=ONE_ATTEMPT
            ) as client:

                async def work() -> None:
                    for _ in range(3):
                        await client.describe_volumes(MaxResults=5)

                outcomes = await asyncio.gather(*(work() for _ in range(8)), return_exceptions=True)
            wall = time.monotonic() - started
            stop.set()
            await ticking
            return outcomes, gaps, wall

        outcomes, gaps, wall = asyncio.run(main())
        throttled = ec2.counts["throttled"]
        assert [o for o in outcomes if o is not None] == []
        assert ec2.counts["DescribeVolumes"] - throttled == 24
    (stats,) = limits.stats().values()
    assert stats["waited"] > 0 and stats["throttled"] == throttled
    # Generous, for a busy machine that delays some ticks: waits that blocked the loop stall
    # it for nearly the whole run (measured: 2.6 s of 2.8 s), a loop that runs for far less.
    stalled = sum(gap for gap in gaps if gap > 0.05)
    assert wall > 1.0, "the calls must have waited for this to prove much"
    assert stalled < 0.5 * wall, (stalled, wall)
