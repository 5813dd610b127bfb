"""The discovery section of ``docs/benchmarks.md`` (from ``benches/test_discovery.py``), and
the same table for the README."""

from __future__ import annotations

from typing import Any

Bench = dict[str, Any]
TIMES = "\N{MULTIPLICATION SIGN}"
GROUP = "api limits: discovery"
#: The issue's targets: throttled share, wall over floor (one process), and for the fleet.
TARGET_THROTTLED = 0.01
TARGET_RATIO = 1.15
TARGET_FLEET_RATIO = 1.3


def _row(info: dict[str, Any]) -> list[str]:
    requests = int(info["requests"])
    throttled = int(info["throttled"])
    share = throttled / requests if requests else 0.0
    ratio = info["wall_over_floor"]
    return [
        str(info["label"]),
        f"{info['failed']:,}",
        f"{throttled:,} ({share:.1%})",
        f"{requests:,}",
        f"{info['seconds']:.1f} s",
        f"{ratio:.2f}{TIMES}" if ratio else "-",
    ]


def discovery_table(benches: list[Bench]) -> list[str]:
    """The table: one row per case, creds_core's first."""
    infos = [b["extra_info"] for b in benches if str(b.get("group") or "") == GROUP]
    infos.sort(key=lambda i: (not str(i["label"]).startswith("creds_core"), i["layout"]))
    header = [
        "",
        "calls failed",
        "throttled answers",
        "requests",
        "wall time",
        "wall / floor",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(_row(i)) + " |" for i in infos]


def _verdict(infos: list[dict[str, Any]]) -> list[str]:
    lines = []
    for info in infos:
        if not str(info["label"]).startswith("creds_core"):
            continue
        fleet = info["processes"] > 1
        target = TARGET_FLEET_RATIO if fleet else TARGET_RATIO
        share = info["throttled"] / info["requests"] if info["requests"] else 0.0
        met = (
            info["failed"] == 0
            and (fleet or share <= TARGET_THROTTLED)
            and (info["wall_over_floor"] or 0.0) <= target
        )
        why = ""
        if not met and info["layout"] == "item" and info["failed"] == 0:
            why = f": {info['clients']:,} clients made, see below"
        lines.append(
            f"* {info['label']}: {'met' if met else '**not met**'} (0 failures"
            + ("" if fleet else f", throttled at most {TARGET_THROTTLED:.0%}")
            + f", wall at most {target:.2f}{TIMES} the floor){why}"
        )
    return lines


def discovery_section(benches: list[Bench]) -> list[str]:
    infos = [b["extra_info"] for b in benches if str(b.get("group") or "") == GROUP]
    if not infos:
        return []
    i = infos[0]
    per_item = [x for x in infos if x["layout"] == "item"]
    clients = f"{per_item[0]['clients']:,}" if per_item else "its"
    return [
        "## AWS as one shared resource: a discovery against EC2's quotas",
        "",
        f"`benches/test_discovery.py`: {i['accounts']} accounts, {i['threads']} threads, "
        f"{i['pages']} DescribeInstances pages of 5 per account, then a DescribeVolumes call "
        "per instance and a DescribeSecurityGroups call per page, against the local EC2 "
        "(`creds_core.testing.Ec2Server`, in the bench's process; the clients run in fresh "
        "processes) with EC2's default quotas: a bucket of 100 tokens refilled at 20 a second "
        f"per account, Region and API, {i['delay'] * 1000:g} ms per answer.  The quota floor "
        f"is {i['floor_seconds']:.1f} s: each account's DescribeVolumes bucket serves "
        f"{i['busiest_bucket_calls']} calls, (calls - 100) / 20.  Attempts are botocore's "
        "`total_max_attempts`; creds_core uses `ApiLimits()` (EC2's default buckets) with "
        "botocore's standard mode and 3 attempts.  Throttled answers and requests are the "
        "server's counts; calls failed are the exceptions the discovery saw.",
        "",
        *discovery_table(benches),
        "",
        "Targets (issue 18):",
        "",
        *_verdict(infos),
        "",
        f"A client per work item (a page's volumes and groups) makes {clients} clients, about "
        "10 ms of CPU each in botocore, one at a time (a boto3 session is not thread-safe) "
        "while 32 threads share one process's GIL on the 2-core machine: that layout's wall "
        "time is set by making clients, for every library alike (without the lock, "
        "creds_core's row took 26 s in a trial), not by the quotas.  What it shows is the "
        "buckets: creds_core's are shared by all the clients, botocore's adaptive limiter "
        "starts afresh in each.  botocore's legacy and standard modes are measured with a "
        "client per account only (each row of the other layout takes about 35 s).",
        "",
    ]
