"""The shared tier on a real redis-server: entries, encryption, leases, and Redis failing.

Two ``RedisTier`` objects on one server stand for two processes (they share nothing but
Redis); the fleet tests with real processes are in ``test_redis_fleet.py``.
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from redis_fixtures import RedisServer

import creds_core.boto3 as cb
from creds_core import CredentialCache, Credentials, NonRecoverableError, Provider
from creds_core.fanout import fan_out
from creds_core.redis import RedisTier, SharedProvider
from helpers import SECRET, TOKEN, Scripted, creds, posix_signals, wait_until
from server_fixtures import StsServer

KEY = base64.b64encode(b"k" * 32).decode()
OTHER_KEY = base64.b64encode(b"o" * 32).decode()


def tier(server: RedisServer, key: Any = KEY, **options: Any) -> RedisTier:
    options.setdefault("namespace", "test")
    return RedisTier(server.url, key=key, **options)


def hour_creds(n: int) -> Credentials:
    return creds(f"AKIA{n:016d}", lifetime=3600)


def all_values(server: RedisServer) -> dict[bytes, bytes]:
    client = server.client()
    return {k: client.dump(k) or b"" for k in client.scan_iter(count=1000)}


# --- reading and writing entries -----------------------------------------------------------


def test_second_process_is_served_from_the_entry_without_calling_its_source(
    redis_server: RedisServer,
) -> None:
    first, second = Scripted(hour_creds), Scripted(hour_creds)
    a, b = tier(redis_server), tier(redis_server)
    got_a = CredentialCache(a.wrap(first, "role-1")).get()
    got_b = CredentialCache(b.wrap(second, "role-1")).get()
    assert got_b == got_a
    assert got_b.secret_access_key == SECRET and got_b.session_token == TOKEN
    assert got_b.expiry == got_a.expiry
    assert (first.calls, second.calls) == (1, 0)
    assert a.stats()["writes"] == 1 and a.stats()["misses"] == 1
    assert b.stats()["hits"] == 1 and b.stats()["source_calls"] == 0


def test_entries_are_per_name_and_expire_with_the_credentials(
    redis_server: RedisServer,
) -> None:
    t = tier(redis_server)
    one = CredentialCache(t.wrap(Scripted(hour_creds), "one")).get()
    two = CredentialCache(t.wrap(Scripted(lambda n: hour_creds(100 + n)), "two")).get()
    assert one != two
    entry, lease = t.keys_for("one")
    client = redis_server.client()
    assert 3500_000 < client.pttl(entry) <= 3600_000
    assert not client.exists(lease)  # released with the write
    assert "one" not in entry and entry.startswith("test:{")


def test_no_secret_or_token_is_readable_anywhere_in_redis(redis_server: RedisServer) -> None:
    t = tier(redis_server)
    keys = [CredentialCache(t.wrap(Scripted(hour_creds), f"r{i}")).get() for i in range(5)]
    values = all_values(redis_server)
    assert len(values) == 5
    for name, value in values.items():
        for blob in (name, value):
            assert SECRET.encode() not in blob and TOKEN.encode() not in blob
            for k in keys:
                assert k.access_key_id.encode() not in blob
    assert SECRET not in repr(t) and "AKIA" not in str(t.stats())


def test_entry_inside_its_advisory_window_is_refreshed_once(redis_server: RedisServer) -> None:
    # A 60 min entry with 10 min left is due (15 min window): the next refresh replaces it.
    old = creds("AKIAOLD", lifetime=600)
    a = tier(redis_server)
    client = redis_server.client()
    entry, _ = a.keys_for("due")
    client.set(entry, a._seal("due", old, time.time() - 3000), px=600_000)
    source = Scripted(hour_creds)
    assert CredentialCache(a.wrap(source, "due")).get().access_key_id == "AKIA0000000000000001"
    b = Scripted(hour_creds)
    assert CredentialCache(tier(redis_server).wrap(b, "due")).get().access_key_id == (
        "AKIA0000000000000001"
    )
    assert (source.calls, b.calls) == (1, 0)


def test_credentials_without_expiry_are_shared_for_no_expiry_ttl(
    redis_server: RedisServer,
) -> None:
    t = tier(redis_server, no_expiry_ttl=60)
    CredentialCache(t.wrap(lambda: Credentials("AKIASTATIC", SECRET), "static")).get()
    other = Scripted(hour_creds)
    assert CredentialCache(tier(redis_server).wrap(other, "static")).get().expiry is None
    assert other.calls == 0
    assert 0 < redis_server.client().pttl(t.keys_for("static")[0]) <= 60_000


# --- keys: wrong, rotated, corrupt and foreign entries ---------------------------------------


def test_wrong_key_is_a_miss_and_the_process_gets_credentials_on_its_own(
    redis_server: RedisServer,
) -> None:
    CredentialCache(tier(redis_server).wrap(Scripted(hour_creds), "role")).get()
    wrong = tier(redis_server, key=OTHER_KEY)
    mine = Scripted(lambda n: hour_creds(50 + n))
    got = CredentialCache(wrong.wrap(mine, "role")).get()
    assert got.access_key_id == "AKIA0000000000000051" and mine.calls == 1
    assert wrong.stats()["hits"] == 0 and wrong.stats()["misses"] == 1


def test_key_rotation_reads_with_any_key_and_writes_with_the_first(
    redis_server: RedisServer,
) -> None:
    old_only = tier(redis_server, key=KEY)
    CredentialCache(old_only.wrap(Scripted(hour_creds), "a")).get()
    rotated = tier(redis_server, key=[OTHER_KEY, base64.b64decode(KEY)])
    src = Scripted(hour_creds)
    assert CredentialCache(rotated.wrap(src, "a")).get().access_key_id.endswith("1")
    assert src.calls == 0  # the old key still opens old entries
    CredentialCache(rotated.wrap(Scripted(lambda n: hour_creds(7)), "b")).get()
    new_only = tier(redis_server, key=OTHER_KEY)
    src_b = Scripted(hour_creds)
    assert CredentialCache(new_only.wrap(src_b, "b")).get().access_key_id.endswith("7")
    assert src_b.calls == 0  # written with the first (new) key
    assert old_only._open("b", redis_server.client().get(new_only.keys_for("b")[0])) is None


@pytest.mark.parametrize(
    "value",
    [b"", b"garbage", b"\x01" + b"\x00" * 40, b"\x02" + os.urandom(60), b"text"],
    ids=["empty", "garbage", "zeros", "other-version", "text"],
)
def test_corrupt_entry_is_a_miss_and_is_replaced(redis_server: RedisServer, value: bytes) -> None:
    t = tier(redis_server)
    client = redis_server.client()
    client.set(t.keys_for("x")[0], value)
    src = Scripted(hour_creds)
    assert CredentialCache(t.wrap(src, "x")).get().access_key_id.endswith("1")
    assert src.calls == 1 and t.stats()["misses"] == 1 and t.stats()["redis_errors"] == 0
    assert tier(redis_server)._open("x", client.get(t.keys_for("x")[0])) is not None


def test_foreign_entry_copied_from_another_name_or_namespace_is_a_miss(
    redis_server: RedisServer,
) -> None:
    t = tier(redis_server)
    CredentialCache(t.wrap(Scripted(hour_creds), "victim")).get()
    client = redis_server.client()
    client.copy(t.keys_for("victim")[0], t.keys_for("attacker")[0])
    other_ns = tier(redis_server, namespace="other")
    client.copy(t.keys_for("victim")[0], other_ns.keys_for("victim")[0])
    for reader, name in ((t, "attacker"), (other_ns, "victim")):
        src = Scripted(lambda n: hour_creds(90 + n))
        assert CredentialCache(reader.wrap(src, name)).get().access_key_id.endswith("91")
        assert src.calls == 1


def test_a_value_of_another_type_under_the_key_is_a_miss(redis_server: RedisServer) -> None:
    t = tier(redis_server)
    redis_server.client().hset(t.keys_for("h")[0], "field", "value")
    src = Scripted(hour_creds)
    assert CredentialCache(t.wrap(src, "h")).get().access_key_id.endswith("1")
    assert src.calls == 1 and t.stats()["redis_errors"] == 0


@pytest.mark.parametrize("bad", [b"short", "bm90IDMyIGJ5dGVz", "%%%not base64", 42, []])
def test_bad_keys_are_refused_without_showing_them(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        RedisTier("redis://127.0.0.1:1/0", key=bad)
    if isinstance(bad, (str, bytes)) and bad:
        shown = bad if isinstance(bad, str) else bad.decode()
        assert shown not in str(info.value)


def test_generated_keys_work_and_differ() -> None:
    one, two = RedisTier.generate_key(), RedisTier.generate_key()
    assert one != two and len(base64.b64decode(one)) == 32
    RedisTier("redis://127.0.0.1:1/0", key=one)


def test_repr_hides_the_password_of_the_url() -> None:
    t = RedisTier("redis://user:hunter2pass@127.0.0.1:1/0", key=KEY)
    assert "hunter2pass" not in repr(t) and "***" in repr(t)


# --- the lease ------------------------------------------------------------------------------


def test_concurrent_refreshes_in_two_processes_make_one_source_call(
    redis_server: RedisServer,
) -> None:
    holder_source, waiter_source = Scripted(hour_creds), Scripted(hour_creds)
    holder_source.gate = threading.Event()
    a, b = tier(redis_server), tier(redis_server)
    first = CredentialCache(a.wrap(holder_source, "r", load_timeout=30), load_timeout=30)
    second = CredentialCache(b.wrap(waiter_source, "r", load_timeout=30), load_timeout=30)
    got: dict[str, Credentials] = {}
    t1 = threading.Thread(target=lambda: got.__setitem__("a", first.get()))
    t1.start()
    assert holder_source.entered.wait(10)
    t2 = threading.Thread(target=lambda: got.__setitem__("b", second.get()))
    t2.start()
    wait_until(lambda: b.stats()["lease_waits"] >= 1, "the second process waiting on the lease")
    holder_source.gate.set()
    t1.join(20)
    t2.join(20)
    assert got["a"] == got["b"]
    assert (holder_source.calls, waiter_source.calls) == (1, 0)
    assert b.stats()["lease_waits"] == 1 and b.stats()["hits"] == 1


def test_lease_of_a_stuck_holder_is_taken_over_and_its_late_write_is_fenced(
    redis_server: RedisServer,
) -> None:
    stuck = Scripted(lambda n: hour_creds(1))
    stuck.gate = threading.Event()
    a, b = tier(redis_server, lease_ttl=0.5), tier(redis_server, lease_ttl=0.5)
    holder = a.wrap(stuck, "r", load_timeout=30)
    done = threading.Event()
    threading.Thread(target=lambda: (holder.provide(), done.set()), daemon=True).start()
    assert stuck.entered.wait(10)
    taker = Scripted(lambda n: hour_creds(2))
    got = b.wrap(taker, "r", load_timeout=30).provide()
    assert got is not None and got.access_key_id.endswith("2") and taker.calls == 1
    assert b.stats()["lease_takeovers"] == 1
    stuck.gate.set()
    assert done.wait(10)
    # The old holder's write was refused: the entry is the one that took over.
    entry = b._open("r", redis_server.client().get(b.keys_for("r")[0]))
    assert entry is not None and entry.credentials.access_key_id.endswith("2")
    assert a.stats()["writes"] == 0 and b.stats()["writes"] == 1


def test_a_failing_source_releases_the_lease_and_raises_its_own_error(
    redis_server: RedisServer,
) -> None:
    def deny(n: int) -> Any:
        raise NonRecoverableError("AccessDenied: not allowed")

    t = tier(redis_server)
    with pytest.raises(NonRecoverableError, match="AccessDenied"):
        CredentialCache(t.wrap(Scripted(deny), "denied")).get()
    assert not redis_server.client().exists(t.keys_for("denied")[1])
    src = Scripted(hour_creds)
    assert CredentialCache(tier(redis_server).wrap(src, "denied")).get() is not None
    assert src.calls == 1


def test_a_holder_that_never_writes_is_waited_for_at_most_half_the_load_timeout(
    redis_server: RedisServer,
) -> None:
    t = tier(redis_server, lease_ttl=60)
    redis_server.client().set(t.keys_for("held")[1], "someone-else", px=60_000)
    src = Scripted(hour_creds)
    started = time.monotonic()
    got = CredentialCache(t.wrap(src, "held", load_timeout=1.0), load_timeout=1.0).get()
    assert got is not None and src.calls == 1
    assert time.monotonic() - started < 30  # not the 60 s lease
    assert t.stats()["lease_waits"] == 1 and t.stats()["local_fallbacks"] == 1


def test_fallback_on_interrupt_is_forwarded(redis_server: RedisServer) -> None:
    src = Scripted(hour_creds)
    src.fallback = creds("AKIAFALLBACK", lifetime=600)
    wrapped = tier(redis_server).wrap(src, "f")
    assert isinstance(wrapped, SharedProvider) and isinstance(wrapped, Provider)
    assert wrapped.fallback_on_interrupt() == src.fallback
    assert tier(redis_server).wrap(lambda: None, "g").fallback_on_interrupt() is None


@pytest.mark.parametrize("kind", ["callable", "mapping", "cache", "credentials", "none"])
def test_every_kind_of_provider_can_be_wrapped(redis_server: RedisServer, kind: str) -> None:
    c = hour_creds(3)
    expiry = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    source: Any = {
        "callable": lambda: c,
        "mapping": lambda: {
            "AccessKeyId": "AKIAMAP",
            "SecretAccessKey": SECRET,
            "SessionToken": TOKEN,
            "Expiration": expiry,
        },
        "cache": CredentialCache(lambda: c),
        "credentials": c,
        "none": lambda: None,
    }[kind]
    wrapped = tier(redis_server).wrap(source, kind)
    got = wrapped.provide()
    if kind == "none":
        assert got is None
        assert not redis_server.client().exists(*tier(redis_server).keys_for(kind))
    else:
        assert got is not None and got.secret_access_key == SECRET


# --- Redis failing --------------------------------------------------------------------------


def test_redis_down_degrades_to_the_source_logged_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    t = tier(redis_server, cooldown=0.2)
    redis_server.stop()
    caplog.set_level(logging.DEBUG, "creds_core.redis")
    sources = [Scripted(hour_creds) for _ in range(5)]
    for i, src in enumerate(sources):
        assert CredentialCache(t.wrap(src, f"down{i}")).get() is not None
        time.sleep(0.25)  # past the cooldown: every refresh tries Redis again
    assert all(s.calls == 1 for s in sources)
    stats = t.stats()
    assert stats["redis_errors"] >= 5 and stats["local_fallbacks"] == 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ConnectionError" in warnings[0].getMessage()
    redis_server.start()
    time.sleep(0.25)
    assert CredentialCache(t.wrap(Scripted(hour_creds), "back")).get() is not None
    assert t.stats()["writes"] == 1 and t.stats()["breaker"] == "closed"
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_open_breaker_skips_redis_until_the_cooldown(redis_server: RedisServer) -> None:
    t = tier(redis_server, cooldown=60)
    redis_server.stop()
    for i in range(3):
        assert CredentialCache(t.wrap(Scripted(hour_creds), f"b{i}")).get() is not None
    stats = t.stats()
    assert stats["redis_errors"] == 1 and stats["breaker"] == "open"
    assert stats["local_fallbacks"] == 3


@posix_signals
def test_a_stalled_redis_costs_a_bounded_wait(redis_server: RedisServer) -> None:
    t = tier(redis_server, socket_timeout=0.2, socket_connect_timeout=0.2)
    assert redis_server.process is not None
    CredentialCache(t.wrap(Scripted(hour_creds), "warm")).get()  # a pooled connection
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        src = Scripted(hour_creds)
        assert CredentialCache(t.wrap(src, "stalled"), load_timeout=10).get() is not None
        assert time.monotonic() - started < 5.0  # two 0.2 s timeouts, on a busy machine
        assert src.calls == 1 and t.stats()["redis_errors"] >= 1
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)


def test_a_full_redis_degrades_to_the_source(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    t = tier(redis_server)
    src = Scripted(hour_creds)
    assert CredentialCache(t.wrap(src, "full")).get() is not None
    assert src.calls == 1 and t.stats()["redis_errors"] >= 1 and t.stats()["writes"] == 0


def test_a_read_only_redis_degrades_to_the_source(redis_server: RedisServer) -> None:
    with socket_port() as port:
        client = redis_server.client()
        client.execute_command("REPLICAOF", "127.0.0.1", str(port))
        t = tier(redis_server)
        src = Scripted(hour_creds)
        assert CredentialCache(t.wrap(src, "ro")).get() is not None
        assert src.calls == 1 and t.stats()["redis_errors"] >= 1
        client.execute_command("REPLICAOF", "NO", "ONE")


class socket_port:
    """A loopback port nothing listens on, held for the block (a replica's dead master)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


# --- boto3 and fan_out ----------------------------------------------------------------------


@pytest.fixture
def sts_env(
    request: pytest.FixtureRequest, sts_server: StsServer, monkeypatch: pytest.MonkeyPatch
) -> StsServer:
    request.getfixturevalue("isolated_aws")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts_server.url)
    monkeypatch.setattr(cb, "_LIMITERS", {})
    return sts_server


