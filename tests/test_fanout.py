"""Many accounts at once: 1,000 roles through a throttling STS, the fan_out helper, and the
per-account sessions that share botocore's loader, handlers, client classes and rule sets.

Every request goes over HTTP to the project's StsServer on 127.0.0.1 (``isolated_aws`` blocks
anything else).  STS answers its real ``Throttling`` error beyond its token bucket, records
every call (action, outcome, the access key that signed it, the key it issued) and answers
GetCallerIdentity for the keys it issued with the assumed role's ARN.
"""

from __future__ import annotations

import io
import logging
import random
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import creds_core.boto3 as cb
from creds_core import Limiter, NonRecoverableError
from creds_core._sessions import PersistentTrie
from creds_core.fanout import FanOutResult, fan_out, role_arn_for
from creds_core.testing.sts import _StsError
from helpers import SECRET
from server_fixtures import StsServer, servers

pytestmark = pytest.mark.usefixtures("isolated_aws")

REGION = "us-east-1"


def _source(prefix: str = "AKIAFAN") -> boto3.Session:
    """A plain boto3 session with its own static keys (role caches are keyed by source)."""
    return boto3.Session(
        region_name=REGION,
        aws_access_key_id=f"{prefix}{uuid.uuid4().hex[:13]}".upper()[:20],
        aws_secret_access_key=SECRET,
    )


def _accounts(n: int) -> list[str]:
    base = 100_000_000_000 + int(uuid.uuid4().int % 800_000_000_000)
    return [str(base + i) for i in range(n)]


