"""Where the formula engine and Excel disagree, Excel's answer.

``formulas`` rounds the binary value (``ROUND(1.005, 2)`` is 1, Excel's is 1.01),
formats ``TEXT(0.125, "0.00")`` as ``0.12`` (Excel: ``0.13``), leaves runs of
spaces inside ``TRIM``'s text and answers ``#NUM!`` for ``DATEDIF(a, b, "d")`` (it
knows only the upper-case unit ``"D"``). Excel and LibreOffice round the number as they show it
(15 significant digits), half away from zero; the functions below do the same and
replace the engine's own when this module is imported (before any workbook is
compiled). Each is checked against LibreOffice's values in the tests.
"""

from __future__ import annotations

import functools
import operator
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from formulas.functions import date as fdate
from formulas.functions import math as fmath
from formulas.functions import operators as fops
from formulas.functions import text as ftext
from formulas.functions import text2num, wrap_ufunc

_DECIMALS = re.compile(r"\.([0#?]+)")
_PLAIN_NUMBER = re.compile(r'^[#0,]*(\.[#0]*)?%?$')


def excel_round(x: float, digits: float, rounding: str = ROUND_HALF_UP) -> float:
    """``x`` rounded to ``digits`` places as Excel does: on its 15-digit decimal value,
    ties away from zero (``ROUND_UP``: away from zero, ``ROUND_DOWN``: towards it)."""
    places = int(digits)  # Excel truncates the number of digits
    try:
        value = Decimal(f"{x:.15g}")
        return float(value.quantize(Decimal(1).scaleb(-places), rounding=rounding))
    except InvalidOperation:  # beyond the decimal context: nothing left to round
        return float(x)


def excel_trim(text: str) -> str:
    """Spaces removed at both ends, and runs of spaces inside made one (Excel's TRIM)."""
    return " ".join(part for part in text.split(" ") if part)


def _text(value: Any, format_code: Any) -> Any:
    """``TEXT`` with a plain number format (``0.00``, ``#,##0``, ``0.0%``) rounding as
    Excel does; any other format is the engine's."""
    code = str(format_code)
    if isinstance(value, float | int) and not isinstance(value, bool) and \
            _PLAIN_NUMBER.match(code):
        m = _DECIMALS.search(code)
        places = len(m.group(1)) if m else 0
        if code.endswith("%"):
            value = excel_round(value * 100, places) / 100
        else:
            value = excel_round(value, places)
    return ftext.xtext(value, format_code)


def _datedif(start: Any, end: Any, unit: Any) -> Any:
    """``DATEDIF`` with its unit in any case, as Excel takes it."""
    return fdate.xdatedif(start, end, unit.upper() if isinstance(unit, str) else unit)


_ENGINE_OPERATORS = {op: fops.OPERATORS[op] for op in ("+", "-", "*", "/")}


def install() -> None:
    """Put the functions above, and the numeric fast paths of :mod:`.fast`, in the
    engine's tables (before any formula is compiled; installing twice is harmless)."""
    from batchd.tasks.workbook import fast

    for name, mode in fast.MODES.items():
        exact = wrap_ufunc(functools.partial(excel_round, rounding=mode))
        fmath.FUNCTIONS[name] = fast.rounding(mode, exact)
    ftext.FUNCTIONS["TRIM"] = wrap_ufunc(excel_trim, **ftext._kw1)
    ftext.FUNCTIONS["TEXT"] = wrap_ufunc(_text, input_parser=lambda *a: a)
    fdate.FUNCTIONS["DATEDIF"] = wrap_ufunc(_datedif, input_parser=lambda *a: text2num(a))
    ops = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
    for op, ufunc in ops.items():
        fops.OPERATORS[op] = fast.numeric(ufunc, _ENGINE_OPERATORS[op], divides=op == "/")

