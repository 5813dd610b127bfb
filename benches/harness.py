"""Shared pieces of the benchmark suites: an offline AWS environment, the peers built so that
their refresh can only reach a local stub or the project's own StsServer, timing helpers.

Nothing here ever talks to real AWS: every client gets an explicit 127.0.0.1 endpoint (or the
``AWS_ENDPOINT_URL_STS`` of :func:`offline_environ`), config and credentials files are
/dev/null and IMDS is disabled.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from creds_core import Credentials
from creds_core.testing import ManualClock

#: A small run (CI smoke test of the bench files): set CREDS_CORE_BENCH_QUICK=1.
QUICK = os.environ.get("CREDS_CORE_BENCH_QUICK", "") not in ("", "0")

SOURCE_KEY = "AKIABENCHSOURCE00001"
SOURCE_SECRET = "bench-source-secret"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"


def role_arn(i: int) -> str:
    """A distinct role ARN per index (the StsServer accepts any)."""
    return f"arn:aws:iam::{ACCOUNT_ID}:role/bench-{i:05d}"


def offline_environ(environ: MutableMapping[str, str], sts_url: str | None = None) -> None:
    """Make ``environ`` unable to reach AWS: no AWS_* variables, no config files, no IMDS;
    STS clients created without an endpoint go to ``sts_url`` (the local StsServer)."""
    for name in [n for n in environ if n.startswith("AWS_")]:
        del environ[name]
    environ["AWS_CONFIG_FILE"] = os.devnull
    environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    environ["AWS_EC2_METADATA_DISABLED"] = "true"
    environ["AWS_DEFAULT_REGION"] = REGION
    if sts_url is not None:
        environ["AWS_ENDPOINT_URL_STS"] = sts_url


@contextlib.contextmanager
def offline_env(sts_url: str | None = None) -> Iterator[None]:
    """:func:`offline_environ` on ``os.environ`` for the duration of the block."""
    saved = dict(os.environ)
    offline_environ(os.environ, sts_url)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# --- stub sources ------------------------------------------------------------------------------


class StubSource:
    """A credential source that answers after ``delay`` seconds; counts its calls.

    ``now`` gives the time the credentials' lifetime counts from (a ManualClock's ``now``
    for the cache benches, real time otherwise).
    """

    def __init__(
        self,
        delay: float = 0.0,
        lifetime: float = 3600.0,
        now: Callable[[], datetime] | None = None,
        prefix: str = "ASIASTUB",
    ) -> None:
        self.delay = delay
        self.lifetime = lifetime
        self.now = now if now is not None else (lambda: datetime.now(timezone.utc))
        self.prefix = prefix
        self.calls = 0
        self.started: list[float] = []  # time.monotonic() of each call
        self._lock = threading.Lock()

    def _begin(self) -> int:
        with self._lock:
            self.calls += 1
            self.started.append(time.monotonic())
            return self.calls

    def _expiry(self) -> datetime:
        return self.now() + timedelta(seconds=self.lifetime)

    def creds_core(self) -> Credentials:
        """The creds_core provider form: a callable returning Credentials."""
        n = self._begin()
        if self.delay:
            time.sleep(self.delay)
        return Credentials(f"{self.prefix}{n:012d}", "stub-secret", "stub-token", self._expiry())

    def botocore_metadata(self) -> dict[str, str]:
        """botocore's ``refresh_using`` form: a metadata dict."""
        n = self._begin()
        if self.delay:
            time.sleep(self.delay)
        return {
            "access_key": f"{self.prefix}{n:012d}",
            "secret_key": "stub-secret",
            "token": "stub-token",
            "expiry_time": self._expiry().isoformat(),
        }


class ShiftedTime:
    """botocore's ``time_fetcher``: real local time plus an offset the bench moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.offset)


class Ticker:
    """Moves a ManualClock forward with real time (load timeouts then elapse for real)."""

    def __init__(self, clock: ManualClock, step: float = 0.002) -> None:
        self.clock = clock
        self.step = step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ticker", daemon=True)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.step):
            now = time.monotonic()
            self.clock.advance(now - last)
            last = now

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- peers -------------------------------------------------------------------------------------


def source_session() -> Any:
    """A boto3 session with fixed (fake) source keys: the identity that assumes the roles."""
    import boto3

    return boto3.Session(
        aws_access_key_id=SOURCE_KEY, aws_secret_access_key=SOURCE_SECRET, region_name=REGION
    )


def botocore_refreshable(
    source: StubSource, time_fetcher: Callable[[], datetime] | None = None
) -> Any:
    """botocore's RefreshableCredentials, fresh, refreshed by ``source``."""
    from botocore.credentials import RefreshableCredentials

    creds: Any = RefreshableCredentials.create_from_metadata(
        source.botocore_metadata(), source.botocore_metadata, "bench"
    )
    if time_fetcher is not None:
        creds._time_fetcher = time_fetcher
    return creds


