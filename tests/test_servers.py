"""The local test servers speak the real protocols: botocore's own clients are the clients.

No creds_core code runs here.  If botocore's InstanceMetadataFetcher, ContainerProvider and STS
client accept these servers' answers (and fail on their faults the way they fail against AWS),
then tests of creds_core against the same servers exercise real wire formats.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import botocore
import botocore.session
import pytest
from botocore.config import Config
from botocore.credentials import ContainerProvider
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    CredentialRetrievalError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.httpsession import URLLib3Session
from botocore.parsers import ResponseParserError
from botocore.utils import ContainerMetadataFetcher, InstanceMetadataFetcher

from helpers import wait_until
from server_fixtures import ContainerServer, ImdsServer, StsServer, moto_server, servers

SECRET = servers.SENTINEL_SECRET
TOKEN = servers.SENTINEL_TOKEN
ROLE_ARN = servers.DEFAULT_ROLE_ARN
SIGNER_KEY = "AKIACREDSCORESIGNER1"
SIGNER_SECRET = "creds-core-test-signer-secret"
FAST_TIMEOUT = 0.3  # client timeout for fault tests
SLOW_LATENCY = 0.8  # server latency that outlives FAST_TIMEOUT


@pytest.fixture(autouse=True)
def _isolated_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the developer's AWS config, credentials and proxies out of every test."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_EC2_METADATA_DISABLED",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_STS",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _raw(
    server: Any,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request, for protocol details botocore hides (status codes, headers)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=2)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


# -- IMDS ----------------------------------------------------------------------------------


def _imds_fetch(server: ImdsServer, timeout: float = 1.0) -> dict[str, Any]:
    fetcher = InstanceMetadataFetcher(timeout=timeout, num_attempts=1, base_url=server.url, env={})
    result: dict[str, Any] = fetcher.retrieve_iam_role_credentials()
    return result


def test_imds_v2_through_botocore_session_and_env_endpoint(
    imds_server: ImdsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_server.url + "/")
    session = botocore.session.Session()
    provider = session.get_component("credential_provider").get_provider("iam-role")

    creds = provider.load()

    assert creds is not None
    frozen = creds.get_frozen_credentials()
    issued = imds_server.last_issued
    assert issued is not None
    assert frozen.access_key == issued.access_key_id
    assert frozen.access_key.startswith("ASIAIMDS") and len(frozen.access_key) == 20
    assert (frozen.secret_key, frozen.token) == (SECRET, TOKEN)
    assert creds._expiry_time == issued.expiration
    lifetime = (issued.expiration - _utcnow()).total_seconds()
    assert 3590 < lifetime <= 3600
    assert imds_server.requests == 3
    assert imds_server.counts == {"token": 1, "role": 1, "credentials": 1, "issued": 1}


def test_imds_every_fetch_gets_a_new_token_and_distinct_keys(imds_server: ImdsServer) -> None:
    first = _imds_fetch(imds_server)
    second = _imds_fetch(imds_server)

    assert first["role_name"] == second["role_name"] == servers.DEFAULT_ROLE_NAME
    assert first["access_key"] != second["access_key"]
    assert [c.access_key_id for c in imds_server.issued] == [
        first["access_key"],
        second["access_key"],
    ]
    assert imds_server.counts["token"] == 2
    assert imds_server.tokens_issued == 2


def test_imds_v1_is_refused_when_a_token_is_required() -> None:
    # supports_token=False: the token PUT answers 404, so botocore falls back to IMDSv1.
    with ImdsServer(supports_token=False) as server:
        assert _imds_fetch(server) == {}
        assert server.counts == {"token": 1, "role": 1, "unauthorized": 1}


def test_imds_v1_works_when_tokens_are_optional() -> None:
    with ImdsServer(supports_token=False, require_token=False, role_name="v1-role") as server:
        creds = _imds_fetch(server)
        assert creds["role_name"] == "v1-role"
        assert creds["access_key"] == server.issued[0].access_key_id
        assert server.counts == {"token": 1, "role": 1, "credentials": 1, "issued": 1}


def test_imds_token_endpoint_details(imds_server: ImdsServer) -> None:
    status, headers, token = _raw(
        imds_server,
        "PUT",
        "/latest/api/token",
        {"X-aws-ec2-metadata-token-ttl-seconds": "120"},
    )
    assert status == 200
    assert headers["x-aws-ec2-metadata-token-ttl-seconds"] == "120"
    good = {"X-aws-ec2-metadata-token": token.decode()}

    assert _raw(imds_server, "PUT", "/latest/api/token")[0] == 400  # TTL header missing
    ttl_too_long = {"X-aws-ec2-metadata-token-ttl-seconds": "21601"}
    assert _raw(imds_server, "PUT", "/latest/api/token", ttl_too_long)[0] == 400
    proxied = {"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "10.0.0.1"}
    assert _raw(imds_server, "PUT", "/latest/api/token", proxied)[0] == 403
    assert _raw(imds_server, "GET", "/latest/api/token", good)[0] == 405

    bad = {"X-aws-ec2-metadata-token": "not-a-token"}
    creds_path = "/latest/meta-data/iam/security-credentials/"
    assert _raw(imds_server, "GET", creds_path, bad)[0] == 401
    assert _raw(imds_server, "GET", creds_path)[0] == 401
    status, _, role = _raw(imds_server, "GET", creds_path, good)
    assert (status, role) == (200, servers.DEFAULT_ROLE_NAME.encode())
    assert _raw(imds_server, "GET", creds_path + "some-other-role", good)[0] == 404

    status, _, body = _raw(imds_server, "GET", "/latest/meta-data/iam/info", good)
    info = json.loads(body)
    assert status == 200
    assert info["Code"] == "Success"
    assert info["InstanceProfileArn"].endswith(":instance-profile/" + servers.DEFAULT_ROLE_NAME)

    status, _, body = _raw(imds_server, "GET", creds_path + servers.DEFAULT_ROLE_NAME, good)
    document = json.loads(body)
    assert status == 200
    assert document["Code"] == "Success" and document["Type"] == "AWS-HMAC"
    assert set(document) == {
        "Code",
        "LastUpdated",
        "Type",
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "Expiration",
    }
    datetime.datetime.strptime(document["Expiration"], "%Y-%m-%dT%H:%M:%SZ")
    assert imds_server.counts["unauthorized"] == 2
    assert imds_server.counts["bad_request"] == 2


@pytest.mark.parametrize(
    ("mode", "counts"),
    [
        ("error", {"token": 1, "role": 1, "errors": 2}),
        ("throttle", {"token": 1, "role": 1, "throttled": 2}),
        ("bad_json", {"token": 1, "role": 1, "credentials": 1}),
        ("down", {"token": 1, "role": 1, "dropped": 2}),
        ("hang", {"token": 1, "role": 1, "hung": 2}),
        ("slow", {"token": 1, "role": 1}),
    ],
)
def test_imds_faults_fail_botocore_fetch(mode: servers.Mode, counts: dict[str, int]) -> None:
    with ImdsServer(mode=mode, latency=SLOW_LATENCY) as server:
        assert _imds_fetch(server, timeout=FAST_TIMEOUT) == {}
        assert server.counts == counts
        assert server.issued == []


def test_imds_slow_within_client_timeout_succeeds() -> None:
    with ImdsServer(mode="slow", latency=0.15) as server:
        started = time.monotonic()
        creds = _imds_fetch(server, timeout=2.0)
        elapsed = time.monotonic() - started
        assert creds["access_key"] == server.issued[0].access_key_id
        assert elapsed >= 3 * 0.15  # token, role and credentials were each delayed


def test_imds_expired_credentials_are_in_the_past() -> None:
    with ImdsServer(mode="expired") as server:
        creds = _imds_fetch(server)
        issued = server.issued[0]
        assert issued.expiration < _utcnow() - datetime.timedelta(seconds=200)
        # botocore's static stability: it extends credentials IMDS sent already expired.
        assert creds["access_key"] == issued.access_key_id
        extended = datetime.datetime.strptime(creds["expiry_time"], "%Y-%m-%dT%H:%M:%SZ")
        assert extended.replace(tzinfo=datetime.timezone.utc) > _utcnow()


def test_imds_goes_down_after_first_fetch(imds_server: ImdsServer) -> None:
    assert _imds_fetch(imds_server, timeout=FAST_TIMEOUT)["access_key"]
    imds_server.mode = "down"
    assert _imds_fetch(imds_server, timeout=FAST_TIMEOUT) == {}
    imds_server.mode = "ok"
    assert _imds_fetch(imds_server, timeout=FAST_TIMEOUT)["access_key"]
    assert imds_server.counts["dropped"] == 2
    assert imds_server.counts["issued"] == 2
    assert imds_server.requests == 8


# -- container endpoint --------------------------------------------------------------------


def _container_provider(
    server: ContainerServer, token: str | None = None, timeout: float = 1.0
) -> ContainerProvider:
    environ = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": server.credentials_url}
    if token is not None:
        environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = token
    fetcher = ContainerMetadataFetcher(
        session=URLLib3Session(timeout=timeout), sleep=lambda seconds: None
    )
    return ContainerProvider(environ=environ, fetcher=fetcher)


def test_container_provider_with_env_and_auth_token(monkeypatch: pytest.MonkeyPatch) -> None:
    with ContainerServer(auth_token="Bearer pod-token-1", account_id="210987654321") as server:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", server.credentials_url)
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer pod-token-1")

        creds = ContainerProvider().load()

        frozen = creds.get_frozen_credentials()
        issued = server.issued[0]
        assert frozen.access_key == issued.access_key_id
        assert frozen.access_key.startswith("ASIACONT") and len(frozen.access_key) == 20
        assert (frozen.secret_key, frozen.token) == (SECRET, TOKEN)
        assert creds.account_id == "210987654321"
        assert creds._expiry_time == issued.expiration
        assert server.last_authorization == "Bearer pod-token-1"
        assert server.counts == {"credentials": 1, "issued": 1}


def test_container_document_shape(container_server: ContainerServer) -> None:
    status, headers, body = _raw(container_server, "GET", "/creds")
    document = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert set(document) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn"}
    assert document["RoleArn"] == ROLE_ARN
    assert _raw(container_server, "GET", "/elsewhere")[0] == 404
    assert container_server.counts == {"credentials": 1, "other": 1, "issued": 1}


def test_container_any_path_when_path_is_none() -> None:
    with ContainerServer(path=None) as server:
        assert _raw(server, "GET", "/v2/credentials/some-id")[0] == 200
        assert _raw(server, "GET", "/")[0] == 200
        assert server.counts["issued"] == 2


@pytest.mark.parametrize("token", [None, "Bearer wrong"])
def test_container_wrong_or_missing_token_is_401_without_secrets(token: str | None) -> None:
    with ContainerServer(auth_token="Bearer right") as server:
        with pytest.raises(CredentialRetrievalError) as caught:
            _container_provider(server, token).load()
        assert "401" in str(caught.value)
        assert SECRET not in str(caught.value) and TOKEN not in str(caught.value)
        attempts = ContainerMetadataFetcher.RETRY_ATTEMPTS
        assert server.counts == {"credentials": attempts, "unauthorized": attempts}
        assert server.last_authorization == token
        assert server.issued == []


def test_container_token_file_is_reread(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("Bearer first")
    with ContainerServer(auth_token="Bearer first") as server:
        environ = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": server.credentials_url,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
        }
        provider = ContainerProvider(environ=environ)
        creds = provider.load()
        assert server.last_authorization == "Bearer first"

        token_file.write_text("Bearer second")
        server.auth_token = "Bearer second"
        creds._refresh_using()  # botocore's refresh callback: reads the file again

        assert server.last_authorization == "Bearer second"
        assert server.counts == {"credentials": 2, "issued": 2}


@pytest.mark.parametrize(
    ("mode", "outcome"),
    [
        ("error", "errors"),
        ("throttle", "throttled"),
        ("bad_json", None),
        ("down", "dropped"),
        ("hang", "hung"),
        ("slow", None),
    ],
)
def test_container_faults_fail_botocore_provider(mode: servers.Mode, outcome: str | None) -> None:
    attempts = ContainerMetadataFetcher.RETRY_ATTEMPTS
    with ContainerServer(mode=mode, latency=SLOW_LATENCY) as server:
        with pytest.raises(CredentialRetrievalError):
            _container_provider(server, timeout=FAST_TIMEOUT).load()
        counts = server.counts
        assert counts["credentials"] == attempts
        if outcome is not None:
            assert counts[outcome] == attempts
        if mode == "slow":
            # The first slow answer may be written (and counted) after the client gave up.
            assert set(counts) <= {"credentials", "issued"}
        else:
            assert set(counts) == {"credentials", outcome} - {None}
            assert server.issued == []


def test_container_expired_credentials_fail_botocore_refresh() -> None:
    with ContainerServer(mode="expired") as server:
        creds = _container_provider(server).load()
        with pytest.raises(RuntimeError, match="still expired"):
            creds.get_frozen_credentials()
        assert all(c.expiration < _utcnow() for c in server.issued)
        assert server.counts == {"credentials": 2, "issued": 2}


def test_container_slow_within_timeout_succeeds() -> None:
    with ContainerServer(mode="slow", latency=0.2) as server:
        started = time.monotonic()
        creds = _container_provider(server, timeout=2.0).load()
        assert time.monotonic() - started >= 0.2
        assert creds.access_key == server.issued[0].access_key_id


# -- STS -----------------------------------------------------------------------------------


@contextmanager
def _sts_client(
    url: str,
    *,
    key: str = SIGNER_KEY,
    secret: str = SIGNER_SECRET,
    token: str | None = None,
    **config: Any,
) -> Iterator[Any]:
    session = boto3.session.Session(
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        region_name="us-east-1",
    )
    options: dict[str, Any] = {
        "retries": {"total_max_attempts": 1},
        "connect_timeout": 1,
        "read_timeout": 2,
    }
    options.update(config)
    client = session.client("sts", endpoint_url=url, config=Config(**options))
    try:
        yield client
    finally:
        client.close()


def _error(exc: ClientError) -> tuple[str, int, str]:
    response: Any = exc.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def test_sts_assume_role(sts_server: StsServer) -> None:
    with _sts_client(sts_server.url) as sts:
        result = sts.assume_role(
            RoleArn=ROLE_ARN,
            RoleSessionName="creds-core-session",
            ExternalId="external-1",
            SerialNumber="arn:aws:iam::123456789012:mfa/user",
            TokenCode="123456",
        )

    creds = result["Credentials"]
    issued = sts_server.issued[0]
    assert creds["AccessKeyId"] == issued.access_key_id
    assert creds["AccessKeyId"].startswith("ASIASTS") and len(creds["AccessKeyId"]) == 20
    assert (creds["SecretAccessKey"], creds["SessionToken"]) == (SECRET, TOKEN)
    assert creds["Expiration"] == issued.expiration
    assert 3590 < (creds["Expiration"] - _utcnow()).total_seconds() <= 3600
    assert result["AssumedRoleUser"]["Arn"] == (
        "arn:aws:sts::123456789012:assumed-role/creds-core-test-role/creds-core-session"
    )
    assert result["AssumedRoleUser"]["AssumedRoleId"].endswith(":creds-core-session")
    assert "PackedPolicySize" not in result  # STS only sends it for session policies

    (call,) = sts_server.calls
    assert call.action == "AssumeRole" and call.outcome == "ok"
    assert call.role_arn == ROLE_ARN
    assert call.role_session_name == "creds-core-session"
    assert call.external_id == "external-1"
    assert call.serial_number == "arn:aws:iam::123456789012:mfa/user"
    assert call.token_code == "123456"
    assert call.signer_access_key_id == SIGNER_KEY
    assert call.issued_access_key_id == creds["AccessKeyId"]
    assert sts_server.counts == {"AssumeRole": 1, "issued": 1}


def test_sts_duration_seconds_and_policy(sts_server: StsServer) -> None:
    with _sts_client(sts_server.url) as sts:
        result = sts.assume_role(
            RoleArn=ROLE_ARN,
            RoleSessionName="short",
            DurationSeconds=900,
            Policy='{"Version":"2012-10-17","Statement":[]}',
        )
    lifetime = (result["Credentials"]["Expiration"] - _utcnow()).total_seconds()
    assert 890 < lifetime <= 900
    assert result["PackedPolicySize"] == 6
    assert sts_server.calls[0].duration_seconds == 900


def test_sts_rate_limit_answers_throttling() -> None:
    with StsServer(rate=0.01, burst=2) as server, _sts_client(server.url) as sts:
        sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="one")
        sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="two")
        with pytest.raises(ClientError) as caught:
            sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="three")

        assert _error(caught.value) == ("Throttling", 400, "Rate exceeded")
        assert caught.value.response["Error"]["Type"] == "Sender"
        assert server.counts == {"AssumeRole": 3, "issued": 2, "throttled": 1}
        assert [c.outcome for c in server.calls] == ["ok", "ok", "throttled"]


def test_sts_throttle_mode_and_recovery(sts_server: StsServer) -> None:
    sts_server.mode = "throttle"
    with _sts_client(sts_server.url) as sts:
        with pytest.raises(ClientError) as caught:
            sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="throttled")
        assert _error(caught.value)[:2] == ("Throttling", 400)
        sts_server.mode = "ok"
        assert sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="fine")["Credentials"]
    assert sts_server.counts == {"AssumeRole": 2, "throttled": 1, "issued": 1}


def test_sts_access_denied_for_denied_roles() -> None:
    denied = "arn:aws:iam::123456789012:role/forbidden"
    with StsServer(deny_roles={denied}) as server, _sts_client(server.url) as sts:
        with pytest.raises(ClientError) as caught:
            sts.assume_role(RoleArn=denied, RoleSessionName="nope")
        code, status, message = _error(caught.value)
        assert (code, status) == ("AccessDenied", 403)
        assert message == (
            f"User: {servers.DEFAULT_CALLER_ARN} is not authorized to perform: "
            f"sts:AssumeRole on resource: {denied}"
        )
        assert sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="allowed")["Credentials"]

        server.deny_roles = lambda arn: arn.endswith("/blocked")
        with pytest.raises(ClientError) as caught:
            sts.assume_role(
                RoleArn="arn:aws:iam::123456789012:role/blocked", RoleSessionName="pred"
            )
        assert _error(caught.value)[:2] == ("AccessDenied", 403)
        assert server.counts == {"AssumeRole": 3, "denied": 2, "issued": 1}


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


@pytest.mark.parametrize("signed_client", [True, False])
def test_sts_web_identity_is_unsigned(sts_server: StsServer, signed_client: bool) -> None:
    token = _jwt(
        {
            "sub": "system:serviceaccount:ns:sa",
            "aud": "sts.amazonaws.com",
            "iss": "https://oidc.test",
        }
    )
    config: dict[str, Any] = {} if signed_client else {"signature_version": botocore.UNSIGNED}
    with _sts_client(sts_server.url, **config) as sts:
        result = sts.assume_role_with_web_identity(
            RoleArn=ROLE_ARN, RoleSessionName="pod", WebIdentityToken=token
        )
    assert result["Credentials"]["AccessKeyId"] == sts_server.issued[0].access_key_id
    assert result["SubjectFromWebIdentityToken"] == "system:serviceaccount:ns:sa"
    assert result["Audience"] == "sts.amazonaws.com"
    assert result["Provider"] == "oidc.test"
    (call,) = sts_server.calls
    assert call.action == "AssumeRoleWithWebIdentity"
    assert call.signer_access_key_id is None
    assert call.web_identity_token == token
    assert token not in repr(call)
    assert sts_server.counts == {"AssumeRoleWithWebIdentity": 1, "issued": 1}


def test_sts_assume_role_requires_a_signature(sts_server: StsServer) -> None:
    with _sts_client(sts_server.url, signature_version=botocore.UNSIGNED) as sts:
        with pytest.raises(ClientError) as caught:
            sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="anonymous")
    assert _error(caught.value)[:2] == ("MissingAuthenticationToken", 403)
    assert sts_server.counts == {"AssumeRole": 1, "unauthenticated": 1}
    assert sts_server.issued == []


def test_sts_get_caller_identity_knows_assumed_roles(sts_server: StsServer) -> None:
    with _sts_client(sts_server.url) as sts:
        assert sts.get_caller_identity()["Arn"] == servers.DEFAULT_CALLER_ARN
        creds = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="who")["Credentials"]
    with _sts_client(
        sts_server.url,
        key=creds["AccessKeyId"],
        secret=creds["SecretAccessKey"],
        token=creds["SessionToken"],
    ) as assumed:
        identity = assumed.get_caller_identity()
    assert identity["Arn"] == "arn:aws:sts::123456789012:assumed-role/creds-core-test-role/who"
    assert identity["Account"] == "123456789012"
    assert sts_server.counts == {"GetCallerIdentity": 2, "AssumeRole": 1, "issued": 1}


@pytest.mark.parametrize(
    ("mode", "error", "outcome"),
    [
        ("error", ClientError, "errors"),
        ("hang", ReadTimeoutError, "hung"),
        ("down", ConnectionClosedError, "dropped"),
        ("bad_json", ResponseParserError, "issued"),
        ("slow", ReadTimeoutError, None),
    ],
)
def test_sts_faults(mode: servers.Mode, error: type[Exception], outcome: str | None) -> None:
    with StsServer(mode=mode, latency=SLOW_LATENCY) as server:
        with _sts_client(server.url, read_timeout=FAST_TIMEOUT) as sts:
            with pytest.raises(error) as caught:
                sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="fault")
        if isinstance(caught.value, ClientError):
            assert _error(caught.value)[:2] == ("InternalFailure", 500)
            assert caught.value.response["Error"]["Type"] == "Receiver"
        expected = {"AssumeRole": 1}
        if outcome is not None:
            expected[outcome] = 1
        assert server.counts == expected


def test_sts_expired_and_slow_answers() -> None:
    with StsServer(mode="expired") as server, _sts_client(server.url) as sts:
        creds = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="old")["Credentials"]
        assert creds["Expiration"] < _utcnow() - datetime.timedelta(seconds=200)
        server.mode = "slow"
        server.latency = 0.2
        started = time.monotonic()
        assert sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="slow")["Credentials"]
        assert time.monotonic() - started >= 0.2
        assert server.counts == {"AssumeRole": 2, "issued": 2}


def test_sts_counters_are_thread_safe(sts_server: StsServer) -> None:
    with _sts_client(sts_server.url, max_pool_connections=16) as sts:

        def assume(i: int) -> str:
            result = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName=f"s{i}")
            key: str = result["Credentials"]["AccessKeyId"]
            return key

        with ThreadPoolExecutor(max_workers=16) as pool:
            keys = list(pool.map(assume, range(80)))

    assert len(set(keys)) == 80
    assert sts_server.requests == 80
    assert sts_server.counts == {"AssumeRole": 80, "issued": 80}
    assert {c.role_session_name for c in sts_server.calls} == {f"s{i}" for i in range(80)}


# -- shared behaviour ----------------------------------------------------------------------


def test_lifecycle_address_and_mode_validation() -> None:
    server = StsServer()
    with pytest.raises(RuntimeError):
        _ = server.port
    with pytest.raises(ValueError):
        server.mode = "sideways"  # type: ignore[assignment]
    with server:
        assert server.host == "127.0.0.1"
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.serving
        port = server.port
    assert not server.serving
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_max_requests_bounds_the_server() -> None:
    with StsServer(max_requests=2) as server, _sts_client(server.url) as sts:
        sts.get_caller_identity()
        sts.get_caller_identity()
        with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
            sts.get_caller_identity()
        assert server.requests == 2
        assert server.exhausted


def test_max_seconds_bounds_the_server() -> None:
    with ImdsServer(max_seconds=0.2) as server:
        wait_until(lambda: not server.serving, "the server stopped after its max_seconds")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_hang_is_released_by_stop() -> None:
    server = ContainerServer(mode="hang", hang_seconds=30).start()
    outcome: list[BaseException | None] = []

    def fetch() -> None:
        try:
            _raw(server, "GET", "/creds")
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=fetch)
    thread.start()
    assert server.wait_for_requests(1, timeout=2)
    started = time.monotonic()
    server.stop()
    thread.join(timeout=3)
    assert time.monotonic() - started < 2
    assert len(outcome) == 1 and isinstance(outcome[0], http.client.RemoteDisconnected)
    assert server.counts == {"credentials": 1, "hung": 1}


def test_clock_sets_expiry() -> None:
    fixed = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    with StsServer(clock=fixed.timestamp, credential_lifetime=1800) as server:
        with _sts_client(server.url) as sts:
            creds = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="clock")["Credentials"]
    assert creds["Expiration"] == fixed + datetime.timedelta(seconds=1800)


def test_no_secrets_in_logs_or_reprs(
    caplog: pytest.LogCaptureFixture, imds_server: ImdsServer, sts_server: StsServer
) -> None:
    caplog.set_level(logging.DEBUG, logger=servers.LOG.name)
    with ContainerServer(auth_token="Bearer container-secret-token") as container:
        assert _imds_fetch(imds_server)["access_key"]
        assert _container_provider(container, "Bearer container-secret-token").load()
        with _sts_client(sts_server.url) as sts:
            sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="logs", TokenCode="654321")
            sts.assume_role_with_web_identity(
                RoleArn=ROLE_ARN, RoleSessionName="web", WebIdentityToken="web-identity-secret"
            )
        query = (
            "/?Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleSessionName=qs"
            f"&RoleArn={ROLE_ARN}&WebIdentityToken=query-string-secret"
        )
        assert _raw(sts_server, "GET", query)[0] == 200
        reprs = [repr(s) for s in (imds_server, sts_server, container)]
        reprs += [repr(c) for s in (imds_server, sts_server, container) for c in s.issued]
        reprs += [repr(c) for c in sts_server.calls]

    ours = "\n".join(r.getMessage() for r in caplog.records if r.name == servers.LOG.name)
    assert "GET /latest/meta-data/iam/security-credentials/" in ours
    assert "POST / " in ours
    for text in [ours, *reprs]:
        for secret in (
            SECRET,
            TOKEN,
            "container-secret-token",
            "web-identity-secret",
            "query-string-secret",
            "654321",
        ):
            assert secret not in text
    assert "GET /?<redacted> " in ours


# -- moto ----------------------------------------------------------------------------------


def test_moto_assume_role_then_s3_with_assumed_credentials(moto_endpoint: str) -> None:
    assert moto_endpoint.startswith("http://127.0.0.1:")
    with _sts_client(moto_endpoint, key="testing", secret="testing") as sts:
        result = sts.assume_role(
            RoleArn="arn:aws:iam::123456789012:role/moto-role", RoleSessionName="creds-core"
        )
    creds = result["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")

    session = boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name="us-east-1",
    )
    s3 = session.client("s3", endpoint_url=moto_endpoint)
    sts = session.client("sts", endpoint_url=moto_endpoint)
    try:
        bucket = f"creds-core-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert sts.get_caller_identity()["Arn"] == (
            "arn:aws:sts::123456789012:assumed-role/moto-role/creds-core"
        )
    finally:
        s3.close()
        sts.close()


def test_moto_server_request_budget() -> None:
    with moto_server(max_requests=1) as url, _sts_client(url, key="testing") as sts:
        assert sts.get_caller_identity()["Account"] == "123456789012"
        with pytest.raises(ClientError) as caught:
            sts.get_caller_identity()
        assert _error(caught.value)[:2] == ("ServiceUnavailable", 503)
