"""Role profiles of the shared config: ``role_arn`` with ``source_profile`` or
``credential_source``, resolved like botocore's ``AssumeRoleProvider``.

A profile with ``role_arn`` (and no ``web_identity_token_file``) assumes that role with
credentials from

* ``credential_source``: ``Environment``, ``Ec2InstanceMetadata`` or ``EcsContainer``;
* ``source_profile``: that profile's own credentials (static keys, process, web identity...) or,
  when it is itself a role profile without static keys, the role it assumes; and so on down the
  chain.  A profile may name itself as source when it holds static keys.  Any other loop is a
  :class:`NonRecoverableError`, found before any call is made.

Each hop is an :class:`~creds_core.providers.AssumeRoleProvider` whose source is a
:class:`~creds_core.CredentialCache`, so every link of the chain is cached and refreshed on its
own.  The plan is rebuilt when the configuration files change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import botocore.session

from creds_core._core import CredentialCache, Credentials, ProviderChain
from creds_core._provider import Provider
from creds_core.providers._config import ConfigSnapshot, ConfigSource
from creds_core.providers.assume_role import AssumeRoleProvider, prompt_mfa
from creds_core.providers.errors import non_recoverable, not_loaded
from creds_core.types import ProviderLike

__all__ = ["ProfileAssumeRoleProvider", "is_role_profile", "profile_providers"]

_STATIC_KEYS = ("aws_access_key_id", "aws_secret_access_key")


def is_role_profile(section: Mapping[str, Any]) -> bool:
    """botocore's test: ``role_arn`` set and no ``web_identity_token_file``."""
    return "role_arn" in section and "web_identity_token_file" not in section


def _has_static(section: Mapping[str, Any]) -> bool:
    return any(k in section for k in _STATIC_KEYS)


def profile_providers(
    profile: str | None,
    config: ConfigSource,
    *,
    disable_env_vars: bool,
) -> list[Provider]:
    """The providers botocore tries for one profile, in its order: web identity, SSO, shared
    credentials file, login, credential process, config file."""
    from creds_core.providers.identity_center import LoginProvider, SsoProvider
    from creds_core.providers.process import ProcessProvider
    from creds_core.providers.profile import ConfigFileProvider, SharedCredentialsProvider
    from creds_core.providers.web_identity import WebIdentityProvider

    return [
        WebIdentityProvider(profile=profile, config=config, disable_env_vars=disable_env_vars),
        SsoProvider(profile, config=config),
        SharedCredentialsProvider(profile, config=config),
        LoginProvider(profile, config=config),
        ProcessProvider(profile=profile, config=config),
        ConfigFileProvider(profile, config=config),
    ]


