"""ApiLimits(shared=RedisTier): the buckets of known quotas are fleet-wide (GCRA in Redis,
drawn in small batches), a throttling answer slows every process down, and Redis failing
degrades to the local buckets, never to an error."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.config import Config
from redis_fixtures import RedisServer

import creds_core.boto3
from creds_core import ApiLimits
from creds_core.redis import RedisTier
from creds_core.testing import StsServer

pytestmark = pytest.mark.usefixtures("isolated_aws")

KEY = base64.b64encode(b"a" * 32).decode()
REGION = "us-east-1"
SECRET = "SECRET-SENTINEL-api-limits-redis"
ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1})


def tier(server: RedisServer, **options: object) -> RedisTier:
    return RedisTier(server.url, key=KEY, namespace="api-test", **options)  # type: ignore[arg-type]


def limits_of(t: RedisTier | None, rate: float, burst: float) -> ApiLimits:
    return ApiLimits({"sts": {"rate": rate, "burst": burst}}, headroom=0.0, shared=t)


def session(limits: ApiLimits) -> boto3.Session:
    return creds_core.boto3.session(
        aws_access_key_id="AKIAAPILIMITSREDIS01",
        aws_secret_access_key=SECRET,
        region_name=REGION,
        api_limits=limits,
    )


@pytest.fixture
def sts() -> Iterator[StsServer]:
    with StsServer(latency=0.0, max_requests=5_000, max_seconds=120) as server:
        yield server


def test_two_processes_share_one_burst(redis_server: RedisServer) -> None:
    # Two ApiLimits, as two processes have: 20 admissions between them, alternating, within
    # far less than a second at 1 token a second: only the one burst of 10 starts at once.
    a = limits_of(tier(redis_server), rate=1.0, burst=10)
    b = limits_of(tier(redis_server), rate=1.0, burst=10)
    bucket_a = a.bucket("111111111111", REGION, "sts", "GetCallerIdentity")
    bucket_b = b.bucket("111111111111", REGION, "sts", "GetCallerIdentity")
    waits = []
    for i in range(20):
        admitted = (bucket_a if i % 2 else bucket_b).admit()
        assert admitted is not None
        waits.append(admitted[0])
    immediate = sum(1 for w in waits if w == 0.0)
    assert 10 <= immediate <= 11, waits
    # Without the tier each process has its own burst of 10: all 20 start at once.
    alone = [limits_of(None, 1.0, 10), limits_of(None, 1.0, 10)]
    local = [alone[i % 2].bucket("1", REGION, "sts", "X").admit() for i in range(20)]
    assert sum(1 for w in local if w is not None and w[0] == 0.0) == 20


def test_tokens_are_drawn_in_batches(redis_server: RedisServer) -> None:
    t = tier(redis_server)
    limits = limits_of(t, rate=100.0, burst=100)
    bucket = limits.bucket("111111111111", REGION, "sts", "GetCallerIdentity")
    for _ in range(50):
        bucket.admit()
    assert t.stats()["bucket_draws"] == 5  # batches of a tenth of the capacity


def test_a_throttle_in_one_process_slows_the_others(redis_server: RedisServer) -> None:
    a = limits_of(tier(redis_server), rate=10.0, burst=1)
    b = limits_of(tier(redis_server), rate=10.0, burst=1)
    bucket_a = a.bucket("111111111111", REGION, "sts", "GetCallerIdentity")
    bucket_b = b.bucket("111111111111", REGION, "sts", "GetCallerIdentity")
    bucket_a.throttled()  # the fleet's rate halves: 5 tokens a second, no burst
    admitted = bucket_b.admit()
    assert admitted is not None
    assert admitted[0] >= 0.15, "b's next token waits for the slower fleet-wide rate"
    assert b.shared is not None and a.shared is not None
    assert a.shared.stats()["bucket_cuts"] == 1


def test_redis_down_degrades_to_the_local_bucket(redis_server: RedisServer, sts: StsServer) -> None:
    t = tier(redis_server, socket_timeout=0.2, socket_connect_timeout=0.2)
    limits = limits_of(t, rate=1000.0, burst=10)  # batches of one: every call asks Redis
    client = session(limits).client("sts", endpoint_url=sts.url, config=ONE_ATTEMPT)
    client.get_caller_identity()
    redis_server.stop()
    for _ in range(5):
        client.get_caller_identity()  # never an error because of Redis
    assert t.stats()["redis_errors"] >= 1
    (stats,) = limits.stats().values()
    assert stats["acquired"] == 6


def test_a_fleet_on_one_quota_makes_no_call_fail(redis_server: RedisServer, sts: StsServer) -> None:
    # Three "processes" (ApiLimits over one Redis), 4 threads each, 60 calls in all against a
    # server allowing 30 a second with a burst of 10, each call given one botocore attempt.
    sts.rate, sts.burst = 30.0, 10.0
    fleet = [limits_of(tier(redis_server), rate=30.0, burst=9) for _ in range(3)]
    clients = [
        session(limits).client("sts", endpoint_url=sts.url, config=ONE_ATTEMPT) for limits in fleet
    ]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        for _ in range(5):
            try:
                clients[i % 3].get_caller_identity()
            except BaseException as exc:  # counted and asserted below
                errors.append(exc)

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(work, range(12)))
    assert errors == []
    assert sts.counts["GetCallerIdentity"] - sts.counts["throttled"] == 60
    assert sum(limits.totals()["acquired"] for limits in fleet) == sts.counts["GetCallerIdentity"]


def test_redis_going_down_mid_discovery_fails_no_ec2_call(redis_server: RedisServer) -> None:
    # EC2's own buckets (known quotas: fleet-wide through Redis), a small server bucket so the
    # calls also meet throttling; Redis stops half way, the calls go on with local buckets.
    from creds_core.testing import Ec2Server

    t = tier(redis_server, socket_timeout=0.2, socket_connect_timeout=0.2)
    limits = ApiLimits({"ec2:Describe*": {"rate": 40, "burst": 10}}, shared=t, max_wait=600)
    with Ec2Server(quotas={"non-mutating": (10, 40)}, max_seconds=60) as ec2:
        client = session(limits).client("ec2", endpoint_url=ec2.url, config=ONE_ATTEMPT)
        errors: list[BaseException] = []

        def work(_: int) -> None:
            for _ in range(5):
                try:
                    client.describe_volumes(MaxResults=5)
                except BaseException as exc:  # counted and asserted below
                    errors.append(exc)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(work, range(4)))
        assert t.stats()["bucket_draws"] > 0, "the first half drew tokens from Redis"
        redis_server.stop()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(work, range(4)))
        assert errors == []
        assert ec2.counts["DescribeVolumes"] - ec2.counts["throttled"] == 40
    assert t.stats()["redis_errors"] >= 1
    assert limits.totals()["acquired"] == ec2.counts["DescribeVolumes"]
