"""Which defined names are a workbook service's inputs and outputs.

The convention, in order:

1. **Spark's**: when any defined name starts with ``Xinput_`` or ``Xoutput_`` (any
   case), those names are the inputs and outputs, called by the rest of the name
   (``Xinput_price`` is the input ``price``); other names are left alone.
2. **Otherwise**: a workbook-level name of one cell holding a value is an input; a name
   of a cell or range holding a formula is an output. Names of value ranges (lookup
   tables) are neither.

An input is a cell (a value) or a range of value cells (a table: see :mod:`.inputs`); an
output is a cell (a value) or a range (rows of values).
Excel's own names (``_xlnm.Print_Area``…) and names whose reference is broken are
ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openpyxl.utils.cell import range_boundaries

from batchd.tasks.workbook.cells import Area

INPUT_PREFIX = "xinput_"
OUTPUT_PREFIX = "xoutput_"


class NameProblem(ValueError):
    """A defined name the service cannot use (the message names it)."""


@dataclass(frozen=True, slots=True)
class Interface:
    inputs: dict[str, Area]
    outputs: dict[str, Area]


def defined_areas(wb: Any) -> dict[str, Area]:
    """Every usable defined name (upper-cased, as formulas use them) → its area."""
    found: dict[str, Area] = {}
    for name, defined in wb.defined_names.items():
        area = _area(defined)
        if area is not None and not name.lower().startswith("_xlnm"):
            found[name] = area
    return found


def _area(defined: Any) -> Area | None:
    try:
        destinations = list(defined.destinations)
    except Exception:  # a constant or a broken reference
        return None
    if len(destinations) != 1:
        return None
    sheet, ref = destinations[0]
    try:
        c1, r1, c2, r2 = range_boundaries(ref.replace("$", ""))
    except ValueError:
        return None
    if None in (c1, r1, c2, r2):
        return None
    return Area(sheet.upper(), r1, c1, r2, c2)  # type: ignore[arg-type]


def interface(areas: dict[str, Area], is_formula: Any) -> Interface:
    """The inputs and outputs among ``areas`` (``is_formula(cell)`` tells a formula).

    Raises:
        NameProblem: an input names a formula cell, or two names clash.
    """
    spark = any(n.lower().startswith((INPUT_PREFIX, OUTPUT_PREFIX)) for n in areas)
    inputs: dict[str, Area] = {}
    outputs: dict[str, Area] = {}
    for name, area in areas.items():
        role, called = _role(name, area, is_formula, spark=spark)
        if role is not None:
            _add(inputs if role == "input" else outputs, called, area, name)
    for name, area in inputs.items():
        _check_input(name, area, is_formula)
    clash = set(inputs) & set(outputs)
    if clash:
        raise NameProblem(f"{sorted(clash)} name both an input and an output")
    if not outputs:
        raise NameProblem("the workbook names no output: define a name (Xoutput_total, or "
                          "any name of a formula cell) for each result")
    return Interface(inputs=inputs, outputs=outputs)


def _role(name: str, area: Area, is_formula: Any, *, spark: bool) -> tuple[str | None, str]:
    low = name.lower()
    if spark:
        if low.startswith(INPUT_PREFIX):
            return "input", name[len(INPUT_PREFIX):]
        if low.startswith(OUTPUT_PREFIX):
            return "output", name[len(OUTPUT_PREFIX):]
        return None, name
    if any(is_formula(c) for c in area.cells()):
        return "output", name
    return ("input", name) if area.is_cell else (None, name)


def _check_input(name: str, area: Area, is_formula: Any) -> None:
    for cell in area.cells():
        if is_formula(cell):
            raise NameProblem(f"input {name!r} names a cell holding a formula; an input is "
                              "a cell (or a range of cells) holding values")


def _add(into: dict[str, Area], name: str, area: Area, defined: str) -> None:
    if not name:
        raise NameProblem(f"the defined name {defined!r} has nothing after its prefix")
    if name in into:
        raise NameProblem(f"{name!r} is defined twice")
    into[name] = area
