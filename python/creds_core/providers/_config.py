"""Shared-config access for the providers, through botocore's own loaders.

Providers read the shared config and credentials files on every ``provide()`` so that a
rotated credentials file or an edited profile is picked up at the next refresh, but a new
botocore session (about 15 ms to build) is only made when something it depends on changed: the
files' identity (path, size, mtime, inode) or the environment variables that select them.

All sessions made here share one botocore data loader, so service models and endpoint data are
read from disk once per process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.exceptions import ProfileNotFound

from creds_core.providers.errors import from_exception, non_recoverable

__all__ = ["ConfigSnapshot", "ConfigSource", "new_session", "shared_loader"]

# Environment variables whose change means a new botocore session must be built.
_SELECTING_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "HOME",
    "USERPROFILE",
)

_LOADER_LOCK = threading.Lock()
_LOADER: Any = None


def shared_loader() -> Any:
    """The process-wide botocore data loader (service models, endpoints), built once."""
    global _LOADER
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = botocore.session.Session().get_component("data_loader")
        return _LOADER


def new_session(
    profile: str | None = None, *, like: botocore.session.Session | None = None
) -> botocore.session.Session:
    """A fresh botocore session sharing the process-wide data loader.

    ``like``: copy that session's instance variables (explicit profile, region, config file...).
    ``profile``, when given, overrides the profile.
    """
    session = botocore.session.Session()
    if like is not None:
        for name, value in like.instance_variables().items():
            session.set_config_variable(name, value)
    if profile is not None:
        session.set_config_variable("profile", profile)
    session.register_component("data_loader", shared_loader())
    return session


def _file_identity(path: str | None) -> tuple[str, int, int, int] | None:
    if not path:
        return None
    full = os.path.expanduser(path)
    try:
        st = os.stat(full)
    except OSError:
        return None
    return (full, st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True)
class ConfigSnapshot:
    """One consistent view of the configuration: a botocore session and its full config."""

    session: botocore.session.Session
    #: The profile in effect (``default`` when none is selected).
    profile_name: str
    #: True when the profile was given explicitly (not through AWS_PROFILE): environment
    #: credentials are then ignored, as botocore does.
    explicit_profile: bool
    full_config: Mapping[str, Any]

    @property
    def profiles(self) -> Mapping[str, Mapping[str, Any]]:
        profiles = self.full_config.get("profiles", {})
        return profiles if isinstance(profiles, Mapping) else {}

    def profile(self, name: str | None = None) -> Mapping[str, Any]:
        """The settings of profile ``name`` (default: the selected one), {} if it does not
        exist; includes the keys of the credentials file, as botocore merges them."""
        found = self.profiles.get(name if name is not None else self.profile_name, {})
        return found if isinstance(found, Mapping) else {}

    def get_config_variable(self, name: str) -> Any:
        """botocore's resolution of a config variable (instance, environment, profile)."""
        return self.session.get_config_variable(name)

    def check_profile(self, provider: str) -> None:
        """Raise NonRecoverableError when the selected profile does not exist (``default``
        may be missing, as in botocore)."""
        try:
            self.session.get_scoped_config()
        except ProfileNotFound as exc:
            raise non_recoverable(
                provider,
                f'the config profile "{self.profile_name}" could not be found in the config or '
                "credentials file; create it or select another profile (AWS_PROFILE or the "
                "profile argument)",
                code="ProfileNotFound",
            ) from exc


class ConfigSource:
    """Where providers read the shared configuration: a profile and an optional base session.

    ``profile=None`` follows AWS_PROFILE / AWS_DEFAULT_PROFILE (then ``default``), like
    botocore.  ``session``: a botocore session whose instance variables (explicit profile,
    region, config file...) are honoured; it is never modified.
    """

    def __init__(
        self,
        profile: str | None = None,
        *,
        session: botocore.session.Session | None = None,
    ) -> None:
        self._profile = profile
        self._base = session
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._snapshot: ConfigSnapshot | None = None

    @property
    def profile(self) -> str | None:
        """The profile given explicitly (None: the environment or ``default`` decides)."""
        if self._profile is not None:
            return self._profile
        if self._base is not None:
            value = self._base.instance_variables().get("profile")
            return str(value) if value is not None else None
        return None

    @property
    def explicit_profile(self) -> bool:
        return self.profile is not None

    def _current_key(self, probe: botocore.session.Session) -> tuple[Any, ...]:
        env = tuple(os.environ.get(name) for name in _SELECTING_ENV)
        config_file = probe.get_config_variable("config_file")
        credentials_file = probe.get_config_variable("credentials_file")
        return (env, _file_identity(config_file), _file_identity(credentials_file))

    def snapshot(self, provider: str = "config") -> ConfigSnapshot:
        """The current configuration; rebuilt only when the files or their selection changed.

        Raises NonRecoverableError for a config file that cannot be parsed.
        """
        with self._lock:
            if self._snapshot is not None:
                if self._current_key(self._snapshot.session) == self._key:
                    return self._snapshot
            session = new_session(self._profile, like=self._base)
            key = self._current_key(session)  # before reading: a later edit means a rebuild
            try:
                full_config = session.full_config
                profile_name = session.profile or "default"
            except Exception as exc:
                raise from_exception(
                    exc, provider=provider, action="reading the shared config files"
                ) from exc
            snapshot = ConfigSnapshot(
                session=session,
                profile_name=str(profile_name),
                explicit_profile=self.explicit_profile,
                full_config=full_config,
            )
            self._snapshot = snapshot
            self._key = key
            return snapshot
