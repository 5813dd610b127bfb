"""Unit tests of the providers against real local endpoints (the project's test servers, moto,
real subprocesses); nothing is mocked and nothing leaves loopback (``no_network``)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import botocore.credentials
import botocore.session
import pytest
from aws_isolation import NonLoopbackConnection
from botocore import exceptions as bce
from botocore.utils import ContainerMetadataFetcher

from creds_core import (
    CredentialCache,
    Credentials,
    CredentialsError,
    CredentialsNotLoaded,
    NonRecoverableError,
    Provider,
    ProviderChain,
    ProviderError,
    UserActionRequired,
)
from creds_core.providers import (
    AssumeRoleProvider,
    ConfigFileProvider,
    ConfigSource,
    ContainerProvider,
    EnvironmentProvider,
    InstanceMetadataProvider,
    ProcessProvider,
    ProfileAssumeRoleProvider,
    SharedCredentialsProvider,
    StaticProvider,
    WebIdentityProvider,
    default_chain,
)
from creds_core.providers import errors as cerr
from creds_core.providers._sts import sts_client
from creds_core.providers.container import ALLOWED_HOSTS
from server_fixtures import ContainerServer, ImdsServer, StsServer, servers

SECRET = servers.SENTINEL_SECRET
TOKEN = servers.SENTINEL_TOKEN
ROLE = "arn:aws:iam::123456789012:role/unit-role"


@pytest.fixture(autouse=True)
def _isolated(isolated_aws: Path) -> None:
    pass


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


class Files:
    def __init__(self, root: Path) -> None:
        self.root = root

    def config(self, text: str) -> None:
        (self.root / "config").write_text(textwrap.dedent(text))

    def credentials(self, text: str) -> None:
        (self.root / "credentials").write_text(textwrap.dedent(text))

    def write(self, name: str, text: str) -> str:
        path = self.root / name
        path.write_text(text)
        return str(path)

    def script(self, name: str, body: str) -> list[str]:
        return [sys.executable, self.write(name, textwrap.dedent(body))]


def assert_no_secret(exc: BaseException, *secrets: str) -> None:
    """Neither the error nor anything it chains shows a secret."""
    seen: BaseException | None = exc
    while seen is not None:
        for secret in (SECRET, TOKEN, *secrets):
            assert secret not in str(seen), seen
            assert secret not in repr(seen), seen
            assert secret not in repr(getattr(seen, "args", ())), seen
        seen = seen.__cause__ or seen.__context__


# -- error mapping ---------------------------------------------------------------------------


def client_error(code: str, status: int, message: str = "m") -> bce.ClientError:
    return bce.ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "AssumeRole",
    )


@pytest.mark.parametrize("code", sorted(cerr.THROTTLING_CODES))
def test_throttling_codes_are_recoverable(code: str) -> None:
    exc = client_error(code, 400)
    mapped = cerr.from_exception(exc, provider="p")
    assert type(mapped) is ProviderError
    assert mapped.code == code and mapped.provider == "p"
    assert "throttled" in str(mapped)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_recoverable(status: int) -> None:
    mapped = cerr.from_exception(client_error("InternalFailure", status), provider="p")
    assert type(mapped) is ProviderError and mapped.code == "InternalFailure"


def test_unknown_5xx_code_and_429_are_recoverable() -> None:
    assert type(cerr.from_exception(client_error("Weird", 503), provider="p")) is ProviderError
    assert type(cerr.from_exception(client_error("Weird", 429), provider="p")) is ProviderError


@pytest.mark.parametrize(
    "code",
    [
        "AccessDenied",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ValidationError",
        "RegionDisabledException",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidIdentityToken",
    ],
)
def test_denials_and_validation_are_not_recoverable(code: str) -> None:
    mapped = cerr.from_exception(client_error(code, 403), provider="assume-role")
    assert type(mapped) is NonRecoverableError
    assert mapped.code == code
    assert str(mapped).startswith("assume-role: ")


def test_unknown_4xx_is_not_recoverable_but_idp_communication_is() -> None:
    assert type(cerr.from_exception(client_error("Nope", 400), provider="p")) is (
        NonRecoverableError
    )
    idp = cerr.from_exception(client_error("IDPCommunicationError", 400), provider="p")
    assert type(idp) is ProviderError


@pytest.mark.parametrize(
    "exc",
    [
        bce.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        bce.ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
        bce.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        bce.ConnectionClosedError(endpoint_url="http://127.0.0.1:1"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_network_errors_are_recoverable(exc: Exception) -> None:
    mapped = cerr.from_exception(exc, provider="p")
    assert type(mapped) is ProviderError
    assert mapped.code == type(exc).__name__


@pytest.mark.parametrize(
    "exc",
    [
        bce.ProfileNotFound(profile="x"),
        bce.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
        bce.InvalidConfigError(error_msg="bad"),
        bce.InfiniteLoopConfigError(source_profile="a", visited_profiles=["a", "b"]),
        bce.ConfigParseError(path="/x"),
        bce.NoRegionError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_configuration_errors_are_not_recoverable(exc: Exception) -> None:
    mapped = cerr.from_exception(exc, provider="p")
    assert type(mapped) is NonRecoverableError
    assert mapped.code == type(exc).__name__
    assert "fix the configuration" in str(mapped)


def test_no_credentials_is_not_loaded_and_creds_core_errors_pass_through() -> None:
    mapped = cerr.from_exception(bce.NoCredentialsError(), provider="p")
    assert type(mapped) is CredentialsNotLoaded
    own = cerr.recoverable("p", "x", code="C")
    assert cerr.from_exception(own, provider="q") is own


def test_unexpected_exceptions_are_recoverable() -> None:
    mapped = cerr.from_exception(RuntimeError("boom"), provider="p")
    assert type(mapped) is ProviderError and mapped.code == "RuntimeError"


def test_mapped_errors_chain_the_original_through_raise_from() -> None:
    original = client_error("AccessDenied", 403)
    with pytest.raises(NonRecoverableError) as info:
        try:
            raise original
        except bce.ClientError as exc:
            raise cerr.from_exception(exc, provider="p") from exc
    assert info.value.__cause__ is original


def test_classify_code() -> None:
    assert cerr.classify_code("Throttling") == "recoverable"
    assert cerr.classify_code("AccessDenied", 403) == "non_recoverable"
    assert cerr.classify_code(None, 500) == "recoverable"
    assert cerr.classify_code(None, 404) == "non_recoverable"


# -- environment and static ------------------------------------------------------------------


def test_environment_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = EnvironmentProvider()
    with pytest.raises(CredentialsNotLoaded):
        provider.provide()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    with pytest.raises(NonRecoverableError) as info:
        provider.provide()
    assert info.value.code == "PartialCredentialsError"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", "2099-01-02T03:04:05Z")
    monkeypatch.setenv("AWS_ACCOUNT_ID", "111122223333")
    creds = provider.provide()
    assert (creds.access_key_id, creds.session_token, creds.provider_name) == (
        "AKIDENV",
        TOKEN,
        "env",
    )
    assert creds.expiry == dt.datetime(2099, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert creds.account_id == "111122223333"
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "older-name")  # botocore reads it first
    assert provider.provide().session_token == "older-name"
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", "tomorrow-ish")
    with pytest.raises(NonRecoverableError):
        provider.provide()


def test_environment_is_read_again_on_every_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = EnvironmentProvider()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDONE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    assert provider.provide().access_key_id == "AKIDONE"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTWO")
    assert provider.provide().access_key_id == "AKIDTWO"


def test_static_provider() -> None:
    provider = StaticProvider("AKIDSTATIC", SECRET, TOKEN)
    creds = CredentialCache(provider).get()
    assert creds.access_key_id == "AKIDSTATIC" and creds.provider_name == "explicit"
    assert SECRET not in repr(provider)
    assert provider.fallback_on_interrupt() == provider.credentials
    with pytest.raises(TypeError):
        StaticProvider("AKID")


# -- shared files ----------------------------------------------------------------------------


def test_shared_credentials_file_is_reread(files: Files) -> None:
    files.credentials(
        f"[default]\naws_access_key_id = AKIDFIRST\naws_secret_access_key = {SECRET}\n"
    )
    provider = SharedCredentialsProvider()
    assert provider.provide().access_key_id == "AKIDFIRST"
    time.sleep(0.01)
    files.credentials("[default]\naws_access_key_id = AKIDSECOND12\naws_secret_access_key = x\n")
    assert provider.provide().access_key_id == "AKIDSECOND12"
    assert provider.provide().provider_name == "shared-credentials-file"


def test_config_file_provider_and_missing_files(files: Files) -> None:
    provider = ConfigFileProvider("work")
    with pytest.raises(CredentialsNotLoaded):
        provider.provide()
    files.config(
        f"[profile work]\naws_access_key_id = AKIDWORK\naws_secret_access_key = {SECRET}\n"
    )
    creds = provider.provide()
    assert (creds.access_key_id, creds.provider_name) == ("AKIDWORK", "config-file")


def test_unparsable_config_file_is_not_recoverable(files: Files) -> None:
    files.config("[profile broken\n")
    with pytest.raises(NonRecoverableError) as info:
        ConfigFileProvider("broken").provide()
    assert info.value.code == "ConfigParseError"


# -- credential_process ------------------------------------------------------------------------


PROCESS_OK = f"""\
    import json
    print(json.dumps({{"Version": 1, "AccessKeyId": "AKIDPROC", "SecretAccessKey": {SECRET!r},
                      "SessionToken": {TOKEN!r}, "Expiration": "2099-01-01T00:00:00Z",
                      "AccountId": "444455556666"}}))
