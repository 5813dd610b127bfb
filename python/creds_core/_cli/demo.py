"""``creds-core demo``: many roles at once, through creds_core and through plain boto3.

Everything runs on this machine, with no AWS account and no configuration: an embedded STS
(:class:`creds_core.testing.StsServer`) listens on 127.0.0.1 with a
token bucket (``--rate`` requests per second) and a latency on every answer (``--latency``).
Each of ``--roles`` distinct roles is assumed and then makes one signed GetCallerIdentity
call with its credentials, on 64 threads:

* **creds_core**: ``creds_core.fanout.fan_out`` (``creds_core.boto3.assume_role`` for each
  role) from one source session, on as many threads; the AssumeRole
  calls of all roles share one :class:`~creds_core.Limiter` at 45 % of the STS rate with a
  burst of a fifth of a second's worth (each role makes one more call of its own right after,
  and the rest is a margin for bursts),
  and a ``load_timeout`` of 30 s, since a first fetch includes the wait in the Limiter's
  queue behind the other roles';
* **plain boto3**: a ``boto3.Session`` and STS client per role (default retry settings),
  ``assume_role`` then a client with the role's credentials.

The table compares wall time, STS calls (as the server counted them), throttled answers and
roles that failed.

Then a **discovery** (``creds_core._cli.discovery``) of ``--accounts`` accounts against an
embedded EC2 (:class:`creds_core.testing.Ec2Server`) whose quotas are EC2's scaled down five
times so that the phase is short (a bucket of 20 tokens refilled at 4 a second per account
and API): per account ``--pages`` DescribeInstances pages of 5 instances, a DescribeVolumes
call per instance and a DescribeSecurityGroups call per page, on 32 threads.  creds_core gives
its sessions an ``ApiLimits`` that knows those quotas; plain boto3 uses its default retry
settings.  A second table compares wall time, EC2 requests, throttled answers and calls that
failed.

botocore runs in an isolated environment during the demo: no AWS_* variables,
``AWS_CONFIG_FILE`` and ``AWS_SHARED_CREDENTIALS_FILE`` set to the null device, IMDS
disabled, no proxy; the source credentials are fake and explicit.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO, TypeVar

from creds_core._cli.common import EXIT_CREDENTIALS, EXIT_OK
from creds_core._cli.discovery import (
    PAGE_SIZE,
    Discovery,
    describe_error,
    discover,
    quota_floor,
)

__all__ = [
    "DEFAULT_ACCOUNTS",
    "DEFAULT_LATENCY",
    "DEFAULT_PAGES",
    "DEFAULT_RATE",
    "DEFAULT_ROLES",
    "DiscoveryPhase",
    "Phase",
    "run",
]

#: Roles assumed by default: both phases finish in about a minute on the project's machine.
DEFAULT_ROLES = 200
DEFAULT_RATE = 100.0
DEFAULT_LATENCY = 0.020
WORKERS = 64
#: The share of the STS rate given to the AssumeRole calls of creds_core's role caches: each
#: role makes one more call of its own right after, and a margin absorbs bursts.
LIMITER_SHARE = 0.45
#: The AssumeRole calls the Limiter lets through at once, as a share of its rate.  Each role's
#: own call follows its AssumeRole, so a burst is paid twice; with the default (a full second's
#: worth) the first second used about all of the STS's bucket and was throttled in some runs,
#: which halves the Limiter's rate and cost 1-2 s.
LIMITER_BURST_SHARE = 0.2
#: load_timeout of the role caches: a first fetch includes the wait for the shared Limiter.
ROLE_LOAD_TIMEOUT = 30.0
REGION = "us-east-1"
ACCOUNT = "123456789012"
#: The discovery phase: accounts, DescribeInstances pages per account, threads.  With the
#: scaled quotas each account's DescribeVolumes bucket serves 5 calls a page: 60 calls from
#: 20 tokens at 4 a second need 10 s at least.
DEFAULT_ACCOUNTS = 10
DEFAULT_PAGES = 12
DISCOVERY_THREADS = 32
#: EC2's non-mutating quota (100 tokens, 20 a second) scaled down five times.
DISCOVERY_QUOTA = (20.0, 4.0)
DISCOVERY_LATENCY = 0.005
# Fake source credentials: the embedded STS does not verify signatures.
_SOURCE_KEY = "AKIADEMOSOURCEKEY001"
_SOURCE_SECRET = "creds-core-demo-not-a-real-secret"
_SESSION_NAME = "creds-core-demo"


class _NoBar:
    """tqdm's interface, showing nothing (tqdm not installed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class Phase:
    """What one way of assuming the roles cost."""

    name: str
    roles: int
    seconds: float = 0.0
    sts_calls: int = 0
    throttled: int = 0
    failures: int = 0
    first_failure: str | None = None


