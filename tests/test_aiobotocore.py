"""creds_core.aiobotocore: AioSessions signing through a creds_core cache, with real aiobotocore
clients against the project's local STS and moto's server; assume_role's STS calls as
coroutines on creds_core's loop; the package without the extra."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import ClientError
from test_asyncio import Ticker, _run_without_a_loop
from test_boto3 import RejectingServer

import creds_core.aiobotocore as ca
import creds_core.boto3 as cb
from creds_core import (
    CredentialCache,
    Credentials,
    NonRecoverableError,
    UserActionRequired,
    _aio_loop,
)
from helpers import SECRET, TOKEN, Scripted, creds
from server_fixtures import StsServer

pytestmark = pytest.mark.usefixtures("isolated_aws")

REGION = "us-east-1"


@pytest.fixture
def fresh_limiters(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean registry of shared STS limiters (a reused port must not share a limiter)."""
    monkeypatch.setattr(cb, "_LIMITERS", {})


def _source_key() -> str:
    return f"AKIAAIO{uuid.uuid4().hex[:13]}".upper()[:20]


def _source(key: str | None = None) -> Any:
    """A creds_core AioSession with static source keys of its own."""
    key = key or _source_key()
    session = ca.session(lambda: Credentials(key, SECRET))
    session.set_config_variable("region", REGION)
    return session


