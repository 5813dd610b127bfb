"""creds_core.boto3: sessions signing through a CredentialCache, against real local endpoints.

Every test sends real SigV4-signed requests over HTTP to a local server: the project's STS and
IMDS servers (which record the access key that signed each request), moto's server, or the
small ``RejectingServer`` below, which answers "your token expired" to chosen access keys.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.credentials import Credentials as BotocoreCredentials
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import ClientError

import creds_core.boto3 as cb
from creds_core import CredentialCache, Credentials, Limiter, NonRecoverableError
from creds_core.providers import InstanceMetadataProvider, StaticProvider
from creds_core.testing import ManualClock
from helpers import SECRET, TOKEN, Scripted, creds
from server_fixtures import ImdsServer, StsServer

REGION = "us-east-1"


def _unique(prefix: str) -> str:
    """A unique name: role caches are process-wide, so tests must not share keys."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _role_arn(name: str = "role") -> str:
    return f"arn:aws:iam::123456789012:role/{_unique(name)}"


# No credentials, config files or IMDS of the machine running the tests; loopback only.
pytestmark = pytest.mark.usefixtures("isolated_aws")


def _static_source(key: str | None = None) -> boto3.Session:
    """A plain boto3 session (no creds_core) with explicit keys."""
    return boto3.Session(
        region_name=REGION,
        aws_access_key_id=key or _unique("AKIASRC")[:20].upper(),
        aws_secret_access_key=SECRET,
    )


# --- session() and install() ------------------------------------------------------------------


def test_session_signs_every_request_through_the_cache(sts_server: StsServer) -> None:
    provider = Scripted(lambda n: creds(f"ASIATEST{n:012d}", lifetime=3600))
    session = cb.session(provider, region_name=REGION)
    client = session.client("sts", endpoint_url=sts_server.url)
    for _ in range(3):
        client.get_caller_identity()
    assert [c.signer_access_key_id for c in sts_server.calls] == ["ASIATEST000000000001"] * 3
    assert provider.calls == 1
    cache = cb.get_cache(session)
    assert cache is not None
    assert cache.stats()["source_calls"] == 1
    # Session.get_credentials() and every new client see the same creds_core object.
    assert isinstance(session.get_credentials(), cb.CacheCredentials)
    assert session.get_credentials() is session._session.get_credentials()


def test_signer_reads_the_cache_directly() -> None:
    session = cb.session(lambda: creds("ASIADIRECT", lifetime=3600), region_name=REGION)
    credentials = session.get_credentials()
    cache = cb.get_cache(session)
    assert isinstance(credentials, cb.CacheCredentials) and cache is not None
    # The bound method of the Rust cache itself: no Python frame per signed request.
    frozen = credentials.get_frozen_credentials
    assert getattr(frozen, "__self__", None) is cache
    assert frozen.__name__ == "get_frozen"
    frozen_creds = credentials.get_frozen_credentials()
    assert (frozen_creds.access_key, frozen_creds.secret_key, frozen_creds.token) == (
        "ASIADIRECT",
        SECRET,
        TOKEN,
    )


def test_frozen_credentials_are_botocores_namedtuple_built_once_per_entry() -> None:
    clock = ManualClock()
    keys = iter(["ASIAFROZEN1", "ASIAFROZEN2"])

    def provide() -> Credentials:
        return Credentials(next(keys), SECRET, TOKEN, clock.time() + 3600)

    session = cb.session(provide, region_name=REGION, cache_options={"clock": clock})
    credentials = session.get_credentials()
    frozen = credentials.get_frozen_credentials()
    # What code in the wild does with botocore's answer.
    assert isinstance(frozen, ReadOnlyCredentials)
    ak, sk, token, *_ = frozen
    assert (ak, sk, token) == ("ASIAFROZEN1", SECRET, TOKEN)
    # Field for field what botocore's own credentials answer (3 or 4 fields by version).
    theirs = BotocoreCredentials(ak, sk, token).get_frozen_credentials()
    assert tuple(frozen) == tuple(theirs)
    assert frozen._asdict() == theirs._asdict()
    assert SECRET not in repr(frozen) and TOKEN not in repr(frozen)
    # One object per cached entry: the hot path hands out the same tuple.
    assert credentials.get_frozen_credentials() is frozen
    clock.advance(3600)  # expired: the next call refreshes, and a new entry has a new tuple
    fresh = credentials.get_frozen_credentials()
    assert fresh.access_key == "ASIAFROZEN2" and fresh is not frozen
    assert credentials.get_frozen_credentials() is fresh


