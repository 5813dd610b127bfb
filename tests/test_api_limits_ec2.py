"""ApiLimits against the local EC2 (creds_core.testing.Ec2Server), with real signed calls:
throttling never reaches the application, every call and throttled answer is counted, the
buckets of ApiLimits are the server's buckets (one table of EC2's quotas), accounts do not
share buckets, and a failing EC2 opens the breaker.  The server's quotas are small so that
each test takes about a second."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

import creds_core.boto3
from creds_core import ApiLimits, Credentials
from creds_core.api_limits import ApiCircuitOpen
from creds_core.testing import Ec2Server

pytestmark = pytest.mark.usefixtures("isolated_aws")

REGION = "us-west-2"
SECRET = "SECRET-SENTINEL-api-limits-ec2"
ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1})
ACCOUNTS = {"AKIAAPILIMITSEC2A001": "111111111111", "AKIAAPILIMITSEC2B002": "222222222222"}
KEY_A, KEY_B = ACCOUNTS


def account_session(key: str, limits: ApiLimits | None) -> boto3.Session:
    """A session of ``key``'s account (the credentials carry the account id, as a role's do)."""
    credentials = Credentials(key, SECRET, account_id=ACCOUNTS[key])
    return creds_core.boto3.session(lambda: credentials, api_limits=limits, region_name=REGION)


def ec2_client(server: Ec2Server, key: str, limits: ApiLimits | None) -> Any:
    session = account_session(key, limits)
    return session.client("ec2", endpoint_url=server.url, config=ONE_ATTEMPT)


@pytest.fixture
def ec2() -> Iterator[Ec2Server]:
    # Describe* buckets of 5 tokens refilled at 50 a second: 60 calls take about a second.
    with Ec2Server(
        accounts=ACCOUNTS,
        quotas={"non-mutating": (5, 50), "unfiltered": (5, 50)},
        instances=40,
        max_requests=5_000,
        max_seconds=120,
    ) as server:
        yield server


def hammer(client: Any, threads: int = 8, calls: int = 8) -> list[BaseException]:
    """``threads`` threads making ``calls`` DescribeVolumes each; the exceptions raised."""
    errors: list[BaseException] = []

    def work(_: int) -> None:
        for _ in range(calls):
            try:
                client.describe_volumes(MaxResults=5)
            except BaseException as exc:  # counted and asserted by the caller
                errors.append(exc)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    return errors


def test_sustained_throttling_never_fails_a_call(ec2: Ec2Server) -> None:
    # ApiLimits believes in a bucket four times too big: EC2 throttles, every call still
    # succeeds (one botocore attempt each; ApiLimits retries through the bucket).
    limits = ApiLimits({"ec2:Describe*": {"rate": 200, "burst": 20}}, max_wait=600)
    errors = hammer(ec2_client(ec2, KEY_A, limits))
    assert errors == []
    throttled = ec2.counts["throttled"]
    assert throttled > 0, "the server must have throttled for this to prove much"
    assert ec2.counts["DescribeVolumes"] - throttled == 64
    (stats,) = limits.stats().values()
    assert stats["throttled"] == throttled
    assert stats["acquired"] == ec2.counts["DescribeVolumes"]
    assert stats["current_rate"] is not None and stats["current_rate"] < 200


def test_botocore_alone_fails_the_same_work(ec2: Ec2Server) -> None:
    # The control: the same client and calls without ApiLimits.
    errors = hammer(ec2_client(ec2, KEY_A, None))
    assert errors, "without ApiLimits, some calls must fail here"
    codes = {e.response["Error"]["Code"] for e in errors}  # type: ignore[attr-defined]
    assert codes == {"RequestLimitExceeded"}


def test_a_discovery_draws_from_the_servers_buckets_and_counts_every_call(
    ec2: Ec2Server,
) -> None:
    # EC2's own defaults on the client (no rule), the server's buckets smaller: the routes
    # must agree (same bucket names per account and Region), and each call is counted once.
    limits = ApiLimits(max_wait=600)
    client = ec2_client(ec2, KEY_A, limits)
    pages = 0
    for page in client.get_paginator("describe_instances").paginate(
        PaginationConfig={"PageSize": 5}
    ):
        pages += 1
        ids = [i["InstanceId"] for r in page["Reservations"] for i in r["Instances"]]
        client.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": ids}])
    client.describe_security_groups()
    client.describe_instances()  # a whole-account scan: the "unfiltered" bucket
    assert pages == 8
    ours = {(s["account"], s["region"], s["bucket"]) for s in limits.stats().values()}
    assert ours == set(ec2.bucket_counts())
    assert limits.totals()["acquired"] == ec2.requests
    served = ec2.bucket_counts()[("111111111111", REGION, "DescribeInstances")]
    assert served["requests"] - served["throttled"] == pages


def test_accounts_do_not_share_buckets(ec2: Ec2Server) -> None:
    limits = ApiLimits({"ec2:Describe*": {"rate": 50, "burst": 5}}, headroom=0.0)
    a, b = ec2_client(ec2, KEY_A, limits), ec2_client(ec2, KEY_B, limits)
    for _ in range(15):  # account A: its burst, then 10 calls that wait for its rate
        a.describe_volumes(MaxResults=5)
    for _ in range(5):  # account B's burst is whole
        b.describe_volumes(MaxResults=5)
    stats = {s["account"]: s for s in limits.stats().values()}
    assert stats["111111111111"]["waited"] >= 10
    assert stats["222222222222"]["waited"] == 0 and stats["222222222222"]["acquired"] == 5
    served = ec2.bucket_counts()
    assert served[("222222222222", REGION, "DescribeVolumes")] == {"requests": 5, "throttled": 0}


def test_a_failing_ec2_opens_the_breaker_and_calls_fail_fast(ec2: Ec2Server) -> None:
    limits = ApiLimits(failure_threshold=3, cooldown=60)
    client = ec2_client(ec2, KEY_A, limits)
    ec2.mode = "error"
    for _ in range(3):
        with pytest.raises(botocore.exceptions.ClientError, match="InternalError"):
            client.describe_volumes(MaxResults=5)
    sent = ec2.requests
    with pytest.raises(ApiCircuitOpen, match="HTTP 500 InternalError") as caught:
        client.describe_volumes(MaxResults=5)
    assert ec2.requests == sent, "failed fast: nothing was sent"
    assert caught.value.account == "111111111111" and caught.value.region == REGION
    # Another account's bucket (and breaker) is its own.
    ec2.mode = "ok"
    ec2_client(ec2, KEY_B, limits).describe_volumes(MaxResults=5)
    assert SECRET not in str(caught.value)
