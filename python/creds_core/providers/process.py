"""Credentials printed by an external program (``credential_process``).

The program prints a JSON document on stdout::

    {"Version": 1, "AccessKeyId": "...", "SecretAccessKey": "...",
     "SessionToken": "...", "Expiration": "2030-01-01T00:00:00Z"}

stdout holds secrets, so no message, log line or chained exception ever includes it; a failing
program's last line of stderr is included (programs print their error there).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence

import botocore.session
from botocore.compat import compat_shell_split

from creds_core._core import Credentials
from creds_core._provider import Provider
from creds_core.providers._config import ConfigSource
from creds_core.providers.errors import non_recoverable, not_loaded, recoverable

__all__ = ["ProcessProvider"]

_MAX_STDERR_LINE = 300


def _scrub(exc: ValueError) -> None:
    """Drop the parsed text from a decode error before it is chained."""
    if isinstance(exc, json.JSONDecodeError):
        exc.doc = ""
    elif isinstance(exc, UnicodeDecodeError):
        exc.object = b""


def _last_line(stderr: bytes | None) -> str:
    if not stderr:
        return ""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    last = lines[-1]
    return last if len(last) <= _MAX_STDERR_LINE else last[:_MAX_STDERR_LINE] + "..."


class ProcessProvider(Provider):
    """Run ``command`` (or the profile's ``credential_process``) and parse what it prints.

    ``command``: a command line (split like botocore splits it, no shell) or an argument list;
    None reads ``credential_process`` from ``profile`` (through ``config``, a shared
    :class:`ConfigSource`), and "nothing here" when it has none.  ``timeout``: seconds before
    the program is killed (a recoverable failure).

    Errors: the program cannot be started, prints an unsupported ``Version`` or lacks a key →
    :class:`NonRecoverableError`; it exits non-zero, times out or prints something that is not
    JSON → :class:`ProviderError`.  Credentials without ``Expiration`` never expire.
    """

    name = "custom-process"

    def __init__(
        self,
        command: str | Sequence[str] | None = None,
        *,
        profile: str | None = None,
        config: ConfigSource | None = None,
        session: botocore.session.Session | None = None,
        timeout: float = 60.0,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._command = command
        self._profile = profile
        self._config = (
            config
            if config is not None or command is not None
            else ConfigSource(profile, session=session)
        )
        self.timeout = timeout

    def _resolve(self) -> tuple[list[str], str | None]:
        """The argument list and the profile's aws_account_id (if read from a profile)."""
        if self._command is not None:
            if isinstance(self._command, str):
                return compat_shell_split(self._command), None
            return list(self._command), None
        assert self._config is not None
        snapshot = self._config.snapshot(self.name)
        profile = self._profile if self._profile is not None else snapshot.profile_name
        section = snapshot.profile(profile)
        command = section.get("credential_process")
        if not command:
            raise not_loaded(self.name, f'profile "{profile}" has no credential_process')
        account = section.get("aws_account_id")
        return compat_shell_split(str(command)), (str(account) if account else None)

    def provide(self) -> Credentials:
        argv, profile_account = self._resolve()
        if not argv:
            raise non_recoverable(self.name, "credential_process is empty", code="InvalidConfig")
        program = argv[0]
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            exc.output = exc.stdout = None  # never keep secrets in the chained exception
            raise recoverable(
                self.name,
                f"credential process {program!r} did not finish within {self.timeout:g} s and "
                "was killed; make it faster or raise the timeout",
                code="ProcessTimedOut",
            ) from exc
        except OSError as exc:
            raise non_recoverable(
                self.name,
                f"credential process {program!r} could not be started ({exc.strerror or exc}); "
                "check the credential_process command",
                code="ProcessNotStarted",
            ) from exc
        if done.returncode != 0:
            line = _last_line(done.stderr)
            said = f": {line}" if line else " (nothing on stderr)"
            raise recoverable(
                self.name,
                f"credential process {program!r} exited with status {done.returncode}{said}",
                code="ProcessFailed",
            )
        return self._parse(done.stdout, program, profile_account)

    def _parse(self, stdout: bytes, program: str, profile_account: str | None) -> Credentials:
        try:
            parsed = json.loads(stdout.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            _scrub(exc)  # the decode error holds the output, which holds secrets
            raise recoverable(
                self.name,
                f"credential process {program!r} printed something that is not a JSON object; "
                "it must print the credentials document on stdout (and anything else on stderr)",
                code="MalformedResponse",
            ) from exc
        if not isinstance(parsed, dict):
            raise recoverable(
                self.name,
                f"credential process {program!r} printed JSON that is not an object",
                code="MalformedResponse",
            )
        version = parsed.get("Version", "<Version key not provided>")
        if version != 1 or isinstance(version, bool):
            raise non_recoverable(
                self.name,
                f"credential process {program!r} printed Version {version!r}; the supported "
                "version is 1",
                code="UnsupportedVersion",
            )
        missing = [k for k in ("AccessKeyId", "SecretAccessKey") if not parsed.get(k)]
        if missing:
            raise non_recoverable(
                self.name,
                f"credential process {program!r} printed no {' or '.join(missing)}",
                code="MissingKey",
            )
        document = {
            k: parsed[k]
            for k in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration", "AccountId")
            if parsed.get(k) is not None
        }
        if "AccountId" not in document and profile_account:
            document["AccountId"] = profile_account
        try:
            return Credentials.from_mapping(document, provider_name=self.name)
        except (ValueError, TypeError) as exc:
            # The process would print the same again: not worth a backoff of minutes.
            raise non_recoverable(
                self.name,
                f"credential process {program!r} printed unusable credentials: {exc}",
                code="MalformedResponse",
            ) from exc

    def __repr__(self) -> str:
        source = "command" if self._command is not None else f"profile={self._profile!r}"
        return f"ProcessProvider({source}, timeout={self.timeout:g})"
