"""Small helpers shared by the providers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from creds_core._core import _parse_expiry

__all__ = ["parse_expiry"]


def parse_expiry(value: Any, field: str = "Expiration") -> datetime | None:
    """An expiry as an aware UTC datetime, from what AWS sources send.

    The one rule of :class:`~creds_core.Credentials` (it is the same code): datetimes, epoch
    numbers and the date strings botocore accepts (ISO-8601, RFC 822), naive values taken as
    UTC, from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z.  Raises ValueError naming
    ``field`` and the bad value for anything else.
    """
    if value is None or value == "":
        return None
    return _parse_expiry(value, field)
