"""``python -m creds_core``: the ``creds-core`` command line."""

from __future__ import annotations

import sys

from creds_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