# --- the package without the extra ---------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_sync_package_does_not_import_aiobotocore() -> None:
    done = _python(
        """
        import sys
        import creds_core, creds_core.boto3, creds_core.fanout, creds_core.providers
        assert "aiobotocore" not in sys.modules, "aiobotocore was imported"
        assert "aiohttp" not in sys.modules, "aiohttp was imported"
        print("ok")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_without_the_extra_the_import_error_says_what_to_install() -> None:
    done = _python(
        """
        import sys
        sys.modules["aiobotocore"] = None  # as if it were not installed
        import creds_core.boto3
        try:
            import creds_core.aiobotocore
        except ImportError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'creds_core[aio]'" in done.stdout


# --- sessions ------------------------------------------------------------------------------------


def test_a_session_signs_every_request_through_the_cache(sts_server: StsServer) -> None:
    p = Scripted(lambda n: creds(f"AKIAAIOSESSION{n:06d}", lifetime=3600))
    session = ca.session(p)

    async def main() -> None:
        async with session.create_client(
            "sts", region_name=REGION, endpoint_url=sts_server.url
        ) as sts:
            for _ in range(3):
                await sts.get_caller_identity()
            cache = ca.get_cache(session)
            assert cache is not None
            cache.invalidate()
            await sts.get_caller_identity()  # the next request signs with fresh credentials

    asyncio.run(main())
    assert [c.signer_access_key_id for c in sts_server.calls] == ["AKIAAIOSESSION000001"] * 3 + [
        "AKIAAIOSESSION000002"
    ]
    assert p.calls == 2


def test_credentials_are_aiobotocore_credentials_answering_readonlycredentials() -> None:
    from aiobotocore.credentials import AioCredentials

    session = ca.session(lambda: creds("AKIAFROZEN0000000001", lifetime=3600))
    cache = ca.get_cache(session)
    assert cache is not None

    async def main() -> tuple[Any, Any, Any, str | None]:
        credentials = await session.get_credentials()
        first = await credentials.get_frozen_credentials()
        second = await credentials.get_frozen_credentials()
        return credentials, first, second, await credentials.get_account_id()

    credentials, first, second, account = asyncio.run(main())
    assert isinstance(credentials, AioCredentials)
    assert isinstance(first, ReadOnlyCredentials)
    ak, sk, token, *_ = first  # code in the wild unpacks it
    assert (ak, sk, token) == ("AKIAFROZEN0000000001", SECRET, TOKEN)
    assert second is first  # built once per cached entry
    assert account is None
    assert credentials.method.endswith("<lambda>")  # the name of the provider that served
    assert SECRET not in repr(credentials) and SECRET not in repr(first)


def test_the_hot_path_takes_no_lock_and_schedules_nothing() -> None:
    session = ca.session(lambda: creds("AKIAHOT0000000000001", lifetime=3600))
    credentials = asyncio.run(session.get_credentials())
    asyncio.run(credentials.get_frozen_credentials())  # loaded
    # Fresh: the coroutine finishes on its first step, without any event loop.
    frozen = _run_without_a_loop(credentials.get_frozen_credentials())
    assert frozen.access_key == "AKIAHOT0000000000001"


def test_the_async_door_is_the_one_botocore_adapter() -> None:
    from creds_core._botocore import CacheAdapter, CacheCredentials

    cache = CredentialCache(lambda: creds("AKIAONEADAPTER000001", lifetime=3600), name="one")
    sync, aio = CacheCredentials(cache), ca.AioCacheCredentials(cache)
    assert isinstance(sync, CacheAdapter) and isinstance(aio, CacheAdapter)
    # Both answer the one ReadOnlyCredentials object of the cache's entry.
    frozen = asyncio.run(aio.get_frozen_credentials())
    assert frozen is sync.get_frozen_credentials() is cache.get().to_botocore()
    assert (aio.access_key, aio.secret_key, aio.token) == ("AKIAONEADAPTER000001", SECRET, TOKEN)
    assert aio.method == sync.method == cache.get().provider_name
    assert copy_deep(aio) is aio and not aio.refresh_needed()
    assert repr(aio) == f"AioCacheCredentials(cache='one', method={sync.method!r})"
    assert repr(sync) == f"CacheCredentials(cache='one', method={sync.method!r})"


def copy_deep(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)


def test_get_frozen_async_waiters_get_the_entrys_readonlycredentials() -> None:
    # Nothing cached: every waiter (frozen or not, in one batch) is served by one source call.
    p = Scripted(lambda n: creds(f"AKIAFROZENWAIT{n:06d}", lifetime=3600))
    cache = CredentialCache(p)

    async def main() -> list[Any]:
        frozen = [cache.get_frozen_async() for _ in range(50)]
        plain = [cache.get_async() for _ in range(50)]
        return list(await asyncio.gather(*frozen, *plain))

    got = asyncio.run(main())
    assert p.calls == 1
    entry = cache.get()
    assert all(g is entry.to_botocore() for g in got[:50])
    assert all(g is entry for g in got[50:])
    assert isinstance(got[0], ReadOnlyCredentials)


def test_get_frozen_async_raises_the_cache_error() -> None:
    def denied() -> Credentials:
        raise NonRecoverableError("AccessDenied: not a secret")

    cache = CredentialCache(denied)

    async def main() -> Any:
        return await ca.AioCacheCredentials(cache).get_frozen_credentials()

    with pytest.raises(NonRecoverableError):
        asyncio.run(main())


def test_method_and_repr_never_wait_for_a_refresh() -> None:
    # aiobotocore reads .method on the event loop (creds_core's own, for the STS clients):
    # with nothing cached and a source that takes its time, it answers at once.
    entered, release = threading.Event(), threading.Event()

    def slow() -> Credentials:
        entered.set()
        release.wait(30)
        return creds("AKIASLOWMETHOD000001", lifetime=3600)

    cache = CredentialCache(slow, load_timeout=30)
    credentials = ca.AioCacheCredentials(cache)

    async def main() -> tuple[str, str, float]:
        started = time.monotonic()
        method, text = credentials.method, repr(credentials)
        return method, text, time.monotonic() - started

    method, text, took = asyncio.run(main())
    assert method == ca.METHOD and "creds-core" in text
    assert not entered.is_set()  # reading them started no refresh
    assert took < 5.0  # generous: no wait for the source
    waiter = threading.Thread(target=cache.get)
    waiter.start()
    assert entered.wait(30)
    assert credentials.method == ca.METHOD  # still nothing held, still no wait
    release.set()
    waiter.join(30)
    assert credentials.method == cache.get().provider_name


def test_install_on_an_existing_session_replaces_explicit_keys_by_the_cache(
    sts_server: StsServer,
) -> None:
    from aiobotocore.session import AioSession

    session = AioSession()
    session.set_credentials("AKIAEXPLICITAIO00001", SECRET)
    cache = ca.install(session)
    assert ca.get_cache(session) is cache

    async def main() -> None:
        async with session.create_client(
            "sts", region_name=REGION, endpoint_url=sts_server.url
        ) as sts:
            await sts.get_caller_identity()

    asyncio.run(main())
    assert sts_server.calls[-1].signer_access_key_id == "AKIAEXPLICITAIO00001"
    assert ca.get_cache(AioSession()) is None
    with pytest.raises(TypeError):
        ca.get_cache(object())  # type: ignore[arg-type]


def test_install_takes_cache_options_as_a_mapping_or_as_keywords() -> None:
    from aiobotocore.session import AioSession

    provider = Scripted(lambda n: creds(f"AKIAAIOOPTIONS{n:06d}", lifetime=3600))
    as_mapping = ca.install(
        AioSession(), provider, cache_options={"load_timeout": 7.0, "name": "mapping"}
    )
    as_keywords = ca.install(AioSession(), provider, load_timeout=7.0, name="keywords")
    assert as_mapping.inspect()["load_timeout"] == as_keywords.inspect()["load_timeout"] == 7.0
    assert (as_mapping.name, as_keywords.name) == ("mapping", "keywords")
    with pytest.raises(TypeError):
        ca.install(AioSession(), as_mapping, cache_options={"load_timeout": 1.0})
    session = ca.session(provider, cache_options={"name": "from-session"})
    cache = ca.get_cache(session)
    assert cache is not None and cache.name == "from-session"


@pytest.mark.parametrize("code", ["ExpiredToken", "RequestExpired"])
def test_rejected_credentials_are_replaced_and_the_call_retried_once(code: str) -> None:
    p = Scripted(lambda n: creds(f"AKIAREJECTED{n:08d}", lifetime=3600))
    session = ca.session(p)
    with RejectingServer(code) as server:
        server.rejected.add("AKIAREJECTED00000001")

        async def main() -> dict[str, Any]:
            async with session.create_client(
                "sts", region_name=REGION, endpoint_url=server.url
            ) as sts:
                return dict(await sts.get_caller_identity())

        answer = asyncio.run(main())
        assert answer["Arn"].endswith("/AKIAREJECTED00000002")
        assert server.signers == ["AKIAREJECTED00000001", "AKIAREJECTED00000002"]
    assert p.calls == 2


def test_no_retry_when_the_source_answers_the_rejected_key_again() -> None:
    session = ca.session(lambda: creds("AKIASAMEKEYAIO000001", lifetime=3600))
    with RejectingServer() as server:
        server.rejected.add("AKIASAMEKEYAIO000001")

        async def main() -> None:
            async with session.create_client(
                "sts", region_name=REGION, endpoint_url=server.url
            ) as sts:
                await sts.get_caller_identity()

        with pytest.raises(ClientError) as caught:
            asyncio.run(main())
        assert caught.value.response["Error"]["Code"] == "ExpiredToken"
        assert server.signers == ["AKIASAMEKEYAIO000001"]  # a retry would fail the same way


# --- assume_role ---------------------------------------------------------------------------------


def test_assume_role_gives_a_session_of_the_role(sts_server: StsServer) -> None:
    source = _source()
    role = ca.assume_role(
        source, "arn:aws:iam::111122223333:role/reader", endpoint_url=sts_server.url
    )

    async def main() -> tuple[str, Any]:
        async with role.create_client(
            "sts", region_name=REGION, endpoint_url=sts_server.url
        ) as sts:
            identity = await sts.get_caller_identity()
        credentials = await role.get_credentials()
        return identity["Arn"], credentials

    arn, credentials = asyncio.run(main())
    assert arn.startswith("arn:aws:sts::111122223333:assumed-role/reader/")
    assert credentials.method == "assume-role"
    assert asyncio.run(credentials.get_account_id()) == "111122223333"
    assume = [c for c in sts_server.calls if c.action == "AssumeRole"]
    assert len(assume) == 1
    # The AssumeRole call was signed with the source session's credentials.
    source_cache = ca.get_cache(source)
    assert source_cache is not None
    assert assume[0].signer_access_key_id == source_cache.get().access_key_id


def test_one_cache_per_role_and_one_sts_call_for_concurrent_callers(
    sts_server: StsServer,
) -> None:
    source = _source()
    arn = "arn:aws:iam::111122223333:role/shared"
    sessions = [ca.assume_role(source, arn, endpoint_url=sts_server.url) for _ in range(20)]
    caches = {id(ca.get_cache(s)) for s in sessions}
    assert len(caches) == 1

    async def main() -> set[str]:
        async def one(s: Any) -> str:
            credentials = await s.get_credentials()
            return str((await credentials.get_frozen_credentials()).access_key)

        return set(await asyncio.gather(*(one(s) for s in sessions for _ in range(5))))

    assert len(asyncio.run(main())) == 1
    assert sum(c.action == "AssumeRole" for c in sts_server.calls) == 1


def test_assume_role_runs_on_creds_core_loop_and_keeps_its_sts_client_across_refreshes(
    sts_server: StsServer,
) -> None:
    source = _source()
    role = ca.assume_role(
        source, "arn:aws:iam::111122223333:role/kept", endpoint_url=sts_server.url
    )
    cache = ca.get_cache(role)
    assert cache is not None
    loops: list[Any] = []
    clients_before = len(ca._STS_CLIENTS)

    async def resolve() -> str:
        loops.append(asyncio.get_running_loop())
        credentials = await role.get_credentials()
        return str((await credentials.get_frozen_credentials()).access_key)

    keys = []
    for _ in range(3):  # three callers' loops, one after the other (asyncio.run each)
        keys.append(asyncio.run(resolve()))
        cache.invalidate()
    keys.append(cache.get().access_key_id)  # and the blocking door
    assert len(set(keys)) == 4  # four refreshes, all worked
    assert sum(c.action == "AssumeRole" for c in sts_server.calls) == 4
    assert len(ca._STS_CLIENTS) == clients_before + 1  # one client, reused
    assert _aio_loop.get_loop() not in loops  # never on a caller's loop


def test_an_sts_client_no_role_uses_any_more_is_closed_and_released(
    sts_server: StsServer,
) -> None:
    source = _source()
    role = ca.assume_role(
        source, "arn:aws:iam::111122223333:role/released", endpoint_url=sts_server.url
    )
    cache = ca.get_cache(role)
    assert cache is not None
    cache.get()
    source_cache = ca.get_cache(source)
    (entry,) = [e for e in list(ca._STS_CLIENTS.values()) if e.keep[1] is source_cache]
    released = weakref.ref(entry)
    client = entry.made.result()
    closed = threading.Event()
    exit_client = client.__aexit__

    async def recorded_exit(*args: Any) -> Any:
        closed.set()
        return await exit_client(*args)

    client.__aexit__ = recorded_exit  # what closing the shared client calls
    del role, source, cache, source_cache, entry
    gc.collect()
    assert closed.wait(10.0), "the STS client was not closed once no role used it"
    assert released() is None, "the registry still holds the STS client"


def test_a_program_that_assumed_a_role_exits_without_an_unclosed_session_warning(
    sts_server: StsServer,
) -> None:
    done = _python(
        f"""
        import asyncio
        import creds_core.aiobotocore as ca
        from creds_core import Credentials
        source = ca.session(lambda: Credentials("AKIAAIOEXITSOURCE001", "s"))
        source.set_config_variable("region", "{REGION}")
        role = ca.assume_role(
            source, "arn:aws:iam::111122223333:role/exit", endpoint_url="{sts_server.url}"
        )

        async def main():
            frozen = await (await role.get_credentials()).get_frozen_credentials()
            assert frozen.access_key
        asyncio.run(main())
        print("ok")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert sum(c.action == "AssumeRole" for c in sts_server.calls) == 1
    assert "Unclosed" not in done.stderr, done.stderr


def test_roles_share_the_sts_endpoint_limiter_with_the_sync_module(
    sts_server: StsServer, fresh_limiters: None
) -> None:
    source = _source()
    role = ca.assume_role(
        source, "arn:aws:iam::111122223333:role/limited", endpoint_url=sts_server.url
    )
    cache = ca.get_cache(role)
    assert cache is not None
    assert cache.limiter is cb.sts_limiter(source, endpoint_url=sts_server.url)
    own = ca.assume_role(
        source,
        "arn:aws:iam::111122223333:role/unlimited",
        endpoint_url=sts_server.url,
        limiter=False,
    )
    own_cache = ca.get_cache(own)
    assert own_cache is not None and own_cache.limiter is None


def test_access_denied_is_non_recoverable(sts_server: StsServer) -> None:
    arn = "arn:aws:iam::111122223333:role/denied"
    sts_server.deny_roles = {arn}
    role = ca.assume_role(_source(), arn, endpoint_url=sts_server.url)

    async def main() -> Any:
        credentials = await role.get_credentials()
        return await credentials.get_frozen_credentials()

    with pytest.raises(NonRecoverableError) as caught:
        asyncio.run(main())
    assert "AccessDenied" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_any_creds_core_cache_can_be_the_source(sts_server: StsServer) -> None:
    # An SSO profile, a container role, a credential_process...: any provider behind a cache.
    source = CredentialCache(Scripted(lambda n: creds(f"AKIAANYSOURCE{n:07d}", lifetime=3600)))
    role = ca.assume_role(
        source, "arn:aws:iam::111122223333:role/any", endpoint_url=sts_server.url, region=REGION
    )
    cache = ca.get_cache(role)
    assert cache is not None
    assert cache.get().access_key_id.startswith("ASIASTS")
    assume = [c for c in sts_server.calls if c.action == "AssumeRole"]
    assert [c.signer_access_key_id for c in assume] == ["AKIAANYSOURCE0000001"]


def test_a_source_that_needs_the_user_keeps_that_kind_through_the_role(
    sts_server: StsServer,
) -> None:
    # As in the sync door: a role over an SSO source whose token expired says what to run.
    def needs_login() -> Credentials:
        raise UserActionRequired("the SSO session has expired: run `aws sso login --profile dev`")

    source = CredentialCache(needs_login, name="sso-source")
    role = ca.assume_role(
        source, "arn:aws:iam::111122223333:role/sso", endpoint_url=sts_server.url, region=REGION
    )
    cache = ca.get_cache(role)
    assert cache is not None

    async def main() -> Credentials:
        return await cache.get_async()

    with pytest.raises(UserActionRequired, match=r"aws sso login --profile dev"):
        asyncio.run(main())
    assert not [c for c in sts_server.calls if c.action == "AssumeRole"]


def test_assume_role_against_moto_then_s3_with_the_role(moto_endpoint: str) -> None:
    source = _source()
    role = ca.assume_role(
        source, "arn:aws:iam::123456789012:role/moto-role", endpoint_url=moto_endpoint
    )
    bucket = f"creds-core-aio-{uuid.uuid4().hex[:12]}"

    async def main() -> tuple[list[str], str]:
        async with role.create_client("s3", region_name=REGION, endpoint_url=moto_endpoint) as s3:
            await s3.create_bucket(Bucket=bucket)
            names = [b["Name"] for b in (await s3.list_buckets())["Buckets"]]
        async with role.create_client("sts", region_name=REGION, endpoint_url=moto_endpoint) as sts:
            arn = (await sts.get_caller_identity())["Arn"]
        return names, arn

    names, arn = asyncio.run(main())
    assert bucket in names
    assert "assumed-role/moto-role" in arn


@contextlib.contextmanager
def sts_in_a_process(**options: Any) -> Iterator[str]:
    """An StsServer in a process of its own (its threads then do not compete with the loop
    being measured for this process's GIL); yields its URL, stops it on exit."""
    code = (
        "import json, sys\n"
        "from creds_core.testing import StsServer\n"
        "with StsServer(**json.loads(sys.argv[1])) as server:\n"
        "    print(server.url, flush=True)\n"
        "    sys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdin is not None and process.stdout is not None
        try:
            yield process.stdout.readline().strip()
        finally:
            process.stdin.close()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def test_300_roles_at_once_against_a_100_calls_per_second_sts_do_not_stall_the_loop(
    fresh_limiters: None,
) -> None:
    roles = 300
    options = {"rate": 100, "delay": 0.02, "max_requests": 5_000, "max_seconds": 120}
    with sts_in_a_process(**options) as url:
        source = _source()
        arns = [f"arn:aws:iam::{100_000_000_000 + i}:role/r300" for i in range(roles)]

        async def resolve(arn: str) -> str:
            role = ca.assume_role(source, arn, role_session_name="r300", endpoint_url=url)
            credentials = await role.get_credentials()
            return str((await credentials.get_frozen_credentials()).access_key)

        async def main() -> tuple[list[Any], float]:
            async with Ticker() as ticker:
                got = await asyncio.gather(*(resolve(a) for a in arns), return_exceptions=True)
            return got, ticker.max_gap

        started = time.monotonic()
        got, stall = asyncio.run(main())
        took = time.monotonic() - started
    failures = [g for g in got if isinstance(g, BaseException)]
    limiter = cb.sts_limiter(source, endpoint_url=url)
    print(
        f"\n{roles} roles at once, STS at 100 calls/s: {took:.1f} s, longest loop stall "
        f"{stall * 1000:.1f} ms, {len(failures)} failures "
        f"({Counter(type(f).__name__ for f in failures)}), limiter {limiter.stats()}"
    )
    assert not failures, f"{len(failures)} failures, e.g. {failures[0]!r}"
    assert len(set(got)) == roles
    assert limiter.stats()["acquired"] >= roles  # every AssumeRole went through it
    # The loop kept running: a refresh that blocked it would stall it for most of the run
    # (300 AssumeRoles at 100 calls/s take 3 s or more). Relative to the run, so that a busy
    # machine slows both alike; benches/test_asyncio.py measures the stall (target < 50 ms).
    assert stall < took / 2, f"the loop stalled {stall:.2f} s of a {took:.2f} s run"


def test_the_loop_of_creds_core_is_one_thread_for_every_role(sts_server: StsServer) -> None:
    threads: set[str] = set()
    original = ca.AioAssumeRoleProvider.provide

    async def spy(self: ca.AioAssumeRoleProvider) -> Credentials:
        threads.add(threading.current_thread().name)
        return await original(self)

    source = _source()
    try:
        ca.AioAssumeRoleProvider.provide = spy  # type: ignore[method-assign]
        caches = [
            ca.get_cache(
                ca.assume_role(
                    source, f"arn:aws:iam::1111222233{i:02d}:role/t", endpoint_url=sts_server.url
                )
            )
            for i in range(10)
        ]
        assert all(c is not None and c.get() for c in caches)
    finally:
        ca.AioAssumeRoleProvider.provide = original  # type: ignore[method-assign]
    assert threads == {"creds-core-loop"}


def test_every_throttled_assume_role_answer_reaches_the_limiter(
    sts_server: StsServer, fresh_limiters: None
) -> None:
    # 5 calls/s, bucket of 1: 20 roles at once get throttled answers, which the aiobotocore
    # client's own retry absorbs in part; each one is reported to the shared Limiter.
    sts_server.rate = 5.0
    sts_server.burst = 1.0
    source = _source()
    arns = [f"arn:aws:iam::{200_000_000_000 + i}:role/throttled" for i in range(20)]

    async def resolve(arn: str) -> str:
        role = ca.assume_role(
            source, arn, endpoint_url=sts_server.url, cache_options={"load_timeout": 60.0}
        )
        credentials = await role.get_credentials()
        return str((await credentials.get_frozen_credentials()).access_key)

    async def main() -> list[Any]:
        return await asyncio.gather(*(resolve(a) for a in arns), return_exceptions=True)

    got = asyncio.run(main())
    throttled = sum(c.action == "AssumeRole" and c.outcome == "throttled" for c in sts_server.calls)
    limiter = cb.sts_limiter(source, endpoint_url=sts_server.url)
    assert throttled > 0
    assert limiter.stats()["throttled"] == throttled
    assert all(isinstance(g, str) for g in got), [g for g in got if not isinstance(g, str)][:1]
