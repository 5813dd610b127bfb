"""ApiLimits: every API call of every client waits for its (account, region, service, bucket)
token, throttling slows the whole process down instead of failing calls, and a failing
service opens the bucket's breaker.  Against the local STS (GetCallerIdentity is an ordinary
API call; AssumeRole is a credential fetch and stays with the credential Limiter)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

import creds_core.boto3
from creds_core import ApiLimits
from creds_core.api_limits import ApiCircuitOpen, ApiRule, classify
from creds_core.testing import ManualClock, StsServer

pytestmark = pytest.mark.usefixtures("isolated_aws")

REGION = "us-east-1"
SECRET = "SECRET-SENTINEL-api-limits"
ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1})


def static_session(
    key: str = "AKIAAPILIMITS0000001", *, api_limits: ApiLimits | None = None, region: str = REGION
) -> boto3.Session:
    return creds_core.boto3.session(
        aws_access_key_id=key,
        aws_secret_access_key=SECRET,
        region_name=region,
        api_limits=api_limits,
    )


@pytest.fixture
def sts() -> Iterator[StsServer]:
    with StsServer(latency=0.0, max_requests=5_000, max_seconds=120) as server:
        yield server


# --- routing: which bucket a call draws from --------------------------------------------------


def test_rules_match_in_order_and_ec2_uses_its_documented_per_api_buckets() -> None:
    limits = ApiLimits({"ec2:DescribeVolumes": {"rate": 1}, "iam": {"rate": 10, "burst": 20}})
    volumes = limits.bucket("111111111111", REGION, "ec2", "DescribeVolumes")
    instances = limits.bucket("111111111111", REGION, "ec2", "DescribeInstances")
    tags = limits.bucket("111111111111", REGION, "ec2", "CreateTags")
    users = limits.bucket("111111111111", REGION, "iam", "ListUsers")
    roles = limits.bucket("111111111111", REGION, "iam", "ListRoles")
    assert volumes.bucket == "ec2:DescribeVolumes" and volumes.limiter.rate == 1.0
    # No rule: EC2's table, one bucket per API (non-mutating 100 / 20, mutating 200 / 5).
    assert (instances.bucket, instances.quota) == ("DescribeInstances", (100.0, 20.0))
    assert (tags.bucket, tags.quota) == ("CreateTags", (200.0, 5.0))
    # One bucket per rule unless per_operation: IAM's quota is account-wide.
    assert users is roles and users.limiter.rate == 10.0
    # headroom: 10 % of a known capacity is left unspent for arrival jitter.
    assert instances.limiter.burst == pytest.approx(90.0)


def test_unfiltered_describe_calls_have_ec2s_smaller_bucket() -> None:
    limits = ApiLimits()
    whole = limits.bucket("1", REGION, "ec2", "DescribeInstances", {"Action": "DescribeInstances"})
    paged = limits.bucket("1", REGION, "ec2", "DescribeInstances", {"MaxResults": "5"})
    by_id = limits.bucket("1", REGION, "ec2", "DescribeVolumes", {"VolumeId.1": "vol-1"})
    assert (whole.bucket, whole.quota) == ("DescribeInstances:unfiltered", (50.0, 10.0))
    assert paged.bucket == "DescribeInstances"
    assert by_id.bucket == "DescribeVolumes"


def test_buckets_are_per_account_and_region_and_unknown_services_start_unlimited() -> None:
    limits = ApiLimits()
    a = limits.bucket("111111111111", "eu-west-1", "s3", "ListBuckets")
    b = limits.bucket("222222222222", "eu-west-1", "s3", "ListBuckets")
    c = limits.bucket("111111111111", "us-west-2", "s3", "ListBuckets")
    assert len({id(a), id(b), id(c)}) == 3
    assert a is limits.bucket("111111111111", "eu-west-1", "s3", "GetObject")
    assert a.limiter.rate is None and a.quota is None
    assert set(limits.stats()) == {
        "111111111111/eu-west-1/s3/s3",
        "222222222222/eu-west-1/s3/s3",
        "111111111111/us-west-2/s3/s3",
    }


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"ec2": {"rate": -1}}, "rate"),
        ({"ec2": {"rate": float("nan")}}, "rate"),
        ({"ec2": {"rate": 1e300}}, "rate"),
        ({"ec2": {"burst": 0}}, "burst"),
        ({"ec2": {"rpm": 5}}, "unknown keys"),
        ({"": {"rate": 1}}, "rule"),
    ],
)
def test_bad_rules_are_clear_errors(rules: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ApiLimits(rules)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_wait": 0}, "max_wait"),
        ({"headroom": 1.0}, "headroom"),
        ({"cooldown": -1}, "cooldown"),
    ],
)
def test_bad_options_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ApiLimits(**kwargs)


def test_a_rule_pattern_matches_service_and_operation_glob() -> None:
    rule = ApiRule.parse("ec2:Describe*", {"rate": 2})
    assert rule.matches("ec2", "DescribeInstances")
    assert not rule.matches("ec2", "CreateTags")
    assert not rule.matches("ec2-instance-connect", "DescribeInstances")


def test_outcomes_are_classified_as_the_bucket_needs() -> None:
    class Http:
        def __init__(self, status: int) -> None:
            self.status_code = status

    assert classify((Http(200), {}), None)[0] == "success"
    assert classify((Http(400), {"Error": {"Code": "AccessDenied"}}), None)[0] == "success"
    assert classify((Http(503), {"Error": {"Code": "RequestLimitExceeded"}}), None)[0] == (
        "throttled"
    )
    assert classify((Http(400), {"Error": {"Code": "Throttling"}}), None)[0] == "throttled"
    assert classify((Http(429), {}), None)[0] == "throttled"
    assert classify((Http(500), {"Error": {"Code": "InternalFailure"}}), None) == (
        "failure",
        "HTTP 500 InternalFailure",
    )
    refused = botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    assert classify(None, refused)[0] == "failure"


# --- real clients against the local STS ------------------------------------------------------


def test_every_call_of_every_client_draws_from_the_shared_bucket(sts: StsServer) -> None:
    limits = ApiLimits({"sts": {"rate": 1000, "burst": 1000}})
    session = static_session(api_limits=limits)
    clients = [session.client("sts", endpoint_url=sts.url) for _ in range(3)]
    for client in clients:
        for _ in range(4):
            client.get_caller_identity()
    (stats,) = limits.stats().values()
    assert stats["acquired"] == 12 == sts.counts["GetCallerIdentity"]
    assert (stats["account"], stats["region"], stats["service"]) == (
        "AKIAAPILIMITS0000001",  # static keys without an account id: the access key
        REGION,
        "sts",
    )
    assert creds_core.boto3.api_limits_of(session) is limits


def test_calls_past_the_burst_wait_for_the_rate_in_order(sts: StsServer) -> None:
    # A frozen ManualClock: every reservation past the burst is 10 ms further out.
    limits = ApiLimits({"sts": {"rate": 100, "burst": 2}}, headroom=0.0, clock=ManualClock())
    client = static_session(api_limits=limits).client("sts", endpoint_url=sts.url)
    started = time.monotonic()
    for _ in range(6):
        client.get_caller_identity()
    elapsed = time.monotonic() - started
    (stats,) = limits.stats().values()
    assert stats["acquired"] == 6
    assert stats["waited"] == 4
    assert elapsed >= 0.01 + 0.02 + 0.03 + 0.04 - 0.005, "each waited its 10 ms more"


def test_the_account_is_the_credentials_account_id(sts: StsServer) -> None:
    limits = ApiLimits()
    source = static_session(api_limits=limits)
    arn = "arn:aws:iam::210987654321:role/reader"
    role = creds_core.boto3.assume_role(source, arn, endpoint_url=sts.url)
    assert creds_core.boto3.api_limits_of(role) is limits  # inherited from its source
    role.client("sts", endpoint_url=sts.url).get_caller_identity()
    accounts = {s["account"] for s in limits.stats().values()}
    assert accounts == {"210987654321"}  # AssumeRole itself is not an API-bucket call
    no_limits = creds_core.boto3.assume_role(source, arn, endpoint_url=sts.url, api_limits=False)
    assert creds_core.boto3.api_limits_of(no_limits) is None


def test_sustained_throttling_slows_the_work_instead_of_failing_it(sts: StsServer) -> None:
    sts.rate, sts.burst = 20.0, 5.0
    limits = ApiLimits()  # STS's GetCallerIdentity: unknown quota, learned from throttling
    client = static_session(api_limits=limits).client(
        "sts", endpoint_url=sts.url, config=ONE_ATTEMPT
    )
    errors: list[BaseException] = []

    def work(_: int) -> None:
        for _ in range(10):
            try:
                client.get_caller_identity()
            except BaseException as exc:  # counted and asserted below
                errors.append(exc)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    stats = next(iter(limits.stats().values()))
    assert errors == []
    assert sts.counts["throttled"] > 0, "the server must have throttled for this to prove much"
    assert stats["throttled"] == sts.counts["throttled"]
    assert stats["current_rate"] is not None, "the bucket learned a rate from the throttling"
    assert sts.counts["GetCallerIdentity"] - sts.counts["throttled"] == 80


def test_without_api_limits_the_same_work_fails(sts: StsServer) -> None:
    # The control for the test above: botocore alone, one attempt per call.
    sts.rate, sts.burst = 20.0, 5.0
    client = static_session().client("sts", endpoint_url=sts.url, config=ONE_ATTEMPT)
    failed = 0
    lock = threading.Lock()

    def work(_: int) -> None:
        nonlocal failed
        for _ in range(10):
            try:
                client.get_caller_identity()
            except botocore.exceptions.ClientError:
                with lock:
                    failed += 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    assert failed > 0


def test_a_throttled_call_gives_up_after_max_wait_as_botocore_would(sts: StsServer) -> None:
    sts.mode = "throttle"
    limits = ApiLimits(max_wait=0.5)
    client = static_session(api_limits=limits).client(
        "sts", endpoint_url=sts.url, config=ONE_ATTEMPT
    )
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.get_caller_identity()
    assert caught.value.response["Error"]["Code"] == "Throttling"
    assert sts.counts["throttled"] >= 2, "retried through the bucket before giving up"


def test_repeated_5xx_open_the_breaker_then_calls_fail_fast(sts: StsServer) -> None:
    sts.mode = "error"
    limits = ApiLimits(failure_threshold=3, cooldown=60)
    client = static_session(api_limits=limits).client(
        "sts", endpoint_url=sts.url, config=ONE_ATTEMPT
    )
    for _ in range(3):
        with pytest.raises(botocore.exceptions.ClientError):
            client.get_caller_identity()
    served = sts.counts["GetCallerIdentity"]
    with pytest.raises(ApiCircuitOpen) as caught:
        client.get_caller_identity()
    assert sts.counts["GetCallerIdentity"] == served, "failed fast: nothing was sent"
    message = str(caught.value)
    assert "sts" in message and REGION in message and "HTTP 500 InternalFailure" in message
    assert isinstance(caught.value, botocore.exceptions.BotoCoreError)
    (stats,) = limits.stats().values()
    assert stats["breaker"] == "open" and stats["rejected_open"] == 1
    assert SECRET not in message and SECRET not in repr(limits.stats())


def test_the_breaker_lets_one_probe_through_after_the_cooldown(sts: StsServer) -> None:
    clock = ManualClock()
    sts.mode = "error"
    limits = ApiLimits(failure_threshold=2, cooldown=30, clock=clock)
    client = static_session(api_limits=limits).client(
        "sts", endpoint_url=sts.url, config=ONE_ATTEMPT
    )
    for _ in range(2):
        with pytest.raises(botocore.exceptions.ClientError):
            client.get_caller_identity()
    with pytest.raises(ApiCircuitOpen):
        client.get_caller_identity()
    sts.mode = "ok"
    clock.advance(30)
    client.get_caller_identity()  # the probe
    assert next(iter(limits.stats().values()))["breaker"] == "closed"
    client.get_caller_identity()


def test_throttling_never_opens_the_breaker(sts: StsServer) -> None:
    sts.mode = "throttle"
    limits = ApiLimits(failure_threshold=1, max_wait=0.3)
    client = static_session(api_limits=limits).client(
        "sts", endpoint_url=sts.url, config=ONE_ATTEMPT
    )
    for _ in range(3):
        with pytest.raises(botocore.exceptions.ClientError):
            client.get_caller_identity()
    assert next(iter(limits.stats().values()))["breaker"] == "closed"


def test_connection_errors_count_against_the_breaker() -> None:
    limits = ApiLimits(failure_threshold=2, cooldown=60)
    client = static_session(api_limits=limits).client(
        "sts",
        endpoint_url="http://127.0.0.1:9",  # the discard port: nothing listens
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=1),
    )
    for _ in range(2):
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            client.get_caller_identity()
    with pytest.raises(ApiCircuitOpen, match="EndpointConnectionError"):
        client.get_caller_identity()


def test_sessions_given_one_api_limits_share_its_buckets(sts: StsServer) -> None:
    limits = ApiLimits()
    a = static_session(api_limits=limits).client("sts", endpoint_url=sts.url)
    b = static_session(api_limits=limits).client("sts", endpoint_url=sts.url)
    a.get_caller_identity()
    b.get_caller_identity()
    (stats,) = limits.stats().values()
    assert stats["acquired"] == 2


def test_a_session_without_api_limits_is_untouched(sts: StsServer) -> None:
    session = static_session()
    client = session.client("sts", endpoint_url=sts.url)
    client.get_caller_identity()
    assert creds_core.boto3.api_limits_of(session) is None
    assert not hasattr(client._request_signer, "_creds_core_api_limits")


def test_api_limits_must_be_an_api_limits() -> None:
    with pytest.raises(TypeError, match="ApiLimits"):
        creds_core.boto3.session(
            aws_access_key_id="AKIA", aws_secret_access_key=SECRET, api_limits={"ec2": {}}
        )


def test_a_presigned_url_takes_no_token(sts: StsServer) -> None:
    limits = ApiLimits()
    client = static_session(api_limits=limits).client("sts", endpoint_url=sts.url)
    client.get_caller_identity()
    url = client.generate_presigned_url("get_caller_identity")
    assert url.startswith(sts.url)
    (stats,) = limits.stats().values()
    assert stats["acquired"] == 1


def test_fan_out_gives_every_role_session_the_limits(sts: StsServer) -> None:
    from creds_core.fanout import fan_out

    limits = ApiLimits()
    source = static_session()
    accounts = [f"{n:012d}" for n in range(1, 6)]

    def whoami(session: boto3.Session, account: str) -> str:
        client = session.client("sts", endpoint_url=sts.url)
        return str(client.get_caller_identity()["Account"])

    result = fan_out(
        whoami,
        accounts,
        session=source,
        role_name="auditor",
        endpoint_url=sts.url,
        api_limits=limits,
        progress=False,
    )
    assert not result.errors
    assert {s["account"] for s in limits.stats().values()} == set(accounts)
    assert limits.totals()["acquired"] == len(accounts)