def test_method_is_the_name_of_the_provider_that_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDMETHODENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    session = cb.session(region_name=REGION)
    assert session.get_credentials().method == "env"
    explicit = cb.session(
        region_name=REGION, aws_access_key_id="AKIDEXPLICIT", aws_secret_access_key=SECRET
    )
    assert explicit.get_credentials().method == "explicit"


def test_credentials_object_is_one_botocore_accepts() -> None:
    cache = CredentialCache(
        lambda: Credentials("ASIAATTRS", SECRET, TOKEN, time.time() + 3600, account_id="111")
    )
    session = boto3.Session(region_name=REGION)
    assert cb.install(session, cache) is cache
    credentials = session.get_credentials()
    assert isinstance(credentials, BotocoreCredentials)  # what botocore-based code may check
    assert isinstance(credentials, cb.CacheCredentials)
    assert credentials.access_key == "ASIAATTRS"
    assert credentials.secret_key == SECRET
    assert credentials.token == TOKEN
    assert credentials.account_id == "111"
    assert credentials.method == cache.get().provider_name
    assert credentials.refresh_needed() is False
    assert credentials.get_deferred_property("account_id")() == "111"
    for text in (repr(credentials), str(credentials)):
        assert SECRET not in text and TOKEN not in text
    # botocore's resolver component answers the same object.
    resolver = session._session.get_component("credential_provider")
    assert resolver.load_credentials() is credentials


def test_refreshed_credentials_sign_the_next_request(sts_server: StsServer) -> None:
    clock = ManualClock()
    provider = Scripted(lambda n: creds(f"ASIAREFR{n:012d}", lifetime=900, now=clock.now()))
    session = boto3.Session(region_name=REGION)
    cache = cb.install(session, provider, clock=clock, advisory_refresh="inline")
    client = session.client("sts", endpoint_url=sts_server.url)
    client.get_caller_identity()
    clock.advance(900 - 30)  # inside the mandatory window: the next signature waits for new ones
    client.get_caller_identity()
    signers = [c.signer_access_key_id for c in sts_server.calls]
    assert signers == ["ASIAREFR000000000001", "ASIAREFR000000000002"]
    assert cache.stats()["source_calls"] == 2


