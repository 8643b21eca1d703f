"""Cells and areas of a workbook, and values between JSON and the formula engine.

A cell is ``(SHEET, row, column)`` with the sheet name upper-cased, as the formula
engine (``formulas``) names sheets; an :class:`Area` is a rectangle of cells on one
sheet. Numbers enter as floats (Excel has no other kind) and a whole number leaves as
an int (``1430``, not ``1430.0``, as Spark answers); an Excel error leaves as its text
(``"#N/A"``); an empty cell leaves as ``null``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
import schedula as sh
from formulas.tokens.operand import XlError
from openpyxl.utils import get_column_letter
from openpyxl.utils.datetime import to_excel

Cell = tuple[str, int, int]
EMPTY = sh.EMPTY
_BIG_INT = 2**53


@dataclass(frozen=True, slots=True)
class Area:
    """Cells ``r1..r2`` × ``c1..c2`` (inclusive) of ``sheet``."""

    sheet: str
    r1: int
    c1: int
    r2: int
    c2: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.r2 - self.r1 + 1, self.c2 - self.c1 + 1

    @property
    def is_cell(self) -> bool:
        return self.r1 == self.r2 and self.c1 == self.c2

    @property
    def first(self) -> Cell:
        return self.sheet, self.r1, self.c1

    def cells(self) -> list[Cell]:
        return [(self.sheet, r, c) for r in range(self.r1, self.r2 + 1)
                for c in range(self.c1, self.c2 + 1)]

    def rows(self) -> list[list[Cell]]:
        return [[(self.sheet, r, c) for c in range(self.c1, self.c2 + 1)]
                for r in range(self.r1, self.r2 + 1)]


def label(cell: Cell) -> str:
    """``Sheet!B4`` (with the engine's upper-cased sheet name)."""
    sheet, row, col = cell
    quoted = f"'{sheet}'" if not sheet.replace("_", "").isalnum() else sheet
    return f"{quoted}!{get_column_letter(col)}{row}"


def stored(value: Any) -> Any:
    """A value as saved in the workbook, for the engine (dates become serial numbers)."""
    if value is None:
        return EMPTY
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime | date | time):
        return float(to_excel(value))
    if isinstance(value, timedelta):
        return value.total_seconds() / 86400.0
    return str(value)


class BadInput(ValueError):
    """A record's value the engine cannot take."""


def from_json(value: Any) -> Any:
    """A record's value, for the engine."""
    if value is None:
        return EMPTY
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    raise BadInput(f"must be a number, text, true/false or null, not {type(value).__name__}")


def to_json(value: Any) -> Any:
    """An engine value (a cell's), for the wire."""
    if type(value) is float:  # the common case first
        if value.is_integer() and abs(value) < _BIG_INT:
            return int(value)
        return value if math.isfinite(value) else "#NUM!"
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else EMPTY
    if value is EMPTY or value is None:
        return None
    if isinstance(value, XlError):
        return str(value)
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
        if not math.isfinite(number):
            return "#NUM!"
        return int(number) if number.is_integer() and abs(number) < _BIG_INT else number
    return str(value)
