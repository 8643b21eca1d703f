"""The formula graph: evaluation order, what depends on the record, what is element-wise.

A formula is *element-wise* when evaluating it once over columns (each input cell
given as the column of a chunk's values) gives, row by row, what evaluating it once
per record gives. That holds when every function it calls maps its arguments value by
value (``ROUND``, ``IF``, text and date functions, lookups of a value into a fixed
table) and no range it reads depends on the record.

An aggregate (``SUM``, ``MAX``, ``AND``, ``SUMPRODUCT``…) over a column would reduce
across records. A formula calling one still runs column-wise when its engine calls are
visible (:class:`.pipes.Pipe`) and every range it reads (one holding record values, or
a fixed one) goes straight into an aggregate or a lookup (:func:`nodewise`): the
aggregate's call takes each record's own values (a range of per-record cells becomes a
``(records, rows, columns)`` stack), reduced at once when they are all numbers, else
called once per record (:mod:`.columns`); the rest of the formula runs on columns.
Anything else (a range of record values inside arithmetic, a lookup whose table holds
record values, a volatile function) runs once per record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from batchd.tasks.workbook.cells import Area, Cell, label
from batchd.tasks.workbook.pipes import is_function

F = TypeVar("F")

VOLATILE = frozenset({"NOW", "TODAY", "RAND", "RANDBETWEEN", "RANDARRAY"})

# Functions that map their (non-table) arguments value by value; each is checked
# against per-record evaluation in tests/unit/test_workbooks.py. (EDATE and EOMONTH
# are not: over a column the engine answers #VALUE!.)
ELEMENTWISE = frozenset({
    "ABS", "ROUND", "ROUNDUP", "ROUNDDOWN", "INT", "TRUNC", "MOD", "POWER", "SQRT", "EXP",
    "LN", "LOG10", "SIGN",
    "IF", "IFS", "IFERROR", "IFNA", "NOT", "ISNUMBER", "ISTEXT", "ISBLANK", "ISERROR", "ISNA",
    "LEFT", "RIGHT", "MID", "LEN", "UPPER", "LOWER", "PROPER", "TRIM", "TEXT", "VALUE",
    "EXACT", "FIND", "SEARCH", "SUBSTITUTE", "REPT",
    "DATE", "YEAR", "MONTH", "DAY", "WEEKDAY",
    "VLOOKUP", "HLOOKUP", "XLOOKUP", "MATCH", "XMATCH", "INDEX",
})
# A fixed range may be read by these only: a lookup table, not a range to reduce.
LOOKUPS = frozenset({"VLOOKUP", "HLOOKUP", "XLOOKUP", "MATCH", "XMATCH", "INDEX"})
# Functions whose call, given one record's own values, answers one value: in a
# column-wise formula each takes the records one by one (or, the aggregates of
# .aggregates, all at once). Each is checked against per-record evaluation in
# tests/unit/test_workbooks.py.
RECORDWISE = frozenset({
    "SUM", "SUMPRODUCT", "AVERAGE", "MIN", "MAX", "COUNT", "COUNTA", "PRODUCT", "AND", "OR",
    "COUNTIF", "SUMIF", "CONCATENATE", "EDATE", "EOMONTH", "DATEDIF", "DAYS",
})
# What a formula's input is, for nodewise().
CELL, TABLE, RECORDS = "cell", "table", "records"


class CycleError(ValueError):
    def __init__(self, cell: Cell) -> None:
        super().__init__(f"{label(cell)}: a circular reference (the cell depends on itself)")
        self.cell = cell


def order(formulas: dict[Cell, F], reads: Callable[[F], Iterable[Cell]]) -> list[Cell]:
    """The formula cells, each after the formula cells it reads (Kahn's algorithm).

    Raises:
        CycleError: some cells read each other in a cycle.
    """
    needs: dict[Cell, set[Cell]] = {}
    users: dict[Cell, list[Cell]] = {}
    for cell, f in formulas.items():
        deps = {c for c in reads(f) if c in formulas}
        needs[cell] = deps
        for d in deps:
            users.setdefault(d, []).append(cell)
    ready = sorted(c for c, deps in needs.items() if not deps)
    done: list[Cell] = []
    while ready:
        cell = ready.pop()
        done.append(cell)
        for user in users.get(cell, ()):
            needs[user].discard(cell)
            if not needs[user]:
                ready.append(user)
    if len(done) != len(formulas):
        raise CycleError(min(c for c, deps in needs.items() if deps))
    return done


def needed(outputs: Iterable[Cell], formulas: dict[Cell, F],
           reads: Callable[[F], Iterable[Cell]]) -> set[Cell]:
    """The formula cells the outputs depend on (themselves included)."""
    found: set[Cell] = set()
    todo = [c for c in outputs if c in formulas]
    while todo:
        cell = todo.pop()
        if cell in found:
            continue
        found.add(cell)
        todo.extend(c for c in reads(formulas[cell]) if c in formulas and c not in found)
    return found


def dynamic(order: list[Cell], formulas: dict[Cell, F], inputs: set[Cell],
            reads: Callable[[F], Iterable[Cell]], *, volatile: Callable[[F], bool]) -> set[Cell]:
    """The input cells and every formula cell that depends on one (or is volatile)."""
    found = set(inputs)
    for cell in order:
        f = formulas[cell]
        if volatile(f) or any(c in found for c in reads(f)):
            found.add(cell)
    return found


def elementwise(functions: frozenset[str], args: tuple[Area, ...], dyn: set[Cell]) -> bool:
    if not functions <= ELEMENTWISE or functions & VOLATILE:
        return False
    ranges = [a for a in args if not a.is_cell]
    if not ranges:
        return True
    if not functions & LOOKUPS:
        return False
    return not any(c in dyn for a in ranges for c in a.cells())



def nodewise(calls: list[tuple[str, tuple[str, ...]]], kinds: dict[str, str]) -> bool:
    """Whether a formula, as its engine calls (``(function, inputs)`` in order), runs on
    columns with its :data:`RECORDWISE` calls taking each record's own values.

    ``kinds`` says what each formula input is: :data:`CELL` (a value per record, or a
    fixed one), :data:`TABLE` (a fixed range) or :data:`RECORDS` (a range holding record
    values); other inputs are constants or another call's value (one per record).
    """
    allowed = ELEMENTWISE | RECORDWISE
    for function, inputs in calls:
        if is_function(function) and (function not in allowed or function in VOLATILE):
            return False
        for name in inputs:
            kind = kinds.get(name)
            if kind == RECORDS and function not in RECORDWISE:
                return False
            if kind == TABLE and function not in RECORDWISE and function not in LOOKUPS:
                return False
    return True
