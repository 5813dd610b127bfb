"""Run one function against many AWS accounts at once (what botocove users write by hand).

::

    from creds_core.fanout import fan_out

    def buckets(session, account_id):
        return [b["Name"] for b in session.client("s3").list_buckets()["Buckets"]]

    result = fan_out(buckets, account_ids, role_name="OrganizationAccountAccessRole")
    result.results      # {account_id: [bucket names]} for the accounts that worked
    result.errors       # {account_id: exception} for the others (never raised)
    print(result)       # FanOutResult(succeeded=998, failed=2, duration=41.3s)

Each target gets a boto3 Session from :func:`creds_core.boto3.assume_role`, so:

* its credentials come from a creds_core cache (one per role, process-wide: a second fan-out
  over the same roles calls STS again only when the credentials near expiry);
* every role's AssumeRole goes through one :class:`~creds_core.Limiter` per STS endpoint, so
  a thousand accounts do not stampede STS, and throttling slows everyone down together;
* the sessions share one botocore data loader, the parsed service models, endpoint data,
  event handlers, client classes and endpoint rule sets: about 0.1 MB per account with an S3
  client, where a ``boto3.Session()`` per account costs about 12 MB.

The role's credentials are fetched before ``fn`` runs, so a role that cannot be assumed is
reported as that target's error (a :class:`~creds_core.CredentialsError`, e.g.
:class:`~creds_core.NonRecoverableError` for AccessDenied) and ``fn`` is not called for it.
One target's failure never stops the others.  Nothing here prints or logs a secret: the
progress bar shows counts, and failures are logged (at INFO) with the target and the
exception's type only.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, Union, cast

import boto3
import botocore.session

from creds_core._core import CredentialsError, Limiter

if TYPE_CHECKING:  # the asyncio twin needs the extra creds_core[aio]; fan_out does not
    from aiobotocore.session import AioSession

    from creds_core.api_limits import ApiLimits
    from creds_core.redis import RedisTier

__all__ = ["DEFAULT_LOAD_TIMEOUT", "FanOutResult", "fan_out", "fan_out_async", "role_arn_for"]

LOG = logging.getLogger(__name__)

T = TypeVar("T", bound=Hashable)
R = TypeVar("R")

#: ``load_timeout`` of the role caches a fan-out creates: with many targets and a throttled
#: STS a worker may queue for the shared Limiter for a while; failing after botocore's usual
#: patience is better than failing after the cache's default 5 s.
DEFAULT_LOAD_TIMEOUT = 60.0

_ACCOUNT_ID = re.compile(r"^\d{12}$")

RoleArn = Union[str, Callable[[Any], str]]

_DEFAULT_LOCK = threading.Lock()
_DEFAULT_SESSION: boto3.Session | None = None


@dataclass(frozen=True, repr=False)
class FanOutResult(Generic[T, R]):
    """What a fan-out did: per-target results and errors (in target order), and its duration.

    ``results[target]`` is what ``fn`` returned; ``errors[target]`` the exception that ended
    that target (a credentials error when its role could not be assumed, else what ``fn``
    raised).  Every target is in exactly one of the two.  The repr shows counts only.
    """

    results: dict[T, R] = field(default_factory=dict)
    errors: dict[T, BaseException] = field(default_factory=dict)
    duration: float = 0.0

    @property
    def succeeded(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> int:
        return len(self.errors)

    @property
    def total(self) -> int:
        return self.succeeded + self.failed

    @property
    def ok(self) -> bool:
        """True when no target failed."""
        return not self.errors

    def error_summary(self) -> dict[str, int]:
        """How many targets failed with each exception type (``{"NonRecoverableError": 2}``)."""
        summary: dict[str, int] = {}
        for exc in self.errors.values():
            name = type(exc).__name__
            summary[name] = summary.get(name, 0) + 1
        return summary

    def __repr__(self) -> str:
        return (
            f"FanOutResult(succeeded={self.succeeded}, failed={self.failed}, "
            f"duration={self.duration:.1f}s)"
        )


def _default_session() -> boto3.Session:
    """One creds_core session over botocore's default chain, for every fan-out without one
    (so role caches, keyed by their source, are reused from one fan-out to the next)."""
    global _DEFAULT_SESSION
    with _DEFAULT_LOCK:
        if _DEFAULT_SESSION is None:
            from creds_core.boto3 import session

            _DEFAULT_SESSION = session()
        return _DEFAULT_SESSION


def _partition(session: boto3.Session | botocore.session.Session) -> str:
    botocore_session = session._session if isinstance(session, boto3.Session) else session
    region = botocore_session.get_config_variable("region")
    if region:
        try:
            return str(botocore_session.get_partition_for_region(region))
        except Exception:  # an unknown region: the commercial partition, as botocore guesses
            return "aws"
    return "aws"


def role_arn_for(
    target: Any,
    *,
    role_name: str | None = None,
    role_arn: RoleArn | None = None,
    partition: str = "aws",
) -> str:
    """The role ARN a fan-out assumes for ``target``.

    ``role_arn``: a callable ``target -> ARN``, or a template formatted with ``target`` and
    ``account_id`` (both the target), e.g. ``"arn:aws:iam::{account_id}:role/Auditor"``.
    ``role_name``: ``target`` is a 12-digit account id and the ARN is
    ``arn:<partition>:iam::<target>:role/<role_name>`` (``role_name`` may have a path).
    Neither: ``target`` is a role ARN itself.
    """
    if role_arn is not None and role_name is not None:
        raise TypeError("give role_arn or role_name, not both")
    if callable(role_arn):
        arn = role_arn(target)
    elif isinstance(role_arn, str):
        arn = role_arn.format(target=target, account_id=target)
    elif role_name is not None:
        account = str(target)
        if not _ACCOUNT_ID.match(account):
            raise ValueError(
                f"with role_name, targets must be 12-digit account ids, not {target!r}"
            )
        arn = f"arn:{partition}:iam::{account}:role/{role_name.strip('/')}"
    else:
        arn = target
    if not isinstance(arn, str) or not arn.startswith("arn:"):
        raise ValueError(
            f"no role ARN for target {target!r}: give role_name or role_arn, or role ARNs "
            "as targets"
        )
    return arn


def _show_progress(progress: bool | None) -> bool:
    # The bar is the extra creds_core[progress] (tqdm): no bar without it.
    if importlib.util.find_spec("tqdm") is None:
        return False
    if progress is not None:
        return progress
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def fan_out(
    fn: Callable[[boto3.Session, T], R],
    targets: Iterable[T],
    *,
    session: boto3.Session | botocore.session.Session | None = None,
    role_name: str | None = None,
    role_arn: RoleArn | None = None,
    max_workers: int = 32,
    progress: bool | None = None,
    description: str = "accounts",
    limiter: Limiter | Literal[False] | None = None,
    cache_options: Mapping[str, Any] | None = None,
    shared: RedisTier | None = None,
    api_limits: ApiLimits | Literal[False] | None = None,
    **assume_role_kwargs: Any,
) -> FanOutResult[T, R]:
    """Call ``fn(session, target)`` for every target, each with a session of its own role,
    on a pool of ``max_workers`` threads; return results and errors separately.

    ``targets``: account ids (with ``role_name`` or ``role_arn``), role ARNs, or any hashable
    objects ``role_arn`` (a callable) maps to ARNs.  Duplicates are run once.  ``session``:
    the source of every AssumeRole (default: one process-wide creds_core session over
    botocore's default credential chain).  ``progress``: a tqdm bar on stderr; None shows it
    when stderr is a terminal.  ``limiter``: the Limiter every AssumeRole goes through (None:
    the one shared per STS endpoint and region, see :func:`creds_core.boto3.assume_role`;
    False: none).  ``cache_options`` for the role caches default to
    ``{"load_timeout": DEFAULT_LOAD_TIMEOUT}``.  Other keyword arguments go to
    :func:`creds_core.boto3.assume_role` (``role_session_name``, ``external_id``,
    ``duration_seconds``, ``policy``, ``region``, ``endpoint_url``...).  ``shared``: a
    :class:`creds_core.redis.RedisTier` shared by every process of a fleet (one AssumeRole
    per role and refresh across all of them).  ``api_limits``: a :class:`creds_core.ApiLimits`
    that every API call of every role session draws from (one bucket per account, region and
    service, shared by all threads; None: the source session's, if it has one).

    ``fn`` runs on the pool's threads, so it must be thread-safe; it may create clients from
    its session freely (they are cheap).  ``KeyboardInterrupt`` is re-raised at once; the
    threads finish the target they are on and start no other.
    """
    from creds_core.boto3 import assume_role, get_cache

    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ValueError("max_workers must be an int >= 1")
    if role_arn is not None and role_name is not None:
        raise TypeError("give role_arn or role_name, not both")
    if isinstance(targets, (str, bytes)):
        raise TypeError("targets must be an iterable of targets, not a single string")
    source = session if session is not None else _default_session()
    partition = _partition(source) if role_name is not None else "aws"
    ordered = list(dict.fromkeys(targets))
    options = dict(cache_options) if cache_options is not None else {}
    options.setdefault("load_timeout", DEFAULT_LOAD_TIMEOUT)

    def run_one(target: T) -> R:
        arn = role_arn_for(target, role_name=role_name, role_arn=role_arn, partition=partition)
        role = assume_role(
            source,
            arn,
            limiter=limiter,
            cache_options=options,
            shared=shared,
            api_limits=api_limits,
            **assume_role_kwargs,
        )
        cache = get_cache(role)
        if cache is not None:
            cache.get()  # a role that cannot be assumed fails here, before fn runs
        return fn(role, target)

    started = time.monotonic()
    show = _show_progress(progress)
    with _logging_around_bar(show):
        outcomes = _run(run_one, ordered, max_workers, description, show)
    results: dict[T, R] = {}
    errors: dict[T, BaseException] = {}
    for target in ordered:
        ok, value = outcomes[target]
        if ok:
            results[target] = value
        else:
            errors[target] = value
    return FanOutResult(results, errors, time.monotonic() - started)


def _run(
    run_one: Callable[[T], R], ordered: list[T], max_workers: int, description: str, show: bool
) -> dict[T, tuple[bool, Any]]:
    """Run every target on ``max_workers`` threads: (True, result) or (False, exception).

    The threads are all started before any of them starts working: a thread started while
    others hold the GIL takes tens of milliseconds to start (ThreadPoolExecutor starts one
    per submission, which costs a second or more at the beginning of a large fan-out).
    """
    todo: queue.SimpleQueue[T] = queue.SimpleQueue()
    for target in ordered:
        todo.put(target)
    done: queue.SimpleQueue[tuple[T, bool, Any]] = queue.SimpleQueue()
    go, stop = threading.Event(), threading.Event()

    def work() -> None:
        go.wait()
        while not stop.is_set():
            try:
                target = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((target, True, run_one(target)))
            except BaseException as exc:  # the target's failure, whatever it is
                done.put((target, False, exc))

    threads = [
        threading.Thread(target=work, name=f"creds-core-fanout-{n}", daemon=True)
        for n in range(max(1, min(max_workers, len(ordered))))
    ]
    for thread in threads:
        thread.start()
    go.set()
    outcomes: dict[T, tuple[bool, Any]] = {}
    bar = _progress_bar(len(ordered), description, show)
    failed = 0
    try:
        while len(outcomes) < len(ordered):
            try:
                target, ok, value = done.get(timeout=0.2)  # a timeout: Ctrl-C gets through
            except queue.Empty:
                continue
            outcomes[target] = (ok, value)
            if not ok:
                failed += 1
                kind = "credentials" if isinstance(value, CredentialsError) else "fn"
                LOG.info("fan-out target %r failed (%s): %s", target, kind, type(value).__name__)
            if bar is not None:
                bar.update(1)
                if failed:
                    bar.set_postfix(failed=failed, refresh=False)
    except BaseException:
        stop.set()  # workers finish the target they are on and take no other
        raise
    finally:
        if bar is not None:
            bar.close()
    for thread in threads:
        thread.join()
    return outcomes


# --- asyncio -------------------------------------------------------------------------------------

_DEFAULT_AIO_LOCK = threading.Lock()
_DEFAULT_AIO_SESSION: AioSession | None = None


def _default_aio_session() -> AioSession:
    global _DEFAULT_AIO_SESSION
    with _DEFAULT_AIO_LOCK:
        if _DEFAULT_AIO_SESSION is None:
            from creds_core.aiobotocore import session

            _DEFAULT_AIO_SESSION = session()
        return _DEFAULT_AIO_SESSION


async def fan_out_async(
    fn: Callable[[AioSession, T], Awaitable[R]],
    targets: Iterable[T],
    *,
    session: Any = None,
    role_name: str | None = None,
    role_arn: RoleArn | None = None,
    max_concurrency: int = 64,
    progress: bool | None = None,
    description: str = "accounts",
    limiter: Limiter | Literal[False] | None = None,
    cache_options: Mapping[str, Any] | None = None,
    shared: RedisTier | None = None,
    api_limits: ApiLimits | Literal[False] | None = None,
    **assume_role_kwargs: Any,
) -> FanOutResult[T, R]:
    """The asyncio twin of :func:`fan_out`: ``await fn(session, target)`` for every target,
    each with an aiobotocore ``AioSession`` of its own role, at most ``max_concurrency`` at a
    time on the running event loop; return results and errors separately.

    Needs the extra ``creds_core[aio]``.  Roles are assumed with
    :func:`creds_core.aiobotocore.assume_role` (``session``: its source, by default one
    process-wide creds_core AioSession over botocore's default chain): one cache per role,
    the STS endpoint's Limiter, STS calls as coroutines on creds_core's own loop, so the
    caller's loop is never blocked by a refresh.  A role's credentials are awaited before
    ``fn`` runs, so a role that cannot be assumed is that target's error.  ``fn`` creates the
    clients it needs (``async with session.create_client("s3") as s3``).  Targets, ``role_name``
    / ``role_arn``, ``progress``, ``limiter``, ``cache_options``, ``shared`` (a
    :class:`creds_core.redis.RedisTier`: one AssumeRole per role and refresh across every
    process of a fleet, sync or asyncio), ``api_limits`` (awaited on this loop) and the other
    keyword arguments are as for
    :func:`fan_out`.  Cancelling the fan-out cancels the targets in
    progress.
    """
    from creds_core.aiobotocore import assume_role, get_cache

    if (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise ValueError("max_concurrency must be an int >= 1")
    if role_arn is not None and role_name is not None:
        raise TypeError("give role_arn or role_name, not both")
    if isinstance(targets, (str, bytes)):
        raise TypeError("targets must be an iterable of targets, not a single string")
    source = session if session is not None else _default_aio_session()
    is_session = isinstance(source, botocore.session.Session)  # an AioSession is one
    partition = _partition(source) if role_name is not None and is_session else "aws"
    ordered = list(dict.fromkeys(targets))
    options = dict(cache_options) if cache_options is not None else {}
    options.setdefault("load_timeout", DEFAULT_LOAD_TIMEOUT)
    outcomes: dict[T, tuple[bool, Any]] = {}
    todo = iter(ordered)
    show = _show_progress(progress)
    started = time.monotonic()

    async def run_one(target: T) -> R:
        arn = role_arn_for(target, role_name=role_name, role_arn=role_arn, partition=partition)
        role = assume_role(
            source,
            arn,
            limiter=limiter,
            cache_options=options,
            shared=shared,
            api_limits=api_limits,
            **assume_role_kwargs,
        )
        cache = get_cache(role)
        if cache is not None:
            await cache.get_async()  # a role that cannot be assumed fails here
        return await fn(role, target)

    with _logging_around_bar(show):
        bar = _progress_bar(len(ordered), description, show)
        failed = 0

        async def worker() -> None:
            nonlocal failed
            for target in todo:  # one shared iterator: each target is taken once
                try:
                    outcomes[target] = (True, await run_one(target))
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # the target's failure, whatever it is
                    outcomes[target] = (False, exc)
                    failed += 1
                    kind = "credentials" if isinstance(exc, CredentialsError) else "fn"
                    LOG.info("fan-out target %r failed (%s): %s", target, kind, type(exc).__name__)
                if bar is not None:
                    bar.update(1)
                    if failed:
                        bar.set_postfix(failed=failed, refresh=False)

        try:
            await asyncio.gather(*(worker() for _ in range(min(max_concurrency, len(ordered)))))
        finally:
            if bar is not None:
                bar.close()
    results: dict[T, R] = {}
    errors: dict[T, BaseException] = {}
    for target in ordered:
        ok, value = outcomes[target]
        if ok:
            results[target] = value
        else:
            errors[target] = value
    return FanOutResult(results, errors, time.monotonic() - started)


def _logging_around_bar(show: bool) -> contextlib.AbstractContextManager[Any]:
    """While a bar is shown, log lines of console handlers go through tqdm (no torn bars)."""
    if not show:
        return contextlib.nullcontext()
    redirect: Any = importlib.import_module("tqdm.contrib.logging").logging_redirect_tqdm
    return cast("contextlib.AbstractContextManager[Any]", redirect())


def _progress_bar(total: int, description: str, show: bool) -> Any:
    if not show:
        return None
    tqdm: Any = importlib.import_module("tqdm").tqdm  # a dependency without type stubs

    return tqdm(total=total, desc=description, unit="target", file=sys.stderr, leave=True)