@pytest.fixture
def fresh_limiters(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean registry of shared STS limiters: a server port reused by the OS must not hand
    this test a limiter another test already slowed down."""
    monkeypatch.setattr(cb, "_LIMITERS", {})


# --- 1,000 roles through a throttling STS -------------------------------------------------------

ROLES = 1000
THREADS = 64
#: AssumeRole answers allowed to be throttled (each one is retried; none may reach a caller).
#: Without a limiter, the same run gets 400-470 throttled answers and 90-150 caller failures;
#: with it 15-30 on an idle machine. The bound leaves room for a machine busy with other work
#: (bursty scheduling of the server's threads); throughput is measured by `make bench`.
THROTTLED_BOUND = 250
#: How long the whole run may take before a caller gives up: no outcome here depends on
#: speed, only a hung run ends the test.
PATIENCE = 600.0


def _run_all(fn: Any, items: list[str]) -> dict[str, Any]:
    """``fn(item)`` for every item on THREADS threads; failures are returned, not raised."""

    def guarded(item: str) -> Any:
        try:
            return fn(item)
        except BaseException as exc:  # a failure that reached the caller
            return exc

    with ThreadPoolExecutor(THREADS) as pool:
        return dict(zip(items, pool.map(guarded, items, timeout=PATIENCE)))


@pytest.mark.timeout(PATIENCE + 120)
def test_a_thousand_roles_from_64_threads_against_a_throttling_sts(fresh_limiters: None) -> None:
    with StsServer(rate=100, delay=0.02, max_requests=20_000, max_seconds=PATIENCE + 60) as sts:
        source = _source("AKIATHOUSAND")
        arns = [f"arn:aws:iam::{account}:role/fan-out" for account in _accounts(ROLES)]
        sessions: dict[str, boto3.Session] = {}

        def assume(arn: str) -> str:
            # What a client does before signing its first request: resolve the credentials.
            role = cb.assume_role(source, arn, role_session_name="fan-out", endpoint_url=sts.url)
            sessions[arn] = role
            credentials = role.get_credentials()
            assert credentials is not None
            return str(credentials.get_frozen_credentials().access_key)

        # The per-account call is the caller's own; it counts against the same STS token bucket
        # as AssumeRole. Its retries cannot run out on a slow machine: a throttled answer is
        # tried again (with backoff) until the run's patience is spent, so the only failures
        # left are wrong credentials.
        call_config = Config(retries={"mode": "standard", "total_max_attempts": 5})

        def call(arn: str) -> str:
            client = sessions[arn].client("sts", endpoint_url=sts.url, config=call_config)
            give_up = time.monotonic() + PATIENCE
            pause = 0.05
            while True:
                try:
                    return str(client.get_caller_identity()["Arn"])
                except ClientError as exc:
                    throttled = exc.response.get("Error", {}).get("Code") == "Throttling"
                    if not throttled or time.monotonic() > give_up:
                        raise
                time.sleep(pause * (1 + random.random()))
                pause = min(pause * 2, 2.0)

        started = time.monotonic()
        keys = _run_all(assume, arns)  # all 1,000 roles at once: far more than 100 calls/s
        assumed = time.monotonic() - started
        identities = _run_all(call, arns)
        elapsed = time.monotonic() - started
        calls = sts.calls

    failures = [a for a in [*keys.values(), *identities.values()] if isinstance(a, BaseException)]
    assume_calls = [c for c in calls if c.action == "AssumeRole"]
    outcomes = Counter((c.action, c.outcome) for c in calls)
    throttled = outcomes[("AssumeRole", "throttled")]
    limiter = cb.sts_limiter(source, endpoint_url=sts.url)
    print(
        f"\n{ROLES} roles from {THREADS} threads, STS at 100 calls/s + 20 ms: assumed in "
        f"{assumed:.1f} s, called in {elapsed - assumed:.1f} s; {len(assume_calls)} AssumeRole "
        f"calls, {throttled} throttled answers (and "
        f"{outcomes[('GetCallerIdentity', 'throttled')]} to the callers' own calls); "
        f"{len(failures)} caller failures; shared limiter: {limiter.stats()}"
    )
    assert not failures, f"{len(failures)} failures, e.g. {failures[0]!r}"
    # One successful AssumeRole per role; the others were throttled and retried.
    issued = {c.role_arn: c.issued_access_key_id for c in assume_calls if c.outcome == "ok"}
    assert sorted(issued) == sorted(arns)
    assert len(assume_calls) == ROLES + throttled
    assert throttled <= THROTTLED_BOUND
    # Each role's credentials are the ones STS issued for it, and its call was signed with
    # them (STS answers the identity of the role it issued them for).
    assert keys == issued
    identity_signers = [c.signer_access_key_id for c in calls if c.action == "GetCallerIdentity"]
    assert set(identity_signers) == set(issued.values())
    for arn, identity in identities.items():
        account, name = arn.split(":")[4], arn.rsplit("/", 1)[1]
        assert identity == f"arn:aws:sts::{account}:assumed-role/{name}/fan-out"
    # Every role's refresh went through the one Limiter of this STS endpoint (and so did every
    # attempt the cache made again after a throttled answer), and every throttled AssumeRole
    # answer reached it as it arrived, also those botocore's one retry then absorbed.
    stats = limiter.stats()
    assert ROLES <= stats["acquired"] <= ROLES + stats["throttled"]
    assert stats["throttled"] == throttled
    cache = cb.get_cache(sessions[arns[0]])
    assert cache is not None and cache.limiter is limiter


# --- fan_out ------------------------------------------------------------------------------------


def _identity(session: boto3.Session, target: str, url: str) -> str:
    return str(session.client("sts", endpoint_url=url).get_caller_identity()["Arn"])


def test_fan_out_separates_results_from_errors(
    sts_server: StsServer, caplog: pytest.LogCaptureFixture
) -> None:
    accounts = _accounts(40)
    denied = set(accounts[::7])
    sts_server.deny_roles = lambda arn: arn.split(":")[4] in denied
    raising = accounts[3]
    called: list[str] = []

    def fn(session: boto3.Session, account: str) -> str:
        called.append(account)
        if account == raising:
            raise RuntimeError("fn failed for this one")
        return _identity(session, account, sts_server.url)

    caplog.set_level(logging.DEBUG, logger="creds_core")
    result = fan_out(
        fn,
        accounts,
        session=_source(),
        role_name="Auditor",
        endpoint_url=sts_server.url,
        max_workers=8,
        progress=False,
    )
    assert isinstance(result, FanOutResult)
    assert set(result.errors) == denied | {raising}
    assert set(result.results) == set(accounts) - denied - {raising}
    assert list(result.results) == [a for a in accounts if a in result.results]  # target order
    for account in denied:
        assert isinstance(result.errors[account], NonRecoverableError)
        assert "AccessDenied" in str(result.errors[account])
    assert isinstance(result.errors[raising], RuntimeError)
    assert set(called) == set(accounts) - denied  # fn never ran without credentials
    for account, arn in result.results.items():
        assert arn.startswith(f"arn:aws:sts::{account}:assumed-role/Auditor/")
    assert (result.succeeded, result.failed, result.total) == (33, 7, 40)
    assert not result.ok and result.duration > 0
    assert result.error_summary() == {"NonRecoverableError": 6, "RuntimeError": 1}
    assert repr(result) == f"FanOutResult(succeeded=33, failed=7, duration={result.duration:.1f}s)"
    # Nothing creds_core logged, and nothing the result shows, carries a secret.
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("creds_core")]
    assert any("failed (credentials): NonRecoverableError" in m for m in logged)
    text = "".join(logged) + repr(result) + "".join(map(str, result.errors.values()))
    for secret in (SECRET, servers.SENTINEL_SECRET, servers.SENTINEL_TOKEN):
        assert secret not in text


def test_fan_out_targets_role_arns_templates_and_callables(sts_server: StsServer) -> None:
    source = _source()
    accounts = _accounts(3)
    url = sts_server.url

    def fn(session: boto3.Session, target: Any) -> str:
        return _identity(session, target, url)

    template = fan_out(
        fn,
        accounts,
        session=source,
        role_arn="arn:aws:iam::{account_id}:role/T",
        endpoint_url=url,
        progress=False,
    )
    assert template.ok and all("assumed-role/T/" in v for v in template.results.values())
    arns = [f"arn:aws:iam::{a}:role/Direct" for a in accounts]
    direct = fan_out(fn, [*arns, arns[0]], session=source, endpoint_url=url, progress=False)
    assert list(direct.results) == arns  # duplicates run once
    objects = [("team-a", accounts[0]), ("team-b", accounts[1])]
    mapped = fan_out(
        fn,
        objects,
        session=source,
        role_arn=lambda t: f"arn:aws:iam::{t[1]}:role/{t[0]}",
        endpoint_url=url,
        progress=False,
    )
    assert mapped.results[("team-b", accounts[1])].endswith(
        ":assumed-role/team-b/" + mapped.results[("team-b", accounts[1])].rsplit("/", 1)[1]
    )
    # A target that names no role is that target's error, not everyone's.
    bad = fan_out(
        fn,
        [accounts[0], "not-an-account"],
        session=source,
        role_name="R",
        endpoint_url=url,
        progress=False,
    )
    assert list(bad.results) == [accounts[0]]
    assert isinstance(bad.errors["not-an-account"], ValueError)


def test_role_arn_for() -> None:
    assert role_arn_for("123456789012", role_name="/path/R/") == (
        "arn:aws:iam::123456789012:role/path/R"
    )
    assert role_arn_for("123456789012", role_name="R", partition="aws-cn") == (
        "arn:aws-cn:iam::123456789012:role/R"
    )
    assert role_arn_for("arn:aws:iam::123456789012:role/X") == "arn:aws:iam::123456789012:role/X"
    with pytest.raises(ValueError, match="12-digit"):
        role_arn_for("12345", role_name="R")
    with pytest.raises(ValueError, match="no role ARN"):
        role_arn_for("123456789012")
    with pytest.raises(TypeError):
        role_arn_for("123456789012", role_name="R", role_arn="arn:{target}")


def test_fan_out_checks_its_arguments() -> None:
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_workers"):
            fan_out(lambda s, t: None, [], session=_source(), max_workers=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="single string"):
        fan_out(lambda s, t: None, "123456789012", session=_source(), role_name="R")
    empty = fan_out(lambda s, t: None, [], session=_source(), progress=False)
    assert empty.ok and empty.total == 0


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("progress", "tty", "shown"),
    [(None, False, False), (None, True, True), (False, True, False), (True, False, True)],
)
def test_progress_bar_only_on_a_terminal_unless_asked(
    sts_server: StsServer,
    monkeypatch: pytest.MonkeyPatch,
    progress: bool | None,
    tty: bool,
    shown: bool,
) -> None:
    stderr: io.StringIO = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    result = fan_out(
        lambda s, t: t,
        _accounts(5),
        session=_source(),
        role_name="Bar",
        endpoint_url=sts_server.url,
        progress=progress,
        description="scanning",
    )
    assert result.succeeded == 5
    output = stderr.getvalue()
    assert ("scanning" in output and "5/5" in output) is shown
    assert output == "" or shown


def test_no_progress_bar_without_tqdm(
    sts_server: StsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if the extra were not installed
    stderr = _Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    result = fan_out(
        lambda s, t: t,
        _accounts(3),
        session=_source(),
        role_name="NoBar",
        endpoint_url=sts_server.url,
        progress=True,
        description="scanning",
    )
    assert result.succeeded == 3
    assert stderr.getvalue() == ""


def test_fan_out_uses_the_limiter_it_is_given(sts_server: StsServer) -> None:
    limiter = Limiter(max_concurrency=2, name="fan-out test")
    result = fan_out(
        lambda s, t: t,
        _accounts(12),
        session=_source(),
        role_name="Limited",
        endpoint_url=sts_server.url,
        limiter=limiter,
        max_workers=12,
        progress=False,
    )
    assert result.succeeded == 12
    assert limiter.stats()["acquired"] == 12


def test_fan_out_sessions_share_one_loader_and_more(sts_server: StsServer) -> None:
    source = _source()
    seen: list[tuple[Any, ...]] = []
    lock = threading.Lock()

    def fn(session: boto3.Session, account: str) -> None:
        client = session.client("s3", endpoint_url=sts_server.url)
        botocore_session = session._session
        with lock:
            seen.append(
                (
                    botocore_session,
                    botocore_session.get_component("data_loader"),
                    session._loader,
                    botocore_session._get_internal_component("endpoint_resolver"),
                    type(client),
                    client._ruleset_resolver._provider,
                    client.meta.events,
                )
            )

    result = fan_out(
        fn,
        _accounts(20),
        session=source,
        role_name="Shared",
        endpoint_url=sts_server.url,
        progress=False,
    )
    assert result.ok, result.errors
    sessions, loaders, boto3_loaders, resolvers, classes, rules, emitters = zip(*seen)
    assert len({id(s) for s in sessions}) == 20  # a session per account...
    source_loader = source._session.get_component("data_loader")
    assert all(loader is source_loader for loader in loaders)  # ...one loader for all
    assert all(loader is source_loader for loader in boto3_loaders)
    assert len({id(r) for r in resolvers}) == 1
    # One S3 client class with the operations, and an empty subclass of it per client.
    assert len({id(c) for c in classes}) == 20
    assert len({id(c.__mro__[1]) for c in classes}) == 1
    shared_class = classes[0].__mro__[1]
    assert "list_buckets" in vars(shared_class) and "upload_file" in vars(shared_class)
    assert not any("list_buckets" in vars(c) for c in classes)
    assert len({id(r) for r in rules}) == 1  # one parsed endpoint rule set
    assert len({id(e) for e in emitters}) == 20  # but each client has its own emitter


# --- the per-account sessions behind it -----------------------------------------------------------


def test_role_sessions_stay_independent(sts_server: StsServer) -> None:
    source = _source()
    url = sts_server.url
    a = cb.assume_role(source, f"arn:aws:iam::{_accounts(1)[0]}:role/A", endpoint_url=url)
    b = cb.assume_role(source, f"arn:aws:iam::{_accounts(1)[0]}:role/B", endpoint_url=url)
    seen: list[str] = []
    a.events.register("before-call.sts.GetCallerIdentity", lambda **_: seen.append("a"))
    a.client("sts", endpoint_url=url).get_caller_identity()
    b.client("sts", endpoint_url=url).get_caller_identity()
    assert seen == ["a"]  # a handler registered on one session never reaches another
    # ... and per-session configuration stays per session.
    b._session.set_config_variable("region", "eu-west-1")
    assert b.client("sts", endpoint_url=url).meta.region_name == "eu-west-1"
    assert a.client("sts", endpoint_url=url).meta.region_name == REGION
    # Clients still get botocore's customisations (S3's transfer methods, presigning).
    s3 = a.client("s3", endpoint_url=url)
    assert callable(s3.upload_file) and callable(s3.generate_presigned_url)
    assert type(s3).__name__ == "S3"


def test_persistent_trie_copies_share_until_changed() -> None:
    trie = PersistentTrie()
    trie.append_item("a.b", "one")
    trie.append_item("a", "two")
    copy_ = trie.__copy__()
    assert copy_._root is trie._root
    copy_.append_item("a.b.c", "three")
    copy_.remove_item("a", "two")
    assert list(trie.prefix_search("a.b.c")) == ["one", "two"]
    assert list(copy_.prefix_search("a.b.c")) == ["three", "one"]
    trie.remove_item("a.b", "one")
    assert list(trie.prefix_search("a.b")) == ["two"]
    assert list(copy_.prefix_search("a.b")) == ["one"]
    with pytest.raises(ValueError):
        trie.remove_item("x.y", "nothing")


class _ExpiringSts(StsServer):
    """STS that answers ExpiredToken to GetCallerIdentity signed with a key in ``expired``."""

    def __init__(self) -> None:
        super().__init__()
        self.expired: set[str] = set()

    def _check(self, request: Any, params: Any, action: str, signer: Any, mode: Any) -> None:
        if action == "GetCallerIdentity" and signer in self.expired:
            raise _StsError(400, "ExpiredToken", "The security token is expired", "expired")
        super()._check(request, params, action, signer, mode)


def test_role_session_clients_replace_rejected_credentials() -> None:
    with _ExpiringSts() as sts:
        role = cb.assume_role(
            _source(), f"arn:aws:iam::{_accounts(1)[0]}:role/Expiring", endpoint_url=sts.url
        )
        cache = cb.get_cache(role)
        assert cache is not None
        sts.expired.add(cache.get().access_key_id)  # STS no longer accepts the cached key
        response = role.client("sts", endpoint_url=sts.url).get_caller_identity()
        assert response["ResponseMetadata"]["RetryAttempts"] == 1
        assume = [c for c in sts.calls if c.action == "AssumeRole"]
        assert len(assume) == 2
        assert sts.calls[-1].signer_access_key_id == assume[1].issued_access_key_id
