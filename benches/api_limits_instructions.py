"""The added cost of an unthrottled call through ApiLimits, in instructions (callgrind counts
instructions, not seconds: the same figure on a busy machine).

    .venv/bin/python benches/api_limits_instructions.py        # needs valgrind (Debian)

Runs ``test_api_limits``'s EC2 client (answers from a ``before-send`` handler, no network)
under callgrind with 0 and N calls, with and without ApiLimits, and prints the instructions
per call of each and the difference, also converted to microseconds at the plain client's
measured speed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CALLS = 500
CHILD = """
import sys
sys.path.insert(0, {here!r})
import test_api_limits as t
from creds_core import ApiLimits
kind, n = sys.argv[1], int(sys.argv[2])
c = t._client(None if kind == "plain" else ApiLimits({{"ec2": {{"rate": 1e9, "burst": 1e9}}}}))
for _ in range(50 + n):
    c.describe_regions()
"""


def instructions(kind: str, calls: int) -> int:
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            CHILD.format(here=str(HERE)),
            kind,
            str(calls),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(re.search(r"Collected : (\d+)", done.stderr).group(1))  # type: ignore[union-attr]


def main() -> None:
    sys.path.insert(0, str(HERE))
    import test_api_limits as t

    per = {k: (instructions(k, CALLS) - instructions(k, 0)) / CALLS for k in ("plain", "limits")}
    plain_us = min(t._per_call_us(t._client(None)) for _ in range(5))
    added = per["limits"] - per["plain"]
    print(f"instructions per call: plain {per['plain']:,.0f}, with ApiLimits {per['limits']:,.0f}")
    print(
        f"added: {added:,.0f} instructions ({added / per['plain']:.2%}), "
        f"{added / per['plain'] * plain_us:.1f} us at {plain_us:.0f} us per plain call"
    )


if __name__ == "__main__":
    main()
