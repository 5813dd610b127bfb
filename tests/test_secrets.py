"""No secret access key or session token ever shows: not in the repr or str of any object, not
in any log record at any level (Python logging captured at DEBUG for root, ``creds_core`` and
botocore, with the Rust logs routed into it), not in any exception message or formatted
traceback (``__cause__`` chains included), not in ``stats()`` / ``inspect()``.

Every secret is a sentinel string that each test first proves to be in use (the credentials it
reads back carry it), so a leak cannot hide behind a secret that was never there.  Sources are
real: the project's StsServer, ImdsServer and ContainerServer, moto, and real subprocesses.
"""

from __future__ import annotations

import copy
import functools
import logging
import pickle
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

import creds_core.boto3 as cb
from creds_core import (
    CredentialCache,
    Credentials,
    CredentialsError,
    Limiter,
    NonRecoverableError,
    Provider,
    ProviderChain,
    ProviderError,
)
from creds_core.providers import (
    AssumeRoleProvider,
    BotoConfigProvider,
    ConfigFileProvider,
    ContainerProvider,
    Ec2CredentialsFileProvider,
    EnvironmentProvider,
    InstanceMetadataProvider,
    LoginProvider,
    ProcessProvider,
    ProfileAssumeRoleProvider,
    ProfileCheck,
    SharedCredentialsProvider,
    SsoProvider,
    StaticProvider,
    WebIdentityProvider,
    default_chain,
)
from creds_core.providers._config import new_session
from creds_core.providers._sts import SourceCredentials
from creds_core.testing import ManualClock
from helpers import SECRET, TOKEN, creds, wait_until
from server_fixtures import ContainerServer, ImdsServer, StsServer, servers

pytestmark = pytest.mark.usefixtures("isolated_aws")

REGION = "us-east-1"
#: What the project's servers hand out.
ISSUED_SECRET = servers.SENTINEL_SECRET
ISSUED_TOKEN = servers.SENTINEL_TOKEN
#: Source credentials given in code, and other secrets a provider holds.
SOURCE_SECRET = "SOURCE-SECRET-SENTINEL-bPxRfiCYEXAMPLEKEY"
SOURCE_TOKEN = "SOURCE-TOKEN-SENTINEL-IQoJb3JpZ2luX2VjE"
WEB_TOKEN = "WEB-IDENTITY-SENTINEL-eyJhbGciOiJSUzI1NiJ9"
AUTH_TOKEN = "CONTAINER-AUTH-SENTINEL-Bearer-c2VjcmV0"
SENTINELS = (SECRET, TOKEN, ISSUED_SECRET, ISSUED_TOKEN, SOURCE_SECRET, SOURCE_TOKEN, WEB_TOKEN)
NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=5)


def _arn(name: str) -> str:
    return f"arn:aws:iam::123456789012:role/{name}-{uuid.uuid4().hex[:10]}"


def leaked(text: str, secrets: Iterable[str] = SENTINELS) -> list[str]:
    return [s for s in secrets if s and s in text]


def shown(obj: object) -> str:
    """Everything an object shows of itself when printed."""
    return f"{obj!r}\n{obj!s}"


def formatted(exc: BaseException) -> str:
    """An exception as a user sees it: message, repr, args and the whole traceback with every
    ``__cause__`` / ``__context__`` in the chain."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 20:
        parts += [str(seen), repr(seen), repr(seen.args)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


# --- log capture ----------------------------------------------------------------------------------


class Capture(logging.Handler):
    """Every record of every logger, formatted as a handler would write it (with tracebacks)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s [%(threadName)s] %(message)s"))
        self.records: list[tuple[logging.LogRecord, str]] = []

    def emit(self, record: logging.LogRecord) -> None:  # called under the handler's lock
        self.records.append((record, self.format(record)))

    def leaks(
        self,
        secrets: Iterable[str] = SENTINELS,
        skip: Callable[[logging.LogRecord], bool] = lambda r: False,
    ) -> list[str]:
        secrets = tuple(secrets)
        return [
            text
            for record, text in list(self.records)
            if not skip(record) and leaked(text, secrets)
        ]

    def names(self, level: int) -> set[str]:
        return {r.name for r, _ in list(self.records) if r.levelno == level}


_LOGGERS = ("", "creds_core", "botocore", "boto3", "urllib3", "moto", "werkzeug", "s3transfer")


