"""Parity with botocore: the default chain resolves what botocore resolves.

Each scenario writes config/credentials files and environment variables into an isolated
tmp_path, then resolves credentials twice: with ``botocore.session.Session(profile=...)
.get_credentials()`` and with ``CredentialCache(default_chain(profile)).get()``.  Both must give
the same access key and method name (``creds.method`` vs ``provider_name``), or fail the same
way.  Sources that mint new keys on every call (IMDS, the container endpoint, STS) cannot give
the *same* key twice, so for them both keys must come from the same source: the local server's
record of what it issued, or, for STS (moto), the identity the keys belong to
(GetCallerIdentity returns the assumed role and session name).

Nothing here reaches a real endpoint: IMDS is disabled or a local server, STS is moto on
127.0.0.1, and every non-loopback connection fails the test (``no_network``).
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import exceptions as bce
from identity_servers import IdentityServer, write_login_token, write_sso_token

from creds_core import (
    CredentialCache,
    CredentialsError,
    CredentialsNotLoaded,
    NonRecoverableError,
    ProviderError,
    UserActionRequired,
)
from creds_core.providers import default_chain
from creds_core.providers.identity_center import login_supported
from server_fixtures import ContainerServer, ImdsServer, StsServer

ACCOUNT = "123456789012"


def role(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


def assumed(name: str, session: str) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{session}"


# -- outcomes --------------------------------------------------------------------------------


@dataclass
class Outcome:
    access_key: str | None = None
    method: str | None = None
    secret: str | None = None
    token: str | None = None
    error: BaseException | None = None

    @property
    def none(self) -> bool:
        return self.access_key is None and self.error is None

    def describe(self) -> str:
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        if self.access_key is None:
            return "no credentials"
        return f"{self.access_key} via {self.method}"


def resolve_botocore(profile: str | None) -> Outcome:
    try:
        session = botocore.session.Session(profile=profile)
        creds = session.get_credentials()
        if creds is None:
            return Outcome()
        frozen = creds.get_frozen_credentials()  # deferred (assume-role) creds fetch here
        return Outcome(frozen.access_key, creds.method, frozen.secret_key, frozen.token)
    except Exception as exc:
        return Outcome(error=exc)


def resolve_creds_core(profile: str | None) -> Outcome:
    try:
        creds = CredentialCache(default_chain(profile), load_timeout=30.0).get()
    except CredentialsError as exc:
        return Outcome(error=exc)
    return Outcome(
        creds.access_key_id, creds.provider_name, creds.secret_access_key, creds.session_token
    )


@dataclass
class Expect:
    """What both sides must produce."""

    profile: str | None = None
    method: str | None = None
    key: str | None = None  # the exact access key (static sources)
    token: str | None = None
    issued_by: Any = None  # a local server whose `issued` record holds both keys
    identity: str | None = None  # the ARN both keys belong to (STS on moto)
    shared_source: bool = False  # issued_by: both sides may get the same key (a token cache)
    none: bool = False  # botocore: no credentials; creds_core: CredentialsNotLoaded
    botocore_error: type[BaseException] | None = None
    creds_core_error: type[CredentialsError] | None = None


# -- scenario context ------------------------------------------------------------------------


class Ctx:
    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, request: Any) -> None:
        self.tmp = tmp
        self.mp = monkeypatch
        self.request = request

    def config(self, text: str) -> None:
        (self.tmp / "config").write_text(textwrap.dedent(text))

    def credentials(self, text: str) -> None:
        (self.tmp / "credentials").write_text(textwrap.dedent(text))

    def env(self, **values: str) -> None:
        for name, value in values.items():
            self.mp.setenv(name, value)

    def file(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)

    def script(self, name: str, body: str) -> str:
        """A credential_process command line running ``body`` with this Python."""
        path = self.file(name, textwrap.dedent(body))
        return f"{sys.executable} {path}"

    @property
    def moto(self) -> str:
        url: str = self.request.getfixturevalue("moto_endpoint")
        self.env(AWS_DEFAULT_REGION="us-east-1")
        return url

    def sts_env(self) -> str:
        url = self.moto
        self.env(AWS_ENDPOINT_URL_STS=url)
        return url

    def imds(self, **kwargs: Any) -> ImdsServer:
        server = ImdsServer(**kwargs).start()
        self.request.addfinalizer(server.stop)
        self.mp.delenv("AWS_EC2_METADATA_DISABLED")
        return server

    def container(self, **kwargs: Any) -> ContainerServer:
        server = ContainerServer(**kwargs).start()
        self.request.addfinalizer(server.stop)
        return server

    def identity(self) -> IdentityServer:
        """The SSO portal, SSO OIDC and sign-in stand-in, reached through the endpoint
        variables botocore reads."""
        server = IdentityServer().start()
        self.request.addfinalizer(server.stop)
        self.env(
            AWS_ENDPOINT_URL_SSO=server.url,
            AWS_ENDPOINT_URL_SSO_OIDC=server.url,
            AWS_ENDPOINT_URL_SIGNIN=server.url,
        )
        return server

    @property
    def sso_cache(self) -> Path:
        return self.tmp / "home" / ".aws" / "sso" / "cache"

    @property
    def login_cache(self) -> Path:
        return self.tmp / "home" / ".aws" / "login" / "cache"

    def sts_server(self, **kwargs: Any) -> StsServer:
        server = StsServer(**kwargs).start()
        self.request.addfinalizer(server.stop)
        self.env(AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL_STS=server.url)
        return server


Scenario = Callable[[Ctx], Expect]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__] = fn
    return fn


STATIC = """\
    [default]
    aws_access_key_id = AKIDDEFAULTFILE00001
    aws_secret_access_key = secret-default
    [dev]
    aws_access_key_id = AKIDDEVFILE000000001
    aws_secret_access_key = secret-dev
    aws_session_token = token-dev
    [src]
    aws_access_key_id = AKIDSOURCE0000000001
    aws_secret_access_key = secret-src
