"""Credential providers: botocore's sources, as creds_core providers, and the default chain.

Every provider's ``name`` is botocore's method name for the same source where there is one,
and is set as ``provider_name`` on the credentials it returns::

    from creds_core import CredentialCache
    from creds_core.providers import default_chain

    cache = CredentialCache(default_chain(profile="prod"))
    credentials = cache.get()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import botocore.session

from creds_core._core import ProviderChain
from creds_core.providers._config import ConfigSnapshot, ConfigSource
from creds_core.providers.assume_role import AssumeRoleProvider
from creds_core.providers.container import ContainerProvider
from creds_core.providers.environment import EnvironmentProvider
from creds_core.providers.errors import (
    NON_RECOVERABLE_CODES,
    THROTTLING_CODES,
    classify_code,
    from_exception,
)
from creds_core.providers.identity_center import LoginProvider, SsoProvider
from creds_core.providers.imds import InstanceMetadataProvider
from creds_core.providers.process import ProcessProvider
from creds_core.providers.profile import (
    BotoConfigProvider,
    ConfigFileProvider,
    Ec2CredentialsFileProvider,
    ProfileCheck,
    SharedCredentialsProvider,
)
from creds_core.providers.profile_role import ProfileAssumeRoleProvider, profile_providers
from creds_core.providers.static import StaticProvider
from creds_core.providers.web_identity import WebIdentityProvider

__all__ = [
    "NON_RECOVERABLE_CODES",
    "THROTTLING_CODES",
    "AssumeRoleProvider",
    "BotoConfigProvider",
    "ConfigFileProvider",
    "ConfigSnapshot",
    "ConfigSource",
    "ContainerProvider",
    "Ec2CredentialsFileProvider",
    "EnvironmentProvider",
    "InstanceMetadataProvider",
    "LoginProvider",
    "ProcessProvider",
    "ProfileAssumeRoleProvider",
    "ProfileCheck",
    "SharedCredentialsProvider",
    "SsoProvider",
    "StaticProvider",
    "WebIdentityProvider",
    "classify_code",
    "default_chain",
    "from_exception",
    "profile_providers",
]


def default_chain(
    profile: str | None = None,
    *,
    session: botocore.session.Session | None = None,
    mfa_token: Callable[[str], str] | None = None,
    source_cache_options: dict[str, Any] | None = None,
) -> ProviderChain:
    """botocore's default credential chain, in botocore's order.

    ``profile``: an explicit profile (then environment credentials are ignored, as in
    botocore); None follows AWS_PROFILE / AWS_DEFAULT_PROFILE, else ``default``.
    ``session``: a botocore session whose instance variables (profile, region, config file...)
    are honoured.  ``mfa_token(serial)`` answers the MFA codes role profiles need (default:
    ask on the terminal).

    Order (``create_credential_resolver`` in botocore): a check that the selected profile
    exists; ``env`` (unless a profile was given explicitly); ``assume-role`` (role profiles);
    ``assume-role-with-web-identity``; ``sso`` (IAM Identity Center); ``shared-credentials-file``;
    ``login`` (``aws login``); ``custom-process``; ``config-file``;
    ``ec2-credentials-file``; ``boto-config``; ``container-role``; ``iam-role``.
    """
    config = ConfigSource(profile, session=session)
    explicit = config.explicit_profile
    env = EnvironmentProvider()
    container = ContainerProvider()
    imds = InstanceMetadataProvider(config=config)
    providers: list[Any] = [ProfileCheck(config=config)]
    if not explicit:
        providers.append(env)
    providers.append(
        ProfileAssumeRoleProvider(
            config=config,
            credential_sources={
                "Environment": env,
                "Ec2InstanceMetadata": imds,
                "EcsContainer": container,
            },
            mfa_token=mfa_token,
            source_cache_options=source_cache_options,
        )
    )
    providers.extend(profile_providers(None, config, disable_env_vars=explicit))
    providers.extend([Ec2CredentialsFileProvider(), BotoConfigProvider(), container, imds])
    label = f'profile "{config.profile}"' if explicit else "AWS_PROFILE or default"
    return ProviderChain(providers, name=f"default chain ({label})")
