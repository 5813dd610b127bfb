"""A local, throttling EC2 for tests and benchmarks: :class:`Ec2Server` answers
DescribeInstances (paginated: reservations, then instances), DescribeVolumes,
DescribeSecurityGroups and DescribeRegions on 127.0.0.1 over EC2's Query protocol (EC2's XML,
as botocore's ec2 parser reads it), and throttles as EC2 does: a token bucket per account,
Region and bucket, from the one table of EC2's documented quotas
(:func:`creds_core._ec2_quotas.ec2_bucket`: a bucket per API, the smaller ``unfiltered`` one
for whole-account scans), ``RequestLimitExceeded`` (HTTP 503) when it is empty.

    from creds_core.testing import Ec2Server, StsServer
    with StsServer() as sts, Ec2Server(accounts=sts.account_of, delay=0.005) as ec2:
        role = creds_core.boto3.assume_role(source, role_arn, endpoint_url=sts.url)
        role.client("ec2", endpoint_url=ec2.url).describe_instances(MaxResults=5)

The **account** of a request is looked up from its SigV4 ``Authorization`` header's access key
through ``accounts`` (a mapping ``{access_key_id: account}`` or a function such as
:meth:`StsServer.account_of`, which knows the role account of every key it issued); a key it
does not know is its own account (as :class:`creds_core.ApiLimits` keys static credentials).
The **Region** is the credential scope's.  Signatures are not verified.

Each account and Region sees the same made-up inventory (``instances``, one volume each,
``security_groups``), derived from the account and Region, so answers can be asserted.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Union
from xml.sax.saxutils import escape

from creds_core._ec2_quotas import EC2_CATEGORIES, Quota, ec2_bucket, ec2_category
from creds_core.testing._server import LocalServer, Mode, _Request, _Response
from creds_core.testing.sts import _el

__all__ = ["EC2_NAMESPACE", "EC2_VERSION", "Ec2Server"]

EC2_VERSION = "2016-11-15"
EC2_NAMESPACE = f"http://ec2.amazonaws.com/doc/{EC2_VERSION}/"
#: The Regions DescribeRegions lists.
REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2")

Accounts = Union[Mapping[str, str], Callable[[str], Union[str, None]], None]
BucketKey = tuple[str, str, str]  # (account, region, bucket)

_SCOPE = re.compile(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/")
_ACTIONS = frozenset(
    {"DescribeInstances", "DescribeVolumes", "DescribeSecurityGroups", "DescribeRegions"}
)
# EC2 accepts MaxResults of 5 to 1000 for these actions.
_MIN_RESULTS, _MAX_RESULTS = 5, 1000


class _Ec2Error(Exception):
    def __init__(self, status: int, code: str, message: str, outcome: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.outcome = outcome


class _TokenBucket:
    """EC2's bucket: starts full, refills continuously, one token per request."""

    __slots__ = ("capacity", "last", "refill", "tokens")

    def __init__(self, quota: Quota, now: float) -> None:
        self.capacity = quota.capacity
        self.refill = quota.refill
        self.tokens = quota.capacity
        self.last = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.refill)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Ec2Server(LocalServer):
    """EC2 over the Query protocol, throttled per (account, Region, bucket) like EC2.

    ``quotas`` overrides the capacity and refill of EC2's categories (``"non-mutating"``,
    ``"unfiltered"``, ``"mutating"``, ``"resource-intensive"``; small ones keep tests short);
    ``throttling=False`` turns the buckets off.  ``delay`` (seconds) is added to every answer.
    The buckets run on ``bucket_clock`` (default ``time.monotonic``).

    Fault modes (``server.mode``): "throttle" answers ``RequestLimitExceeded`` to every
    request, "error" HTTP 500 ``InternalError``, "bad_json" a 200 that is not XML, "down"
    closes the connection, "hang" holds it, "slow" waits ``latency`` first.

    Counters: ``requests``; ``counts`` per action plus ``throttled``, ``errors``,
    ``invalid`` and ``unauthenticated``; :meth:`bucket_counts` per (account, Region, bucket):
    ``requests`` and ``throttled``.
    """

    def __init__(
        self,
        *,
        accounts: Accounts = None,
        quotas: Mapping[str, Quota | tuple[float, float]] | None = None,
        throttling: bool = True,
        instances: int = 20,
        security_groups: int = 4,
        bucket_clock: Callable[[], float] = time.monotonic,
        port: int = 0,
        mode: Mode = "ok",
        latency: float = 2.0,
        delay: float = 0.0,
        hang_seconds: float = 30.0,
        max_requests: int = 100_000,
        max_seconds: float = 600.0,
    ) -> None:
        super().__init__(
            port=port,
            mode=mode,
            latency=latency,
            delay=delay,
            hang_seconds=hang_seconds,
            max_requests=max_requests,
            max_seconds=max_seconds,
        )
        unknown = set(quotas or {}) - set(EC2_CATEGORIES)
        if unknown:
            raise ValueError(f"unknown quota categories {sorted(unknown)}")
        if instances < 0 or security_groups < 1:
            raise ValueError("instances must be >= 0 and security_groups >= 1")
        self.accounts: Accounts = accounts
        #: The quota of each category, EC2's documented ones unless overridden.
        self.quotas: dict[str, Quota] = dict(EC2_CATEGORIES)
        for category, quota in (quotas or {}).items():
            self.quotas[category] = Quota(float(quota[0]), float(quota[1]))
        self.throttling = throttling
        self.instances = instances
        self.security_groups = security_groups
        self.bucket_clock = bucket_clock
        self._bucket_lock = threading.Lock()
        self._buckets: dict[BucketKey, _TokenBucket] = {}
        self._bucket_counts: dict[BucketKey, Counter[str]] = {}

    # -- what tests read -------------------------------------------------------------------

    def quota(self, action: str, params: Mapping[str, str] | None = None) -> tuple[str, Quota]:
        """The bucket (name, quota) a call of ``action`` with Query ``params`` draws from."""
        name, _ = ec2_bucket(action, params)
        return name, self.quotas[ec2_category(action, params)]

    def bucket_counts(self) -> dict[BucketKey, dict[str, int]]:
        """Per (account, Region, bucket): ``requests`` that reached it and ``throttled``."""
        with self._bucket_lock:
            return {
                key: {"requests": c["requests"], "throttled": c["throttled"]}
                for key, c in self._bucket_counts.items()
            }

    def instance_ids(self, account: str, region: str) -> list[str]:
        """The ids of the instances the server lists for ``account`` in ``region``."""
        prefix = _prefix(account, region)
        return [_instance_id(prefix, i) for i in range(self.instances)]

    def account_of(self, access_key_id: str) -> str:
        """The account a request signed with ``access_key_id`` is counted against."""
        accounts = self.accounts
        found = None
        if callable(accounts):
            found = accounts(access_key_id)
        elif accounts is not None:
            found = accounts.get(access_key_id)
        return found or access_key_id

    # -- request processing ----------------------------------------------------------------

    def _observe(self, request: _Request) -> str:
        action = request.form().get("Action")
        return action if action else "unknown"

    def _take(self, key: BucketKey, quota: Quota) -> bool:
        with self._bucket_lock:
            counts = self._bucket_counts.get(key)
            if counts is None:
                counts = self._bucket_counts[key] = Counter()
            counts["requests"] += 1
            if not self.throttling:
                return True
            now = self.bucket_clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _TokenBucket(quota, now)
            if bucket.take(now):
                return True
            counts["throttled"] += 1
            return False

    def _respond(self, request: _Request, kind: str, mode: Mode) -> _Response:
        request_id = str(uuid.uuid4())
        params = request.form()
        try:
            body = self._answer(request, params, mode)
        except _Ec2Error as err:
            self._bump(err.outcome)
            return _error(err, request_id)
        if mode == "bad_json":
            return _Response(200, b"<html><body>Service Unavailable", "text/html")
        action = params["Action"]
        xml = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{EC2_NAMESPACE}">'
            f"<requestId>{request_id}</requestId>{body}</{action}Response>"
        )
        return _Response(200, xml.encode("utf-8"), "text/xml;charset=UTF-8")

    def _answer(self, request: _Request, params: Mapping[str, str], mode: Mode) -> str:
        """The result elements of an answer, or raise the error EC2 would answer."""
        if mode == "error":
            raise _Ec2Error(500, "InternalError", "An internal error has occurred", "errors")
        action = params.get("Action", "")
        if action not in _ACTIONS:
            raise _Ec2Error(
                400,
                "InvalidAction",
                f"The action {action} is not valid for this web service.",
                "invalid",
            )
        match = _SCOPE.search(request.headers.get("authorization", ""))
        if match is None:
            raise _Ec2Error(
                401,
                "AuthFailure",
                "AWS was not able to validate the provided access credentials",
                "unauthenticated",
            )
        account, region = self.account_of(match.group(1)), match.group(2)
        name, quota = self.quota(action, params)
        if mode == "throttle" or not self._take((account, region, name), quota):
            raise _Ec2Error(503, "RequestLimitExceeded", "Request limit exceeded.", "throttled")
        if action == "DescribeRegions":
            return _regions()
        inventory = _Inventory(account, region, self.instances, self.security_groups)
        if action == "DescribeInstances":
            return inventory.instances_xml(params)
        if action == "DescribeVolumes":
            return inventory.volumes_xml(params)
        return inventory.security_groups_xml(params)