def _source() -> boto3.Session:
    return boto3.Session(
        region_name="us-east-1",
        aws_access_key_id=f"AKIA{uuid.uuid4().hex[:16]}".upper(),
        aws_secret_access_key=SECRET,
    )


def test_assume_role_with_shared_tier_calls_sts_once_for_two_sources(
    redis_server: RedisServer, sts_env: StsServer
) -> None:
    arn = f"arn:aws:iam::123456789012:role/shared-{uuid.uuid4().hex[:6]}"
    a, b = tier(redis_server), tier(redis_server)
    one = cb.assume_role(_source(), arn, role_session_name="ss", shared=a)
    two = cb.assume_role(_source(), arn, role_session_name="ss", shared=b)
    k1 = one.get_credentials().get_frozen_credentials().access_key
    k2 = two.get_credentials().get_frozen_credentials().access_key
    assert k1 == k2 and sts_env.counts["AssumeRole"] == 1
    assert b.stats()["hits"] == 1
    # Another session name is other credentials: another entry.
    other = cb.assume_role(_source(), arn, role_session_name="tt", shared=b)
    assert other.get_credentials().get_frozen_credentials().access_key not in (k1, k2)
    assert sts_env.counts["AssumeRole"] == 2


def test_fan_out_with_shared_tier_calls_sts_once_per_role(
    redis_server: RedisServer, sts_env: StsServer
) -> None:
    accounts = [str(200_000_000_000 + i) for i in range(20)]
    a, b = tier(redis_server), tier(redis_server)

    def key(session: boto3.Session, account: str) -> str:
        return str(session.get_credentials().get_frozen_credentials().access_key)

    first = fan_out(key, accounts, session=_source(), role_name="R", shared=a, progress=False)
    second = fan_out(key, accounts, session=_source(), role_name="R", shared=b, progress=False)
    assert first.ok and second.ok and first.results == second.results
    assert sts_env.counts["AssumeRole"] == 20
    assert b.stats()["hits"] == 20 and b.stats()["source_calls"] == 0


