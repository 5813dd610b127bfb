"""The local EC2 (creds_core.testing.Ec2Server) against real botocore clients: its answers
parse, its pagination works through botocore's own paginator, and it throttles as EC2 does: a
bucket per (account, Region, API) of EC2's documented sizes, RequestLimitExceeded when empty."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

import creds_core.boto3
from creds_core._ec2_quotas import EC2_CATEGORIES
from creds_core.testing import Ec2Server, StsServer

pytestmark = pytest.mark.usefixtures("isolated_aws")

REGION = "eu-west-1"
SECRET = "SECRET-SENTINEL-ec2-server"
ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1})


class FrozenClock:
    """The buckets' clock, moved by hand: no refill unless a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ec2_client(server: Ec2Server, key: str = "AKIAEC2SERVER0000001", region: str = REGION) -> Any:
    return boto3.client(
        "ec2",
        endpoint_url=server.url,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=SECRET,
        config=ONE_ATTEMPT,
    )


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def ec2(clock: FrozenClock) -> Iterator[Ec2Server]:
    with Ec2Server(instances=23, bucket_clock=clock, max_requests=2_000, max_seconds=60) as s:
        yield s


def _throttle_code(call: Any) -> tuple[str, int]:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_describe_instances_pages_through_botocores_paginator(ec2: Ec2Server) -> None:
    client = ec2_client(ec2)
    pages = list(
        client.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 5})
    )
    ids = [i["InstanceId"] for p in pages for r in p["Reservations"] for i in r["Instances"]]
    assert len(pages) == 5  # 23 instances, 5 a page
    assert ids == ec2.instance_ids("AKIAEC2SERVER0000001", REGION)
    first = pages[0]["Reservations"][0]
    assert first["OwnerId"] == "AKIAEC2SERVER0000001"
    assert [i["State"]["Name"] for i in first["Instances"]] == ["running", "running"]
    assert ec2.counts["DescribeInstances"] == 5


def test_volumes_and_security_groups_follow_the_instances(ec2: Ec2Server) -> None:
    client = ec2_client(ec2)
    ids = ec2.instance_ids("AKIAEC2SERVER0000001", REGION)[:3]
    volumes = client.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": ids}])[
        "Volumes"
    ]
    assert [v["Attachments"][0]["InstanceId"] for v in volumes] == ids
    reservations = client.describe_instances(InstanceIds=ids)["Reservations"]
    groups = {
        g["GroupId"] for r in reservations for i in r["Instances"] for g in i["SecurityGroups"]
    }
    found = client.describe_security_groups(GroupIds=sorted(groups))["SecurityGroups"]
    assert {g["GroupId"] for g in found} == groups and len(groups) == 3
    assert len(client.describe_security_groups()["SecurityGroups"]) == ec2.security_groups
    regions = client.describe_regions()["Regions"]
    assert REGION in {r["RegionName"] for r in regions}


def test_an_empty_bucket_answers_request_limit_exceeded_as_ec2_does(
    ec2: Ec2Server, clock: FrozenClock
) -> None:
    client = ec2_client(ec2)
    capacity, refill = EC2_CATEGORIES["non-mutating"]
    for _ in range(int(capacity)):
        client.describe_volumes(MaxResults=5)
    assert _throttle_code(lambda: client.describe_volumes(MaxResults=5)) == (
        "RequestLimitExceeded",
        503,
    )
    # Each API has its own bucket: DescribeRegions is untouched.
    client.describe_regions()
    clock.now += 1.0  # one second refills `refill` tokens
    for _ in range(int(refill)):
        client.describe_volumes(MaxResults=5)
    with pytest.raises(botocore.exceptions.ClientError, match="RequestLimitExceeded"):
        client.describe_volumes(MaxResults=5)
    key = ("AKIAEC2SERVER0000001", REGION, "DescribeVolumes")
    assert ec2.bucket_counts()[key] == {"requests": capacity + refill + 2, "throttled": 2}
    assert ec2.counts["throttled"] == 2


def test_unfiltered_whole_account_scans_have_the_smaller_bucket(ec2: Ec2Server) -> None:
    client = ec2_client(ec2)
    capacity = int(EC2_CATEGORIES["unfiltered"].capacity)
    for _ in range(capacity):
        client.describe_instances()
    with pytest.raises(botocore.exceptions.ClientError, match="RequestLimitExceeded"):
        client.describe_instances()
    client.describe_instances(MaxResults=5)  # paginated: the per-API bucket, still full
    assert ec2.quota("DescribeInstances", {})[0] == "DescribeInstances:unfiltered"