"""

PROCESS_OK = """\
    import json
    print(json.dumps({"Version": 1, "AccessKeyId": "AKIDPROCESS000000001",
                      "SecretAccessKey": "secret-process", "SessionToken": "token-process",
                      "Expiration": "2099-01-01T00:00:00Z"}))
"""


# -- environment ---------------------------------------------------------------------------


@scenario
def env_keys(c: Ctx) -> Expect:
    c.env(AWS_ACCESS_KEY_ID="AKIDENV0000000000001", AWS_SECRET_ACCESS_KEY="secret-env")
    return Expect(method="env", key="AKIDENV0000000000001")


@scenario
def env_session_token(c: Ctx) -> Expect:
    c.env(
        AWS_ACCESS_KEY_ID="AKIDENV0000000000002",
        AWS_SECRET_ACCESS_KEY="secret-env",
        AWS_SESSION_TOKEN="token-env",
        AWS_CREDENTIAL_EXPIRATION="2099-01-01T00:00:00Z",
    )
    return Expect(method="env", key="AKIDENV0000000000002", token="token-env")


@scenario
def env_security_token_alias_wins(c: Ctx) -> Expect:
    c.env(
        AWS_ACCESS_KEY_ID="AKIDENV0000000000003",
        AWS_SECRET_ACCESS_KEY="secret-env",
        AWS_SECURITY_TOKEN="token-old-name",
        AWS_SESSION_TOKEN="token-new-name",
    )
    return Expect(method="env", key="AKIDENV0000000000003", token="token-old-name")


@scenario
def env_partial_keys(c: Ctx) -> Expect:
    c.env(AWS_ACCESS_KEY_ID="AKIDENV0000000000004")
    return Expect(botocore_error=bce.PartialCredentialsError, creds_core_error=NonRecoverableError)


@scenario
def env_beats_credentials_file(c: Ctx) -> Expect:
    c.credentials(STATIC)
    c.env(AWS_ACCESS_KEY_ID="AKIDENV0000000000005", AWS_SECRET_ACCESS_KEY="secret-env")
    return Expect(method="env", key="AKIDENV0000000000005")


@scenario
def env_beats_aws_profile_variable(c: Ctx) -> Expect:
    c.credentials(STATIC)
    c.env(
        AWS_PROFILE="dev",
        AWS_ACCESS_KEY_ID="AKIDENV0000000000006",
        AWS_SECRET_ACCESS_KEY="secret-env",
    )
    return Expect(method="env", key="AKIDENV0000000000006")


@scenario
def explicit_profile_ignores_env(c: Ctx) -> Expect:
    c.credentials(STATIC)
    c.env(AWS_ACCESS_KEY_ID="AKIDENV0000000000007", AWS_SECRET_ACCESS_KEY="secret-env")
    return Expect(profile="dev", method="shared-credentials-file", key="AKIDDEVFILE000000001")


# -- shared files --------------------------------------------------------------------------


@scenario
def credentials_file_default(c: Ctx) -> Expect:
    c.credentials(STATIC)
    return Expect(method="shared-credentials-file", key="AKIDDEFAULTFILE00001")


@scenario
def credentials_file_aws_profile(c: Ctx) -> Expect:
    c.credentials(STATIC)
    c.env(AWS_PROFILE="dev")
    return Expect(method="shared-credentials-file", key="AKIDDEVFILE000000001", token="token-dev")


@scenario
def config_file_default(c: Ctx) -> Expect:
    c.config(
        """\
        [default]
        aws_access_key_id = AKIDCONFIG0000000001
        aws_secret_access_key = secret-config
        """
    )
    return Expect(method="config-file", key="AKIDCONFIG0000000001")


@scenario
def config_file_named_profile(c: Ctx) -> Expect:
    c.config(
        """\
        [profile work]
        aws_access_key_id = AKIDCONFIG0000000002
        aws_secret_access_key = secret-config
        aws_session_token = token-config
        """
    )
    return Expect(profile="work", method="config-file", key="AKIDCONFIG0000000002")


@scenario
def credentials_file_beats_config_file(c: Ctx) -> Expect:
    c.credentials(STATIC)
    c.config(
        """\
        [profile dev]
        aws_access_key_id = AKIDCONFIG0000000003
        aws_secret_access_key = secret-config
        """
    )
    return Expect(profile="dev", method="shared-credentials-file", key="AKIDDEVFILE000000001")


@scenario
def credentials_file_partial(c: Ctx) -> Expect:
    c.credentials("[default]\naws_access_key_id = AKIDPARTIAL000000001\n")
    return Expect(botocore_error=bce.PartialCredentialsError, creds_core_error=NonRecoverableError)


@scenario
def profile_not_found(c: Ctx) -> Expect:
    c.credentials(STATIC)
    return Expect(
        profile="missing", botocore_error=bce.ProfileNotFound, creds_core_error=NonRecoverableError
    )


@scenario
def aws_profile_not_found_even_with_env_keys(c: Ctx) -> Expect:
    c.env(
        AWS_PROFILE="missing",
        AWS_ACCESS_KEY_ID="AKIDENV0000000000008",
        AWS_SECRET_ACCESS_KEY="secret-env",
    )
    return Expect(botocore_error=bce.ProfileNotFound, creds_core_error=NonRecoverableError)


@scenario
def config_file_unparsable(c: Ctx) -> Expect:
    c.config("[profile broken\nregion = us-east-1\n")
    return Expect(
        profile="broken", botocore_error=bce.ConfigParseError, creds_core_error=NonRecoverableError
    )


@scenario
def nothing_configured(c: Ctx) -> Expect:
    c.config("[default]\nregion = us-east-1\n")
    return Expect(none=True)


@scenario
def explicit_profile_without_credentials(c: Ctx) -> Expect:
    c.config("[profile empty]\nregion = us-east-1\n")
    c.env(AWS_ACCESS_KEY_ID="AKIDENV0000000000009", AWS_SECRET_ACCESS_KEY="secret-env")
    return Expect(profile="empty", none=True)


# -- credential_process --------------------------------------------------------------------


@scenario
def process_ok(c: Ctx) -> Expect:
    command = c.script("proc.py", PROCESS_OK)
    c.config(f"[profile proc]\ncredential_process = {command}\n")
    return Expect(profile="proc", method="custom-process", key="AKIDPROCESS000000001")


@scenario
def process_bad_exit_code(c: Ctx) -> Expect:
    command = c.script("fail.py", "import sys\nsys.stderr.write('no way\\n')\nsys.exit(3)\n")
    c.config(f"[profile proc]\ncredential_process = {command}\n")
    return Expect(
        profile="proc",
        botocore_error=bce.CredentialRetrievalError,
        creds_core_error=ProviderError,
    )


@scenario
def process_unsupported_version(c: Ctx) -> Expect:
    body = PROCESS_OK.replace('"Version": 1', '"Version": 2')
    command = c.script("v2.py", body)
    c.config(f"[profile proc]\ncredential_process = {command}\n")
    return Expect(
        profile="proc",
        botocore_error=bce.CredentialRetrievalError,
        creds_core_error=NonRecoverableError,
    )


@scenario
def process_bad_json(c: Ctx) -> Expect:
    command = c.script("junk.py", "print('this is not json')\n")
    c.config(f"[profile proc]\ncredential_process = {command}\n")
    return Expect(profile="proc", botocore_error=ValueError, creds_core_error=ProviderError)


# -- container -----------------------------------------------------------------------------


@scenario
def container_full_uri(c: Ctx) -> Expect:
    server = c.container()
    c.env(AWS_CONTAINER_CREDENTIALS_FULL_URI=server.credentials_url)
    return Expect(method="container-role", issued_by=server)


@scenario
def container_auth_token(c: Ctx) -> Expect:
    server = c.container(auth_token="Bearer container-token")
    c.env(
        AWS_CONTAINER_CREDENTIALS_FULL_URI=server.credentials_url,
        AWS_CONTAINER_AUTHORIZATION_TOKEN="Bearer container-token",
    )
    return Expect(method="container-role", issued_by=server)


@scenario
def container_auth_token_file_wins(c: Ctx) -> Expect:
    server = c.container(auth_token="from-the-file")
    c.env(
        AWS_CONTAINER_CREDENTIALS_FULL_URI=server.credentials_url,
        AWS_CONTAINER_AUTHORIZATION_TOKEN="from-the-variable",
        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=c.file("token", "from-the-file"),
    )
    return Expect(method="container-role", issued_by=server)


@scenario
def container_host_not_allowed(c: Ctx) -> Expect:
    # Both refuse before connecting (and no_network would fail the test if one did not).
    c.env(AWS_CONTAINER_CREDENTIALS_FULL_URI="http://192.0.2.10/creds")
    return Expect(botocore_error=ValueError, creds_core_error=NonRecoverableError)


@scenario
def container_beats_imds(c: Ctx) -> Expect:
    server = c.container()
    imds = c.imds()
    c.env(
        AWS_CONTAINER_CREDENTIALS_FULL_URI=server.credentials_url,
        AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url,
    )
    return Expect(method="container-role", issued_by=server)


# -- IMDS ----------------------------------------------------------------------------------


@scenario
def imds_endpoint_from_env(c: Ctx) -> Expect:
    server = c.imds()
    c.env(AWS_EC2_METADATA_SERVICE_ENDPOINT=server.url)
    return Expect(method="iam-role", issued_by=server)


@scenario
def imds_endpoint_from_config(c: Ctx) -> Expect:
    server = c.imds()
    c.config(f"[default]\nec2_metadata_service_endpoint = {server.url}\n")
    return Expect(method="iam-role", issued_by=server)


@scenario
def imds_v1_only(c: Ctx) -> Expect:
    server = c.imds(supports_token=False, require_token=False)
    c.env(AWS_EC2_METADATA_SERVICE_ENDPOINT=server.url)
    return Expect(method="iam-role", issued_by=server)


@scenario
def imds_down(c: Ctx) -> Expect:
    server = c.imds(mode="down")
    c.env(AWS_EC2_METADATA_SERVICE_ENDPOINT=server.url)
    return Expect(none=True)


@scenario
def imds_error_on_first_load(c: Ctx) -> Expect:
    server = c.imds(mode="error")  # HTTP 500 and nothing served before: no credentials
    c.env(AWS_EC2_METADATA_SERVICE_ENDPOINT=server.url)
    return Expect(none=True)


@scenario
def imds_throttled_on_first_load(c: Ctx) -> Expect:
    server = c.imds(mode="throttle")
    c.env(AWS_EC2_METADATA_SERVICE_ENDPOINT=server.url)
    return Expect(none=True)


@scenario
def imds_bad_json_on_first_load(c: Ctx) -> Expect:
    server = c.imds(mode="bad_json")
    c.env(AWS_EC2_METADATA_SERVICE_ENDPOINT=server.url)
    return Expect(none=True)


@scenario
def imds_disabled(c: Ctx) -> Expect:
    server = c.imds()
    c.env(AWS_EC2_METADATA_SERVICE_ENDPOINT=server.url, AWS_EC2_METADATA_DISABLED="true")
    return Expect(none=True)


# -- assume role (moto) --------------------------------------------------------------------


@scenario
def role_from_source_profile(c: Ctx) -> Expect:
    c.sts_env()
    c.credentials(STATIC)
    c.config(
        f"""\
        [profile admin]
        role_arn = {role("admin")}
        source_profile = src
        role_session_name = parity-admin
        """
    )
    return Expect(profile="admin", method="assume-role", identity=assumed("admin", "parity-admin"))


@scenario
def role_endpoint_url_in_profile(c: Ctx) -> Expect:
    url = c.moto
    c.credentials(STATIC)
    c.config(
        f"""\
        [profile admin]
        role_arn = {role("admin")}
        source_profile = src
        role_session_name = parity-endpoint
        endpoint_url = {url}
        """
    )
    return Expect(
        profile="admin", method="assume-role", identity=assumed("admin", "parity-endpoint")
    )


@scenario
def role_chain_two_hops(c: Ctx) -> Expect:
    c.sts_env()
    c.credentials(STATIC)
    c.config(
        f"""\
        [profile first]
        role_arn = {role("first")}
        source_profile = src
        role_session_name = hop-one
        [profile second]
        role_arn = {role("second")}
        source_profile = first
        role_session_name = hop-two
        """
    )
    return Expect(profile="second", method="assume-role", identity=assumed("second", "hop-two"))


@scenario
def role_self_source_with_static_keys(c: Ctx) -> Expect:
    c.sts_env()
    c.credentials(
        """\
        [selfie]
        aws_access_key_id = AKIDSELF000000000001
        aws_secret_access_key = secret-self
        """
    )
    c.config(
        f"""\
        [profile selfie]
        role_arn = {role("selfie")}
        source_profile = selfie
        role_session_name = self-session
        """
    )
    return Expect(
        profile="selfie", method="assume-role", identity=assumed("selfie", "self-session")
    )


@scenario
def role_source_is_credential_process(c: Ctx) -> Expect:
    c.sts_env()
    command = c.script("proc.py", PROCESS_OK)
    c.config(
        f"""\
        [profile proc]
        credential_process = {command}
        [profile viaproc]
        role_arn = {role("viaproc")}
        source_profile = proc
        role_session_name = via-process
        """
    )
    return Expect(
        profile="viaproc", method="assume-role", identity=assumed("viaproc", "via-process")
    )


@scenario
def role_credential_source_environment(c: Ctx) -> Expect:
    c.sts_env()
    c.env(AWS_ACCESS_KEY_ID="AKIDENV0000000000010", AWS_SECRET_ACCESS_KEY="secret-env")
    c.config(
        f"""\
        [profile fromenv]
        role_arn = {role("fromenv")}
        credential_source = Environment
        role_session_name = from-env
        """
    )
    return Expect(profile="fromenv", method="assume-role", identity=assumed("fromenv", "from-env"))


@scenario
def role_credential_source_container(c: Ctx) -> Expect:
    c.sts_env()
    server = c.container()
    c.env(AWS_CONTAINER_CREDENTIALS_FULL_URI=server.credentials_url)
    c.config(
        f"""\
        [profile fromecs]
        role_arn = {role("fromecs")}
        credential_source = EcsContainer
        role_session_name = from-ecs
        """
    )
    return Expect(profile="fromecs", method="assume-role", identity=assumed("fromecs", "from-ecs"))


@scenario
def role_credential_source_imds(c: Ctx) -> Expect:
    c.sts_env()
    server = c.imds()
    c.env(AWS_EC2_METADATA_SERVICE_ENDPOINT=server.url)
    c.config(
        f"""\
        [profile fromec2]
        role_arn = {role("fromec2")}
        credential_source = Ec2InstanceMetadata
        role_session_name = from-ec2
        """
    )
    return Expect(profile="fromec2", method="assume-role", identity=assumed("fromec2", "from-ec2"))


@scenario
def role_source_profile_loop(c: Ctx) -> Expect:
    c.config(
        f"""\
        [profile a]
        role_arn = {role("a")}
        source_profile = b
        [profile b]
        role_arn = {role("b")}
        source_profile = c
        [profile c]
        role_arn = {role("c")}
        source_profile = a
        """
    )
    return Expect(
        profile="a",
        botocore_error=bce.InfiniteLoopConfigError,
        creds_core_error=NonRecoverableError,
    )


@scenario
def role_source_profile_missing(c: Ctx) -> Expect:
    c.config(f"[profile orphan]\nrole_arn = {role('orphan')}\nsource_profile = nowhere\n")
    return Expect(
        profile="orphan",
        botocore_error=bce.InvalidConfigError,
        creds_core_error=NonRecoverableError,
    )


@scenario
def role_without_source(c: Ctx) -> Expect:
    c.config(f"[profile lonely]\nrole_arn = {role('lonely')}\n")
    return Expect(
        profile="lonely",
        botocore_error=bce.PartialCredentialsError,
        creds_core_error=NonRecoverableError,
    )


@scenario
def role_with_both_sources(c: Ctx) -> Expect:
    c.credentials(STATIC)
    c.config(
        f"""\
        [profile both]
        role_arn = {role("both")}
        source_profile = src
        credential_source = Environment
        """
    )
    return Expect(
        profile="both", botocore_error=bce.InvalidConfigError, creds_core_error=NonRecoverableError
    )


@scenario
def role_unknown_credential_source(c: Ctx) -> Expect:
    c.config(f"[profile odd]\nrole_arn = {role('odd')}\ncredential_source = environment\n")
    return Expect(
        profile="odd", botocore_error=bce.InvalidConfigError, creds_core_error=NonRecoverableError
    )


@scenario
def role_source_profile_without_credentials(c: Ctx) -> Expect:
    c.config(
        f"""\
        [profile hollow]
        region = us-east-1
        [profile needy]
        role_arn = {role("needy")}
        source_profile = hollow
        """
    )
    return Expect(
        profile="needy", botocore_error=bce.InvalidConfigError, creds_core_error=NonRecoverableError
    )


@scenario
def role_access_denied(c: Ctx) -> Expect:
    c.sts_server(deny_roles={role("forbidden")})
    c.credentials(STATIC)
    c.config(
        f"""\
        [profile denied]
        role_arn = {role("forbidden")}
        source_profile = src
        role_session_name = denied
        """
    )
    return Expect(
        profile="denied", botocore_error=bce.ClientError, creds_core_error=NonRecoverableError
    )


# -- web identity (moto) -------------------------------------------------------------------


@scenario
def web_identity_from_env(c: Ctx) -> Expect:
    c.sts_env()
    c.env(
        AWS_WEB_IDENTITY_TOKEN_FILE=c.file("token.jwt", "web-identity-token-0001"),
        AWS_ROLE_ARN=role("web"),
        AWS_ROLE_SESSION_NAME="web-env",
    )
    return Expect(method="assume-role-with-web-identity", identity=assumed("web", "web-env"))


@scenario
def web_identity_from_profile(c: Ctx) -> Expect:
    c.sts_env()
    token = c.file("token.jwt", "web-identity-token-0002")
    c.config(
        f"""\
        [profile oidc]
        role_arn = {role("oidc")}
        web_identity_token_file = {token}
        role_session_name = web-profile
        """
    )
    return Expect(
        profile="oidc",
        method="assume-role-with-web-identity",
        identity=assumed("oidc", "web-profile"),
    )


@scenario
def web_identity_env_ignored_for_explicit_profile(c: Ctx) -> Expect:
    c.credentials(STATIC)
    c.env(
        AWS_WEB_IDENTITY_TOKEN_FILE=c.file("token.jwt", "web-identity-token-0003"),
        AWS_ROLE_ARN=role("web"),
    )
    return Expect(profile="dev", method="shared-credentials-file", key="AKIDDEVFILE000000001")


@scenario
def web_identity_without_role_arn(c: Ctx) -> Expect:
    c.env(AWS_WEB_IDENTITY_TOKEN_FILE=c.file("token.jwt", "web-identity-token-0004"))
    return Expect(botocore_error=bce.InvalidConfigError, creds_core_error=NonRecoverableError)


@scenario
def role_chained_from_web_identity(c: Ctx) -> Expect:
    c.sts_env()
    token = c.file("token.jwt", "web-identity-token-0005")
    c.config(
        f"""\
        [profile oidc]
        role_arn = {role("oidc")}
        web_identity_token_file = {token}
        role_session_name = web-base
        [profile deploy]
        role_arn = {role("deploy")}
        source_profile = oidc
        role_session_name = deploy-session
        """
    )
    return Expect(
        profile="deploy", method="assume-role", identity=assumed("deploy", "deploy-session")
    )


# -- IAM Identity Center (SSO) -------------------------------------------------------------

SSO_SESSION = """\
    [profile dev]
    sso_session = corp
    sso_account_id = 111122223333
    sso_role_name = Developer
    region = us-east-1
    [sso-session corp]
    sso_start_url = https://d-123.awsapps.com/start
    sso_region = us-east-1
    sso_registration_scopes = sso:account:access