# --- Sentinel, Cluster and clients given by the user ------------------------------------------


def test_a_redis_py_client_can_be_given_instead_of_a_url(redis_server: RedisServer) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=1)
    a, b = RedisTier(client, key=KEY), RedisTier(client, key=KEY)
    first = CredentialCache(a.wrap(Scripted(hour_creds), "given")).get()
    src = Scripted(hour_creds)
    assert CredentialCache(b.wrap(src, "given")).get() == first and src.calls == 0
    with pytest.raises(ValueError, match="decode_responses"):
        RedisTier(redis.Redis(port=redis_server.port, decode_responses=True), key=KEY)
    with pytest.raises(TypeError):
        RedisTier(client, key=KEY, socket_timeout=1.0, cluster=True)


def test_sentinel_master_for_client(redis_sentinel: tuple[int, str]) -> None:
    from redis.sentinel import Sentinel

    port, name = redis_sentinel
    sentinel = Sentinel([("127.0.0.1", port)], socket_timeout=1)
    tiers = [RedisTier(sentinel.master_for(name, socket_timeout=1), key=KEY) for _ in range(2)]
    first = CredentialCache(tiers[0].wrap(Scripted(hour_creds), "s")).get()
    src = Scripted(hour_creds)
    assert CredentialCache(tiers[1].wrap(src, "s")).get() == first and src.calls == 0


def test_cluster_url_spreads_entries_over_the_slots(redis_cluster: list[int]) -> None:
    import redis

    url = f"redis://127.0.0.1:{redis_cluster[0]}/0"
    a, b = RedisTier(url, key=KEY, cluster=True), RedisTier(url, key=KEY, cluster=True)
    names = [f"role-{i}" for i in range(30)]
    firsts = [CredentialCache(a.wrap(Scripted(hour_creds), n)).get() for n in names]
    sources = [Scripted(hour_creds) for _ in names]
    seconds = [CredentialCache(b.wrap(s, n)).get() for s, n in zip(sources, names)]
    assert firsts == seconds and all(s.calls == 0 for s in sources)
    assert b.stats()["hits"] == 30 and b.stats()["redis_errors"] == 0
    held = [redis.Redis(port=p).dbsize() for p in redis_cluster]
    assert sum(held) == 30 and all(n > 0 for n in held)  # every master holds some entries
    for port in redis_cluster:
        node = redis.Redis(port=port)
        for name in node.scan_iter():
            assert SECRET.encode() not in (node.get(name) or b"")