# --- the made-up inventory -------------------------------------------------------------------


def _prefix(account: str, region: str) -> str:
    return hashlib.sha256(f"{account}/{region}".encode()).hexdigest()[:8]


def _instance_id(prefix: str, i: int) -> str:
    return f"i-{prefix}{i:09x}"


def _list_param(params: Mapping[str, str], name: str) -> list[str]:
    """``Name.1``, ``Name.2``...: a Query-protocol list, in order."""
    values = []
    n = 1
    while f"{name}.{n}" in params:
        values.append(params[f"{name}.{n}"])
        n += 1
    return values


def _filter(params: Mapping[str, str], name: str) -> list[str] | None:
    """The values of filter ``name`` (``Filter.N.Name`` / ``Filter.N.Value.M``), or None."""
    n = 1
    while f"Filter.{n}.Name" in params:
        if params[f"Filter.{n}.Name"] == name:
            return _list_param(params, f"Filter.{n}.Value")
        n += 1
    return None


def _page(params: Mapping[str, str], total: int) -> tuple[range, str]:
    """The indexes of this page and the nextToken element (empty on the last page)."""
    raw_max = params.get("MaxResults")
    start = 0
    token = params.get("NextToken")
    if token:
        if not token.startswith("page-") or not token[5:].isdigit():
            raise _Ec2Error(400, "InvalidParameterValue", "The token is not valid", "invalid")
        start = int(token[5:])
    if raw_max is None:
        return range(start, total), ""
    if not raw_max.isdigit() or not _MIN_RESULTS <= int(raw_max) <= _MAX_RESULTS:
        raise _Ec2Error(
            400,
            "InvalidParameterValue",
            f"Value ( {raw_max} ) for parameter maxResults is invalid. Expecting a value "
            f"greater than {_MIN_RESULTS - 1}.",
            "invalid",
        )
    end = min(total, start + int(raw_max))
    return range(start, end), (_el("nextToken", f"page-{end}") if end < total else "")