@dataclass
class DiscoveryPhase:
    """What one way of running the discovery cost: the discovery's own counts, and the
    requests and throttled answers the EC2 counted."""

    name: str
    accounts: int
    result: Discovery = field(default_factory=Discovery)
    requests: int = 0
    throttled: int = 0

    @property
    def first_failure(self) -> str | None:
        return self.result.first_failure


@contextlib.contextmanager
def isolated_environment() -> Iterator[None]:
    """botocore sees no AWS configuration of this machine while the demo runs."""
    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            upper = name.upper()
            if upper.startswith("AWS_") or upper.endswith("_PROXY") or upper == "BOTO_CONFIG":
                del os.environ[name]
        os.environ.update(
            {
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "BOTO_CONFIG": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            }
        )
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _role_arn(prefix: str, i: int) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/creds-core-demo-{prefix}-{i:05d}"


def _check_identity(identity: Mapping[str, Any], role_arn: str) -> None:
    role_name = role_arn.rsplit("/", 1)[1]
    if f"assumed-role/{role_name}/" not in str(identity.get("Arn")):
        raise RuntimeError(f"GetCallerIdentity answered another identity for {role_name}")


def _creds_core_phase(url: str, limiter: Any, roles: int, progress: bool) -> list[BaseException]:
    """The roles through creds_core's own fan-out (``creds_core.fanout.fan_out``)."""
    import boto3

    from creds_core.fanout import fan_out

    source = boto3.Session(
        aws_access_key_id=_SOURCE_KEY,
        aws_secret_access_key=_SOURCE_SECRET,
        region_name=REGION,
    )

    def one(role: Any, role_arn: str) -> None:
        _check_identity(role.client("sts", endpoint_url=url).get_caller_identity(), role_arn)

    result = fan_out(
        one,
        [_role_arn("cc", i) for i in range(roles)],
        session=source,
        max_workers=WORKERS,
        progress=progress,
        description=f"{'creds_core':<12}",
        limiter=limiter,
        # A first fetch waits in the Limiter's queue with the other roles': its
        # load_timeout runs from the start of its AssumeRole call, not before.
        cache_options={"load_timeout": ROLE_LOAD_TIMEOUT},
        role_session_name=_SESSION_NAME,
        endpoint_url=url,
    )
    return list(result.errors.values())


def _boto3_worker(url: str) -> Callable[[int], None]:
    import boto3

    def one(i: int) -> None:
        role_arn = _role_arn("boto3", i)
        session = boto3.Session(
            aws_access_key_id=_SOURCE_KEY,
            aws_secret_access_key=_SOURCE_SECRET,
            region_name=REGION,
        )
        sts = session.client("sts", endpoint_url=url)
        creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=_SESSION_NAME)["Credentials"]
        role = session.client(
            "sts",
            endpoint_url=url,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )
        _check_identity(role.get_caller_identity(), role_arn)

    return one


def _boto3_phase(
    url: str, roles: int, progress: bool, err: TextIO, name: str
) -> list[BaseException]:
    """The roles through plain boto3, on the same number of threads."""
    work = _boto3_worker(url)
    # tqdm ships no type information; typed as Any whether or not stubs are installed.
    tqdm: Any = importlib.import_module("tqdm").tqdm if progress else _NoBar
    bar = tqdm(total=roles, desc=f"{name:<12}", unit="role", file=err, leave=True)
    errors: list[BaseException] = []
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="demo-boto3") as pool:
        futures: list[Future[None]] = [pool.submit(work, i) for i in range(roles)]
        try:
            for future in as_completed(futures):
                exc = future.exception()
                if exc is not None:  # collected here, in the one thread reading the results
                    errors.append(exc)
                bar.update(1)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        finally:
            bar.close()
    return errors


def _run_phase(
    phase: Phase, run: Callable[[], list[BaseException]], sts: Any, progress: bool, err: TextIO
) -> None:
    sts.reset_counts()
    started = time.perf_counter()
    errors = run()
    phase.seconds = time.perf_counter() - started
    phase.failures = len(errors)
    if errors:
        phase.first_failure = describe_error(errors[0])
    counts = sts.counts
    phase.sts_calls = sts.requests
    phase.throttled = counts["throttled"]
    if not progress:
        failed = f", first: {phase.first_failure}" if phase.first_failure else ""
        print(
            f"{phase.name}: {phase.roles} roles in {phase.seconds:.1f} s, "
            f"{phase.sts_calls} STS calls, {phase.throttled} throttled, "
            f"{phase.failures} failed{failed}",
            file=err,
            flush=True,
        )


