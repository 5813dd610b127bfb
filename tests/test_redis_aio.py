"""The shared tier behind the asyncio door, on a real redis-server and the local STS: real
aiobotocore clients (creds_core.aiobotocore.assume_role and fan_out_async with ``shared=``),
and coroutine providers wrapped by the tier, served through both doors of the cache.

Two ``RedisTier`` objects on one server stand for two processes (they share nothing but
Redis); the fleet of real processes is in ``test_redis_fleet.py``.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import uuid
from typing import Any

import boto3
import pytest
from aws_isolation import isolated_aws, no_network  # noqa: F401  (fixtures)
from redis_fixtures import RedisServer
from test_asyncio import Ticker

import creds_core.aiobotocore as ca
import creds_core.boto3 as cb
from creds_core import CredentialCache, Credentials, _aio_loop
from creds_core.fanout import fan_out_async
from creds_core.redis import RedisTier
from helpers import SECRET, creds
from server_fixtures import StsServer

pytestmark = pytest.mark.usefixtures("isolated_aws")

KEY = base64.b64encode(b"a" * 32).decode()
REGION = "us-east-1"


@pytest.fixture
def sts(sts_server: StsServer, monkeypatch: pytest.MonkeyPatch) -> StsServer:
    monkeypatch.setattr(cb, "_LIMITERS", {})  # a reused port must not share a limiter
    return sts_server


def tier(server: RedisServer) -> RedisTier:
    return RedisTier(server.url, key=KEY, namespace=f"aio-{uuid.uuid4().hex[:6]}")


def same_namespace(a: RedisTier, server: RedisServer) -> RedisTier:
    return RedisTier(server.url, key=KEY, namespace=a.namespace)


def _aio_source() -> Any:
    key = f"AKIA{uuid.uuid4().hex[:16]}".upper()
    session = ca.session(lambda: Credentials(key, SECRET))
    session.set_config_variable("region", REGION)
    return session


async def _key(session: Any, target: Any = None) -> str:
    credentials = await session.get_credentials()
    return str((await credentials.get_frozen_credentials()).access_key)


def _assume_role_calls(sts: StsServer) -> int:
    return sum(c.action == "AssumeRole" for c in sts.calls)


# --- creds_core.aiobotocore.assume_role(..., shared=) ------------------------------------------


def test_two_aio_sessions_sharing_a_tier_make_one_assume_role(
    redis_server: RedisServer, sts: StsServer
) -> None:
    a = tier(redis_server)
    b = same_namespace(a, redis_server)  # another process
    arn = f"arn:aws:iam::123456789012:role/aio-shared-{uuid.uuid4().hex[:6]}"
    one = ca.assume_role(_aio_source(), arn, role_session_name="ss", endpoint_url=sts.url, shared=a)
    two = ca.assume_role(_aio_source(), arn, role_session_name="ss", endpoint_url=sts.url, shared=b)
    assert ca.get_cache(one) is not ca.get_cache(two)  # two caches, as in two processes

    async def main() -> list[str]:
        async with Ticker() as ticker:
            keys = await asyncio.gather(_key(one), _key(two))  # at the same moment
        assert ticker.max_gap < 1.0  # generous: Redis waits never run on the caller's loop
        return keys

    k1, k2 = asyncio.run(main())
    assert k1 == k2 and k1.startswith("ASIA")
    assert _assume_role_calls(sts) == 1
    stats = [a.stats(), b.stats()]
    assert sum(s["source_calls"] for s in stats) == 1
    assert sum(s["hits"] for s in stats) == 1

    # A sync process assuming the same role with the same arguments uses the same entry.
    sync_source = boto3.Session(
        region_name=REGION,
        aws_access_key_id=f"AKIA{uuid.uuid4().hex[:16]}".upper(),
        aws_secret_access_key=SECRET,
    )
    c = same_namespace(a, redis_server)
    role = cb.assume_role(sync_source, arn, role_session_name="ss", endpoint_url=sts.url, shared=c)
    assert role.get_credentials().get_frozen_credentials().access_key == k1
    assert _assume_role_calls(sts) == 1 and c.stats()["hits"] == 1

    # Other AssumeRole arguments are other credentials: another entry, another call.
    other = ca.assume_role(
        _aio_source(), arn, role_session_name="tt", endpoint_url=sts.url, shared=b
    )
    assert asyncio.run(_key(other)) != k1
    assert _assume_role_calls(sts) == 2


def test_role_cache_per_tier_and_without_one(redis_server: RedisServer, sts: StsServer) -> None:
    source, a = _aio_source(), tier(redis_server)
    arn = "arn:aws:iam::123456789012:role/keyed"
    shared = ca.get_cache(ca.assume_role(source, arn, endpoint_url=sts.url, shared=a))
    again = ca.get_cache(ca.assume_role(source, arn, endpoint_url=sts.url, shared=a))
    local = ca.get_cache(ca.assume_role(source, arn, endpoint_url=sts.url))
    assert shared is again and shared is not local
    assert shared is not None and local is not None
    assert repr(shared.provider).startswith("SharedProvider(")
    assert type(local.provider) is ca.AioAssumeRoleProvider


def test_throttled_answers_behind_the_tier_reach_the_limiter(
    redis_server: RedisServer, sts: StsServer
) -> None:
    # The tier runs the coroutine provider for the refresh's worker thread, as part of that
    # refresh: the aiobotocore client's throttled answers reach the role's shared Limiter.
    sts.rate, sts.burst = 5.0, 1.0
    source, a = _aio_source(), tier(redis_server)
    arns = [f"arn:aws:iam::{300_000_000_000 + i}:role/throttled" for i in range(12)]

    async def main() -> list[Any]:
        roles = [
            ca.assume_role(
                source,
                arn,
                endpoint_url=sts.url,
                shared=a,
                cache_options={"load_timeout": 60.0},
            )
            for arn in arns
        ]
        return await asyncio.gather(*(_key(r) for r in roles), return_exceptions=True)

    got = asyncio.run(main())
    assert all(isinstance(g, str) for g in got), [g for g in got if not isinstance(g, str)][:1]
    throttled = sum(c.action == "AssumeRole" and c.outcome == "throttled" for c in sts.calls)
    limiter = cb.sts_limiter(source, endpoint_url=sts.url)
    assert throttled > 0
    assert limiter.stats()["throttled"] == throttled
    # A throttled refresh is tried again through the Limiter (each try a call of the source).
    assert a.stats()["source_calls"] >= len(arns) and a.stats()["writes"] == len(arns)


# --- fan_out_async(..., shared=) ------------------------------------------------------------


def test_fan_out_async_with_a_shared_tier_calls_sts_once_per_role(
    redis_server: RedisServer, sts: StsServer
) -> None:
    accounts = [str(210_000_000_000 + i) for i in range(20)]
    a = tier(redis_server)
    b = same_namespace(a, redis_server)

    async def run(t: RedisTier) -> Any:
        return await fan_out_async(
            _key,
            accounts,
            session=_aio_source(),
            role_name="AioFleet",
            shared=t,
            progress=False,
            endpoint_url=sts.url,
        )

    async def both() -> tuple[Any, Any]:
        first, second = await asyncio.gather(run(a), run(b))  # two "processes" at once
        return first, second

    first, second = asyncio.run(both())
    assert first.ok and second.ok, (first.errors, second.errors)
    assert first.results == second.results
    assert len(set(first.results.values())) == len(accounts)
    calls = _assume_role_calls(sts)
    print("AssumeRole calls:", calls, a.stats(), b.stats())
    assert calls <= len(accounts) + 2  # ideally one per role (a lease wait may run out)
    assert a.stats()["hits"] + b.stats()["hits"] >= len(accounts) - 2

    # A third run, later: every role from Redis, no STS call.
    c = same_namespace(a, redis_server)
    third = asyncio.run(run(c))
    assert third.results == first.results
    assert _assume_role_calls(sts) == calls and c.stats()["source_calls"] == 0


# --- a coroutine provider behind the tier ---------------------------------------------------


class LoopBoundSource:
    """A coroutine provider keeping a loop-bound object (as an aiohttp session is): it works
    only on the loop it was first used on."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.calls = 0
        self.loops: set[int] = set()
        self.threads: set[str] = set()
        self.flights: list[Any] = []
        self._lock: asyncio.Lock | None = None

    async def provide(self) -> Credentials:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # bound to the loop of its first use
            self.calls += 1
            self.loops.add(id(asyncio.get_running_loop()))
            self.threads.add(threading.current_thread().name)
            self.flights.append(_aio_loop.current_flight.get())
            await asyncio.sleep(0.05)
            return creds(f"{self.prefix}{self.calls:06d}", lifetime=3600)


