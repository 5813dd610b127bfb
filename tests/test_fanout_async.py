"""fan_out_async: the asyncio twin of fan_out, with real aiobotocore clients against the
project's StsServer on 127.0.0.1 (1,000 roles through a throttling STS), bounded concurrency,
per-target errors and the progress bar."""

from __future__ import annotations

import asyncio
import io
import logging
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from test_asyncio import Ticker

import creds_core.aiobotocore as ca
import creds_core.boto3 as cb
from creds_core import Credentials, Limiter, NonRecoverableError
from creds_core.fanout import FanOutResult, fan_out_async
from helpers import SECRET
from server_fixtures import StsServer, servers

pytestmark = pytest.mark.usefixtures("isolated_aws")

REGION = "us-east-1"
ROLES = 1000


@pytest.fixture
def fresh_limiters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cb, "_LIMITERS", {})


def _source() -> Any:
    key = f"AKIAFANA{uuid.uuid4().hex[:12]}".upper()[:20]
    session = ca.session(lambda: Credentials(key, SECRET))
    session.set_config_variable("region", REGION)
    return session


def _accounts(n: int) -> list[str]:
    base = 100_000_000_000 + int(uuid.uuid4().int % 800_000_000_000)
    return [str(base + i) for i in range(n)]


async def _identity(session: Any, url: str, config: AioConfig | None = None) -> str:
    async with session.create_client(
        "sts", region_name=REGION, endpoint_url=url, config=config
    ) as sts:
        return str((await sts.get_caller_identity())["Arn"])


def test_a_thousand_roles_against_a_throttling_sts_with_no_caller_failure(
    fresh_limiters: None,
) -> None:
    # The per-account call is the caller's own, with the retries a careful caller configures;
    # it counts against the same STS token bucket as AssumeRole.
    call_config = AioConfig(retries={"mode": "standard", "total_max_attempts": 5})
    with StsServer(rate=100, delay=0.02, max_requests=20_000, max_seconds=150) as sts:
        source = _source()
        accounts = _accounts(ROLES)

        async def fn(session: Any, account: str) -> str:
            return await _identity(session, sts.url, call_config)

        async def main() -> tuple[FanOutResult[str, str], float]:
            async with Ticker() as ticker:
                result = await fan_out_async(
                    fn,
                    accounts,
                    session=source,
                    role_name="fan-out",
                    role_session_name="fan-out",
                    endpoint_url=sts.url,
                    progress=False,
                )
            return result, ticker.max_gap

        started = time.monotonic()
        result, stall = asyncio.run(main())
        elapsed = time.monotonic() - started
        calls = sts.calls
    outcomes = Counter((c.action, c.outcome) for c in calls)
    print(
        f"\n{ROLES} roles, fan_out_async, STS at 100 calls/s + 20 ms: {elapsed:.1f} s, "
        f"{dict(outcomes)}, longest loop stall {stall * 1000:.0f} ms, {result!r}, "
        f"errors {result.error_summary()}"
    )
    assert result.ok, f"{result.failed} failures: {result.error_summary()}"
    assert elapsed < 120  # about 25 s here; slack for a busy machine
    issued = {
        c.role_arn: c.issued_access_key_id
        for c in calls
        if c.action == "AssumeRole" and c.outcome == "ok"
    }
    assert len(issued) == ROLES  # one successful AssumeRole per role
    for account, arn in result.results.items():
        assert arn == f"arn:aws:sts::{account}:assumed-role/fan-out/fan-out"
    limiter = cb.sts_limiter(source, endpoint_url=sts.url)
    assert ROLES <= limiter.stats()["acquired"]


