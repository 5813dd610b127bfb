"""STS clients for the assume-role providers: built once, reused across refreshes.

botocore builds a new STS client for every assume-role refresh (tens of milliseconds and a
pile of garbage each time).  Here there is one client per (botocore session, source, region,
endpoint, client config), kept for as long as a provider uses it.

A signed client signs every request with the *current* credentials of its source cache: its
credentials object is a botocore ``Credentials`` whose ``get_frozen_credentials()`` asks the
source ``CredentialCache`` (the signer calls it for each request): the one adapter,
``creds_core._botocore.CacheCredentials``.  It is handed to the client
the way botocore supports: as the ``credential_provider`` component of a small per-client
botocore session that shares the process-wide data loader (so models and endpoint data are
still loaded only once) and copies the base session's instance variables.

Every throttled answer a client gets is reported to the :class:`~creds_core.Limiter` of the
refresh it serves (if any) as it arrives, also those botocore then retries itself: the limiter
counts them all and slows down for everyone sharing it at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import botocore.session
from botocore import UNSIGNED
from botocore.config import Config

from creds_core._botocore import CacheCredentials
from creds_core._core import THROTTLING_CODES, CredentialCache, _note_throttled
from creds_core.providers._config import new_session

__all__ = ["DEFAULT_CLIENT_CONFIG", "SourceCredentials", "quiet_botocore", "sts_client"]

#: botocore loggers whose DEBUG records carry request or response bodies, signed headers or the
#: canonical request: the secret key, session tokens, web identity tokens and MFA codes.
_SECRET_BEARING_LOGGERS = ("botocore.endpoint", "botocore.parsers", "botocore.auth")

_quiet = threading.local()


class _QuietFilter(logging.Filter):
    """Drops DEBUG records of the secret-bearing botocore loggers on threads making a
    creds_core STS call."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG or not getattr(_quiet, "depth", 0)


_FILTER = _QuietFilter()
_FILTER_LOCK = threading.Lock()
_filter_installed = False


def _install_filter() -> None:
    global _filter_installed
    with _FILTER_LOCK:
        if not _filter_installed:
            for name in _SECRET_BEARING_LOGGERS:
                logging.getLogger(name).addFilter(_FILTER)
            _filter_installed = True


@contextlib.contextmanager
def quiet_botocore() -> Iterator[None]:
    """Within this block, on this thread, botocore does not log bodies or signing details
    (they hold the credentials being fetched or used); other threads are unaffected."""
    _install_filter()
    _quiet.depth = getattr(_quiet, "depth", 0) + 1
    try:
        yield
    finally:
        _quiet.depth -= 1


#: The STS client's own retries are minimal (the cache backs off): one retry for a transient
#: network failure; timeouts well below botocore's 60 s so a hung call frees its thread.
DEFAULT_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 2},
    connect_timeout=5,
    read_timeout=15,
)


#: The credentials of a signed STS client: the one botocore adapter, reading the source cache
#: (a provider pins what it just read, see ``CacheCredentials.pin``).
SourceCredentials = CacheCredentials


class _Resolver:
    """A botocore ``credential_provider`` component that always answers one object."""

    def __init__(self, credentials: SourceCredentials) -> None:
        self._credentials = credentials

    def load_credentials(self) -> SourceCredentials:
        return self._credentials


_THROTTLING = frozenset(THROTTLING_CODES)


def _report_throttling(response: tuple[Any, Any] | None, **_: Any) -> None:
    """``needs-retry`` handler (an observer: it never decides a retry): report a throttled
    answer to the limiter of the refresh this thread runs."""
    if response is None:
        return
    http, parsed = response
    code = (parsed.get("Error") or {}).get("Code")
    if code in _THROTTLING or getattr(http, "status_code", None) == 429:
        _note_throttled()


class ClientEntry:
    """A shared STS client and what it was built from (kept alive while the entry is)."""

    def __init__(
        self,
        client: Any,
        session: botocore.session.Session,
        source: CredentialCache | None,
        credentials: SourceCredentials | None,
    ) -> None:
        self.client = client
        self.session = session
        self.source = source
        self.credentials = credentials


_LOCK = threading.Lock()
_ENTRIES: weakref.WeakValueDictionary[tuple[Any, ...], ClientEntry] = weakref.WeakValueDictionary()


def sts_client(
    session: botocore.session.Session,
    source: CredentialCache | None,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    config: Config | None = None,
) -> ClientEntry:
    """The shared STS client for (session, source, region, endpoint, config).

    ``source=None`` makes an unsigned client (AssumeRoleWithWebIdentity).  ``region`` and
    ``endpoint_url`` default to what the session's configuration says (``region``,
    ``AWS_ENDPOINT_URL_STS``, ``endpoint_url`` in the profile or its services section...).
    Hold on to the returned entry: the client lives as long as some holder does.
    """
    key = (id(session), id(source), region, endpoint_url, id(config))
    with _LOCK:
        entry = _ENTRIES.get(key)
        if entry is not None:
            return entry
        merged = DEFAULT_CLIENT_CONFIG if config is None else DEFAULT_CLIENT_CONFIG.merge(config)
        credentials: SourceCredentials | None = None
        if source is None:
            merged = merged.merge(Config(signature_version=UNSIGNED))
            builder = session
        else:
            credentials = SourceCredentials(source)
            builder = new_session(like=session)
            builder.register_component("credential_provider", _Resolver(credentials))
        client = builder.create_client(
            "sts", region_name=region, endpoint_url=endpoint_url, config=merged
        )
        client.meta.events.register_first("needs-retry.sts", _report_throttling)
        entry = ClientEntry(client, session, source, credentials)
        _ENTRIES[key] = entry
        return entry
