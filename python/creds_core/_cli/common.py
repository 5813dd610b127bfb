"""What every subcommand shares: exit codes, errors, masking, logging and the cache."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from datetime import datetime, timezone

import botocore.exceptions

from creds_core._core import CredentialCache, CredentialsError, CredentialsNotLoaded

__all__ = [
    "EXIT_CREDENTIALS",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "CliError",
    "cli_logging",
    "describe_error",
    "is_profile_missing",
    "iso_utc",
    "make_cache",
    "mask_key",
    "one_line",
    "selected_profile",
]

EXIT_OK = 0
EXIT_CREDENTIALS = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_REFUSED = 4
EXIT_UNAVAILABLE = 5
EXIT_INTERRUPTED = 130

_MAX_MESSAGE = 600


class CliError(Exception):
    """A failure the command line reports as one line on stderr with ``exit_code``.

    The message must say what to do and never contain a secret.
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    """``text`` on one line (whitespace runs collapsed), cut at ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def mask_key(access_key_id: str | None) -> str:
    """An access key id shown as its first and last four characters, e.g. ``AKIA…WXYZ``."""
    if not access_key_id:
        return "-"
    if len(access_key_id) < 12:
        return "…"
    return f"{access_key_id[:4]}…{access_key_id[-4:]}"


def iso_utc(when: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``, whole seconds: what AWS tools print and parse."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    # isoformat pads the year to four digits (strftime's %Y does not, on glibc, before 1000).
    return when.astimezone(timezone.utc).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def selected_profile(profile: str | None) -> tuple[str, str]:
    """(profile name, how it was selected) as botocore selects it."""
    if profile:
        return profile, "--profile"
    for name in ("AWS_DEFAULT_PROFILE", "AWS_PROFILE"):  # botocore checks them in this order
        value = os.environ.get(name)
        if value:
            return value, name
    return "default", "no profile selected"


def make_cache(profile: str | None, timeout: float, name: str) -> CredentialCache:
    """A cache over botocore's default chain for ``profile`` (None: AWS_PROFILE or default)."""
    from creds_core.providers import default_chain

    return CredentialCache(default_chain(profile), load_timeout=timeout, name=name)


def _caused_by(exc: BaseException, cls: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, cls):
            return True
        seen.add(id(current))
        current = current.__cause__
    return False


def is_profile_missing(exc: BaseException) -> bool:
    """True when ``exc`` says the selected profile does not exist."""
    if isinstance(exc, CredentialsError) and exc.code == "ProfileNotFound":
        return True
    return _caused_by(exc, botocore.exceptions.ProfileNotFound)


def describe_error(
    exc: BaseException, profile: str | None, *, hint: bool = True
) -> tuple[int, str]:
    """(exit code, one-line message saying what to do) for a failure; never a secret.

    ``hint``: point at ``creds-core doctor`` for credential errors.
    """
    more = " (`creds-core doctor` shows more)" if hint else ""
    if isinstance(exc, CliError):
        return exc.exit_code, one_line(str(exc))
    if is_profile_missing(exc):
        name, how = selected_profile(profile)
        return EXIT_NOT_FOUND, (
            f'the profile "{name}" ({how}) is not in the config or credentials file; create '
            "it, or choose another one with --profile or AWS_PROFILE"
        )
    if isinstance(exc, CredentialsNotLoaded):
        name, how = selected_profile(profile)
        return EXIT_NOT_FOUND, (
            f'no credentials found for profile "{name}" ({how}): none of botocore\'s sources '
            "(environment, config and credentials files, credential_process, container, "
            "IMDS...) had any; configure credentials or choose another profile with --profile"
            + (" (`creds-core doctor` shows what each source said)" if hint else "")
        )
    if isinstance(exc, CredentialsError):
        return EXIT_CREDENTIALS, one_line(str(exc)) + more
    if isinstance(exc, (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)):
        return EXIT_CREDENTIALS, one_line(str(exc))
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(exc, OSError):
        what = exc.strerror or type(exc).__name__
        return EXIT_UNAVAILABLE, f"{what}; check the system (permissions, free ports, files)"
    # Unexpected: the type only (a message could quote anything); --debug shows the traceback.
    return EXIT_CREDENTIALS, (
        f"unexpected {type(exc).__name__}; rerun with --debug for a traceback and report it"
    )


class _OneLineFormatter(logging.Formatter):
    """Log records on one line each (chain failures list every source on its own line)."""

    def format(self, record: logging.LogRecord) -> str:
        return one_line(super().format(record), limit=4000)


@contextlib.contextmanager
def cli_logging(verbosity: int, default_level: int) -> Iterator[None]:
    """creds_core's log records on stderr, one line each, while the command runs.

    Only the ``creds_core`` loggers are shown: botocore's DEBUG records carry request and
    response bodies, which hold credentials.  ``verbosity`` 1 shows INFO, 2 and more DEBUG.
    """
    logger = logging.getLogger("creds_core")
    level = logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity == 1 else default_level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter("creds-core: %(levelname)s: %(message)s"))
    previous = logger.level
    logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
