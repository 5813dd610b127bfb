"""Lines that set or unset environment variables in a shell: what ``export --format`` and
``serve --format`` print for a shell to run.

* ``env``: a POSIX shell (sh, bash, zsh; Git Bash and WSL on Windows):
  ``eval "$(creds-core export --format env)"``; values are shell-quoted.
* ``powershell``: ``creds-core export --format powershell | Invoke-Expression``; values are
  single-quoted (nothing is expanded inside), a quote (``'`` or a typographic one) doubled; a
  value with a line break is refused.
* ``cmd``: ``for /f "delims=" %l in ('creds-core export --format cmd') do @%l``; ``set
  "NAME=value"`` lines. cmd has no quoting that stops ``%`` and ``!`` expansion everywhere, so a
  value with one of them (or ``"``, or a line break) is refused, never printed: AWS keys, tokens
  and timestamps never hold them.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Sequence

from creds_core._cli.common import EXIT_USAGE, CliError

__all__ = ["DEFAULT_SHELL", "SHELLS", "shell_lines"]

#: A variable to set (a value) or to unset (``None``).
Assignment = tuple[str, "str | None"]

#: The shell whose lines ``serve`` prints by default on this platform.
DEFAULT_SHELL = "powershell" if os.name == "nt" else "env"


def _posix(name: str, value: str | None) -> str:
    return f"unset {name}" if value is None else f"export {name}={shlex.quote(value)}"


# PowerShell ends a single-quoted string at any of these (the typographic ones too), and
# reads each written twice as itself.
_PS_QUOTES = "'\u2018\u2019\u201a\u201b"
_PS_ESCAPE = str.maketrans({q: q * 2 for q in _PS_QUOTES})


def _powershell(name: str, value: str | None) -> str:
    if value is None:
        return f"Remove-Item Env:{name} -ErrorAction SilentlyContinue"
    if "\r" in value or "\n" in value:
        # `... | Invoke-Expression` runs the output line by line: a value cannot span two.
        raise CliError(f"{name} holds a line break; use --format json", EXIT_USAGE)
    return f"$Env:{name} = '{value.translate(_PS_ESCAPE)}'"


_CMD_UNSAFE = frozenset('%!"\r\n')


def _cmd(name: str, value: str | None) -> str:
    if value is None:
        return f'set "{name}="'
    if _CMD_UNSAFE.intersection(value):
        raise CliError(
            f'{name} holds a character that cmd would expand or cut (% ! " or a line break); '
            "use --format powershell or --format json",
            EXIT_USAGE,
        )
    return f'set "{name}={value}"'


_LINE: dict[str, Callable[[str, str | None], str]] = {
    "env": _posix,
    "powershell": _powershell,
    "cmd": _cmd,
}

#: Shells by name, as ``--format`` takes them.
SHELLS = tuple(_LINE)


def shell_lines(shell: str, assignments: Sequence[Assignment]) -> str:
    """One line per variable, in order, for ``shell`` to run: set to the value, or unset."""
    line = _LINE[shell]
    return "".join(line(name, value) + "\n" for name, value in assignments)
