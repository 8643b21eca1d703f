"""Dates between ISO 8601 text on the wire and Excel's serial numbers in the workbook.

Excel keeps a date as the number of days since 30 December 1899 (with the 1900 leap
year Excel believes in), a time of day as the fraction. On the wire:

- an input cell the workbook formats as a date, or whose value a formula reads as a
  date (the date argument of ``YEAR``, ``EDATE``, ``DATEDIF``…), takes an ISO date
  (``2026-12-07``) or date and time (``2026-12-07T13:30:00``; with an offset, ``Z`` or
  ``+02:00``, the time is converted to UTC first) as that serial number; a number is
  taken as a serial number, any other text as text;
- an output cell the workbook formats as a date comes back as an ISO date, or date and
  time when its format shows a time or its value has one (``2026-12-07T13:30:00``);
  anything else in it (text, an error, a number outside Excel's dates) as it is.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import UTC, date, datetime
from typing import Any

from openpyxl.utils.datetime import from_excel, to_excel

DATE = "date"
DATETIME = "datetime"
LAST_SERIAL = 2958466  # 1 January 10000

# The arguments each function reads as a date (0-based).
DATE_ARGS: dict[str, tuple[int, ...]] = {
    "YEAR": (0,), "MONTH": (0,), "DAY": (0,), "WEEKDAY": (0,), "WEEKNUM": (0,),
    "ISOWEEKNUM": (0,), "EDATE": (0,), "EOMONTH": (0,), "WORKDAY": (0,),
    "DATEDIF": (0, 1), "DAYS": (0, 1), "DAYS360": (0, 1), "YEARFRAC": (0, 1),
    "NETWORKDAYS": (0, 1),
}

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?"
                  r"(?:Z|[+-]\d{2}:?\d{2})?)?$")
_QUOTED = re.compile(r'"[^"]*"|\[[^\]]*\]|\\.|_.|\*.')


@functools.lru_cache(maxsize=256)
def format_kind(number_format: str | None) -> str | None:
    """:data:`DATE`, :data:`DATETIME` or None (not a date) for an Excel number format.

    ``[h]:mm`` (a duration) and a time alone (``h:mm``) are not dates."""
    if not number_format or number_format == "General":
        return None
    code = _QUOTED.sub("", number_format.split(";")[0]).lower()
    if "y" not in code and "d" not in code:
        return None
    return DATETIME if "h" in code or "s" in code else DATE


class NotADate(ValueError):
    """Text in the ISO form that is no real date (``2026-02-30``)."""


def to_serial(value: Any) -> Any:
    """``value`` for a date cell: ISO text as a serial number, anything else unchanged.

    Raises:
        NotADate: ISO-looking text that is no date.
    """
    if not isinstance(value, str) or not _ISO.match(value):
        return value
    try:
        if len(value) == 10:
            return float(to_excel(date.fromisoformat(value)))
        moment = datetime.fromisoformat(value.replace(" ", "T"))
    except ValueError:
        raise NotADate(f"{value!r} is not a date") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return float(to_excel(moment))


def to_iso(value: Any, kind: str) -> Any:
    """A date cell's value for the wire: a serial number as ISO text, else unchanged."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    number = float(value)
    if not math.isfinite(number) or not 1 <= number < LAST_SERIAL:
        return value
    moment = from_excel(number)
    if kind == DATE and moment.time() == datetime.min.time():
        return moment.date().isoformat()
    if moment.microsecond:
        return moment.isoformat(timespec="milliseconds")
    return moment.isoformat(timespec="seconds")
