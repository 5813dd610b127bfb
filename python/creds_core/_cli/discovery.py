"""A resource discovery over many accounts, the shape that drowns in throttling without a
shared limiter (the demo's discovery phase and ``benches/test_discovery.py`` both run it).

Per account, one work item lists the instances page by page (DescribeInstances through
botocore's paginator, 5 a page); each page starts a work item that describes the volumes
attached to each of its instances (DescribeVolumes filtered by instance id, one call per
instance) and then the security groups of its instances (DescribeSecurityGroups by id).  So
60 pages of an account make 60 DescribeInstances, 300 DescribeVolumes and 60
DescribeSecurityGroups calls, each API drawing from a bucket of its own (EC2's quotas are per
API).  Every work item runs on one thread pool.  A call that raises is a failure the
application sees: a failed page ends that account's listing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Discovery", "describe_error", "discover", "quota_floor"]

#: DescribeInstances' smallest page: the most calls for the fewest instances.
PAGE_SIZE = 5


@dataclass
class Discovery:
    """What a discovery did: calls that succeeded and failed, and what it found."""

    seconds: float = 0.0
    calls: int = 0
    failed: int = 0
    instances: int = 0
    volumes: int = 0
    groups: int = 0
    first_failure: str | None = None
    failures_by_code: dict[str, int] = field(default_factory=dict)


def quota_floor(calls_per_bucket: int, capacity: float, refill: float) -> float:
    """The seconds a bucket of ``capacity`` tokens refilled at ``refill`` a second needs to
    serve that many calls: no client can finish faster."""
    return max(0.0, (calls_per_bucket - capacity) / refill)


def describe_error(exc: BaseException) -> str:
    """An error's code (botocore's ClientError) or class name: no message, so no secret."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


def discover(
    client: Callable[[str], Any],
    accounts: Sequence[str],
    *,
    threads: int,
    max_pages: int | None = None,
) -> Discovery:
    """Discover ``accounts`` on ``threads`` threads; ``client(account)`` gives the EC2 client
    of a work item (the same one for every item of an account, or a new one per item).
    ``max_pages``: stop each listing after that many pages."""
    if threads <= len(accounts):
        raise ValueError("threads must exceed the accounts: each listing holds a thread")
    result = Discovery()
    lock = threading.Lock()
    items: list[Future[None]] = []

    def call(what: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            answer = what(*args, **kwargs)
        except Exception as exc:  # the application's failure: counted, not raised
            code = describe_error(exc)
            with lock:
                result.failed += 1
                result.failures_by_code[code] = result.failures_by_code.get(code, 0) + 1
                if result.first_failure is None:
                    result.first_failure = code
            return None
        if answer is not None:  # None: the paginator had no page left, no call was made
            with lock:
                result.calls += 1
        return answer

    def details(account: str, instances: list[dict[str, Any]]) -> None:
        ec2 = client(account)
        for instance in instances:
            filters = [{"Name": "attachment.instance-id", "Values": [instance["InstanceId"]]}]
            answer = call(ec2.describe_volumes, Filters=filters)
            if answer is not None:
                with lock:
                    result.volumes += len(answer["Volumes"])
        group_ids = sorted({g["GroupId"] for i in instances for g in i["SecurityGroups"]})
        if group_ids:
            answer = call(ec2.describe_security_groups, GroupIds=group_ids)
            if answer is not None:
                with lock:
                    result.groups += len(answer["SecurityGroups"])

    def listing(account: str, pool: ThreadPoolExecutor) -> None:
        pages = iter(
            client(account)
            .get_paginator("describe_instances")
            .paginate(PaginationConfig={"PageSize": PAGE_SIZE})
        )
        listed = 0
        while max_pages is None or listed < max_pages:
            page = call(next, pages, None)
            if page is None:  # the last page, or a failure: this account's listing ends
                break
            listed += 1
            instances = [i for r in page["Reservations"] for i in r["Instances"]]
            with lock:
                result.instances += len(instances)
                items.append(pool.submit(details, account, instances))

    started = time.perf_counter()
    with ThreadPoolExecutor(threads, thread_name_prefix="discovery") as pool:
        listings = [pool.submit(listing, account, pool) for account in accounts]
        for future in listings:
            future.result()
        for future in list(items):  # complete: every item was added before its listing ended
            future.result()
    result.seconds = time.perf_counter() - started
    return result
