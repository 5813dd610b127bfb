"""EC2's documented request quotas, as data: which token bucket an EC2 action draws from.

EC2 throttles each account per Region with token buckets, and since 2024 evaluates each API
on its own (``DescribeHosts`` has its own bucket of 100 tokens refilled at 20 a second; the
calls of other APIs do not drain it). The bucket sizes depend on the action's category:

=============================================  ========  ===========
category                                       capacity  refill (/s)
=============================================  ========  ===========
non-mutating (``Describe*``, ``List*``,        100       20
``Get*``, ``Search*``)
unfiltered and unpaginated non-mutating        50        10
(a few ``Describe*`` actions called without
filters, IDs or pagination)
mutating (everything else)                     200       5
resource-intensive mutating                    50        5
=============================================  ========  ===========

:class:`creds_core.ApiLimits` ships these as its EC2 defaults and the test EC2 endpoint
(:mod:`creds_core.testing.ec2`) enforces them, so both read the one table. Accounts can have
raised quotas: pass your own rules to ``ApiLimits`` to override them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = [
    "EC2_CATEGORIES",
    "RESOURCE_INTENSIVE",
    "UNFILTERED_SENSITIVE",
    "Quota",
    "ec2_bucket",
    "ec2_category",
]


class Quota(NamedTuple):
    """A token bucket: ``capacity`` tokens, refilled at ``refill`` tokens a second."""

    capacity: float
    refill: float


EC2_CATEGORIES: Mapping[str, Quota] = {
    "non-mutating": Quota(100.0, 20.0),
    "unfiltered": Quota(50.0, 10.0),
    "mutating": Quota(200.0, 5.0),
    "resource-intensive": Quota(50.0, 5.0),
}

_NON_MUTATING_PREFIXES = ("Describe", "List", "Get", "Search")

#: Non-mutating actions with a smaller bucket when called without any filter, ID list or
#: pagination parameter (they then scan the whole account).
UNFILTERED_SENSITIVE: frozenset[str] = frozenset(
    {
        "DescribeInstances",
        "DescribeInstanceStatus",
        "DescribeNetworkInterfaces",
        "DescribeSecurityGroups",
        "DescribeSnapshots",
        "DescribeSpotInstanceRequests",
        "DescribeVolumes",
    }
)

#: Mutating actions EC2 counts as resource-intensive.
RESOURCE_INTENSIVE: frozenset[str] = frozenset(
    {
        "AcceptVpcPeeringConnection",
        "AuthorizeSecurityGroupIngress",
        "CancelSpotFleetRequests",
        "CopyImage",
        "CreateKeyPair",
        "CreateImage",
        "CreateVpcPeeringConnection",
        "DeleteVpcPeeringConnection",
        "RequestSpotFleet",
        "RequestSpotInstances",
        "RevokeSecurityGroupIngress",
        "RunInstances",
        "StartInstances",
        "StopInstances",
        "TerminateInstances",
    }
)

# Query-protocol parameter names (and their list prefixes) that make a call filtered or paginated.
_NARROWING = ("Filter.", "MaxResults", "NextToken")


def _is_narrowed(params: Mapping[str, Any]) -> bool:
    for name in params:
        if name.startswith(_NARROWING):
            return True
        # ID lists: InstanceId.1, VolumeId.1, GroupId.1, SnapshotId.1, ...
        head, _, index = name.rpartition(".")
        if index.isdigit() and head.endswith(("Id", "Ids", "Name")):
            return True
    return False


def ec2_category(action: str, params: Mapping[str, Any] | None = None) -> str:
    """The quota category of an EC2 ``action`` called with Query-protocol ``params``.

    ``params`` are the serialized request parameters (``Filter.1.Name``, ``MaxResults``...);
    without them a call counts as filtered.
    """
    if action.startswith(_NON_MUTATING_PREFIXES):
        if action in UNFILTERED_SENSITIVE and params is not None and not _is_narrowed(params):
            return "unfiltered"
        return "non-mutating"
    if action in RESOURCE_INTENSIVE:
        return "resource-intensive"
    return "mutating"


def ec2_bucket(action: str, params: Mapping[str, Any] | None = None) -> tuple[str, Quota]:
    """The bucket an EC2 call draws from: its name (the action, or ``Action:unfiltered``) and
    its quota. Each API has its own bucket, as EC2 documents."""
    category = ec2_category(action, params)
    name = f"{action}:unfiltered" if category == "unfiltered" else action
    return name, EC2_CATEGORIES[category]