def test_session_without_provider_uses_the_default_chain(
    sts_server: StsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENVIRONMENT1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    session = cb.session(region_name=REGION)
    session.client("sts", endpoint_url=sts_server.url).get_caller_identity()
    assert sts_server.calls[-1].signer_access_key_id == "AKIAFROMENVIRONMENT1"
    cache = cb.get_cache(session)
    assert cache is not None and cache.get().provider_name == "env"


def test_session_with_a_profile_reads_that_profile(sts_server: StsServer, tmp_path: Any) -> None:
    (tmp_path / "credentials").write_text(
        "[default]\naws_access_key_id = AKIADEFAULTPROFILE01\naws_secret_access_key = x\n"
        f"[work]\naws_access_key_id = AKIAWORKPROFILE00001\naws_secret_access_key = {SECRET}\n"
    )
    session = cb.session(profile_name="work", region_name=REGION)
    session.client("sts", endpoint_url=sts_server.url).get_caller_identity()
    assert sts_server.calls[-1].signer_access_key_id == "AKIAWORKPROFILE00001"
    cache = cb.get_cache(session)
    assert cache is not None and cache.name == "boto3 profile work"


def test_session_with_explicit_keys_keeps_them(sts_server: StsServer) -> None:
    session = cb.session(
        region_name=REGION, aws_access_key_id="AKIAEXPLICITKEYS0001", aws_secret_access_key=SECRET
    )
    session.client("sts", endpoint_url=sts_server.url).get_caller_identity()
    assert sts_server.calls[-1].signer_access_key_id == "AKIAEXPLICITKEYS0001"
    cache = cb.get_cache(session)
    assert cache is not None and isinstance(cache.provider, StaticProvider)
    with pytest.raises(TypeError):
        cb.session(lambda: None, aws_access_key_id="AKIA", aws_secret_access_key="x")


def test_install_replaces_credentials_already_loaded(sts_server: StsServer) -> None:
    session = boto3.Session(
        region_name=REGION, aws_access_key_id="AKIAOLDSTATICKEY0001", aws_secret_access_key="x"
    )
    before = session.client("sts", endpoint_url=sts_server.url)
    cb.install(session, lambda: creds("ASIAINSTALLED0000001", lifetime=3600))
    after = session.client("sts", endpoint_url=sts_server.url)
    before.get_caller_identity()
    after.get_caller_identity()
    assert [c.signer_access_key_id for c in sts_server.calls] == [
        "AKIAOLDSTATICKEY0001",  # clients made before install keep their credentials
        "ASIAINSTALLED0000001",
    ]
    # Installing again swaps the cache (and the hooks) for clients made afterwards.
    cb.install(session, lambda: creds("ASIAINSTALLED0000002", lifetime=3600))
    session.client("sts", endpoint_url=sts_server.url).get_caller_identity()
    assert sts_server.calls[-1].signer_access_key_id == "ASIAINSTALLED0000002"


def test_install_takes_cache_options_like_the_other_doors() -> None:
    clock = ManualClock()
    as_mapping = cb.install(
        boto3.Session(region_name=REGION),
        lambda: creds("ASIAMAPPING000000001", lifetime=3600),
        cache_options={"load_timeout": 7.0, "name": "mapping", "clock": clock},
    )
    as_keywords = cb.install(
        boto3.Session(region_name=REGION),
        lambda: creds("ASIAKEYWORDS00000001", lifetime=3600),
        load_timeout=7.0,
        name="keywords",
    )
    assert as_mapping.inspect()["load_timeout"] == as_keywords.inspect()["load_timeout"] == 7.0
    assert (as_mapping.name, as_keywords.name) == ("mapping", "keywords")
    with pytest.raises(TypeError):
        cb.install(boto3.Session(), as_mapping, cache_options={"load_timeout": 1.0})


def test_one_cache_shared_by_the_sessions_of_many_threads(sts_server: StsServer) -> None:
    provider = Scripted(lambda n: creds(f"ASIASHARED{n:010d}", lifetime=3600))
    cache = CredentialCache(provider)
    with pytest.raises(TypeError):
        cb.install(boto3.Session(), cache, load_timeout=1.0)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            session = boto3.Session(region_name=REGION)  # sessions are not thread safe
            cb.install(session, cache)
            session.client("sts", endpoint_url=sts_server.url).get_caller_identity()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert provider.calls == 1
    assert {c.signer_access_key_id for c in sts_server.calls} == {"ASIASHARED0000000001"}
    assert len(sts_server.calls) == 8


def test_credentials_errors_reach_the_caller_without_secrets(sts_server: StsServer) -> None:
    def denied() -> Credentials:
        raise NonRecoverableError("the source said no; fix its configuration")

    session = cb.session(denied, region_name=REGION)
    client = session.client("sts", endpoint_url=sts_server.url)
    with pytest.raises(NonRecoverableError, match="fix its configuration"):
        client.get_caller_identity()
    assert sts_server.calls == []


# --- rejected credentials: ExpiredToken and friends ----------------------------------------------

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


class RejectingServer:
    """STS (query protocol) and DynamoDB (JSON 1.0) on 127.0.0.1 that answer ``code`` to every
    request signed with a key in ``rejected`` and success to the others.

    Records the signing access key of every request in ``signers``.  Bounded: at most
    ``max_requests`` answers, then 503; stopped by the fixture.
    """

    def __init__(self, code: str = "ExpiredToken", max_requests: int = 1000) -> None:
        self.code = code
        self.rejected: set[str] = set()
        self.signers: list[str | None] = []
        self._budget = max_requests
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(min(length, 1 << 20))
                match = _CREDENTIAL.search(self.headers.get("Authorization", ""))
                status, content_type, body = owner.answer(
                    match.group(1) if match else None, self.headers.get("X-Amz-Target")
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def answer(self, signer: str | None, target: str | None) -> tuple[int, str, bytes]:
        with self._lock:
            self.signers.append(signer)
            self._budget -= 1
            if self._budget < 0:
                return 503, "text/plain", b"request budget exhausted"
            rejected = signer is None or signer in self.rejected
        if target is not None:  # JSON protocol (DynamoDB)
            if rejected:
                error = {
                    "__type": f"com.amazon.coral.service#{self.code}",
                    "message": "The security token included in the request is expired",
                }
                return 400, "application/x-amz-json-1.0", json.dumps(error).encode()
            return 200, "application/x-amz-json-1.0", b'{"TableNames": []}'
        if rejected:
            body = (
                '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                f"<Type>Sender</Type><Code>{self.code}</Code>"
                "<Message>The security token included in the request is expired</Message>"
                "</Error><RequestId>r</RequestId></ErrorResponse>"
            )
            return 400, "text/xml", body.encode()
        body = (
            '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<GetCallerIdentityResult><UserId>AIDATEST</UserId><Account>123456789012</Account>"
            f"<Arn>arn:aws:iam::123456789012:user/{signer}</Arn></GetCallerIdentityResult>"
            "<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>"
            "</GetCallerIdentityResponse>"
        )
        return 200, "text/xml", body.encode()

    def __enter__(self) -> RejectingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def rejecting_server() -> Iterator[RejectingServer]:
    with RejectingServer() as server:
        yield server


def _first_rejected_then_fresh(prefix: str) -> Scripted:
    """Key <prefix>...1 first (still valid by its expiry), then a new key on every refresh."""
    return Scripted(lambda n: creds(f"{prefix}{n:0{20 - len(prefix)}d}", lifetime=3600))


def _call(session: boto3.Session, server: RejectingServer, code: str) -> dict[str, Any]:
    if code == "ExpiredTokenException":
        client = session.client("dynamodb", endpoint_url=server.url)
        return dict(client.list_tables())
    return dict(session.client("sts", endpoint_url=server.url).get_caller_identity())


@pytest.mark.parametrize("code", ["ExpiredToken", "ExpiredTokenException", "RequestExpired"])
def test_rejected_credentials_are_replaced_and_the_call_retried_once(
    rejecting_server: RejectingServer, code: str
) -> None:
    rejecting_server.code = code
    rejecting_server.rejected.add("ASIAOLD0000000000001")
    provider = _first_rejected_then_fresh("ASIAOLD")
    session = cb.session(provider, region_name=REGION)
    response = _call(session, rejecting_server, code)
    assert rejecting_server.signers == ["ASIAOLD0000000000001", "ASIAOLD0000000000002"]
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert provider.calls == 2
    cache = cb.get_cache(session)
    assert cache is not None and cache.stats()["invalidations"] == 1
    # The next call signs with the fresh key straight away.
    _call(session, rejecting_server, code)
    assert rejecting_server.signers[-1] == "ASIAOLD0000000000002"


def test_retried_once_only(rejecting_server: RejectingServer) -> None:
    provider = _first_rejected_then_fresh("ASIAALL")
    rejecting_server.rejected.update(f"ASIAALL{n:013d}" for n in range(1, 10))
    session = cb.session(provider, region_name=REGION)
    with pytest.raises(ClientError) as caught:
        session.client("sts", endpoint_url=rejecting_server.url).get_caller_identity()
    assert caught.value.response["Error"]["Code"] == "ExpiredToken"
    assert rejecting_server.signers == ["ASIAALL0000000000001", "ASIAALL0000000000002"]
    assert provider.calls == 2


def test_no_retry_when_the_source_answers_the_same_credentials(
    rejecting_server: RejectingServer,
) -> None:
    provider = Scripted(lambda n: creds("ASIASAMEKEY000000001", lifetime=3600))
    rejecting_server.rejected.add("ASIASAMEKEY000000001")
    session = cb.session(provider, region_name=REGION)
    with pytest.raises(ClientError):
        session.client("sts", endpoint_url=rejecting_server.url).get_caller_identity()
    assert rejecting_server.signers == ["ASIASAMEKEY000000001"]  # a retry could not help
    assert provider.calls == 2  # it was asked, once


def test_other_errors_are_not_retried(rejecting_server: RejectingServer) -> None:
    rejecting_server.code = "AccessDenied"
    rejecting_server.rejected.add("ASIADENIED0000000001")
    provider = _first_rejected_then_fresh("ASIADENIED")
    session = cb.session(provider, region_name=REGION)
    with pytest.raises(ClientError):
        session.client("sts", endpoint_url=rejecting_server.url).get_caller_identity()
    assert rejecting_server.signers == ["ASIADENIED0000000001"]
    assert provider.calls == 1


def test_client_with_its_own_keys_is_left_alone(rejecting_server: RejectingServer) -> None:
    rejecting_server.rejected.add("AKIACLIENTOWNKEY0001")
    provider = _first_rejected_then_fresh("ASIAMINE")
    session = cb.session(provider, region_name=REGION)
    cache = cb.get_cache(session)
    assert cache is not None
    cache.get()
    client = session.client(
        "sts",
        endpoint_url=rejecting_server.url,
        aws_access_key_id="AKIACLIENTOWNKEY0001",
        aws_secret_access_key=SECRET,
    )
    with pytest.raises(ClientError):
        client.get_caller_identity()
    assert rejecting_server.signers == ["AKIACLIENTOWNKEY0001"]
    assert provider.calls == 1
    assert cache.stats()["invalidations"] == 0


def test_concurrent_rejections_cause_one_refresh(rejecting_server: RejectingServer) -> None:
    rejecting_server.rejected.add("ASIACONC000000000001")
    provider = _first_rejected_then_fresh("ASIACONC")
    session = cb.session(provider, region_name=REGION)
    client = session.client("sts", endpoint_url=rejecting_server.url)  # clients are thread safe
    threads_n = 16
    barrier = threading.Barrier(threads_n)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(10)
            results.append(client.get_caller_identity()["Arn"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert provider.calls == 2  # the first key, then exactly one refresh
    assert set(results) == {"arn:aws:iam::123456789012:user/ASIACONC000000000002"}
    counts = Counter(rejecting_server.signers)
    assert counts["ASIACONC000000000002"] == threads_n
    assert 1 <= counts["ASIACONC000000000001"] <= threads_n


def test_no_secret_in_logs(
    rejecting_server: RejectingServer, caplog: pytest.LogCaptureFixture
) -> None:
    rejecting_server.rejected.add("ASIALOGS000000000001")
    session = cb.session(_first_rejected_then_fresh("ASIALOGS"), region_name=REGION)
    with caplog.at_level(logging.DEBUG, logger="creds_core"):
        session.client("sts", endpoint_url=rejecting_server.url).get_caller_identity()
    assert any("retrying once" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert SECRET not in record.getMessage() and TOKEN not in record.getMessage()


# --- static stability end to end ----------------------------------------------------------------


def test_static_stability_when_imds_goes_down(imds_server: ImdsServer, moto_endpoint: str) -> None:
    clock = ManualClock(time.time())
    imds_server.clock = clock.time  # the credentials it issues expire on the test's clock
    provider = InstanceMetadataProvider(
        endpoint=imds_server.url, timeout=2.0, attempts=1, disabled=False, environ={}
    )
    session = boto3.Session(region_name=REGION)
    cache = cb.install(session, provider, clock=clock, load_timeout=5.0)
    sts = session.client("sts", endpoint_url=moto_endpoint)
    s3 = session.client("s3", endpoint_url=moto_endpoint)

    sts.get_caller_identity()
    s3.list_buckets()
    issued = imds_server.last_issued
    assert issued is not None and imds_server.counts["credentials"] == 1
    first_key = issued.access_key_id

    imds_server.mode = "down"
    clock.advance(3600 + 120)  # the credentials are now expired
    sts.get_caller_identity()  # the refresh fails; the last good credentials are served
    s3.list_buckets()
    assert cache.get().access_key_id == first_key
    stats = cache.stats()
    assert stats["refreshes_failed"] == 1 and stats["static_stability"] >= 1
    contacted = imds_server.requests
    assert imds_server.counts["dropped"] >= 1

    for _ in range(5):  # within the backoff (300 to 600 s): IMDS is left alone
        clock.advance(55)
        sts.get_caller_identity()
        s3.list_buckets()
    assert imds_server.requests == contacted
    assert cache.stats()["rate_limited"] >= 10
    assert cache.stats()["source_calls"] == 2

    imds_server.mode = "ok"
    clock.advance(600)  # the backoff is over: IMDS is asked again and the new keys are used
    sts.get_caller_identity()
    s3.list_buckets()
    assert imds_server.requests > contacted
    assert cache.get().access_key_id != first_key
    assert cache.get().access_key_id == imds_server.last_issued.access_key_id  # type: ignore[union-attr]


# --- assume_role ----------------------------------------------------------------------------------


def test_assume_role_against_moto(moto_endpoint: str) -> None:
    source = _static_source()
    role_arn = _role_arn("moto")
    role = cb.assume_role(
        source, role_arn, role_session_name="moto-test", endpoint_url=moto_endpoint
    )
    identity = role.client("sts", endpoint_url=moto_endpoint).get_caller_identity()
    role_name = role_arn.rsplit("/", 1)[1]
    assert identity["Arn"].endswith(f":assumed-role/{role_name}/moto-test")
    role.client("s3", endpoint_url=moto_endpoint).list_buckets()
    # The source now signs through creds_core as well.
    assert cb.get_cache(source) is not None
    assert role.region_name == REGION


def test_hundred_threads_one_sts_call(sts_server: StsServer) -> None:
    source = _static_source("AKIAHUNDREDSOURCE001")  # no cache yet: installed once, under lock
    role_arn = _role_arn("hundred")
    barrier = threading.Barrier(100)
    keys: list[str | None] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(20)
            role = cb.assume_role(source, role_arn, endpoint_url=sts_server.url)
            credentials = role.get_credentials()
            assert credentials is not None
            keys.append(credentials.get_frozen_credentials().access_key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assume_calls = [c for c in sts_server.calls if c.action == "AssumeRole"]
    assert len(assume_calls) == 1
    assert assume_calls[0].signer_access_key_id == "AKIAHUNDREDSOURCE001"
    assert assume_calls[0].role_arn == role_arn
    assert len(keys) == 100 and set(keys) == {assume_calls[0].issued_access_key_id}


def test_role_sessions_share_one_cache_per_role_and_parameters(sts_server: StsServer) -> None:
    source = _static_source()
    role_arn = _role_arn("share")
    url = sts_server.url
    a = cb.assume_role(source, role_arn, role_session_name="s1", endpoint_url=url)
    b = cb.assume_role(source, role_arn, role_session_name="s1", endpoint_url=url)
    c = cb.assume_role(source, role_arn, role_session_name="s2", endpoint_url=url)
    d = cb.assume_role(
        source, role_arn, role_session_name="s1", external_id="ext-1", endpoint_url=url
    )
    e = cb.assume_role(
        source, role_arn, role_session_name="s1", policy={"Version": "2012-10-17"}, endpoint_url=url
    )
    caches = [cb.get_cache(s) for s in (a, b, c, d, e)]
    assert a is not b and caches[0] is caches[1]
    assert len({id(x) for x in caches}) == 4
    for s in (a, b, c, d, e):
        s.client("sts", endpoint_url=url).get_caller_identity()
    assume = [x for x in sts_server.calls if x.action == "AssumeRole"]
    assert [(x.role_session_name, x.external_id) for x in assume] == [
        ("s1", None),
        ("s2", None),
        ("s1", "ext-1"),
        ("s1", None),
    ]
    # Another source is another identity: its own cache.
    other = cb.assume_role(_static_source(), role_arn, role_session_name="s1", endpoint_url=url)
    assert cb.get_cache(other) is not caches[0]


def test_role_chaining(sts_server: StsServer) -> None:
    source = _static_source("AKIACHAINSOURCE00001")
    first_arn, second_arn = _role_arn("first"), _role_arn("second")
    first = cb.assume_role(source, first_arn, endpoint_url=sts_server.url)
    second = cb.assume_role(first, second_arn, endpoint_url=sts_server.url)
    identity = second.client("sts", endpoint_url=sts_server.url).get_caller_identity()
    assert second_arn.rsplit("/", 1)[1] in identity["Arn"]
    assume = {c.role_arn: c for c in sts_server.calls if c.action == "AssumeRole"}
    assert assume[first_arn].signer_access_key_id == "AKIACHAINSOURCE00001"
    assert assume[second_arn].signer_access_key_id == assume[first_arn].issued_access_key_id
    assert sts_server.calls[-1].signer_access_key_id == assume[second_arn].issued_access_key_id


def test_assume_role_with_mfa(sts_server: StsServer) -> None:
    codes = iter(["123456", "654321"])
    asked: list[str] = []

    def mfa_token() -> str:
        asked.append(code := next(codes))
        return code

    role = cb.assume_role(
        _static_source(),
        _role_arn("mfa"),
        serial_number="arn:aws:iam::123456789012:mfa/tester",
        mfa_token=mfa_token,
        duration_seconds=900,
        endpoint_url=sts_server.url,
    )
    role.client("sts", endpoint_url=sts_server.url).get_caller_identity()
    role.client("sts", endpoint_url=sts_server.url).get_caller_identity()
    assert asked == ["123456"]  # asked only when STS is called
    call = next(c for c in sts_server.calls if c.action == "AssumeRole")
    assert call.serial_number == "arn:aws:iam::123456789012:mfa/tester"
    assert call.token_code == "123456"
    assert call.duration_seconds == 900


def test_one_sts_client_reused_across_refreshes(sts_server: StsServer) -> None:
    source = _static_source()
    role = cb.assume_role(source, _role_arn("reuse"), endpoint_url=sts_server.url)
    cache = cb.get_cache(role)
    assert cache is not None
    provider = cache.provider
    first = cache.get()
    client = provider.client
    for _ in range(3):
        assert cache.invalidate(cache.get().access_key_id)
        cache.get()
    assert provider.client is client
    assume = [c for c in sts_server.calls if c.action == "AssumeRole"]
    assert len(assume) == 4 and cache.get().access_key_id != first.access_key_id
    # A second role from the same source and region uses the same STS client.
    other = cb.assume_role(source, _role_arn("reuse2"), endpoint_url=sts_server.url)
    other_cache = cb.get_cache(other)
    assert other_cache is not None and other_cache.provider.client is client


def test_one_sts_client_per_source_and_region(sts_server: StsServer) -> None:
    url = sts_server.url
    source = _static_source()
    middle_arn = _role_arn("middle")
    # Two sessions of one role: one source cache, so one STS client for what they assume.
    first = cb.assume_role(source, middle_arn, endpoint_url=url)
    second = cb.assume_role(source, middle_arn, endpoint_url=url)
    assert first._session is not second._session

    def client_of(role: boto3.Session) -> Any:
        cache = cb.get_cache(role)
        assert cache is not None
        return cache.provider.client

    # The clients are shared while a session uses them (the registry holds them weakly), so
    # the leaf sessions are kept alive for the comparison.
    leaf_a = cb.assume_role(first, _role_arn("leaf-a"), endpoint_url=url)
    leaf_b = cb.assume_role(second, _role_arn("leaf-b"), endpoint_url=url)
    a, b = client_of(leaf_a), client_of(leaf_b)
    assert a is b and a.meta.region_name == REGION
    leaf_c = cb.assume_role(first, _role_arn("leaf-c"), endpoint_url=url, region="eu-west-1")
    c = client_of(leaf_c)
    assert c is not a and c.meta.region_name == "eu-west-1"


def test_assume_role_failure_is_a_credentials_error(sts_server: StsServer) -> None:
    role_arn = _role_arn("denied")
    sts_server.deny_roles = {role_arn}
    role = cb.assume_role(_static_source(), role_arn, endpoint_url=sts_server.url)
    with pytest.raises(NonRecoverableError) as caught:
        role.client("sts", endpoint_url=sts_server.url).get_caller_identity()
    assert SECRET not in str(caught.value)


def test_assume_role_passes_the_limiter_through(sts_server: StsServer) -> None:
    limiter = Limiter(max_concurrency=4, name="sts")
    role = cb.assume_role(
        _static_source(), _role_arn("limiter"), limiter=limiter, endpoint_url=sts_server.url
    )
    cache = cb.get_cache(role)
    assert cache is not None and cache.limiter is limiter
    role.client("sts", endpoint_url=sts_server.url).get_caller_identity()
    assert limiter.stats()["acquired"] == 1  # the one AssumeRole call went through it


def test_assume_role_accepts_a_botocore_session(sts_server: StsServer) -> None:
    source = botocore.session.Session()
    source.set_config_variable("region", REGION)
    source.set_credentials("AKIABOTOCORESOURCE01", SECRET)
    role = cb.assume_role(source, _role_arn("botocore"), endpoint_url=sts_server.url)
    role.client("sts", endpoint_url=sts_server.url).get_caller_identity()
    assume = next(c for c in sts_server.calls if c.action == "AssumeRole")
    assert assume.signer_access_key_id == "AKIABOTOCORESOURCE01"
