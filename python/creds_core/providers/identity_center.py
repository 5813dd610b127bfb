"""IAM Identity Center (SSO) and ``aws login`` profiles, through botocore's own classes.

Nothing of OIDC, the token caches or DPoP is re-implemented here: each ``provide()`` builds
botocore's provider for the profile (``botocore.credentials.SSOProvider`` with
``botocore.tokens.SSOTokenProvider``; ``botocore.credentials.LoginProvider``) exactly as
botocore's default chain does, and runs its credential fetcher once.  So:

* ``sso_session`` and legacy (``sso_start_url``) profiles, the token cache in
  ``~/.aws/sso/cache/``, the token refresh through SSO OIDC ``CreateToken`` written back to the
  cache file, and ``GetRoleCredentials`` at the portal behave as in botocore, and so do
  ``aws login`` sessions (``~/.aws/login/cache/``, DPoP-signed ``CreateOAuth2Token``);
* ``AWS_ENDPOINT_URL_SSO``, ``AWS_ENDPOINT_URL_SSO_OIDC``, ``AWS_ENDPOINT_URL_SIGNIN`` (and
  the profile's ``services`` section) are honoured, as botocore's clients honour them.

creds_core's cache replaces botocore's refresh lock and in-memory caches.  Failures only the
user can fix (an expired or rejected token, a missing token file, ``aws login`` needed again)
are :class:`~creds_core.UserActionRequired` with the command to run: the cache serves what it
has while it is valid, then raises at once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import botocore
import botocore.credentials
from botocore import exceptions as bce

from creds_core._core import Credentials
from creds_core.providers._sts import quiet_botocore
from creds_core.providers.errors import from_exception, needs_user, non_recoverable, not_loaded
from creds_core.providers.profile import _ProfileProvider

__all__ = ["LoginProvider", "SsoProvider", "login_supported"]

LOG = logging.getLogger(__name__)

_SSO_PROFILE_KEYS = ("sso_role_name", "sso_account_id")

# Present in botocore 1.41 and later only.
_LOGIN_NEEDS_USER: tuple[type[BaseException], ...] = tuple(
    getattr(bce, name)
    for name in ("LoginRefreshRequired", "LoginTokenLoadError")
    if hasattr(bce, name)
)
_LOGIN_ERROR: tuple[type[BaseException], ...] = tuple(
    getattr(bce, name) for name in ("LoginError",) if hasattr(bce, name)
)

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(what: str) -> None:
    with _warned_lock:
        if what in _warned:
            return
        _warned.add(what)
    LOG.warning(
        "botocore %s has no %s; creds_core falls back to botocore's plain path for it",
        botocore.__version__,
        what,
    )


def _fetch(provider_name: str, loaded: Any) -> dict[str, Any]:
    """The credentials (botocore metadata keys, with expiry) of what a botocore provider's
    ``load()`` returned, fetched now through its refresh function."""
    refresh = getattr(loaded, "_refresh_using", None)
    if callable(refresh):
        data: dict[str, Any] = dict(refresh())
        return data
    # No refresh function on this botocore version: its own (possibly cached) credentials.
    _warn_once("RefreshableCredentials._refresh_using")
    frozen = loaded.get_frozen_credentials()
    return {
        "access_key": frozen.access_key,
        "secret_key": frozen.secret_key,
        "token": frozen.token,
        "expiry_time": getattr(loaded, "_expiry_time", None),
        "account_id": getattr(frozen, "account_id", None),
    }


class SsoProvider(_ProfileProvider):
    """Role credentials of an IAM Identity Center profile (``sso_session`` or legacy
    ``sso_start_url``), as botocore's ``SSOProvider`` gets them; "nothing here" for a profile
    without ``sso_role_name`` / ``sso_account_id``."""

    name = "sso"

    def _login_command(self, profile: str) -> str:
        return f"aws sso login --profile {profile}"

    def provide(self) -> Credentials:
        snapshot, profile = self._snapshot()
        section = snapshot.profile(profile)
        if not any(key in section for key in _SSO_PROFILE_KEYS):
            raise not_loaded(self.name, f'profile "{profile}" has no IAM Identity Center role')
        session = snapshot.session
        try:
            from botocore.tokens import SSOTokenProvider

            provider = botocore.credentials.SSOProvider(
                load_config=lambda: snapshot.full_config,
                client_creator=session.create_client,
                profile_name=profile,
                cache={},  # the CredentialCache is the cache
                token_provider=SSOTokenProvider(session, profile_name=profile),
            )
            with quiet_botocore():
                loaded = provider.load()
                if loaded is None:
                    raise not_loaded(self.name, f'profile "{profile}" has no SSO configuration')
                data = _fetch(self.name, loaded)
        except (
            bce.UnauthorizedSSOTokenError,
            bce.SSOTokenLoadError,
            bce.TokenRetrievalError,
        ) as exc:
            raise needs_user(
                self.name,
                f'the IAM Identity Center session of profile "{profile}" has expired, was '
                f"revoked or was never started ({type(exc).__name__}); run "
                f"`{self._login_command(profile)}`",
                code=type(exc).__name__,
            ) from exc
        except bce.SSOError as exc:
            raise non_recoverable(
                self.name, f'IAM Identity Center profile "{profile}": {exc}', code="SSOError"
            ) from exc
        except Exception as exc:
            raise from_exception(
                exc, provider=self.name, action=f'IAM Identity Center profile "{profile}"'
            ) from exc
        return Credentials.from_mapping(data, provider_name=self.name)


def login_supported() -> bool:
    """Whether the installed botocore has ``aws login`` support (botocore 1.41 and later)."""
    return hasattr(botocore.credentials, "LoginProvider")


class LoginProvider(_ProfileProvider):
    """Credentials of an ``aws login`` profile (``login_session``), as botocore's
    ``LoginProvider`` gets them (botocore 1.41 and later, with ``creds_core[login]``, i.e.
    ``botocore[crt]``); "nothing here" for other profiles."""

    name = "login"

    def provide(self) -> Credentials:
        snapshot, profile = self._snapshot()
        if "login_session" not in snapshot.profile(profile):
            raise not_loaded(self.name, f'profile "{profile}" has no login_session')
        if not login_supported():
            raise not_loaded(
                self.name,
                f'profile "{profile}" uses an `aws login` session, which botocore '
                f"{botocore.__version__} does not support; upgrade botocore to 1.41 or later",
                code="Unsupported",
            )
        session = snapshot.session
        command = f"aws login --profile {profile}"
        try:
            login_provider: Any = getattr(botocore.credentials, "LoginProvider")  # noqa: B009
            provider = login_provider(
                load_config=lambda: snapshot.full_config,
                client_creator=session.create_client,
                profile_name=profile,
            )
            with quiet_botocore():
                loaded = provider.load()
                if loaded is None:
                    raise not_loaded(self.name, f'profile "{profile}" has no login_session')
                data = _fetch(self.name, loaded)
        except bce.MissingDependencyException as exc:
            raise non_recoverable(
                self.name,
                f'profile "{profile}" uses an `aws login` session, which needs botocore[crt]; '
                "install it with `pip install 'creds_core[login]'`",
                code="MissingDependencyException",
            ) from exc
        except _LOGIN_NEEDS_USER as exc:
            raise needs_user(
                self.name,
                f'the `aws login` session of profile "{profile}" has expired or cannot be read '
                f"({type(exc).__name__}); run `{command}`",
                code=type(exc).__name__,
            ) from exc
        except _LOGIN_ERROR as exc:
            raise non_recoverable(
                self.name, f'`aws login` profile "{profile}": {exc}', code=type(exc).__name__
            ) from exc
        except Exception as exc:
            raise from_exception(
                exc, provider=self.name, action=f'`aws login` profile "{profile}"'
            ) from exc
        return Credentials.from_mapping(data, provider_name=self.name)


#: ``creds-core doctor`` warns when the SSO access token expires sooner than this.
SSO_TOKEN_WARNING = 3600.0


def sso_token_status(profile: str | None = None) -> dict[str, Any] | None:
    """What ``creds-core doctor`` shows of a profile's IAM Identity Center token: the cache
    file, the token's expiry, whether it can be refreshed (a refresh token and a registration
    that has not expired).  None when the profile is not an IAM Identity Center profile.
    Never returns the token itself."""
    import hashlib
    import json
    import os
    from datetime import datetime, timezone

    from botocore.utils import parse_to_aware_datetime

    from creds_core.providers._config import ConfigSource

    snapshot = ConfigSource(profile).snapshot("sso")
    name = profile if profile is not None else snapshot.profile_name
    section = snapshot.profile(name)
    if not any(key in section for key in _SSO_PROFILE_KEYS):
        return None
    session_name = section.get("sso_session")
    key_source = session_name or section.get("sso_start_url")
    status: dict[str, Any] = {
        "profile": name,
        "sso_session": session_name,
        "command": f"aws sso login --profile {name}",
        "path": None,
        "expires_at": None,
        "refreshable": False,
    }
    if not key_source:
        return status
    cache_dir = getattr(
        botocore.credentials.SSOProvider,
        "_SSO_TOKEN_CACHE_DIR",
        os.path.expanduser(os.path.join("~", ".aws", "sso", "cache")),
    )
    digest = hashlib.sha1(str(key_source).encode("utf-8")).hexdigest()
    path = os.path.join(cache_dir, f"{digest}.json")
    status["path"] = path
    try:
        with open(path, encoding="utf-8") as f:
            token = json.load(f)
        status["expires_at"] = parse_to_aware_datetime(token["expiresAt"])
    except (OSError, ValueError, KeyError, TypeError):
        return status
    registration = token.get("registrationExpiresAt")
    try:
        registered = registration is not None and parse_to_aware_datetime(
            registration
        ) > datetime.now(timezone.utc)
    except (ValueError, TypeError):
        registered = False
    status["refreshable"] = bool(session_name and token.get("refreshToken") and registered)
    return status
