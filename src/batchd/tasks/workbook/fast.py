"""Numeric fast paths for the commonest operators and ``ROUND``, over whole columns.

The engine computes ``+``, ``-``, ``*``, ``/`` and ``ROUND`` one value at a time
(about 5 µs each). When every argument is a finite number (a float column, or values
that convert as the engine converts them: ``float(v)``), the same IEEE operation over
the numpy arrays gives the same doubles; anything else (text that is no number, empty
cells, errors, a zero divisor, a result that overflows) goes to the engine's own
function, which answers ``#VALUE!``, ``#DIV/0!`` or ``#NUM!`` as Excel does. ``ROUND``
decides each value on its binary value unless it lies within a hair of a tie (or of a
whole number, for ``ROUNDUP`` and ``ROUNDDOWN``); those few are rounded exactly, on
their 15-digit decimal value, by :func:`batchd.tasks.workbook.excel.excel_round`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP
from typing import Any

import numpy as np
from formulas.functions import Array

from batchd.tasks.workbook.excel import excel_round

_EXACT_BEYOND = 2.0**52  # from here on every double is a whole number
_TIE_TOLERANCE = 1e-9


_NUMBERS = (float, int, np.floating, np.integer, np.bool_)  # bool is an int


def _floats(value: Any) -> np.ndarray | None:
    """``value`` as a float array when every value in it is a number (text, empty cells
    and errors are the engine's to convert), else None."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fiub":
            out = value.astype(np.float64, copy=False)
        elif value.dtype == object and all(isinstance(v, _NUMBERS) for v in value.flat):
            out = value.astype(np.float64)
        else:
            return None
    elif isinstance(value, _NUMBERS):
        out = np.array(float(value))
    else:
        return None
    # The engine answers a single value as a 1x1 array: so do these.
    return np.atleast_2d(out) if np.all(np.isfinite(out)) else None


def _number(value: Any) -> float | None:
    """A one-value argument as a float (a finite number), else None."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.flat[0]
    if not isinstance(value, _NUMBERS):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _one(value: float) -> Array:
    arr = np.empty((1, 1), dtype=object)
    arr[0, 0] = value
    return arr.view(Array)


def _as_engine(result: np.ndarray) -> Array:
    return result.astype(object).view(Array)


def numeric(op: Callable[..., Any], slow: Callable[..., Any], *,
            divides: bool = False) -> Callable[..., Any]:
    """``op`` over floats when every argument is numeric, else ``slow``: on Python floats
    for one value each (a record), on float arrays for columns; the same IEEE result."""

    def call(*args: Any) -> Any:
        one = [_number(a) for a in args]
        if all(v is not None for v in one):
            if divides and one[1] == 0:
                return slow(*args)
            try:
                result = op(*one)
            except (OverflowError, ZeroDivisionError):
                return slow(*args)
            return _one(result) if math.isfinite(result) else slow(*args)
        floats = [_floats(a) for a in args]
        if any(f is None for f in floats):
            return slow(*args)
        if divides and np.any(floats[1] == 0):
            return slow(*args)
        try:
            with np.errstate(all="ignore"):
                result = op(*floats)
        except ValueError:  # shapes that do not broadcast: the engine's #N/A rules
            return slow(*args)
        if not np.all(np.isfinite(result)):
            return slow(*args)
        return _as_engine(np.asarray(result, dtype=np.float64))

    return call


def rounding(mode: str, slow: Callable[..., Any]) -> Callable[..., Any]:
    """``ROUND`` (``ROUND_HALF_UP``), ``ROUNDUP`` (``ROUND_UP``) or ``ROUNDDOWN``."""

    def call(x: Any, digits: Any = 0) -> Any:
        one, places = _number(x), _number(digits)
        if one is not None and places is not None and abs(math.trunc(places)) <= 15:
            return _one(_round_one(one, float(math.trunc(places)), mode))
        xs, ds = _floats(x), _floats(digits)
        if xs is None or ds is None:
            return slow(x, digits)
        try:
            xs, ds = np.broadcast_arrays(xs, np.trunc(ds))
        except ValueError:
            return slow(x, digits)
        if np.any(np.abs(ds) > 15):
            return slow(x, digits)
        return _as_engine(_round(xs, ds, mode))

    return call


def _round(xs: np.ndarray, ds: np.ndarray, mode: str) -> np.ndarray:
    scale = 10.0 ** np.abs(ds)
    up = ds >= 0
    ax = np.abs(xs)
    y = np.where(up, ax * scale, ax / scale)
    if mode == ROUND_HALF_UP:
        r = np.floor(y + 0.5)
        close = np.abs(y - np.floor(y) - 0.5) <= _TIE_TOLERANCE * np.maximum(1.0, y)
    else:
        r = np.ceil(y) if mode == ROUND_UP else np.floor(y)
        close = np.abs(y - np.round(y)) <= _TIE_TOLERANCE * np.maximum(1.0, y)
    out = np.copysign(np.where(up, r / scale, r * scale), xs)
    exact = close | (y >= _EXACT_BEYOND)
    for i in zip(*np.nonzero(exact), strict=True):
        out[i] = excel_round(float(xs[i]), float(ds[i]), mode)
    return out


def _round_one(x: float, d: float, mode: str) -> float:
    """:func:`_round` for one value, with the same IEEE steps."""
    scale = 10.0 ** abs(d)
    up = d >= 0
    y = abs(x) * scale if up else abs(x) / scale
    if mode == ROUND_HALF_UP:
        r = math.floor(y + 0.5)
        close = abs(y - math.floor(y) - 0.5) <= _TIE_TOLERANCE * max(1.0, y)
    else:
        r = math.ceil(y) if mode == ROUND_UP else math.floor(y)
        close = abs(y - round(y)) <= _TIE_TOLERANCE * max(1.0, y)
    if close or y >= _EXACT_BEYOND:
        return excel_round(x, d, mode)
    return math.copysign(r / scale if up else r * scale, x)


MODES = {"ROUND": ROUND_HALF_UP, "ROUNDUP": ROUND_UP, "ROUNDDOWN": ROUND_DOWN}
