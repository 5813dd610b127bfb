"""Credentials kept in the shared credentials and config files (and botocore's legacy files).

The files are parsed by botocore's own loader (``botocore.configloader``) on every
``provide()``, so a rotated credentials file is picked up at the next refresh.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import botocore.configloader
import botocore.session
from botocore.exceptions import ConfigNotFound, ConfigParseError
from botocore.utils import parse_key_val_file

from creds_core._core import Credentials
from creds_core._provider import Provider
from creds_core.providers._config import ConfigSnapshot, ConfigSource
from creds_core.providers.errors import non_recoverable, not_loaded

__all__ = [
    "BotoConfigProvider",
    "ConfigFileProvider",
    "Ec2CredentialsFileProvider",
    "ProfileCheck",
    "SharedCredentialsProvider",
]

_ACCESS_KEY = "aws_access_key_id"
_SECRET_KEY = "aws_secret_access_key"
# botocore checks the old name first.
_TOKENS = ("aws_security_token", "aws_session_token")
_ACCOUNT_ID = "aws_account_id"


class _ProfileProvider(Provider):
    """Base of the providers that read one profile of the shared configuration.

    ``profile``: the profile to read (None: the one the configuration selects: the ``config``
    source's explicit profile, else AWS_PROFILE / AWS_DEFAULT_PROFILE, else ``default``).
    ``config``: a :class:`ConfigSource` shared with other providers (one botocore session for
    all of them); by default one of its own.  ``session``: a botocore session whose instance
    variables are honoured (only when ``config`` is not given).
    """

    def __init__(
        self,
        profile: str | None = None,
        *,
        config: ConfigSource | None = None,
        session: botocore.session.Session | None = None,
    ) -> None:
        self._profile = profile
        self._config = config if config is not None else ConfigSource(profile, session=session)

    @property
    def config(self) -> ConfigSource:
        return self._config

    def _snapshot(self) -> tuple[ConfigSnapshot, str]:
        snapshot = self._config.snapshot(self._name())
        return snapshot, self._profile if self._profile is not None else snapshot.profile_name

    def _name(self) -> str:
        return self.name or type(self).__name__

    def _credentials_from_section(
        self, section: Mapping[str, Any], profile: str, where: str
    ) -> Credentials | None:
        if _ACCESS_KEY not in section:
            return None
        secret = section.get(_SECRET_KEY)
        if not secret:
            raise non_recoverable(
                self._name(),
                f'profile "{profile}" in {where} has {_ACCESS_KEY} but no {_SECRET_KEY}; '
                "add it (or remove the access key)",
                code="PartialCredentialsError",
            )
        token = next((section[k] for k in _TOKENS if section.get(k)), None)
        return Credentials(
            str(section[_ACCESS_KEY]),
            str(secret),
            None if token is None else str(token),
            account_id=section.get(_ACCOUNT_ID) or None,
            provider_name=self._name(),
        )

    def _static_keys(
        self, variable: str, label: str, read_profiles: Callable[[str], Mapping[str, Any]]
    ) -> Credentials:
        """The static keys of this profile in the file botocore's `variable` names."""
        snapshot, profile = self._snapshot()
        path = snapshot.get_config_variable(variable)
        try:
            profiles = read_profiles(path)
        except ConfigNotFound as exc:
            raise not_loaded(self._name(), f"no {label} at {path}") from exc
        except ConfigParseError as exc:
            raise non_recoverable(
                self._name(),
                f"the {label} {path} cannot be parsed; fix its syntax",
                code="ConfigParseError",
            ) from exc
        section = profiles.get(profile)
        if not isinstance(section, Mapping):
            raise not_loaded(self._name(), f'no profile "{profile}" in {path}')
        creds = self._credentials_from_section(section, profile, path)
        if creds is None:
            raise not_loaded(self._name(), f'profile "{profile}" in {path} has no {_ACCESS_KEY}')
        return creds

    def __repr__(self) -> str:
        return f"{type(self).__name__}(profile={self._profile!r})"


class SharedCredentialsProvider(_ProfileProvider):
    """Static keys of a profile in the shared credentials file (``~/.aws/credentials`` or
    ``AWS_SHARED_CREDENTIALS_FILE``)."""

    name = "shared-credentials-file"
    canonical_name = "SharedCredentials"

    def provide(self) -> Credentials:
        return self._static_keys(
            "credentials_file", "shared credentials file", botocore.configloader.raw_config_parse
        )


class ConfigFileProvider(_ProfileProvider):
    """Static keys of a profile in the shared config file (``~/.aws/config`` or
    ``AWS_CONFIG_FILE``)."""

    name = "config-file"
    canonical_name = "SharedConfig"

    def provide(self) -> Credentials:
        return self._static_keys(
            "config_file",
            "shared config file",
            lambda path: botocore.configloader.load_config(path).get("profiles", {}),
        )


class ProfileCheck(_ProfileProvider):
    """First link of the default chain: fails when the selected profile does not exist.

    botocore raises ``ProfileNotFound`` for a missing profile (other than ``default``) before
    it looks anywhere, even at environment variables; this keeps that behaviour.  Otherwise
    "nothing here", so the chain moves on.
    """

    name = "profile"

    def provide(self) -> Credentials:
        snapshot, profile = self._snapshot()
        snapshot.check_profile(self.name)
        raise not_loaded(self.name, f'profile "{profile}" selected')


class Ec2CredentialsFileProvider(Provider):
    """The original EC2 tools' key file named by ``AWS_CREDENTIAL_FILE`` (``AWSAccessKeyId=``,
    ``AWSSecretKey=`` lines), as botocore's ``OriginalEC2Provider`` reads it."""

    name = "ec2-credentials-file"
    ENV = "AWS_CREDENTIAL_FILE"

    def provide(self) -> Credentials:
        path = os.environ.get(self.ENV)
        if not path:
            raise not_loaded(self.name, f"{self.ENV} is not set")
        full = os.path.expanduser(path)
        try:
            values = parse_key_val_file(full)
        except ConfigNotFound as exc:
            raise non_recoverable(
                self.name,
                f"{self.ENV} names {full}, which cannot be read; fix or unset {self.ENV}",
                code="ConfigNotFound",
            ) from exc
        if "AWSAccessKeyId" not in values:
            raise not_loaded(self.name, f"{full} has no AWSAccessKeyId")
        secret = values.get("AWSSecretKey")
        if not secret:
            raise non_recoverable(
                self.name,
                f"{full} has AWSAccessKeyId but no AWSSecretKey",
                code="PartialCredentialsError",
            )
        return Credentials(values["AWSAccessKeyId"], secret, provider_name=self.name)


class BotoConfigProvider(Provider):
    """The ``[Credentials]`` section of a boto2 config file (``BOTO_CONFIG``, else
    ``/etc/boto.cfg`` then ``~/.boto``), as botocore's ``BotoProvider`` reads it."""

    name = "boto-config"
    ENV = "BOTO_CONFIG"
    DEFAULT_FILES = ("/etc/boto.cfg", "~/.boto")

    def provide(self) -> Credentials:
        configured = os.environ.get(self.ENV)
        candidates = (configured,) if configured is not None else self.DEFAULT_FILES
        for filename in candidates:
            try:
                config = botocore.configloader.raw_config_parse(filename)
            except ConfigNotFound:
                continue
            except ConfigParseError as exc:
                raise non_recoverable(
                    self.name,
                    f"{filename} cannot be parsed; fix its syntax",
                    code="ConfigParseError",
                ) from exc
            section = config.get("Credentials")
            if isinstance(section, Mapping) and _ACCESS_KEY in section:
                secret = section.get(_SECRET_KEY)
                if not secret:
                    raise non_recoverable(
                        self.name,
                        f"[Credentials] in {filename} has {_ACCESS_KEY} but no {_SECRET_KEY}",
                        code="PartialCredentialsError",
                    )
                return Credentials(str(section[_ACCESS_KEY]), str(secret), provider_name=self.name)
        raise not_loaded(self.name, "no boto config file with a [Credentials] section")