def test_a_coroutine_provider_behind_the_tier_serves_both_doors(
    redis_server: RedisServer,
) -> None:
    a = tier(redis_server)
    source = LoopBoundSource("AKIACOROTIER")
    cache = CredentialCache(a.wrap(source, "coro"), load_timeout=30)

    first = cache.get()  # the blocking door
    assert first.access_key_id == "AKIACOROTIER000001"
    cache.invalidate()
    a.client.delete(a.keys_for("coro")[0])  # so that the next refresh calls the source

    async def main() -> tuple[Credentials, float]:
        async with Ticker() as ticker:
            got = await cache.get_async()  # the async door
        return got, ticker.max_gap

    second, stall = asyncio.run(main())
    assert second.access_key_id == "AKIACOROTIER000002"
    assert stall < 1.0  # generous: the caller's loop went on turning
    assert source.calls == 2
    assert source.threads == {"creds-core-loop"}  # on creds_core's one loop ...
    assert len(source.loops) == 1  # ... the same loop both times: its lock kept working
    assert all(f is not None for f in source.flights)  # part of the cache's refresh

    # Another process's cache over the same entry, with its own coroutine source: a hit.
    other_source = LoopBoundSource("AKIAOTHERTIER")
    other = CredentialCache(same_namespace(a, redis_server).wrap(other_source, "coro"))

    async def other_get() -> Credentials:
        return await other.get_async()

    assert asyncio.run(other_get()) == second
    assert other.get() == second
    assert other_source.calls == 0


def test_a_coroutine_provider_behind_the_tier_works_when_redis_is_down(
    redis_server: RedisServer,
) -> None:
    a = tier(redis_server)
    redis_server.stop()
    source = LoopBoundSource("AKIACORODOWN")
    cache = CredentialCache(a.wrap(source, "down"), load_timeout=30)

    async def main() -> Credentials:
        return await cache.get_async()

    assert asyncio.run(main()).access_key_id == "AKIACORODOWN000001"
    assert a.stats()["local_fallbacks"] == 1 and a.stats()["redis_errors"] >= 1