"""


def test_process_provider_ok(files: Files) -> None:
    creds = ProcessProvider(files.script("ok.py", PROCESS_OK)).provide()
    assert (creds.access_key_id, creds.provider_name, creds.account_id) == (
        "AKIDPROC",
        "custom-process",
        "444455556666",
    )
    assert creds.expiry == dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)


def test_process_from_profile_with_shell_style_command(files: Files) -> None:
    script = files.write("ok.py", textwrap.dedent(PROCESS_OK))
    files.config(f"[profile proc]\ncredential_process = {sys.executable} {script}\n")
    assert ProcessProvider(profile="proc").provide().access_key_id == "AKIDPROC"
    with pytest.raises(CredentialsNotLoaded):
        ProcessProvider(profile="other").provide()


def test_process_timeout(files: Files) -> None:
    command = files.script("slow.py", "import time\ntime.sleep(30)\n")
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        ProcessProvider(command, timeout=0.5).provide()
    assert time.monotonic() - started < 10
    assert type(info.value) is ProviderError
    assert info.value.code == "ProcessTimedOut"
    assert "0.5 s" in str(info.value)


def test_process_bad_exit_code_shows_last_stderr_line_never_stdout(files: Files) -> None:
    command = files.script(
        "fail.py",
        f"""\
        import sys
        print({SECRET!r})
        sys.stderr.write("first line\\nsso session expired, run aws sso login\\n\\n")
        sys.exit(2)
        """,
    )
    with pytest.raises(ProviderError) as info:
        ProcessProvider(command).provide()
    assert type(info.value) is ProviderError
    assert info.value.code == "ProcessFailed"
    message = str(info.value)
    assert "status 2" in message
    assert "sso session expired, run aws sso login" in message
    assert "first line" not in message
    assert_no_secret(info.value)


def test_process_bad_json_never_leaks_stdout(files: Files) -> None:
    command = files.script("junk.py", f"print('AccessKeyId=AKIDX Secret={SECRET}')\n")
    with pytest.raises(ProviderError) as info:
        ProcessProvider(command).provide()
    assert type(info.value) is ProviderError
    assert info.value.code == "MalformedResponse"
    assert info.value.__cause__ is not None  # chained, scrubbed
    assert_no_secret(info.value)


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ({"Version": 2, "AccessKeyId": "A", "SecretAccessKey": "S"}, "UnsupportedVersion"),
        ({"AccessKeyId": "A", "SecretAccessKey": "S"}, "UnsupportedVersion"),
        ({"Version": 1, "AccessKeyId": "A"}, "MissingKey"),
        ({"Version": 1, "SecretAccessKey": SECRET}, "MissingKey"),
    ],
)
def test_process_bad_documents_are_not_recoverable(
    files: Files, document: dict[str, Any], code: str
) -> None:
    command = files.script("doc.py", f"import json\nprint(json.dumps({document!r}))\n")
    with pytest.raises(NonRecoverableError) as info:
        ProcessProvider(command).provide()
    assert info.value.code == code
    assert_no_secret(info.value)


def test_process_that_cannot_start() -> None:
    with pytest.raises(NonRecoverableError) as info:
        ProcessProvider(["/nonexistent/creds-helper"]).provide()
    assert info.value.code == "ProcessNotStarted"


# -- container -------------------------------------------------------------------------------


def test_allowed_hosts_match_botocore() -> None:
    assert set(ALLOWED_HOSTS) == set(ContainerMetadataFetcher._ALLOWED_HOSTS)


def test_container_not_configured() -> None:
    with pytest.raises(CredentialsNotLoaded):
        ContainerProvider().provide()


@pytest.mark.parametrize(
    "url",
    ["http://192.0.2.1/creds", "http://169.254.170.2.example.com/creds", "ftp://127.0.0.1/c"],
)
def test_container_refuses_hosts_botocore_refuses(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)
    with pytest.raises(NonRecoverableError):
        ContainerProvider().provide()


def test_container_relative_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    with ContainerServer(path="/v2/credentials/abc") as server:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc")
        assert ContainerProvider().url() == "http://169.254.170.2/v2/credentials/abc"
        provider = ContainerProvider(relative_uri_base=server.url)
        creds = provider.provide()
    assert creds.provider_name == "container-role"
    assert creds.access_key_id == server.issued[0].access_key_id


def test_container_token_file_is_read_on_every_fetch(
    monkeypatch: pytest.MonkeyPatch, files: Files, container_server: ContainerServer
) -> None:
    token_file = files.write("token", "token-one")
    container_server.auth_token = "token-one"
    container_server.account_id = "777788889999"
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", container_server.credentials_url)
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file)
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ignored-when-a-file-is-set")
    cache = CredentialCache(ContainerProvider(retry_delay=0))
    first = cache.get()
    assert container_server.last_authorization == "token-one"
    assert first.account_id == "777788889999"
    # The agent rotates the token: the next fetch must send the new one.
    files.write("token", "token-two")
    container_server.auth_token = "token-two"
    cache.invalidate(first.access_key_id)
    second = cache.get()
    assert container_server.last_authorization == "token-two"
    assert second.access_key_id != first.access_key_id
    assert container_server.counts["unauthorized"] == 0


def test_container_bad_token_is_not_recoverable(
    monkeypatch: pytest.MonkeyPatch, container_server: ContainerServer
) -> None:
    container_server.auth_token = "right"
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", container_server.credentials_url)
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong")
    with pytest.raises(NonRecoverableError) as info:
        ContainerProvider(retry_delay=0).provide()
    assert info.value.code == "AccessDeniedException"
    assert container_server.counts["credentials"] == 1  # not retried
    assert "wrong" not in str(info.value)
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "two\nlines")
    with pytest.raises(NonRecoverableError):
        ContainerProvider(retry_delay=0).provide()


@pytest.mark.parametrize(
    ("mode", "code", "tries"),
    [("error", "InternalServerError", 3), ("throttle", "ThrottlingException", 3)],
)
def test_container_failures_are_retried_then_recoverable(
    monkeypatch: pytest.MonkeyPatch,
    container_server: ContainerServer,
    mode: servers.Mode,
    code: str,
    tries: int,
) -> None:
    container_server.mode = mode
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", container_server.credentials_url)
    with pytest.raises(ProviderError) as info:
        ContainerProvider(retry_delay=0, attempts=tries).provide()
    assert type(info.value) is ProviderError and info.value.code == code
    assert container_server.counts["credentials"] == tries


def test_container_bad_json_and_down(
    monkeypatch: pytest.MonkeyPatch, container_server: ContainerServer
) -> None:
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", container_server.credentials_url)
    container_server.mode = "bad_json"
    with pytest.raises(ProviderError) as info:
        ContainerProvider(retry_delay=0, attempts=1).provide()
    assert info.value.code == "MalformedResponse"
    container_server.mode = "down"
    with pytest.raises(ProviderError) as info:
        ContainerProvider(retry_delay=0, attempts=2).provide()
    assert type(info.value) is ProviderError
    assert info.value.code in {"ConnectionClosedError", "EndpointConnectionError"}


# -- IMDS ------------------------------------------------------------------------------------


@pytest.fixture
def imds_env(monkeypatch: pytest.MonkeyPatch, imds_server: ImdsServer) -> ImdsServer:
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_server.url)
    return imds_server


def test_imds_reuses_its_session_token(imds_env: ImdsServer) -> None:
    provider = InstanceMetadataProvider()
    first = provider.provide()
    second = provider.provide()
    third = provider.provide()
    assert first.provider_name == "iam-role"
    assert len({first.access_key_id, second.access_key_id, third.access_key_id}) == 3
    assert imds_env.counts["token"] == 1
    assert imds_env.tokens_issued == 1
    assert provider.tokens_fetched == 1
    assert imds_env.counts["credentials"] == 3


@pytest.mark.parametrize("mode", ["error", "throttle", "bad_json"])
def test_imds_failing_before_any_success_is_nothing_here_then_recoverable_after_one(
    imds_env: ImdsServer, mode: str
) -> None:
    # botocore: IMDS failing on a first load means no credentials (the chain ends with none).
    imds_env.mode = mode
    with pytest.raises(CredentialsNotLoaded):
        InstanceMetadataProvider().provide()
    # Once it has served, a failure is recoverable: the cache keeps serving (static stability).
    provider = InstanceMetadataProvider()
    imds_env.mode = "ok"
    cache = CredentialCache(provider, mandatory_window=0.0, advisory_window=1e-3)
    first = cache.get()
    imds_env.mode = mode
    with pytest.raises(ProviderError) as info:
        provider.provide()
    assert type(info.value) is ProviderError
    assert cache.invalidate(first.access_key_id)
    assert cache.get() == first  # served from cache after the failed refresh
    assert cache.stats()["static_stability"] >= 1


def test_imds_token_renewed_near_its_ttl(imds_env: ImdsServer) -> None:
    now = [1000.0]
    provider = InstanceMetadataProvider(
        token_ttl=600, token_refresh_margin=60, monotonic=lambda: now[0]
    )
    provider.provide()
    now[0] += 500  # 100 s left: still reused
    provider.provide()
    assert imds_env.counts["token"] == 1
    now[0] += 50  # 50 s left, within the margin: renewed
    provider.provide()
    assert imds_env.counts["token"] == 2


def test_imds_token_rejected_is_renewed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000_000.0]
    with ImdsServer(clock=lambda: clock[0]) as server:
        monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
        provider = InstanceMetadataProvider(endpoint=server.url, token_ttl=60)
        provider.provide()
        clock[0] += 3600  # the server considers the token expired; the provider does not know
        provider.provide()
        assert server.counts["unauthorized"] == 1
        assert server.counts["token"] == 2


def test_imds_settings_from_environment_and_config(
    monkeypatch: pytest.MonkeyPatch, files: Files, imds_server: ImdsServer
) -> None:
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    files.config(f"[default]\nec2_metadata_service_endpoint = {imds_server.url}\n")
    monkeypatch.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "3")
    imds_server.mode = "error"
    with pytest.raises(CredentialsNotLoaded):  # never served before: "nothing here"
        InstanceMetadataProvider().provide()
    assert imds_server.counts["token"] == 3  # three attempts, as configured
    imds_server.mode = "ok"
    assert InstanceMetadataProvider().provide().provider_name == "iam-role"


def test_imds_endpoint_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "ipv6")
    assert InstanceMetadataProvider()._settings().base_url == "http://[fd00:ec2::254]/"
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv4")
    assert InstanceMetadataProvider()._settings().base_url == "http://169.254.169.254/"
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "ipv5")
    with pytest.raises(NonRecoverableError):
        InstanceMetadataProvider().provide()


def test_imds_disabled(monkeypatch: pytest.MonkeyPatch, imds_server: ImdsServer) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_server.url)
    with pytest.raises(CredentialsNotLoaded):
        InstanceMetadataProvider().provide()
    assert imds_server.requests == 0


def test_imds_unreachable_is_nothing_here_until_it_has_answered(imds_env: ImdsServer) -> None:
    provider = InstanceMetadataProvider()
    imds_env.mode = "down"
    with pytest.raises(CredentialsNotLoaded):
        provider.provide()
    imds_env.mode = "ok"
    served = provider.provide()
    imds_env.mode = "down"
    with pytest.raises(ProviderError) as info:
        provider.provide()
    assert type(info.value) is ProviderError  # recoverable now: the cache keeps serving
    assert provider.fallback_on_interrupt() == served


def test_imds_static_stability_through_the_cache(imds_env: ImdsServer) -> None:
    provider = InstanceMetadataProvider(extend_expired=False)
    cache = CredentialCache(provider, load_timeout=0.5)
    served = cache.get()
    imds_env.hang_seconds = 5
    imds_env.mode = "hang"
    cache.invalidate(served.access_key_id)  # the next get() must refresh
    started = time.monotonic()
    again = cache.get()  # the refresh hangs: the provider's fallback is served
    assert time.monotonic() - started < 4
    assert again.access_key_id == served.access_key_id
    assert cache.stats()["fallbacks"] == 1
    # A new cache has nothing of its own: only the provider's fallback can answer.
    fresh = CredentialCache(provider, load_timeout=0.5)
    assert fresh.get().access_key_id == served.access_key_id
    assert fresh.stats()["fallbacks"] == 1


def test_imds_extends_expired_credentials(imds_env: ImdsServer) -> None:
    imds_env.mode = "expired"
    creds = InstanceMetadataProvider().provide()
    assert creds.expiry is not None
    assert creds.expiry > dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=15)


def test_imds_bad_json_and_throttle_are_recoverable(imds_env: ImdsServer) -> None:
    provider = InstanceMetadataProvider()
    provider.provide()  # has served once: later failures are recoverable
    imds_env.mode = "bad_json"
    with pytest.raises(ProviderError) as info:
        provider.provide()
    assert info.value.code == "MalformedResponse"
    imds_env.mode = "throttle"
    with pytest.raises(ProviderError) as info:
        provider.provide()
    assert info.value.code == "Throttling"


# -- web identity ----------------------------------------------------------------------------


def test_web_identity_rereads_the_token_and_is_unsigned(
    monkeypatch: pytest.MonkeyPatch, files: Files, sts_server: StsServer
) -> None:
    token = files.write("token", "first-web-identity-token")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts_server.url)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", token)
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    monkeypatch.setenv("AWS_ROLE_SESSION_NAME", "web-unit")
    provider = WebIdentityProvider()
    first = provider.provide()
    files.write("token", "second-web-identity-token")
    second = provider.provide()
    calls = sts_server.calls
    assert [c.web_identity_token for c in calls] == [
        "first-web-identity-token",
        "second-web-identity-token",
    ]
    assert all(c.signer_access_key_id is None for c in calls)
    assert all(c.role_session_name == "web-unit" for c in calls)
    assert first.provider_name == second.provider_name == "assume-role-with-web-identity"
    assert first.account_id == "123456789012"
    assert provider._entry is not None
    client = provider._entry.client
    provider.provide()
    assert provider._entry.client is client  # one client across refreshes


def test_web_identity_errors(monkeypatch: pytest.MonkeyPatch, files: Files) -> None:
    with pytest.raises(CredentialsNotLoaded):
        WebIdentityProvider().provide()
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", files.write("token", "x" * 10))
    with pytest.raises(NonRecoverableError):
        WebIdentityProvider().provide()
    # An explicit profile ignores the environment.
    files.config("[profile p]\nregion = us-east-1\n")
    with pytest.raises(CredentialsNotLoaded):
        WebIdentityProvider(config=ConfigSource("p")).provide()
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(files.root / "missing"))
    with pytest.raises(ProviderError) as info:
        WebIdentityProvider().provide()
    assert info.value.code == "TokenFileUnreadable"


# -- assume role -----------------------------------------------------------------------------


class Rotating(Provider):
    """A source whose key changes on every call (to see which key signed)."""

    name = "rotating"

    def __init__(self) -> None:
        self.calls = 0

    def provide(self) -> Credentials:
        self.calls += 1
        expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=6)
        return Credentials(f"AKIDSOURCE{self.calls:010d}", SECRET, TOKEN, expiry)


@pytest.fixture
def sts(monkeypatch: pytest.MonkeyPatch, sts_server: StsServer) -> StsServer:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts_server.url)
    return sts_server


def test_assume_role_parameters_and_result(sts: StsServer) -> None:
    mfa_calls: list[int] = []

    def mfa() -> str:
        mfa_calls.append(1)
        return "123456"

    provider = AssumeRoleProvider(
        StaticProvider("AKIDSOURCE", SECRET),
        ROLE,
        role_session_name="unit-session",
        external_id="ext-42",
        duration_seconds=1800,
        policy={"Version": "2012-10-17", "Statement": []},
        policy_arns=["arn:aws:iam::aws:policy/ReadOnlyAccess"],
        tags={"team": "creds"},
        transitive_tag_keys=["team"],
        source_identity="alice",
        serial_number="arn:aws:iam::123456789012:mfa/alice",
        mfa_token=mfa,
    )
    assert mfa_calls == []  # only asked when STS must be called
    cache = CredentialCache(provider)
    creds = cache.get()
    assert cache.get() == creds
    assert len(mfa_calls) == 1
    (call,) = sts.calls
    assert call.action == "AssumeRole"
    assert call.role_arn == ROLE and call.role_session_name == "unit-session"
    assert call.external_id == "ext-42" and call.duration_seconds == 1800
    assert call.source_identity == "alice"
    assert call.serial_number == "arn:aws:iam::123456789012:mfa/alice"
    assert call.token_code == "123456"
    assert call.signer_access_key_id == "AKIDSOURCE"
    assert creds.provider_name == "assume-role"
    assert creds.account_id == "123456789012"
    assert creds.access_key_id == call.issued_access_key_id
    assert isinstance(provider.source, CredentialCache)  # a plain provider gets a cache
    assert SECRET not in repr(provider)


def test_assume_role_default_session_name_like_botocore(sts: StsServer) -> None:
    provider = AssumeRoleProvider(StaticProvider("AKIDSOURCE", SECRET), ROLE)
    provider.provide()
    provider.provide()
    names = {c.role_session_name for c in sts.calls}
    assert len(names) == 1
    (name,) = names
    assert name is not None and name.startswith("botocore-session-")
    assert abs(int(name.rsplit("-", 1)[1]) - time.time()) < 60


def test_assume_role_one_client_signing_with_current_source_credentials(
    sts: StsServer,
) -> None:
    rotating = Rotating()
    source = CredentialCache(rotating)
    provider = AssumeRoleProvider(source, ROLE, role_session_name="s1")
    other = AssumeRoleProvider(source, ROLE, role_session_name="s2")
    provider.provide()
    client = provider.client
    assert other.client is client  # shared: same session, source, region and endpoint
    source.invalidate(source.get().access_key_id)  # the source rotates its key
    provider.provide()
    other.provide()
    assert provider.client is client
    signers = [c.signer_access_key_id for c in sts.calls]
    assert signers == ["AKIDSOURCE0000000001", "AKIDSOURCE0000000002", "AKIDSOURCE0000000002"]
    assert rotating.calls == 2


def test_sts_clients_are_distinct_per_source_region_endpoint(sts: StsServer) -> None:
    session = botocore.session.Session()
    one = CredentialCache(StaticProvider("AKIDONE", SECRET))
    two = CredentialCache(StaticProvider("AKIDTWO", SECRET))
    a = sts_client(session, one, endpoint_url=sts.url)
    assert sts_client(session, one, endpoint_url=sts.url) is a
    assert sts_client(session, two, endpoint_url=sts.url) is not a
    assert sts_client(session, one, endpoint_url=sts.url, region="eu-west-1") is not a
    assert a.client.meta.config.retries["total_max_attempts"] == 2


@pytest.mark.parametrize(
    ("mode", "expected", "code"),
    [
        ("throttle", ProviderError, "Throttling"),
        ("error", ProviderError, "InternalFailure"),
        ("bad_json", ProviderError, "MalformedResponse"),
    ],
)
def test_assume_role_sts_failures(
    sts: StsServer, mode: servers.Mode, expected: type[CredentialsError], code: str
) -> None:
    sts.mode = mode
    provider = AssumeRoleProvider(StaticProvider("AKIDSOURCE", SECRET), ROLE)
    with pytest.raises(CredentialsError) as info:
        provider.provide()
    assert type(info.value) is expected and info.value.code == code
    assert info.value.provider == "assume-role"
    assert_no_secret(info.value)


def test_assume_role_access_denied(sts: StsServer) -> None:
    sts.deny_roles = {ROLE}
    with pytest.raises(NonRecoverableError) as info:
        CredentialCache(AssumeRoleProvider(StaticProvider("AKIDSOURCE", SECRET), ROLE)).get()
    assert info.value.code == "AccessDenied"
    assert "trust policy" in str(info.value)
    assert isinstance(info.value.__cause__, (NonRecoverableError, bce.ClientError))


def test_assume_role_unreachable_sts_is_recoverable(monkeypatch: pytest.MonkeyPatch) -> None:
    with StsServer() as server:
        url = server.url
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    provider = AssumeRoleProvider(StaticProvider("AKIDSOURCE", SECRET), ROLE, endpoint_url=url)
    with pytest.raises(ProviderError) as info:
        provider.provide()
    assert type(info.value) is ProviderError
    assert info.value.code == "EndpointConnectionError"


def test_assume_role_source_without_credentials(sts: StsServer) -> None:
    provider = AssumeRoleProvider(ProviderChain([EnvironmentProvider()]), ROLE)
    with pytest.raises(NonRecoverableError) as info:
        provider.provide()
    assert info.value.code == "NoSourceCredentials"
    assert sts.requests == 0


def test_assume_role_needs_mfa_callable() -> None:
    with pytest.raises(ValueError):
        AssumeRoleProvider(StaticProvider("A", SECRET), ROLE, serial_number="arn:mfa")


def test_assume_role_against_moto(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    provider = AssumeRoleProvider(
        StaticProvider("AKIDSOURCE", SECRET),
        ROLE,
        role_session_name="moto-unit",
        endpoint_url=moto_endpoint,
    )
    creds = CredentialCache(provider).get()
    client = botocore.session.Session().create_client(
        "sts",
        region_name="us-east-1",
        endpoint_url=moto_endpoint,
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        aws_session_token=creds.session_token,
    )
    arn = client.get_caller_identity()["Arn"]
    assert arn == "arn:aws:sts::123456789012:assumed-role/unit-role/moto-unit"


# -- role profiles -----------------------------------------------------------------------------


def test_role_chain_signs_each_hop_with_the_previous_hop(sts: StsServer, files: Files) -> None:
    files.credentials("[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = s\n")
    files.config(
        f"""\
        [profile one]
        role_arn = {ROLE}-one
        source_profile = base
        role_session_name = one
        external_id = ext-one
        duration_seconds = 1200
        [profile two]
        role_arn = {ROLE}-two
        source_profile = one
        role_session_name = two
        """
    )
    provider = ProfileAssumeRoleProvider("two")
    assert provider.plan() == ["two", "one", "base"]
    creds = provider.provide()
    first, second = sts.calls
    assert (first.role_arn, first.signer_access_key_id) == (f"{ROLE}-one", "AKIDBASE")
    assert (first.external_id, first.duration_seconds) == ("ext-one", 1200)
    assert second.role_arn == f"{ROLE}-two"
    assert second.signer_access_key_id == first.issued_access_key_id
    assert creds.access_key_id == second.issued_access_key_id
    assert creds.provider_name == "assume-role"
    provider.provide()  # the first hop is cached: only the last one is called again
    assert [c.role_session_name for c in sts.calls] == ["one", "two", "two"]


def test_role_profile_mfa_callable(sts: StsServer, files: Files) -> None:
    files.credentials("[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = s\n")
    files.config(
        f"[profile mfa]\nrole_arn = {ROLE}\nsource_profile = base\n"
        "mfa_serial = arn:aws:iam::123456789012:mfa/bob\n"
    )
    asked: list[str] = []
    provider = ProfileAssumeRoleProvider("mfa", mfa_token=lambda s: asked.append(s) or "654321")
    provider.provide()
    assert asked == ["arn:aws:iam::123456789012:mfa/bob"]
    assert sts.calls[0].token_code == "654321"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "[profile a]\nrole_arn = {r}\nsource_profile = b\n"
            "[profile b]\nrole_arn = {r}\nsource_profile = c\n"
            "[profile c]\nrole_arn = {r}\nsource_profile = a\n",
            "a -> b -> c -> a",
        ),
        ("[profile a]\nrole_arn = {r}\nsource_profile = a\n", "a -> a"),
    ],
    ids=["three-profile-loop", "self-loop-without-keys"],
)
def test_source_profile_loop_is_a_clear_error(
    sts: StsServer, files: Files, config: str, expected: str
) -> None:
    files.config(config.format(r=ROLE))
    started = time.monotonic()
    with pytest.raises(NonRecoverableError) as info:
        CredentialCache(default_chain("a")).get()
    assert time.monotonic() - started < 5
    assert info.value.code == "InfiniteLoopConfigError"
    assert expected in str(info.value)
    assert sts.requests == 0


def test_role_profile_is_rebuilt_when_the_config_changes(sts: StsServer, files: Files) -> None:
    files.credentials("[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = s\n")
    files.config(f"[profile r]\nrole_arn = {ROLE}\nsource_profile = base\nrole_session_name = a1\n")
    provider = ProfileAssumeRoleProvider("r")
    provider.provide()
    time.sleep(0.01)
    files.config(
        f"[profile r]\nrole_arn = {ROLE}\nsource_profile = base\nrole_session_name = b2xyz\n"
    )
    provider.provide()
    assert [c.role_session_name for c in sts.calls] == ["a1", "b2xyz"]


# -- default chain -------------------------------------------------------------------------------


def test_default_chain_order_matches_botocore() -> None:
    session = botocore.session.Session()
    resolver = botocore.credentials.create_credential_resolver(session)
    theirs = [p.METHOD for p in resolver.providers]
    ours = [p.name for p in default_chain().providers]
    assert ours[0] == "profile"  # our check that the selected profile exists
    assert ours[1:] == theirs
    explicit = [p.name for p in default_chain("x").providers]
    assert "env" not in explicit and explicit[1:] == [m for m in theirs if m != "env"]


def test_default_chain_sso_profile_without_a_token_asks_for_aws_sso_login(files: Files) -> None:
    files.config(
        "[profile sso]\nsso_start_url = https://example.awsapps.com/start\nsso_region = "
        "us-east-1\nsso_account_id = 123456789012\nsso_role_name = Admin\n"
    )
    with pytest.raises(UserActionRequired) as info:
        CredentialCache(default_chain("sso")).get()
    assert "run `aws sso login --profile sso`" in str(info.value)
    assert info.value.provider == "sso" and info.value.code == "SSOTokenLoadError"


def test_mfa_code_unavailable_needs_the_user(sts_server: StsServer) -> None:
    source = CredentialCache(StaticProvider("AKIDMFASOURCE", "s"))

    def no_terminal() -> str:
        raise EOFError("no terminal")

    provider = AssumeRoleProvider(
        source,
        "arn:aws:iam::123456789012:role/mfa",
        serial_number="arn:aws:iam::123456789012:mfa/alice",
        mfa_token=no_terminal,
        endpoint_url=sts_server.url,
        region="us-east-1",
    )
    with pytest.raises(UserActionRequired, match="an MFA code"):
        CredentialCache(provider).get()


def test_no_network_guard_is_active() -> None:
    import socket

    with pytest.raises(NonLoopbackConnection):
        socket.getaddrinfo("169.254.169.254", 80)


def test_os_environ_untouched_by_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = dict(os.environ)
    try:
        CredentialCache(default_chain()).get()
    except CredentialsNotLoaded:
        pass
    assert dict(os.environ) == snapshot


def test_config_source_reuses_its_session_until_a_file_changes(files: Files) -> None:
    files.config("[default]\nregion = us-east-1\n")
    source = ConfigSource()
    first = source.snapshot()
    assert source.snapshot() is first
    assert first.get_config_variable("region") == "us-east-1"
    time.sleep(0.01)
    files.config("[default]\nregion = eu-west-3\n")
    second = source.snapshot()
    assert second is not first
    assert second.get_config_variable("region") == "eu-west-3"
    files.credentials("[default]\naws_access_key_id = A\naws_secret_access_key = B\n")
    assert source.snapshot() is not second


def test_default_chain_honours_a_botocore_session(files: Files) -> None:
    files.credentials(
        f"[default]\naws_access_key_id = AKIDDEF\naws_secret_access_key = {SECRET}\n"
        f"[other]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = {SECRET}\n"
    )
    session = botocore.session.Session(profile="other")
    creds = CredentialCache(default_chain(session=session)).get()
    assert creds.access_key_id == "AKIDOTHER"
    assert "env" not in [p.name for p in default_chain(session=session).providers]


def test_sts_calls_never_log_secrets_even_at_debug(
    sts: StsServer, files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    source = StaticProvider("AKIDSOURCE", "source-secret-marker", "source-token-marker")
    AssumeRoleProvider(source, ROLE).provide()
    token = files.write("token", "web-token-marker")
    WebIdentityProvider(role_arn=ROLE, token_file=token).provide()
    text = caplog.text
    assert "botocore" in text  # botocore did log at DEBUG meanwhile
    for secret in (
        SECRET,
        TOKEN,
        "source-secret-marker",
        "source-token-marker",
        "web-token-marker",
    ):
        assert secret not in text
    # The same call made directly with botocore does log them: the check above can fail.
    caplog.clear()
    client = botocore.session.Session().create_client(
        "sts",
        region_name="us-east-1",
        endpoint_url=sts.url,
        aws_access_key_id="AKIDSOURCE",
        aws_secret_access_key="s",
        aws_session_token="source-token-marker",
    )
    client.assume_role(RoleArn=ROLE, RoleSessionName="plain")
    assert "source-token-marker" in caplog.text and TOKEN in caplog.text