def test_buckets_are_per_account_and_region(clock: FrozenClock) -> None:
    accounts = {"AKIAEC2SERVERACCT001": "111111111111", "AKIAEC2SERVERACCT002": "222222222222"}
    with Ec2Server(
        accounts=accounts, quotas={"non-mutating": (3, 1)}, bucket_clock=clock, max_seconds=60
    ) as ec2:
        a, b = (ec2_client(ec2, key) for key in accounts)
        a_west = ec2_client(ec2, "AKIAEC2SERVERACCT001", region="us-west-2")
        for client in (a, b, a_west):
            for _ in range(3):
                client.describe_regions()
        for client in (a, b, a_west):
            with pytest.raises(botocore.exceptions.ClientError, match="RequestLimitExceeded"):
                client.describe_regions()
        assert set(ec2.bucket_counts()) == {
            ("111111111111", REGION, "DescribeRegions"),
            ("222222222222", REGION, "DescribeRegions"),
            ("111111111111", "us-west-2", "DescribeRegions"),
        }


def test_role_credentials_count_against_the_role_account() -> None:
    with (
        StsServer(latency=0.0, max_seconds=60) as sts,
        Ec2Server(accounts=sts.account_of, max_seconds=60) as ec2,
    ):
        source = creds_core.boto3.session(
            aws_access_key_id="AKIAEC2SERVERSOURCE1",
            aws_secret_access_key=SECRET,
            region_name=REGION,
        )
        arn = "arn:aws:iam::333333333333:role/auditor"
        role = creds_core.boto3.assume_role(source, arn, endpoint_url=sts.url)
        owner = role.client("ec2", endpoint_url=ec2.url).describe_instances(MaxResults=5)
        assert owner["Reservations"][0]["OwnerId"] == "333333333333"
        assert {key[0] for key in ec2.bucket_counts()} == {"333333333333"}


def test_fault_modes_and_bad_requests(ec2: Ec2Server) -> None:
    client = ec2_client(ec2)
    ec2.mode = "error"
    assert _throttle_code(client.describe_regions) == ("InternalError", 500)
    ec2.mode = "throttle"
    assert _throttle_code(client.describe_regions) == ("RequestLimitExceeded", 503)
    ec2.mode = "ok"
    assert _throttle_code(lambda: client.describe_instances(MaxResults=2))[0] == (
        "InvalidParameterValue"
    )
    forged = _throttle_code(lambda: client.describe_instances(NextToken="forged", MaxResults=5))
    assert forged[0] == "InvalidParameterValue"
    ec2.mode = "down"
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        client.describe_regions()
    assert ec2.counts["dropped"] == 1 and ec2.counts["errors"] == 1


def test_an_unsigned_request_is_an_auth_failure(ec2: Ec2Server) -> None:
    client = boto3.client(
        "ec2",
        endpoint_url=ec2.url,
        region_name=REGION,
        config=Config(signature_version=botocore.UNSIGNED, retries={"total_max_attempts": 1}),
    )
    assert _throttle_code(client.describe_regions) == ("AuthFailure", 401)


def test_quotas_can_be_overridden_and_unknown_categories_are_errors() -> None:
    server = Ec2Server(quotas={"non-mutating": (10, 2)})
    assert server.quota("DescribeVolumes", {"MaxResults": "5"})[1] == (10.0, 2.0)
    assert server.quota("CreateTags")[1] == EC2_CATEGORIES["mutating"]
    with pytest.raises(ValueError, match="categories"):
        Ec2Server(quotas={"describe": (1, 1)})


def test_request_values_in_an_answer_are_escaped() -> None:
    # The account comes from the request's access key: markup in it stays a value.
    with Ec2Server(accounts={"AKIAEC2SERVERESCAPE1": "a<b>&c"}, max_seconds=60) as ec2:
        groups = ec2_client(ec2, "AKIAEC2SERVERESCAPE1").describe_security_groups()
    assert {g["OwnerId"] for g in groups["SecurityGroups"]} == {"a<b>&c"}
