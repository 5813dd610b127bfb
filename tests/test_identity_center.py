"""IAM Identity Center (SSO) and ``aws login`` profiles: what the parity suite does not see.

The token refresh writes back to the cache file as botocore does, endpoints come from the
``AWS_ENDPOINT_URL_*`` variables, the cache serves SSO credentials while they are valid after
the session expired and then raises at once with the command to run, and ``aws login``
refreshes are DPoP-signed.  Everything runs against the loopback stand-ins of
``identity_servers``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest
from identity_servers import IdentityServer, sso_cache_file, write_login_token, write_sso_token

import creds_core.boto3 as cb
from creds_core import (
    CredentialCache,
    CredentialsNotLoaded,
    NonRecoverableError,
    ProviderChain,
    UserActionRequired,
)
from creds_core.providers import LoginProvider, SsoProvider, default_chain
from creds_core.providers.identity_center import login_supported
from creds_core.testing import ManualClock

SSO_CONFIG = """\
[profile dev]
sso_session = corp
sso_account_id = 111122223333
sso_role_name = Developer
[sso-session corp]
sso_start_url = https://d-123.awsapps.com/start
sso_region = us-east-1
"""


@pytest.fixture
def home(isolated_aws: Path) -> Path:
    return isolated_aws


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> IdentityServer:
    with IdentityServer() as running:
        for name in ("SSO", "SSO_OIDC", "SIGNIN"):
            monkeypatch.setenv(f"AWS_ENDPOINT_URL_{name}", running.url)
        yield running


@pytest.fixture
def sso_cache(home: Path, server: IdentityServer) -> Path:
    (home.parent / "config").write_text(SSO_CONFIG)
    return home / ".aws" / "sso" / "cache"


def test_sso_credentials_come_from_the_portal_with_botocores_method(
    sso_cache: Path, server: IdentityServer
) -> None:
    write_sso_token(server, sso_cache, "corp")
    credentials = CredentialCache(default_chain("dev")).get()
    assert credentials.provider_name == "sso"
    assert credentials.account_id in ("111122223333", None)  # botocore 1.35+ returns it
    assert [i.access_key_id for i in server.issued] == [credentials.access_key_id]
    assert server.issued[0].role == "Developer"
    assert credentials.expiry is not None
    assert server.counts["CreateToken"] == 0  # a valid token is not refreshed


def test_sso_token_refresh_is_written_back_to_the_cache_file(
    sso_cache: Path, server: IdentityServer
) -> None:
    path = write_sso_token(server, sso_cache, "corp", expires_in=-60, valid=False)
    before = json.loads(path.read_text())
    credentials = SsoProvider("dev").provide()
    assert credentials.provider_name == "sso"
    assert server.counts["CreateToken"] == 1
    after = json.loads(path.read_text())
    assert after["accessToken"] != before["accessToken"]
    assert after["refreshToken"] != before["refreshToken"]
    assert after["accessToken"] in server.valid_access_tokens
    # The next refresh uses the written token: no second CreateToken.
    SsoProvider("dev").provide()
    assert server.counts["CreateToken"] == 1
    assert sso_cache_file(sso_cache, "corp") == path


def test_expired_sso_session_serves_valid_credentials_then_raises_with_the_login_command(
    sso_cache: Path, server: IdentityServer
) -> None:
    server.credential_lifetime = 3600
    write_sso_token(server, sso_cache, "corp")
    clock = ManualClock(time.time())  # the server dates its credentials by the real time
    cache = CredentialCache(default_chain("dev"), clock=clock)
    first = cache.get()
    server.valid_access_tokens.clear()  # the session ends (revoked at the portal)
    # In the mandatory window, still valid: served despite the failed refresh.
    clock.advance(3600 - 30)
    assert cache.get() == first
    calls = server.counts["GetRoleCredentials"]
    assert calls == 2, cache.inspect()
    # Expired: raised at once with what to run, not backed off for minutes.
    clock.advance(60)
    with pytest.raises(UserActionRequired, match=r"aws sso login --profile dev") as info:
        cache.get()
    assert info.value.code == "UnauthorizedSSOTokenError"
    assert server.counts["GetRoleCredentials"] == calls + 1
    allowed = cache.inspect()["next_refresh_allowed_at"]
    assert allowed is not None and (allowed - clock.now()).total_seconds() <= 5
    # The user logs in again: the next call after the short error cache succeeds.
    write_sso_token(server, sso_cache, "corp")
    server.credential_lifetime = 7200  # valid by the test's clock, which is ahead
    clock.advance(6)
    assert cache.get().access_key_id != first.access_key_id


def test_missing_token_file_names_the_command_and_no_token_leaks(
    sso_cache: Path, server: IdentityServer
) -> None:
    path = write_sso_token(server, sso_cache, "corp", expires_in=-60, valid=False)
    token = json.loads(path.read_text())
    path.unlink()
    with pytest.raises(UserActionRequired) as info:
        CredentialCache(default_chain("dev")).get()
    text = str(info.value)
    assert "aws sso login --profile dev" in text
    for secret in (token["accessToken"], token["refreshToken"], token["clientSecret"]):
        assert secret not in text and secret not in repr(info.value)


def test_boto3_session_signs_with_sso_credentials_and_reports_method_sso(
    sso_cache: Path, server: IdentityServer
) -> None:
    write_sso_token(server, sso_cache, "corp")
    session = cb.session(profile_name="dev", region_name="us-east-1")
    credentials = session.get_credentials()
    assert credentials.method == "sso"
    frozen = credentials.get_frozen_credentials()
    assert frozen.access_key == server.issued[0].access_key_id
    assert isinstance(session, boto3.Session)


def test_sso_provider_is_nothing_here_for_other_profiles(home: Path) -> None:
    (home.parent / "config").write_text("[profile plain]\nregion = us-east-1\n")
    chain = ProviderChain([SsoProvider("plain")])
    with pytest.raises(Exception, match="no IAM Identity Center role"):
        CredentialCache(chain).get()


@pytest.mark.skipif(not login_supported(), reason="botocore has no aws login support")
def test_login_refresh_is_dpop_signed_and_written_back(home: Path, server: IdentityServer) -> None:
    pytest.importorskip("awscrt")
    (home.parent / "config").write_text(
        "[profile console]\nlogin_session = arn:aws:iam::123456789012:user/alice\n"
        "region = us-east-1\n"
    )
    cache_dir = home / ".aws" / "login" / "cache"
    path = write_login_token(
        server, cache_dir, "arn:aws:iam::123456789012:user/alice", expires_in=-60
    )
    credentials = CredentialCache(default_chain("console")).get()
    assert credentials.provider_name == "login"
    assert server.counts["CreateOAuth2Token"] == 1
    header = server.dpop_headers[0]
    assert header.count(".") == 2  # a compact JWS
    assert json.loads(path.read_text())["accessToken"]["accessKeyId"] == credentials.access_key_id


@pytest.mark.skipif(not login_supported(), reason="botocore has no aws login support")
def test_login_refused_refresh_names_aws_login(home: Path, server: IdentityServer) -> None:
    pytest.importorskip("awscrt")
    (home.parent / "config").write_text(
        "[profile console]\nlogin_session = arn:aws:iam::123456789012:user/alice\n"
        "region = us-east-1\n"
    )
    cache_dir = home / ".aws" / "login" / "cache"
    write_login_token(server, cache_dir, "arn:aws:iam::123456789012:user/alice", expires_in=-60)
    server.signin_refresh_tokens.clear()
    with pytest.raises(UserActionRequired, match=r"aws login --profile console"):
        CredentialCache(default_chain("console")).get()


def test_doctor_shows_the_sso_token_expiry_and_warns_when_it_is_close(
    sso_cache: Path, server: IdentityServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from creds_core import cli

    path = write_sso_token(server, sso_cache, "corp", expires_in=20 * 60, refreshable=False)
    token = json.loads(path.read_text())["accessToken"]
    code = cli.main(["doctor", "--profile", "dev", "--no-sts"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "IAM Identity Center:" in out and "token expiry" in out
    assert str(path) in out
    assert "the SSO token expires in 20 min and cannot be refreshed" in out
    assert "aws sso login --profile dev" in out
    assert token not in out


def test_doctor_says_to_log_in_when_the_sso_token_is_missing(
    sso_cache: Path, server: IdentityServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from creds_core import cli

    code = cli.main(["doctor", "--profile", "dev", "--no-sts"])
    out = capsys.readouterr().out
    assert code != 0
    assert "no SSO token was found in the cache; run `aws sso login --profile dev`" in out


LOGIN_CONFIG = "[profile console]\nlogin_session = arn:aws:iam::123456789012:user/alice\n"


@pytest.mark.skipif(not login_supported(), reason="botocore has no aws login support")
def test_login_without_the_crt_extra_says_what_to_install(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import botocore.credentials

    (home.parent / "config").write_text(LOGIN_CONFIG)
    monkeypatch.setattr(botocore.credentials, "EC", None)  # as without awscrt installed
    with pytest.raises(NonRecoverableError, match=r"pip install 'creds_core\[login\]'") as info:
        CredentialCache(default_chain("console")).get()
    assert type(info.value) is NonRecoverableError
    assert info.value.code == "MissingDependencyException"


def test_login_profile_on_a_botocore_without_login_support_is_not_loaded_with_the_reason(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import botocore.credentials

    (home.parent / "config").write_text(LOGIN_CONFIG)
    monkeypatch.delattr(botocore.credentials, "LoginProvider", raising=False)
    with pytest.raises(CredentialsNotLoaded) as info:
        LoginProvider("console").provide()
    assert "upgrade botocore to 1.41 or later" in str(info.value)
    assert info.value.code == "Unsupported"