@pytest.fixture
def logs() -> Iterator[Capture]:
    """Python logging at DEBUG everywhere, captured; the levels are restored afterwards."""
    capture = Capture()
    before = {name: logging.getLogger(name).level for name in _LOGGERS}
    root = logging.getLogger()
    root.addHandler(capture)
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


def _source_session(key: str = "AKIASECRETSSOURCE001") -> boto3.Session:
    """Source credentials with a secret and a session token (both sentinels)."""
    return boto3.Session(
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=SOURCE_SECRET,
        aws_session_token=SOURCE_TOKEN,
    )


def _expect_error(errors: list[BaseException], fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except Exception as exc:
        errors.append(exc)
        return exc
    raise AssertionError(f"{fn} raised nothing")


def _assert_no_leak_in(errors: list[BaseException], secrets: Iterable[str] = SENTINELS) -> None:
    secrets = tuple(secrets)
    assert errors
    for exc in errors:
        assert not leaked(formatted(exc), secrets), formatted(exc)


# --- repr and str -----------------------------------------------------------------------------


class Holding(Provider):
    """A user provider that keeps the credentials it served."""

    def __init__(self) -> None:
        self.last: Credentials | None = None

    def provide(self) -> Credentials:
        self.last = Credentials("AKIAHOLDING000000001", SECRET, TOKEN, time.time() + 3600)
        return self.last

    def fallback_on_interrupt(self) -> Credentials | None:
        return self.last


def test_no_repr_or_str_shows_a_secret(
    tmp_path: Path,
    sts_server: StsServer,
    imds_server: ImdsServer,
    container_server: ContainerServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = ManualClock()
    (tmp_path / "credentials").write_text(
        f"[default]\naws_access_key_id = AKIAPROFILE000000001\naws_secret_access_key = {SECRET}\n"
        f"aws_session_token = {TOKEN}\n"
    )
    (tmp_path / "config").write_text(
        "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/profile-role\n"
        "source_profile = default\n"
        f"[profile proc]\ncredential_process = {sys.executable} -c print({SECRET!r})\n"
    )
    token_file = tmp_path / "web-token"
    token_file.write_text(WEB_TOKEN)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    script = tmp_path / "process.py"
    script.write_text(
        "import json; print(json.dumps({'Version': 1, 'AccessKeyId': 'AKIAPROCESS000000001', "
        f"'SecretAccessKey': {SECRET!r}, 'SessionToken': {TOKEN!r}}}))\n"
    )
    container_server.auth_token = AUTH_TOKEN
    container_env = {
        ContainerProvider.FULL_URI: container_server.credentials_url + f"?token={AUTH_TOKEN}",
        ContainerProvider.AUTH_TOKEN: AUTH_TOKEN,
    }

    static = StaticProvider("AKIASTATIC0000000001", SECRET, TOKEN, time.time() + 3600)
    holding = Holding()
    used: list[Any] = [  # fetched from below: their state holds secrets
        static,
        holding,
        EnvironmentProvider(),
        EnvironmentProvider(environ={"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": SECRET}),
        SharedCredentialsProvider(),
        ProcessProvider([sys.executable, str(script)]),
        ContainerProvider(environ=container_env, retry_delay=0),
        InstanceMetadataProvider(
            endpoint=imds_server.url, timeout=2.0, attempts=1, disabled=False, environ={}
        ),
        WebIdentityProvider(
            role_arn=_arn("web"),
            token_file=str(token_file),
            endpoint_url=sts_server.url,
            region=REGION,
            session=new_session(),
        ),
        AssumeRoleProvider(
            StaticProvider("AKIASOURCE0000000001", SOURCE_SECRET, SOURCE_TOKEN),
            _arn("assume"),
            endpoint_url=sts_server.url,
            region=REGION,
            session=new_session(),
        ),
    ]
    idle: list[Any] = [  # configured with secrets around them, not fetched
        ConfigFileProvider(),
        ProcessProvider(profile="proc"),
        ProfileAssumeRoleProvider("role"),
        ProfileCheck(),
        SsoProvider(),
        LoginProvider(),
        Ec2CredentialsFileProvider(),
        BotoConfigProvider(),
    ]
    chain = ProviderChain([static, holding], fallback="recency", name="chain")
    limiter = Limiter(max_concurrency=3, rate=5.0, name="sts")
    caches = [CredentialCache(p, name=f"cache-{i}", load_timeout=10) for i, p in enumerate(used)]
    objects: list[Any] = [*used, *idle, chain, limiter, clock, *caches]

    # Every provider in use: their caches hold secrets (the sentinels, or IMDS/STS-issued ones).
    for cache in caches:
        got = cache.get()
        assert got.secret_access_key in (SECRET, ISSUED_SECRET), cache.name
        objects += [got, cache.inspect(), cache.stats(), got.expiry]
    assert container_server.last_authorization == AUTH_TOKEN
    objects += [chain.provide(), chain.fallback_on_interrupt(), default_chain()]
    objects += [CredentialCache(default_chain()).get()]
    objects += [
        Credentials.from_mapping(
            {
                "AccessKeyId": "AKIAMAP",
                "SecretAccessKey": SECRET,
                "SessionToken": TOKEN,
                "Expiration": time.time() + 60,
            }
        )
    ]

    # boto3: a creds_core session, a role session, their credentials objects and clients.
    session = cb.session(static, region_name=REGION)
    role = cb.assume_role(_source_session(), _arn("role"), endpoint_url=sts_server.url)
    for s in (session, role):
        credentials = s.get_credentials()
        assert credentials is not None
        assert credentials.get_frozen_credentials().secret_key in (SECRET, ISSUED_SECRET)
        objects += [s, s._session, credentials, credentials.get_frozen_credentials()]
        objects += [cb.get_cache(s), s.client("sts", endpoint_url=sts_server.url)]
    role_cache = cb.get_cache(role)
    assert role_cache is not None
    source = role_cache.provider.source
    signing = SourceCredentials(source)  # what signs the AssumeRole calls, for botocore
    assert signing.get_frozen_credentials().secret_key == SOURCE_SECRET
    objects += [role_cache.provider, source, signing, signing.get_frozen_credentials]

    # What the servers recorded.
    objects += [*sts_server.issued, *sts_server.calls, sts_server, imds_server, container_server]
    objects += [*imds_server.issued, *container_server.issued]

    for obj in objects:
        assert not leaked(shown(obj), (*SENTINELS, AUTH_TOKEN)), (
            f"{type(obj).__name__}: {shown(obj)}"
        )


def test_botocore_frozen_credentials_from_creds_core_do_not_show_a_secret() -> None:
    frozen = Credentials("AKIAFROZEN0000000001", SECRET, TOKEN).to_botocore()
    assert (frozen.secret_key, frozen.token) == (SECRET, TOKEN)
    assert not leaked(shown(frozen))


def test_stats_and_inspect_show_no_secret_in_any_state() -> None:
    clock = ManualClock()
    calls = {"n": 0}

    def provider() -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            return {
                "AccessKeyId": "AKIASTATES0000000001",
                "SecretAccessKey": SECRET,
                "SessionToken": TOKEN,
                "Expiration": clock.time() + 3600,
            }
        if calls["n"] <= 3:
            raise ProviderError("the source is down")
        raise NonRecoverableError("access denied")

    limiter = Limiter(failure_threshold=5, cooldown=60, clock=clock, name="states")
    cache = CredentialCache(provider, clock=clock, limiter=limiter, refresh_backoff=(1, 1))
    seen: list[str] = []

    def look() -> None:
        for now_shown in (cache.inspect(), cache.stats(), limiter.stats(), repr(cache)):
            assert not leaked(str(now_shown))
        seen.append(cache.inspect()["state"])

    look()
    assert cache.get().secret_access_key == SECRET
    look()
    clock.advance(3600 - 600)  # the advisory window: a background refresh, which fails
    cache.get()
    wait_until(lambda: cache.stats()["refreshes_failed"] >= 1, "the background refresh failed")
    look()
    clock.advance(2)
    look()
    assert cache.invalidate()
    look()
    clock.advance(600 - 30)  # the mandatory window: the refresh fails, the cache serves
    assert cache.get().session_token == TOKEN
    look()
    clock.advance(60)
    look()
    clock.advance(2)
    with pytest.raises(NonRecoverableError):
        cache.get()
    look()
    assert seen == [
        "empty",
        "fresh",
        "backoff",
        "advisory",
        "invalidated",
        "backoff",
        "expired",
        "expired",
    ]


# --- log records ------------------------------------------------------------------------------


def test_no_log_record_shows_a_secret_cache_events(logs: Capture) -> None:
    """Refreshes, failures with backoff, breaker opened / failing fast / closed, a fallback on
    timeout, a late result, a cached non-recoverable error, a cycle, a timeout."""
    errors: list[BaseException] = []
    clock = ManualClock()
    release = threading.Event()
    calls = {"n": 0}

    class Source(Provider):
        name = "log-source"

        def provide(self) -> Any:
            calls["n"] += 1
            n = calls["n"]
            if n == 1:
                return {
                    "AccessKeyId": "AKIALOGS000000000001",
                    "SecretAccessKey": SECRET,
                    "SessionToken": TOKEN,
                    "Expiration": clock.time() + 900,
                }
            if n == 2:
                raise ProviderError("the source is down (ConnectionError)")
            if n == 3:
                release.wait(10)
                return creds("AKIALATE000000000001", lifetime=3600, now=clock.now())
            raise NonRecoverableError("AccessDenied")

        def fallback_on_interrupt(self) -> Credentials | None:
            return Credentials("AKIAFALLBACK00000001", SECRET, TOKEN, clock.time() + 60)

    limiter = Limiter(failure_threshold=1, cooldown=60, clock=clock, name="log-limiter")
    cache = CredentialCache(
        Source(),
        clock=clock,
        limiter=limiter,
        load_timeout=5,
        name="log-cache",
        refresh_backoff=(10, 10),
    )
    assert cache.get().secret_access_key == SECRET  # refreshed
    clock.advance(900 - 30)
    assert cache.get().session_token == TOKEN  # fails: backoff; the breaker opens
    assert limiter.breaker == "open"
    clock.advance(20)
    assert cache.get().session_token == TOKEN  # the breaker fails the refresh fast
    assert calls["n"] == 2
    clock.advance(50)
    waiter = threading.Thread(target=cache.get, daemon=True)
    waiter.start()  # the probe call hangs: the waiter gets the fallback at load_timeout
    wait_until(
        lambda: calls["n"] == 3 and clock.sleepers >= 1, "the probe called, the caller waiting"
    )
    clock.advance(5)
    waiter.join(30)
    assert cache.stats()["fallbacks"] == 1
    release.set()  # a late result; the breaker closes
    wait_until(lambda: cache.stats()["late_results"] == 1, "the late result adopted")
    assert limiter.stats()["breaker"] == "closed"
    clock.advance(3600)
    _expect_error(errors, cache.get)  # non-recoverable: raised, then cached
    _expect_error(errors, cache.get)

    holder: dict[str, CredentialCache] = {}
    holder["c"] = CredentialCache(lambda: holder["c"].get(), name="cycle")
    _expect_error(errors, holder["c"].get)
    hung = threading.Event()
    _expect_error(errors, CredentialCache(lambda: hung.wait(5), load_timeout=0.05).get)
    hung.set()

    assert {"creds_core.cache"} <= logs.names(logging.DEBUG)
    assert {"creds_core.cache", "creds_core.limiter"} <= logs.names(logging.INFO)
    assert {"creds_core.cache", "creds_core.limiter"} <= logs.names(logging.WARNING)
    assert not logs.leaks()
    _assert_no_leak_in(errors)


def test_no_log_record_shows_a_secret_assume_role_against_the_sts_server(
    logs: Capture, sts_server: StsServer
) -> None:
    errors: list[BaseException] = []
    clock = ManualClock(time.time())
    sts_server.clock = clock.time
    denied = _arn("denied")
    sts_server.deny_roles = {denied}
    source = _source_session()
    role = cb.assume_role(
        source,
        _arn("logs"),
        endpoint_url=sts_server.url,
        client_config=NO_RETRY,
        cache_options={"clock": clock},
    )
    cache = cb.get_cache(role)
    assert cache is not None
    assert cache.get().secret_access_key == ISSUED_SECRET
    for mode in ("ok", "error", "throttle", "bad_json", "expired", "down", "ok"):
        sts_server.mode = mode
        clock.advance(3600 + 600)  # expired and past any backoff: every get refreshes
        assert cache.get().session_token == ISSUED_TOKEN  # fresh, or the last good ones
    role_denied = cb.assume_role(
        source, denied, endpoint_url=sts_server.url, client_config=NO_RETRY
    )
    credentials = role_denied.get_credentials()
    assert credentials is not None
    _expect_error(errors, credentials.get_frozen_credentials)
    _expect_error(
        errors,
        lambda: role_denied.client("sts", endpoint_url=sts_server.url).get_caller_identity(),
    )
    # The source session's own credentials (with their session token) signed every call.
    signers = {c.signer_access_key_id for c in sts_server.calls if c.action == "AssumeRole"}
    assert signers == {"AKIASECRETSSOURCE001"}
    assert cache.stats()["refreshes_failed"] >= 5

    # botocore's DEBUG records of the AssumeRole calls were produced (on provider threads)
    # and filtered: nothing anywhere shows a secret.
    assert any(r.name.startswith("botocore") for r, _ in logs.records)
    assert not logs.leaks()
    _assert_no_leak_in(errors)


def test_no_log_record_shows_a_secret_other_providers_against_local_servers(
    logs: Capture,
    tmp_path: Path,
    sts_server: StsServer,
    imds_server: ImdsServer,
    container_server: ContainerServer,
) -> None:
    errors: list[BaseException] = []
    token_file = tmp_path / "web-token"
    token_file.write_text(WEB_TOKEN)
    web_role = _arn("web")
    web = CredentialCache(
        WebIdentityProvider(
            role_arn=web_role,
            token_file=str(token_file),
            endpoint_url=sts_server.url,
            region=REGION,
            session=new_session(),
            client_config=NO_RETRY,
        )
    )
    assert web.get().secret_access_key == ISSUED_SECRET
    assert any(c.web_identity_token == WEB_TOKEN for c in sts_server.calls)
    sts_server.deny_roles = {web_role}
    assert web.invalidate()
    _expect_error(errors, web.get)

    container_server.auth_token = AUTH_TOKEN
    env = {
        ContainerProvider.FULL_URI: container_server.credentials_url,
        ContainerProvider.AUTH_TOKEN: AUTH_TOKEN,
    }
    container = CredentialCache(ContainerProvider(environ=env, retry_delay=0))
    assert container.get().session_token == ISSUED_TOKEN
    assert container_server.last_authorization == AUTH_TOKEN
    wrong = {**env, ContainerProvider.AUTH_TOKEN: AUTH_TOKEN + "-rotated"}
    _expect_error(errors, CredentialCache(ContainerProvider(environ=wrong, retry_delay=0)).get)

    imds = CredentialCache(
        InstanceMetadataProvider(
            endpoint=imds_server.url, timeout=2.0, attempts=1, disabled=False, environ={}
        )
    )
    assert imds.get().secret_access_key == ISSUED_SECRET
    imds_server.mode = "bad_json"
    assert imds.invalidate()
    imds.get()  # the bad answer is a failure; the last good credentials are served

    good = tmp_path / "good.py"
    good.write_text(
        "import json; print(json.dumps({'Version': 1, 'AccessKeyId': 'AKIAPROCESS000000001', "
        f"'SecretAccessKey': {SECRET!r}, 'SessionToken': {TOKEN!r}}}))\n"
    )
    assert CredentialCache(ProcessProvider([sys.executable, str(good)])).get().token == TOKEN
    for body in (
        f"print('AccessKeyId=AKIA SecretAccessKey={SECRET}')",  # not JSON
        f'print(\'{{"Version": 2, "SecretAccessKey": "{SECRET}"}}\')',  # bad version
        f'print(\'{{"Version": 1, "SecretAccessKey": "{SECRET}"}}\')',  # no key id
        "import json; print(json.dumps({'Version': 1, 'AccessKeyId': 'AKIA', "
        f"'SecretAccessKey': {SECRET!r}, 'SessionToken': {TOKEN!r}, 'Expiration': 'soon'}}))",
    ):
        bad = tmp_path / f"bad-{uuid.uuid4().hex[:6]}.py"
        bad.write_text(body + "\n")
        _expect_error(errors, CredentialCache(ProcessProvider([sys.executable, str(bad)])).get)

    environment = {"AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": SECRET}
    chain = ProviderChain([EnvironmentProvider(environ=environment)])
    assert CredentialCache(chain).get().secret_access_key == SECRET
    partial = {"AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SESSION_TOKEN": TOKEN}
    _expect_error(errors, CredentialCache(EnvironmentProvider(environ=partial)).get)
    expiring = {**environment, "AWS_SESSION_TOKEN": TOKEN, "AWS_CREDENTIAL_EXPIRATION": "later"}
    _expect_error(errors, CredentialCache(EnvironmentProvider(environ=expiring)).get)

    secrets = (*SENTINELS, AUTH_TOKEN)
    assert not logs.leaks(secrets)
    _assert_no_leak_in(errors, secrets)


def test_no_log_record_shows_a_secret_assume_role_against_moto(
    logs: Capture, moto_endpoint: str
) -> None:
    source = _source_session("AKIAMOTOSECRETSRC001")
    role = cb.assume_role(
        source, _arn("moto"), role_session_name="secrets", endpoint_url=moto_endpoint
    )
    cache = cb.get_cache(role)
    assert cache is not None
    issued = cache.get()
    assert issued.secret_access_key and issued.session_token
    assert cache.invalidate(issued.access_key_id)
    refreshed = cache.get()
    secrets = (
        *SENTINELS,
        issued.secret_access_key,
        issued.session_token,
        refreshed.secret_access_key,
        str(refreshed.session_token),
    )
    fetching = list(logs.records)

    # The program's own requests, signed with the role's credentials.
    role.client("sts", endpoint_url=moto_endpoint).get_caller_identity()
    role.client("s3", endpoint_url=moto_endpoint).list_buckets()

    def botocore_signing_the_programs_own_request(record: logging.LogRecord) -> bool:
        # botocore itself logs the canonical request and the signed request (which carry the
        # session token) at DEBUG on the thread making the call: botocore's behaviour for any
        # session credentials, not creds_core's.  Everything else must be clean.
        return record.name in ("botocore.auth", "botocore.endpoint") and (
            record.thread == threading.get_ident()
        )

    assert fetching and not [t for _, t in fetching if leaked(t, secrets)]
    assert not logs.leaks(secrets, skip=botocore_signing_the_programs_own_request)
    assert any(botocore_signing_the_programs_own_request(r) for r, _ in logs.records)


# --- exceptions -------------------------------------------------------------------------------


def test_no_exception_message_or_traceback_shows_a_secret(sts_server: StsServer) -> None:
    errors: list[BaseException] = []
    future = time.time() + 3600
    # Bad input next to secrets.
    _expect_error(errors, lambda: Credentials("AKIA", SECRET, TOKEN, expiry="tomorrow"))
    _expect_error(errors, lambda: Credentials("", SECRET, TOKEN))
    _expect_error(errors, lambda: Credentials("AKIA", SECRET, TOKEN, expiry=True))
    _expect_error(errors, lambda: Credentials("AKIA", SECRET, TOKEN, future, account_id=42))  # type: ignore[arg-type]
    for mapping in (
        {
            "AccessKeyId": "AKIA",
            "SecretAccessKey": SECRET,
            "SessionToken": TOKEN,
            "Expiration": "not a time",
        },
        {"AccessKeyId": "AKIA", "SecretAccessKey": SECRET, "SessionToken": 12345},
        {"AccessKeyId": "", "SecretAccessKey": SECRET, "SessionToken": TOKEN},
        {"SecretAccessKey": SECRET, "SessionToken": TOKEN},
        {"AccessKeyId": "AKIA", "SecretAccessKey": SECRET, "Version": 2},
    ):
        _expect_error(errors, functools.partial(Credentials.from_mapping, mapping))
        _expect_error(errors, CredentialCache(functools.partial(dict, mapping)).get)
    _expect_error(errors, lambda: pickle.dumps(Credentials("AKIA", SECRET, TOKEN)))
    _expect_error(errors, lambda: copy.deepcopy(Credentials("AKIA", SECRET, TOKEN)))

    # Failing refreshes while secrets are cached, and failures of nested sources.
    clock = ManualClock()
    calls = {"n": 0}

    def flaky() -> Credentials:
        calls["n"] += 1
        if calls["n"] == 1:
            return Credentials("AKIAFLAKY", SECRET, TOKEN, clock.time() + 900)
        raise NonRecoverableError("the source was revoked")

    flaky_cache = CredentialCache(flaky, clock=clock)
    flaky_cache.get()
    clock.advance(900)
    _expect_error(errors, flaky_cache.get)
    role = AssumeRoleProvider(
        flaky_cache,
        _arn("nested"),
        endpoint_url=sts_server.url,
        region=REGION,
        session=new_session(),
    )
    _expect_error(errors, CredentialCache(role).get)
    # STS answers errors to calls signed with a source session token.
    sts_server.mode = "throttle"
    throttled = AssumeRoleProvider(
        StaticProvider("AKIASOURCE", SOURCE_SECRET, SOURCE_TOKEN),
        _arn("throttled"),
        endpoint_url=sts_server.url,
        region=REGION,
        session=new_session(),
        client_config=NO_RETRY,
    )
    _expect_error(errors, CredentialCache(throttled).get)
    _expect_error(errors, throttled.provide)

    for exc in errors:
        assert isinstance(exc, (CredentialsError, ValueError, TypeError)), repr(exc)
    _assert_no_leak_in(errors)