def _discovery_keys(accounts: int) -> dict[str, str]:
    """Fake static keys, one per account, mapped to the account by the embedded EC2."""
    return {f"AKIADEMODISCOVER{n:04d}": f"{200000000000 + n:012d}" for n in range(accounts)}


def _discovery_phase(
    phase: DiscoveryPhase, url: str, keys: Mapping[str, str], pages: int, limited: bool
) -> None:
    import boto3

    import creds_core.boto3
    from creds_core import ApiLimits, Credentials

    capacity, refill = DISCOVERY_QUOTA
    # The account's quotas, as a user gives them: a bucket per API, like EC2's.
    limits = ApiLimits(
        {"ec2:Describe*": {"rate": refill, "burst": capacity, "per_operation": True}}
    )
    clients: dict[str, Any] = {}
    for key, account in keys.items():
        if limited:
            credentials = Credentials(key, _SOURCE_SECRET, account_id=account)
            session = creds_core.boto3.session(
                lambda c=credentials: c, api_limits=limits, region_name=REGION
            )
        else:
            session = boto3.Session(
                aws_access_key_id=key, aws_secret_access_key=_SOURCE_SECRET, region_name=REGION
            )
        clients[account] = session.client("ec2", endpoint_url=url)
    # Each account's listing holds a thread: more accounts, more threads.
    threads = max(DISCOVERY_THREADS, len(clients) + 8)
    phase.result = discover(clients.__getitem__, list(clients), threads=threads, max_pages=pages)


def _run_discovery(accounts: int, pages: int, err: TextIO) -> tuple[list[DiscoveryPhase], float]:
    """Both discovery phases, each against a fresh embedded EC2 (full buckets); the phases
    and the quota floor."""
    from creds_core.testing import Ec2Server

    capacity, refill = DISCOVERY_QUOTA
    keys = _discovery_keys(accounts)
    phases = [DiscoveryPhase("creds_core", accounts), DiscoveryPhase("plain boto3", accounts)]
    # Each account's DescribeVolumes bucket serves a call per instance of each page.
    floor = quota_floor(PAGE_SIZE * pages, capacity, refill)
    print(
        f"\ncreds-core demo: discovery of {accounts} accounts ({pages} DescribeInstances pages "
        f"of {PAGE_SIZE} each, a DescribeVolumes call per instance, a DescribeSecurityGroups "
        f"call per page) on {DISCOVERY_THREADS} threads against a local EC2 (a bucket of "
        f"{capacity:g} tokens refilled at {refill:g}/s per account and API)",
        file=err,
        flush=True,
    )
    for phase in phases:
        with Ec2Server(
            accounts=keys,
            quotas={"non-mutating": DISCOVERY_QUOTA},
            instances=5 * pages,
            delay=DISCOVERY_LATENCY,
            max_requests=200 * accounts * pages + 1000,
            max_seconds=3600.0,
        ) as ec2:
            _discovery_phase(phase, ec2.url, keys, pages, phase.name == "creds_core")
            phase.requests = ec2.requests
            phase.throttled = ec2.counts["throttled"]
        result = phase.result
        failed = f", first: {result.first_failure}" if result.first_failure else ""
        print(
            f"{phase.name} discovery: {result.calls} calls in {result.seconds:.1f} s, "
            f"{phase.requests} EC2 requests, {phase.throttled} throttled, "
            f"{result.failed} failed{failed}",
            file=err,
            flush=True,
        )
    return phases, floor


def render_discovery_table(phases: list[DiscoveryPhase], floor: float, out: TextIO) -> None:
    rows: list[tuple[str, Callable[[DiscoveryPhase], str]]] = [
        ("accounts", lambda p: f"{p.accounts:,}"),
        ("API calls made", lambda p: f"{p.result.calls:,}"),
        ("wall time", lambda p: f"{p.result.seconds:.1f} s"),
        ("EC2 requests", lambda p: f"{p.requests:,}"),
        ("throttled responses", lambda p: f"{p.throttled:,}"),
        ("calls failed", lambda p: f"{p.result.failed:,}"),
    ]
    _write_table("discovery", phases, rows, "first failed call", out)
    out.write(
        f"quota floor: {floor:.1f} s (no client can list faster than the EC2 buckets refill)\n"
    )
    out.flush()