class _Inventory:
    """The instances, volumes and security groups of one account and Region, made on demand
    from their index (nothing is stored: a benchmark's thousands of instances cost nothing)."""

    def __init__(self, account: str, region: str, instances: int, groups: int) -> None:
        # Both come from the request (its access key and credential scope): escaped, as every
        # value the answers interpolate must be.
        self.account = escape(account)
        self.region = escape(region)
        self.count = instances
        self.groups = groups
        self.prefix = _prefix(account, region)

    def _index(self, resource_id: str, kind: str, modulo: int) -> int | None:
        head = f"{kind}-{self.prefix}"
        if not resource_id.startswith(head):
            return None
        try:
            index = int(resource_id[len(head) :], 16)
        except ValueError:
            return None
        return index if index < modulo else None

    def _indexes(self, ids: Sequence[str], kind: str, modulo: int) -> Iterator[int]:
        for resource_id in ids:
            index = self._index(resource_id, kind, modulo)
            if index is not None:
                yield index

    def _select(
        self, params: Mapping[str, str], ids: Sequence[str] | None, kind: str, total: int
    ) -> tuple[list[int], str]:
        """The indexes an answer lists (those of ``ids``, or a page of all) and its
        nextToken element."""
        if ids:
            return list(dict.fromkeys(self._indexes(ids, kind, total))), ""
        page, token = _page(params, total)
        return list(page), token

    def _group_id(self, g: int) -> str:
        return f"sg-{self.prefix}{g:09x}"

    def instances_xml(self, params: Mapping[str, str]) -> str:
        page, token = self._select(params, _list_param(params, "InstanceId"), "i", self.count)
        # One reservation per two instances, as launched in pairs: a page lists the
        # reservations of its instances, each with the instances of this page.
        reservations: dict[int, list[int]] = {}
        for i in page:
            reservations.setdefault(i // 2, []).append(i)
        items = "".join(
            f"<item><reservationId>r-{self.prefix}{r:09x}</reservationId>"
            f"<ownerId>{self.account}</ownerId><groupSet/><instancesSet>"
            + "".join(self._instance_xml(i) for i in members)
            + "</instancesSet></item>"
            for r, members in reservations.items()
        )
        return f"<reservationSet>{items}</reservationSet>{token}"

    def _instance_xml(self, i: int) -> str:
        g = i % self.groups
        return (
            f"<item><instanceId>{_instance_id(self.prefix, i)}</instanceId>"
            "<imageId>ami-0123456789abcdef0</imageId>"
            "<instanceState><code>16</code><name>running</name></instanceState>"
            "<instanceType>t3.micro</instanceType>"
            f"<placement><availabilityZone>{self.region}a</availabilityZone></placement>"
            f"<groupSet><item><groupId>{self._group_id(g)}</groupId>"
            f"<groupName>group-{g}</groupName></item></groupSet>"
            "<launchTime>2026-01-01T00:00:00.000Z</launchTime></item>"
        )

    def volumes_xml(self, params: Mapping[str, str]) -> str:
        # A volume has its instance's index: filtering by instance id finds it.
        by_instance = _filter(params, "attachment.instance-id")
        if by_instance is not None:
            page, token = self._select(params, by_instance, "i", self.count)
        else:
            page, token = self._select(params, _list_param(params, "VolumeId"), "vol", self.count)
        items = "".join(
            f"<item><volumeId>vol-{self.prefix}{i:09x}</volumeId><size>8</size>"
            f"<availabilityZone>{self.region}a</availabilityZone><status>in-use</status>"
            f"<attachmentSet><item><volumeId>vol-{self.prefix}{i:09x}</volumeId>"
            f"<instanceId>{_instance_id(self.prefix, i)}</instanceId>"
            "<device>/dev/xvda</device><status>attached</status>"
            "<deleteOnTermination>true</deleteOnTermination></item></attachmentSet>"
            "<volumeType>gp3</volumeType><encrypted>false</encrypted></item>"
            for i in page
        )
        return f"<volumeSet>{items}</volumeSet>{token}"

    def security_groups_xml(self, params: Mapping[str, str]) -> str:
        ids = _list_param(params, "GroupId") or _filter(params, "group-id")
        page, token = self._select(params, ids, "sg", self.groups)
        items = "".join(
            f"<item><ownerId>{self.account}</ownerId><groupId>{self._group_id(g)}</groupId>"
            f"<groupName>group-{g}</groupName><groupDescription>group {g}</groupDescription>"
            f"<vpcId>vpc-{self.prefix}</vpcId><ipPermissions/><ipPermissionsEgress/></item>"
            for g in page
        )
        return f"<securityGroupInfo>{items}</securityGroupInfo>{token}"


def _regions() -> str:
    items = "".join(
        f"<item><regionName>{r}</regionName><regionEndpoint>ec2.{r}.amazonaws.com"
        "</regionEndpoint><optInStatus>opt-in-not-required</optInStatus></item>"
        for r in REGIONS
    )
    return f"<regionInfo>{items}</regionInfo>"


def _error(err: _Ec2Error, request_id: str) -> _Response:
    """EC2's error shape (not STS's ErrorResponse): Response/Errors/Error and RequestID."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        f"{_el('Code', err.code)}{_el('Message', err.message)}</Error></Errors>"
        f"<RequestID>{request_id}</RequestID></Response>"
    )
    return _Response(err.status, body.encode("utf-8"), "text/xml;charset=UTF-8")
