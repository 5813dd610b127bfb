"""Many accounts at once, plain botocore against creds_core; prints markdown tables.

    python benches/fanout_compare.py --roles 1000            # throttling STS, every variant
    python benches/fanout_compare.py --roles 1000 --memory 1000 --memory-plain 200

The throttling run: the project's StsServer on 127.0.0.1 answers ``--rate`` calls per second
(a token bucket; STS's real ``Throttling`` error beyond it) after ``--delay`` seconds each.  A
fresh process per variant assumes ``--roles`` distinct roles from ``--threads`` threads and
makes one signed call (GetCallerIdentity) with each role's credentials, to a second,
unthrottled endpoint (the target accounts' own quotas), or with ``--calls-on-sts`` to the
throttled STS as well (what ``tests/test_fanout.py`` does):

* ``botocore``: the way fan-out scripts do it by hand: one STS client of the source session
  (default retry settings) calls ``assume_role``, then a ``boto3.Session`` per account;
* ``botocore-clients``: the same, but a client per account from the one source session
  (cheap, so it reaches STS much faster);
* ``creds_core``: ``creds_core.fanout.fan_out`` (``creds_core.boto3.assume_role`` per
  account: role caches behind the Limiter shared by the STS endpoint, sessions that share
  botocore's loader, handlers, client classes and endpoint rule sets).

STS calls and throttled answers are counted by the server.  A caller failure is an exception
that reached the code doing the work: "credential" when getting the role's credentials
failed, "call" when the per-role call did.

The memory run (``--memory N``): a fresh process per variant builds N ready per-account S3
clients (credentials resolved) and holds them; reported are its peak RSS and what it added
per account (``--memory-plain``: fewer accounts for plain boto3, which needs ~12 MB each).
Every server listens on 127.0.0.1 only and is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

REGION = "us-east-1"
SOURCE_KEY = "AKIAFANOUTCOMPARE001"
SOURCE_SECRET = "fanout-compare-source-secret-not-a-real-one"
SESSION_NAME = "fanout-compare"
VARIANTS = {
    "botocore": "botocore: `boto3.Session` per account",
    "botocore-clients": "botocore: one session, a client per account",
    "creds_core": "creds_core: `fan_out`",
}


def _role_arns(n: int) -> list[str]:
    return [f"arn:aws:iam::{100_000_000_000 + i}:role/fanout-compare" for i in range(n)]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _source() -> Any:
    import boto3

    return boto3.Session(
        region_name=REGION, aws_access_key_id=SOURCE_KEY, aws_secret_access_key=SOURCE_SECRET
    )


# --- children: one variant each, in a fresh process ----------------------------------------------


def _plain_session(sts: Any, arn: str) -> Any:
    """What fan-out scripts do by hand: AssumeRole, then a boto3.Session with the keys."""
    import boto3

    creds = sts.assume_role(RoleArn=arn, RoleSessionName=SESSION_NAME)["Credentials"]
    return boto3.Session(
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def child_throttling(
    variant: str, url: str, call_url: str, roles: int, threads: int
) -> dict[str, Any]:
    """Assume every role and make one signed call with it; count what reached the caller."""
    arns = _role_arns(roles)
    source = _source()
    failures: Counter[str] = Counter()  # "credentials: <type>" / "call: <type>"

    def call(session: Any) -> None:
        session.client("sts", endpoint_url=call_url).get_caller_identity()

    started = time.monotonic()
    if variant.startswith("botocore"):
        sts = source.client("sts", endpoint_url=url)  # shared: clients are thread-safe

        def work(arn: str) -> None:
            try:
                if variant == "botocore":
                    session = _plain_session(sts, arn)
                else:  # one session, a client per account made with the role's keys
                    creds = sts.assume_role(RoleArn=arn, RoleSessionName=SESSION_NAME)
                    keys = creds["Credentials"]
                    client = source.client(
                        "sts",
                        endpoint_url=call_url,
                        aws_access_key_id=keys["AccessKeyId"],
                        aws_secret_access_key=keys["SecretAccessKey"],
                        aws_session_token=keys["SessionToken"],
                    )
            except Exception as exc:
                failures[f"credentials: {type(exc).__name__}"] += 1
                return
            try:
                if variant == "botocore":
                    call(session)
                else:
                    client.get_caller_identity()
            except Exception as exc:
                failures[f"call: {type(exc).__name__}"] += 1

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, arns))
    else:
        from creds_core import CredentialsError
        from creds_core.fanout import fan_out

        result = fan_out(
            lambda session, arn: call(session),
            arns,
            session=source,
            role_session_name=SESSION_NAME,
            endpoint_url=url,
            max_workers=threads,
            progress=False,
        )
        for exc in result.errors.values():
            kind = "credentials" if isinstance(exc, CredentialsError) else "call"
            failures[f"{kind}: {type(exc).__name__}"] += 1
    return {"wall": time.monotonic() - started, "failures": dict(failures)}


def child_memory(variant: str, url: str, accounts: int) -> dict[str, Any]:
    arns = _role_arns(accounts)
    source = _source()
    if variant == "creds_core":
        import creds_core.boto3 as cb

        def client_for(arn: str) -> Any:
            session = cb.assume_role(source, arn, role_session_name=SESSION_NAME, endpoint_url=url)
            client = session.client("s3")
            client._request_signer._credentials.get_frozen_credentials()  # resolved, ready
            return client
    else:
        sts = source.client("sts", endpoint_url=url)

        def client_for(arn: str) -> Any:
            return _plain_session(sts, arn).client("s3")

    held: list[Any] = []
    baseline = _rss_mb()
    started = time.monotonic()
    for arn in arns:
        held.append(client_for(arn))
    took = time.monotonic() - started
    return {
        "baseline_mb": baseline,
        "rss_mb": _rss_mb(),
        "peak_mb": _peak_rss_mb(),
        "seconds": took,
        "clients": len(held),
    }


# --- the parent: servers, children, tables --------------------------------------------------------


def _run_child(args: list[str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="*",
    )
    out = subprocess.run(
        [sys.executable, __file__, *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def throttling_table(
    roles: int, threads: int, rate: float, delay: float, calls_on_sts: bool, variants: list[str]
) -> str:
    from creds_core.testing import StsServer

    rows = []
    for variant in variants:
        label = VARIANTS[variant]
        budget = 20 * roles + 1000
        sts = StsServer(rate=rate, delay=delay, max_requests=budget)
        with sts, StsServer(max_requests=budget) as account_api:
            call_url = sts.url if calls_on_sts else account_api.url
            argv = ["--child", variant, "--url", sts.url, "--call-url", call_url]
            child = _run_child([*argv, "--roles", str(roles), "--threads", str(threads)])
            outcomes = Counter((c.action, c.outcome) for c in sts.calls)
        assume = sum(n for (action, _), n in outcomes.items() if action == "AssumeRole")
        throttled = outcomes[("AssumeRole", "throttled")]
        extra = outcomes[("GetCallerIdentity", "throttled")]
        failed: Counter[str] = Counter()
        for kind, n in child["failures"].items():
            failed[kind.split(":")[0]] += n
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(child["failures"].items()))
        rows.append(
            f"| {label} | {child['wall']:.1f} s | {assume} | {throttled}"
            + (f" (+{extra} of the calls)" if calls_on_sts else "")
            + f" | {failed['credentials']} | {failed['call']}"
            + (f" | {kinds} |" if kinds else " | |")
        )
    where = "the same STS" if calls_on_sts else "an unthrottled endpoint"
    head = (
        f"{roles} roles from {threads} threads; STS allows {rate:g} calls/s and answers after "
        f"{delay * 1000:g} ms; one signed call per role to {where}.\n\n"
        "| | wall time | AssumeRole calls | throttled answers | credential failures "
        "| call failures | failures by type |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    return "\n".join([head, *rows])


def memory_table(accounts: int, plain_accounts: int) -> str:
    from creds_core.testing import StsServer

    runs = {
        "botocore": ("`boto3.Session` + S3 client per account", plain_accounts),
        "creds_core": ("`creds_core.boto3.assume_role` + S3 client", accounts),
    }
    rows = []
    with StsServer(max_requests=10 * (accounts + plain_accounts) + 1000) as sts:
        for variant, (label, n) in runs.items():
            argv = ["--memory-child", variant, "--url", sts.url, "--accounts", str(n)]
            m = _run_child(argv)
            per_account = (m["peak_mb"] - m["baseline_mb"]) * 1024 / n
            rows.append(
                f"| {label} | {n} | {m['peak_mb']:,.0f} MB | {per_account:,.0f} KB "
                f"| {m['seconds'] / n * 1000:.1f} ms |"
            )
    head = (
        "| ready S3 clients held by a fresh process | accounts | peak RSS "
        "| per account (peak minus start) | build time per account |\n"
        "| --- | --- | --- | --- | --- |"
    )
    return "\n".join([head, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--roles", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--memory", type=int, metavar="N", help="also the memory run, N accounts")
    parser.add_argument(
        "--memory-plain",
        type=int,
        metavar="N",
        help="accounts for plain boto3 in the memory run (default: --memory; ~12 MB each)",
    )
    parser.add_argument("--memory-only", action="store_true", help="skip the throttling run")
    parser.add_argument(
        "--calls-on-sts",
        action="store_true",
        help="make the per-role calls to the throttled STS too (as tests/test_fanout.py)",
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS)
    )
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument(
        "--memory-child", choices=["botocore", "creds_core"], help=argparse.SUPPRESS
    )
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--call-url", help=argparse.SUPPRESS)
    parser.add_argument("--accounts", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = child_throttling(args.child, args.url, args.call_url, args.roles, args.threads)
        print(json.dumps(result))
        return 0
    if args.memory_child:
        print(json.dumps(child_memory(args.memory_child, args.url, args.accounts)))
        return 0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants: {', '.join(unknown)}")
    tables: list[Callable[[], str]] = []
    if not args.memory_only:
        tables.append(
            lambda: throttling_table(
                args.roles, args.threads, args.rate, args.delay, args.calls_on_sts, variants
            )
        )
    if args.memory:
        tables.append(lambda: memory_table(args.memory, args.memory_plain or args.memory))
    for table in tables:
        print(table(), end="\n\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
