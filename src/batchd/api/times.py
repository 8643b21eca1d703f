"""Times in query parameters (the native batch list's and the dashboard's filters)."""

from __future__ import annotations

from datetime import UTC, datetime

from batchd.domain import errors


def epoch(value: str | None, field: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 date or date and time (UTC without an
    offset); None for None. Anything else (an empty text too) is refused as ``field``'s
    bad input."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise errors.InvalidInput(f"{field}: not an ISO 8601 date and time ({value!r})",
                                  details={"field": field}) from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()