"""

SSO_LEGACY = """\
    [profile legacy]
    sso_start_url = https://d-123.awsapps.com/start
    sso_region = us-east-1
    sso_account_id = 111122223333
    sso_role_name = ReadOnly
"""


@scenario
def sso_session_profile(c: Ctx) -> Expect:
    server = c.identity()
    c.config(SSO_SESSION)
    write_sso_token(server, c.sso_cache, "corp")
    return Expect(profile="dev", method="sso", issued_by=server)


@scenario
def sso_session_via_aws_profile(c: Ctx) -> Expect:
    server = c.identity()
    c.config(SSO_SESSION)
    c.env(AWS_PROFILE="dev")
    write_sso_token(server, c.sso_cache, "corp")
    return Expect(method="sso", issued_by=server)


@scenario
def sso_legacy_profile(c: Ctx) -> Expect:
    server = c.identity()
    c.config(SSO_LEGACY)
    write_sso_token(server, c.sso_cache, "https://d-123.awsapps.com/start", refreshable=False)
    return Expect(profile="legacy", method="sso", issued_by=server)


@scenario
def sso_session_token_near_expiry_is_refreshed(c: Ctx) -> Expect:
    server = c.identity()
    c.config(SSO_SESSION)
    write_sso_token(server, c.sso_cache, "corp", expires_in=300)  # in the 15-min window
    return Expect(profile="dev", method="sso", issued_by=server)


@scenario
def sso_session_expired_token_is_refreshed(c: Ctx) -> Expect:
    server = c.identity()
    c.config(SSO_SESSION)
    write_sso_token(server, c.sso_cache, "corp", expires_in=-60, valid=False)
    return Expect(profile="dev", method="sso", issued_by=server)


@scenario
def sso_session_refresh_rejected(c: Ctx) -> Expect:
    server = c.identity()
    c.config(SSO_SESSION)
    write_sso_token(server, c.sso_cache, "corp", expires_in=-60, valid=False)
    server.oidc_refresh_tokens.clear()  # the refresh token was revoked
    return Expect(
        profile="dev",
        botocore_error=bce.TokenRetrievalError,
        creds_core_error=UserActionRequired,
    )


@scenario
def sso_session_registration_expired(c: Ctx) -> Expect:
    server = c.identity()
    c.config(SSO_SESSION)
    write_sso_token(
        server, c.sso_cache, "corp", expires_in=-60, valid=False, registration_expires_in=-60
    )
    return Expect(
        profile="dev",
        botocore_error=bce.TokenRetrievalError,
        creds_core_error=UserActionRequired,
    )


@scenario
def sso_legacy_expired_token(c: Ctx) -> Expect:
    server = c.identity()
    c.config(SSO_LEGACY)
    write_sso_token(
        server, c.sso_cache, "https://d-123.awsapps.com/start", expires_in=-60, refreshable=False
    )
    return Expect(
        profile="legacy",
        botocore_error=bce.UnauthorizedSSOTokenError,
        creds_core_error=UserActionRequired,
    )


@scenario
def sso_missing_token_file(c: Ctx) -> Expect:
    c.identity()
    c.config(SSO_SESSION)
    return Expect(
        profile="dev", botocore_error=bce.SSOTokenLoadError, creds_core_error=UserActionRequired
    )


@scenario
def sso_token_rejected_by_portal(c: Ctx) -> Expect:
    server = c.identity()
    c.config(SSO_SESSION)
    write_sso_token(server, c.sso_cache, "corp", valid=False)  # revoked at the portal
    return Expect(
        profile="dev",
        botocore_error=bce.UnauthorizedSSOTokenError,
        creds_core_error=UserActionRequired,
    )


@scenario
def sso_missing_sso_session_section(c: Ctx) -> Expect:
    c.identity()
    c.config(SSO_SESSION.replace("[sso-session corp]", "[sso-session other]"))
    return Expect(
        profile="dev", botocore_error=bce.InvalidConfigError, creds_core_error=NonRecoverableError
    )


@scenario
def sso_incomplete_profile(c: Ctx) -> Expect:
    c.identity()
    c.config("[profile half]\nsso_role_name = Developer\nsso_session = corp\n")
    return Expect(
        profile="half", botocore_error=bce.InvalidConfigError, creds_core_error=NonRecoverableError
    )


@scenario
def sso_inconsistent_region(c: Ctx) -> Expect:
    c.identity()
    c.config(SSO_SESSION.replace("sso_role_name = Developer", "sso_role_name = Developer\n"
                                 "    sso_region = eu-west-1"))  # fmt: skip
    return Expect(
        profile="dev", botocore_error=bce.InvalidConfigError, creds_core_error=NonRecoverableError
    )


@scenario
def sso_role_not_assigned(c: Ctx) -> Expect:
    server = c.identity()
    server.portal_status = 403
    c.config(SSO_SESSION)
    write_sso_token(server, c.sso_cache, "corp")
    return Expect(
        profile="dev", botocore_error=bce.ClientError, creds_core_error=NonRecoverableError
    )


@scenario
def sso_beats_credentials_file(c: Ctx) -> Expect:
    server = c.identity()
    c.config(SSO_SESSION)
    c.credentials(STATIC.replace("[dev]", "[dev]\n# static keys lose to sso"))
    write_sso_token(server, c.sso_cache, "corp")
    return Expect(profile="dev", method="sso", issued_by=server)


@scenario
def sso_role_with_sso_source_profile(c: Ctx) -> Expect:
    c.sts_env()
    server = c.identity()
    c.config(
        SSO_SESSION
        + f"""\
    [profile admin]
    role_arn = {role("admin")}
    source_profile = dev
    role_session_name = from-sso