def render_table(phases: list[Phase], out: TextIO) -> None:
    rows: list[tuple[str, Callable[[Phase], str]]] = [
        ("roles", lambda p: f"{p.roles:,}"),
        ("wall time", lambda p: f"{p.seconds:.1f} s"),
        ("roles per second", lambda p: f"{p.roles / p.seconds:.1f}" if p.seconds else "-"),
        ("STS calls", lambda p: f"{p.sts_calls:,}"),
        ("throttled responses", lambda p: f"{p.throttled:,}"),
        ("failures", lambda p: f"{p.failures:,}"),
    ]
    _write_table("", phases, rows, "first failure", out)
    out.flush()


class _Column(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def first_failure(self) -> str | None: ...


_C = TypeVar("_C", bound=_Column)


def _write_table(
    title: str,
    phases: Sequence[_C],
    rows: Sequence[tuple[str, Callable[[_C], str]]],
    failure: str,
    out: TextIO,
) -> None:
    """A column per phase, a line per row, then each phase's first failure."""
    width = max(14, *(len(p.name) for p in phases))
    out.write(f"{title:<20}" + "".join(f"{p.name:>{width}}" for p in phases) + "\n")
    for label, cell in rows:
        out.write(f"{label:<20}" + "".join(f"{cell(p):>{width}}" for p in phases) + "\n")
    for p in phases:
        if p.first_failure:
            out.write(f"{p.name}: {failure}: {p.first_failure}\n")


def run(
    roles: int,
    rate: float,
    latency: float,
    *,
    accounts: int = DEFAULT_ACCOUNTS,
    pages: int = DEFAULT_PAGES,
    out: TextIO | None = None,
    err: TextIO | None = None,
    progress: bool | None = None,
) -> int:
    """Run both phases against one embedded STS, then the discovery against an embedded
    EC2, and print the tables on ``out``.

    Exit code 0 when every role assumed and every discovery call made through creds_core
    worked, 1 otherwise.
    """
    from creds_core._core import Limiter
    from creds_core.testing import StsServer

    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if progress is None:
        progress = err.isatty()
    # The bars are the extra creds_core[progress] (tqdm): without it, a line per phase.
    progress = progress and importlib.util.find_spec("tqdm") is not None
    # Generous bounds: the server stops by itself if the demo is left running.
    budget = 40 * roles + 1000
    server = StsServer(rate=rate, delay=latency, max_requests=budget, max_seconds=3600.0)
    with isolated_environment(), server as sts:
        print(
            f"creds-core demo: {roles:,} roles, each assumed then making one signed "
            f"GetCallerIdentity call, on {WORKERS} threads, against a local STS at {sts.url} "
            f"({rate:g} requests/s, {latency * 1000:g} ms latency)",
            file=err,
            flush=True,
        )
        limiter = Limiter(
            max_concurrency=WORKERS,
            rate=rate * LIMITER_SHARE,
            burst=max(1.0, rate * LIMITER_SHARE * LIMITER_BURST_SHARE),
            name="demo STS",
        )
        phases = [Phase("creds_core", roles), Phase("plain boto3", roles)]
        _run_phase(
            phases[0],
            lambda: _creds_core_phase(sts.url, limiter, roles, progress),
            sts,
            progress,
            err,
        )
        _run_phase(
            phases[1],
            lambda: _boto3_phase(sts.url, roles, progress, err, phases[1].name),
            sts,
            progress,
            err,
        )
        discovery, floor = _run_discovery(accounts, pages, err)
    out.write("\n")
    render_table(phases, out)
    out.write(
        f"\ncreds_core: one source session; the role caches share a Limiter at "
        f"{rate * LIMITER_SHARE:g} AssumeRole/s\n  (each role then makes a call of its own to "
        f"the same STS: together under its {rate:g}/s);\n"
        "plain boto3: a boto3.Session and STS client per role, default retry settings.\n\n"
    )
    render_discovery_table(discovery, floor, out)
    out.write(
        "\ncreds_core: an ApiLimits shared by the accounts' sessions, told the EC2 quotas;\n"
        "plain boto3: a client per account, default retry settings.\n"
    )
    out.flush()
    ok = phases[0].failures == 0 and discovery[0].result.failed == 0
    return EXIT_OK if ok else EXIT_CREDENTIALS