def brs_custom(source: StubSource) -> Any:
    """boto3-refresh-session's RefreshableSession(method="custom") over ``source``."""
    from boto3_refresh_session import RefreshableSession  # type: ignore[import-untyped]

    return RefreshableSession(
        method="custom",
        custom_credentials_method=source.botocore_metadata,
        region_name=REGION,
    )


def brs_sts(sts_url: str, i: int = 0) -> Any:
    """boto3-refresh-session's RefreshableSession(method="sts"): AssumeRole on the StsServer."""
    from boto3_refresh_session import RefreshableSession

    return RefreshableSession(
        method="sts",
        assume_role_kwargs={"RoleArn": role_arn(i), "RoleSessionName": "bench"},
        sts_client_kwargs={"endpoint_url": sts_url, "region_name": REGION},
        region_name=REGION,
        aws_access_key_id=SOURCE_KEY,
        aws_secret_access_key=SOURCE_SECRET,
    )


def arl_session(source: Any, i: int = 0, cache: dict[str, Any] | None = None) -> Any:
    """aws-assume-role-lib's assume_role(): its STS client reaches the StsServer through
    ``AWS_ENDPOINT_URL_STS`` (see :func:`offline_environ`)."""
    from aws_assume_role_lib.aws_assume_role_lib import assume_role

    return assume_role(
        source, role_arn(i), RoleSessionName="bench", cache=cache if cache is not None else {}
    )


def resolve(session: Any) -> Any:
    """Resolve a boto3 session's credentials as its first signed request would."""
    credentials = session.get_credentials()
    assert credentials is not None, "the session has no credentials"
    return credentials.get_frozen_credentials()


def creds_core_role(source: Any, sts_url: str, i: int = 0, **options: Any) -> Any:
    """creds_core.boto3.assume_role on the StsServer."""
    import creds_core.boto3

    return creds_core.boto3.assume_role(
        source, role_arn(i), role_session_name="bench", endpoint_url=sts_url, **options
    )


# --- timing ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100.0 * len(ordered) + 0.5) - 1))
    return float(ordered[rank])


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p99, max and mean of ``values`` (seconds)."""
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": float(max(values)) if values else 0.0,
        "mean": statistics.fmean(values) if values else 0.0,
    }


def throughput(call: Callable[[], Any], threads: int, seconds: float) -> float:
    """Calls per second of ``threads`` threads each calling ``call`` in a loop for
    ``seconds``, counted across all threads."""
    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def loop(slot: int) -> None:
        n = 0
        start.wait()
        while not stop.is_set():
            for _ in range(100):
                call()
            n += 100
        counts[slot] = n

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - began)


def concurrent_waits(call: Callable[[], Any], threads: int) -> tuple[list[float], list[Any], float]:
    """Release ``threads`` threads at once on ``call``: each one's wait (seconds), each one's
    result (or exception), and the span from the first call to the last return.

    A thread's wait is measured from its own call to its return, so the time a thread spends
    waiting for the GIL before it calls is not counted against the library.
    """
    waits = [0.0] * threads
    starts = [0.0] * threads
    results: list[Any] = [None] * threads
    start = threading.Barrier(threads)

    def one(slot: int) -> None:
        start.wait()
        t = starts[slot] = time.perf_counter()
        try:
            results[slot] = call()
        except Exception as exc:
            results[slot] = exc
        waits[slot] = time.perf_counter() - t

    workers = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    span = max(s + w for s, w in zip(starts, waits)) - min(starts)
    return waits, results, span


def peak_rate(starts: Sequence[float], window: float = 1.0) -> float:
    """The most calls that started within any ``window`` seconds (half-open), per second."""
    ordered = sorted(starts)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best / window