"""
    )
    write_sso_token(server, c.sso_cache, "corp")
    return Expect(profile="admin", method="assume-role", identity=assumed("admin", "from-sso"))


@scenario
def sso_role_with_expired_sso_source(c: Ctx) -> Expect:
    c.sts_env()
    server = c.identity()
    c.config(
        SSO_SESSION
        + f"""\
    [profile admin]
    role_arn = {role("admin")}
    source_profile = dev
"""
    )
    write_sso_token(server, c.sso_cache, "corp", valid=False)  # revoked: log in again
    return Expect(
        profile="admin",
        botocore_error=bce.UnauthorizedSSOTokenError,
        creds_core_error=UserActionRequired,
    )


# -- aws login -----------------------------------------------------------------------------

LOGIN = """\
    [profile console]
    login_session = arn:aws:iam::123456789012:user/alice
    region = us-east-1
"""
LOGIN_SESSION = "arn:aws:iam::123456789012:user/alice"


def _crt() -> bool:
    try:
        import awscrt  # noqa: F401
    except ImportError:
        return False
    return True


def login_case(c: Ctx, expect: Callable[[IdentityServer], Expect]) -> Expect:
    """An ``aws login`` scenario where botocore supports it; elsewhere both sides end as
    botocore does: no credentials (no login support), or an error naming botocore[crt]."""
    server = c.identity()
    c.config(LOGIN)
    if not login_supported():
        return Expect(profile="console", none=True)
    if not _crt():
        return Expect(
            profile="console",
            botocore_error=bce.MissingDependencyException,
            creds_core_error=NonRecoverableError,
        )
    return expect(server)


def _bce(name: str) -> type[BaseException]:
    found: type[BaseException] = getattr(bce, name)
    return found


@scenario
def login_cached_credentials(c: Ctx) -> Expect:
    def expect(server: IdentityServer) -> Expect:
        path = write_login_token(server, c.login_cache, LOGIN_SESSION, expires_in=900)
        key = json.loads(path.read_text())["accessToken"]["accessKeyId"]
        return Expect(profile="console", method="login", key=key)

    return login_case(c, expect)


@scenario
def login_missing_cache_file(c: Ctx) -> Expect:
    return login_case(
        c,
        lambda server: Expect(
            profile="console",
            botocore_error=_bce("LoginTokenLoadError"),
            creds_core_error=UserActionRequired,
        ),
    )


@scenario
def login_incomplete_cache_file(c: Ctx) -> Expect:
    def expect(server: IdentityServer) -> Expect:
        write_login_token(server, c.login_cache, LOGIN_SESSION, drop=("dpopKey",))
        return Expect(
            profile="console",
            botocore_error=_bce("LoginTokenLoadError"),
            creds_core_error=UserActionRequired,
        )

    return login_case(c, expect)


@scenario
def login_expired_credentials_refreshed(c: Ctx) -> Expect:
    def expect(server: IdentityServer) -> Expect:
        write_login_token(server, c.login_cache, LOGIN_SESSION, expires_in=-60)
        # botocore refreshes first and writes the new session back; creds_core reads it.
        return Expect(profile="console", method="login", issued_by=server, shared_source=True)

    return login_case(c, expect)


@scenario
def login_refresh_refused(c: Ctx) -> Expect:
    def expect(server: IdentityServer) -> Expect:
        write_login_token(server, c.login_cache, LOGIN_SESSION, expires_in=-60)
        server.signin_refresh_tokens.clear()  # the session was ended
        return Expect(
            profile="console",
            botocore_error=_bce("LoginRefreshRequired"),
            creds_core_error=UserActionRequired,
        )

    return login_case(c, expect)


# -- the test ------------------------------------------------------------------------------


def caller_arn(endpoint: str, outcome: Outcome) -> str:
    client = botocore.session.Session().create_client(
        "sts",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id=outcome.access_key,
        aws_secret_access_key=outcome.secret,
        aws_session_token=outcome.token,
    )
    arn: str = client.get_caller_identity()["Arn"]
    return arn


@pytest.fixture(autouse=True)
def _isolated(isolated_aws: Path) -> None:
    pass


def test_scenario_count() -> None:
    assert len(SCENARIOS) >= 70
    assert len([n for n in SCENARIOS if n.startswith("sso_")]) >= 10
    assert len([n for n in SCENARIOS if n.startswith("login_")]) >= 3


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_parity(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: Any) -> None:
    ctx = Ctx(tmp_path, monkeypatch, request)
    expect = SCENARIOS[name](ctx)
    theirs = resolve_botocore(expect.profile)
    ours = resolve_creds_core(expect.profile)
    report = f"botocore: {theirs.describe()}\ncreds_core: {ours.describe()}"

    if expect.botocore_error is not None or expect.creds_core_error is not None:
        assert isinstance(theirs.error, expect.botocore_error or Exception), report
        assert type(ours.error) is expect.creds_core_error, report
        assert ours.error is not None and getattr(ours.error, "provider", None), report
        return
    if expect.none:
        assert theirs.none, report
        assert type(ours.error) is CredentialsNotLoaded, report
        return

    assert theirs.error is None and ours.error is None, report
    assert theirs.method == expect.method, report
    assert ours.method == expect.method, report
    assert theirs.access_key and ours.access_key, report
    if expect.key is not None:
        assert theirs.access_key == ours.access_key == expect.key, report
        assert theirs.token == ours.token, report
    if expect.token is not None:
        assert theirs.token == ours.token == expect.token, report
    if expect.issued_by is not None:
        issued = [i.access_key_id for i in expect.issued_by.issued]
        assert theirs.access_key in issued and ours.access_key in issued, report
        if not expect.shared_source:
            assert theirs.access_key != ours.access_key, "each side must fetch its own"
    if expect.identity is not None:
        endpoint = request.getfixturevalue("moto_endpoint")
        assert caller_arn(endpoint, theirs) == expect.identity, report
        assert caller_arn(endpoint, ours) == expect.identity, report