def test_fan_out_async_separates_results_from_errors(
    sts_server: StsServer, caplog: pytest.LogCaptureFixture
) -> None:
    accounts = _accounts(30)
    denied = set(accounts[::7])
    sts_server.deny_roles = lambda arn: arn.split(":")[4] in denied
    raising = accounts[3]
    called: list[str] = []

    async def fn(session: Any, account: str) -> str:
        called.append(account)
        if account == raising:
            raise RuntimeError("fn failed for this one")
        return await _identity(session, sts_server.url)

    caplog.set_level(logging.DEBUG, logger="creds_core")
    result = asyncio.run(
        fan_out_async(
            fn,
            accounts,
            session=_source(),
            role_name="Auditor",
            endpoint_url=sts_server.url,
            max_concurrency=8,
            progress=False,
        )
    )
    assert set(result.errors) == denied | {raising}
    assert list(result.results) == [a for a in accounts if a not in result.errors]
    for account in denied:
        assert isinstance(result.errors[account], NonRecoverableError)
    assert isinstance(result.errors[raising], RuntimeError)
    assert set(called) == set(accounts) - denied  # fn never ran without credentials
    for account, arn in result.results.items():
        assert arn.startswith(f"arn:aws:sts::{account}:assumed-role/Auditor/")
    assert result.error_summary() == {"NonRecoverableError": 5, "RuntimeError": 1}
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("creds_core")]
    text = "".join(logged) + repr(result) + "".join(map(str, result.errors.values()))
    for secret in (SECRET, servers.SENTINEL_SECRET, servers.SENTINEL_TOKEN):
        assert secret not in text


def test_fan_out_async_runs_at_most_max_concurrency_targets_at_once(
    sts_server: StsServer,
) -> None:
    running = 0
    most = 0
    give_up: float | None = None

    async def fn(session: Any, account: str) -> str:
        nonlocal running, most, give_up
        running += 1
        most = max(most, running)
        # The first targets wait for five to run at once (the bound is reached however busy the
        # machine; with four at most, they all go on 10 s after the first came)...
        give_up = give_up or time.monotonic() + 10
        while most < 5 and time.monotonic() < give_up:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.02)  # ...then each takes a while, so that a sixth at once shows
        running -= 1
        return account

    accounts = _accounts(40)
    result = asyncio.run(
        fan_out_async(
            fn,
            [*accounts, accounts[0]],  # duplicates run once
            session=_source(),
            role_arn="arn:aws:iam::{account_id}:role/Bounded",
            endpoint_url=sts_server.url,
            max_concurrency=5,
            progress=False,
        )
    )
    assert list(result.results) == accounts
    assert most == 5


def test_fan_out_async_checks_its_arguments_and_uses_the_limiter_given(
    sts_server: StsServer,
) -> None:
    async def noop(session: Any, target: Any) -> None:
        return None

    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_concurrency"):
            asyncio.run(fan_out_async(noop, [], session=_source(), max_concurrency=bad))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="single string"):
        asyncio.run(fan_out_async(noop, "123456789012", session=_source(), role_name="R"))
    limiter = Limiter(max_concurrency=2, name="async fan-out test")
    result = asyncio.run(
        fan_out_async(
            noop,
            _accounts(6),
            session=_source(),
            role_name="Limited",
            endpoint_url=sts_server.url,
            limiter=limiter,
            progress=False,
        )
    )
    assert result.succeeded == 6
    assert limiter.stats()["acquired"] == 6


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("tty", "shown"), [(False, False), (True, True)])
def test_fan_out_async_progress_bar_only_on_a_terminal(
    sts_server: StsServer, monkeypatch: pytest.MonkeyPatch, tty: bool, shown: bool
) -> None:
    stderr: io.StringIO = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)

    async def fn(session: Any, target: str) -> str:
        return target

    result = asyncio.run(
        fan_out_async(
            fn,
            _accounts(4),
            session=_source(),
            role_name="Bar",
            endpoint_url=sts_server.url,
            description="scanning",
        )
    )
    assert result.succeeded == 4
    output = stderr.getvalue()
    assert ("scanning" in output and "4/4" in output) is shown
