"""``creds-core export``: print credentials for another program: the one place that prints
secrets, on stdout only.

Formats:

* ``process``: the ``credential_process`` document (version 1), so that any AWS SDK can use
  creds_core's resolution through a profile's ``credential_process = creds-core export ...``;
* ``env``: ``export`` lines for a POSIX shell (``eval "$(creds-core export --format env)"``),
  with values shell-quoted and ``unset`` lines for variables that would otherwise mix stale
  values in (``AWS_SECURITY_TOKEN``, which botocore reads before ``AWS_SESSION_TOKEN``);
* ``powershell`` and ``cmd``: the same variables for Windows' shells (see ``_cli/shells.py``);
* ``json``: a plain object with every field (``null`` when absent).

A profile whose ``credential_process`` runs ``creds-core export`` for itself would start
copies of itself without end; the profiles being exported are passed down in the
``CREDS_CORE_EXPORTING`` environment variable and such a loop is refused (exit code 4).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from creds_core._cli.common import (
    EXIT_OK,
    EXIT_REFUSED,
    CliError,
    iso_utc,
    make_cache,
    selected_profile,
)
from creds_core._cli.shells import SHELLS, shell_lines
from creds_core._core import Credentials

__all__ = ["FORMATS", "LOOP_VARIABLE", "MAX_DEPTH", "render", "run"]

#: The environment variable listing (as a JSON array) the profiles being exported.
LOOP_VARIABLE = "CREDS_CORE_EXPORTING"
#: Nested exports allowed (a profile's credential_process exporting another profile...).
MAX_DEPTH = 5


def _process(creds: Credentials) -> str:
    document: dict[str, Any] = {
        "Version": 1,
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
    }
    if creds.session_token:
        document["SessionToken"] = creds.session_token
    if creds.expiry is not None:
        document["Expiration"] = iso_utc(creds.expiry)
    if creds.account_id:
        document["AccountId"] = creds.account_id
    return json.dumps(document, indent=2) + "\n"


def _variables(creds: Credentials) -> list[tuple[str, str | None]]:
    """The environment variables botocore reads, to set (a value) or unset (None)."""
    variables: list[tuple[str, str | None]] = [
        ("AWS_ACCESS_KEY_ID", creds.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", creds.secret_access_key),
        # botocore reads AWS_SECURITY_TOKEN before AWS_SESSION_TOKEN: never leave a stale one.
        ("AWS_SECURITY_TOKEN", None),
        ("AWS_SESSION_TOKEN", creds.session_token or None),
        ("AWS_CREDENTIAL_EXPIRATION", iso_utc(creds.expiry) if creds.expiry is not None else None),
    ]
    if creds.account_id:
        variables.append(("AWS_ACCOUNT_ID", creds.account_id))
    return variables


def _shell(shell: str) -> Callable[[Credentials], str]:
    return lambda creds: shell_lines(shell, _variables(creds))


def _json(creds: Credentials) -> str:
    document = {
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "SessionToken": creds.session_token,
        "Expiration": iso_utc(creds.expiry) if creds.expiry is not None else None,
        "AccountId": creds.account_id,
        "Provider": creds.provider_name,
    }
    return json.dumps(document, indent=2) + "\n"


#: Output formats by name.
FORMATS: dict[str, Callable[[Credentials], str]] = {
    "process": _process,
    **{shell: _shell(shell) for shell in SHELLS},
    "json": _json,
}


def render(creds: Credentials, fmt: str) -> str:
    """The text ``creds-core export --format fmt`` prints for ``creds``."""
    return FORMATS[fmt](creds)


def _check_loop(profile: str) -> list[str]:
    """The profiles being exported, this one appended; CliError for a loop."""
    raw = os.environ.get(LOOP_VARIABLE, "")
    try:
        outer = json.loads(raw) if raw else []
    except ValueError:
        outer = []
    chain = [str(p) for p in outer] if isinstance(outer, list) else []
    if profile in chain or len(chain) >= MAX_DEPTH:
        path = " -> ".join([*chain, profile])
        raise CliError(
            f"credential_process loop: creds-core export was started by its own profile's "
            f"credential_process ({path}); point that credential_process at another profile "
            "with --profile (one that has credentials of its own)",
            EXIT_REFUSED,
        )
    return [*chain, profile]


def run(profile: str | None, fmt: str, timeout: float) -> int:
    """Resolve credentials through creds_core's default chain and print them in ``fmt``."""
    name, _ = selected_profile(profile)
    chain = _check_loop(name)
    previous = os.environ.get(LOOP_VARIABLE)
    # Inherited by any credential_process the chain runs (to detect a loop there).
    os.environ[LOOP_VARIABLE] = json.dumps(chain)
    try:
        creds = make_cache(profile, timeout, "creds-core export").get()
    finally:
        if previous is None:
            os.environ.pop(LOOP_VARIABLE, None)
        else:
            os.environ[LOOP_VARIABLE] = previous
    sys.stdout.write(render(creds, fmt))
    sys.stdout.flush()
    return EXIT_OK
