"""Small helpers shared by the providers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.utils import parse_to_aware_datetime

__all__ = ["parse_expiry"]


def parse_expiry(value: Any) -> datetime | None:
    """An expiry as an aware UTC datetime, from what AWS sources send.

    Accepts datetimes, epoch numbers and the date strings botocore accepts (ISO-8601, RFC 822);
    naive values are taken as UTC, as botocore does.  Raises ValueError for anything else.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float, datetime)):
        raise ValueError(f"an expiry cannot be a {type(value).__name__}")
    try:
        return parse_to_aware_datetime(value)  # type: ignore[arg-type]  # the stub says str
    except (ValueError, OverflowError, OSError) as exc:
        raise ValueError("not a date and time") from exc