class ProfileAssumeRoleProvider(Provider):
    """The role a profile of the shared config assumes ("nothing here" for other profiles).

    ``profile``: the profile (None: the selected one); ``config``: a shared
    :class:`ConfigSource`.  ``credential_sources`` maps ``credential_source`` names to
    providers (default: new environment, IMDS and container providers).  ``mfa_token``:
    called with the ``mfa_serial`` of a profile, returns the code (default: ask on the
    terminal, as botocore does).  ``source_cache_options``: options of the caches built around
    each source.
    """

    name = "assume-role"

    def __init__(
        self,
        profile: str | None = None,
        *,
        config: ConfigSource | None = None,
        session: botocore.session.Session | None = None,
        credential_sources: Mapping[str, Any] | None = None,
        mfa_token: Callable[[str], str] | None = None,
        source_cache_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._profile = profile
        self._config = config if config is not None else ConfigSource(profile, session=session)
        self._sources = dict(credential_sources) if credential_sources is not None else None
        self._mfa_token = mfa_token
        self._cache_options = dict(source_cache_options or {})
        self._lock = threading.Lock()
        self._built: tuple[ConfigSnapshot, str, AssumeRoleProvider] | None = None

    def _credential_sources(self) -> dict[str, Any]:
        if self._sources is None:
            from creds_core.providers.container import ContainerProvider
            from creds_core.providers.environment import EnvironmentProvider
            from creds_core.providers.imds import InstanceMetadataProvider

            self._sources = {
                "Environment": EnvironmentProvider(),
                "Ec2InstanceMetadata": InstanceMetadataProvider(config=self._config),
                "EcsContainer": ContainerProvider(),
            }
        return self._sources

    def provide(self) -> Credentials:
        snapshot = self._config.snapshot(self.name)
        profile = self._profile if self._profile is not None else snapshot.profile_name
        if not is_role_profile(snapshot.profile(profile)):
            raise not_loaded(self.name, f'profile "{profile}" has no role_arn')
        with self._lock:
            built = self._built
            if built is None or built[0] is not snapshot or built[1] != profile:
                built = (snapshot, profile, self._role(snapshot, profile, [profile]))
                self._built = built
        return built[2].provide()

    def plan(self) -> list[str]:
        """The chain of profiles the selected one resolves through (for messages and tests)."""
        snapshot = self._config.snapshot(self.name)
        profile = self._profile if self._profile is not None else snapshot.profile_name
        visited = [profile]
        self._role(snapshot, profile, visited)
        return visited

    def _cache(self, provider: ProviderLike, name: str) -> CredentialCache:
        options: dict[str, Any] = {"load_timeout": 30.0, "name": name}
        options.update(self._cache_options)
        return CredentialCache(provider, **options)

    def _role(self, snapshot: ConfigSnapshot, name: str, visited: list[str]) -> AssumeRoleProvider:
        profiles = snapshot.profiles
        section = profiles[name]
        role_arn = str(section["role_arn"])
        source_profile = section.get("source_profile")
        credential_source = section.get("credential_source")
        if source_profile is not None and credential_source is not None:
            raise non_recoverable(
                self.name,
                f'profile "{name}" has both source_profile and credential_source; keep one',
                code="InvalidConfigError",
            )
        if source_profile is None and credential_source is None:
            raise non_recoverable(
                self.name,
                f'profile "{name}" has role_arn but neither source_profile nor '
                "credential_source; add one of them",
                code="PartialCredentialsError",
            )
        source: CredentialCache
        if credential_source is not None:
            sources = self._credential_sources()
            provider = sources.get(str(credential_source))
            if provider is None:
                raise non_recoverable(
                    self.name,
                    f'the credential_source "{credential_source}" of profile "{name}" is not '
                    f"valid; use one of {', '.join(sorted(sources))}",
                    code="InvalidConfigError",
                )
            source = self._cache(provider, f"credential_source {credential_source}")
            label = f'the credential_source "{credential_source}" of profile "{name}"'
        else:
            source_name = str(source_profile)
            if source_name not in profiles:
                raise non_recoverable(
                    self.name,
                    f'the source_profile "{source_name}" of profile "{name}" does not exist; '
                    "create it or fix source_profile",
                    code="InvalidConfigError",
                )
            source_section = profiles[source_name]
            if source_name in visited and (source_name != name or not _has_static(source_section)):
                loop = " -> ".join([*visited, source_name])
                raise non_recoverable(
                    self.name,
                    f"source_profile loop: {loop}; a chain of source_profile settings must end "
                    "in a profile with credentials (static keys, credential_process, "
                    "web identity...) or a credential_source",
                    code="InfiniteLoopConfigError",
                )
            visited.append(source_name)
            if _has_static(source_section) or not is_role_profile(source_section):
                chain = ProviderChain(
                    profile_providers(source_name, self._config, disable_env_vars=True),
                    name=f'profile "{source_name}"',
                )
                source = self._cache(chain, f'source profile "{source_name}"')
            else:
                inner = self._role(snapshot, source_name, visited)
                source = self._cache(inner, f'role of profile "{source_name}"')
            label = f'the source profile "{source_name}" (of profile "{name}")'

        kwargs: dict[str, Any] = {}
        if section.get("role_session_name"):
            kwargs["role_session_name"] = str(section["role_session_name"])
        if section.get("external_id") is not None:
            kwargs["external_id"] = str(section["external_id"])
        duration = section.get("duration_seconds")
        if duration is not None:
            try:
                kwargs["duration_seconds"] = int(duration)
            except (TypeError, ValueError):
                pass  # botocore ignores a duration that is not a number
        serial = section.get("mfa_serial")
        if serial is not None:
            serial = str(serial)
            kwargs["serial_number"] = serial
            ask = self._mfa_token
            kwargs["mfa_token"] = (lambda: ask(serial)) if ask is not None else prompt_mfa(serial)
        return AssumeRoleProvider(
            source,
            role_arn,
            session=snapshot.session,
            source_label=label,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"ProfileAssumeRoleProvider(profile={self._profile!r})"
