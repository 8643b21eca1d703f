"""A record's input values, into the cells they replace.

An input names a cell or, with Spark's ``Xinput_`` names, a range (a table). A record
gives, for each input:

- a cell: a number, text, ``true``/``false`` or ``null`` (an empty cell); in a date
  cell ISO text is a date (see :mod:`.dates`);
- a range: a list of rows, each a list of as many values as the range has columns,
  from the range's first row (fewer rows leave the rest empty); for a range of one row
  or one column, a plain list of values too; ``null`` empties the range. When the
  range's first row holds column names (text), Spark's table form as well: a list of
  objects by those names, one per row below them (a name an object lacks is an empty
  cell).

An input the record lacks keeps the value saved in the workbook. A range input of the
wrong shape is refused when the chunk is pushed (:func:`schema`, a 4xx), and, should one
reach a worker all the same, fails its record.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from batchd.tasks.context import RecordError
from batchd.tasks.workbook import cells, dates
from batchd.tasks.workbook.cells import EMPTY, Area, Cell

_SCALAR = {"type": ["number", "string", "boolean", "null"]}
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Field:
    """One input: its cells, their saved values, which take dates, a table's header."""

    name: str
    area: Area
    default: tuple[Any, ...]  # per cell, row by row
    dated: tuple[bool, ...]  # per cell
    header: tuple[str, ...] | None = None  # the first row's names (Spark's table form)


def fields(inputs: dict[str, Area], values: dict[Cell, Any], dated: set[Cell]) -> dict[str, Field]:
    found = {}
    for name, area in inputs.items():
        cs = area.cells()
        first = [values.get(c, EMPTY) for c in area.rows()[0]]
        header = None
        if area.shape[0] > 1 and all(isinstance(v, str) and v for v in first) \
                and len(set(first)) == len(first):
            header = tuple(first)
        found[name] = Field(name=name, area=area, default=tuple(values.get(c, EMPTY) for c in cs),
                            dated=tuple(c in dated for c in cs), header=header)
    return found


def schema(found: dict[str, Field]) -> dict[str, Any]:
    """The JSON schema of a record: any value for a cell, the shapes above for a range."""
    return {"type": "object", "properties": {
        name: {} if f.area.is_cell else _range_schema(f) for name, f in found.items()}}


def _range_schema(f: Field) -> dict[str, Any]:
    """The shapes as if/then/else rather than anyOf, so that a refusal names what is
    wrong with the form the record chose (``[1, 2, 3, 4] is too long``)."""
    rows, width = f.area.shape
    as_rows = {"maxItems": rows, "items": {
        "type": "array", "minItems": width, "maxItems": width, "items": _SCALAR}}
    as_table: dict[str, Any] = {"items": {"type": "array"}}  # no header: rows, then
    if f.header is not None:
        as_table = {"maxItems": rows - 1, "items": {
            "type": "object", "additionalProperties": False,
            "properties": {h: _SCALAR for h in f.header}}}
    flat: dict[str, Any] = {"items": {"type": "array"}}  # two dimensions: rows only
    if rows == 1 or width == 1:
        flat = {"maxItems": rows * width, "items": _SCALAR}
    return {"type": ["array", "null"],
            "if": _all_of_type("array"), "then": as_rows,
            "else": {"if": _all_of_type("object"), "then": as_table, "else": flat}}


def _all_of_type(kind: str) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "items": {"type": kind}}


def _cells_of(f: Field, value: Any) -> list[Any]:
    """A range input's value as its cells' values, row by row.

    Raises:
        cells.BadInput: not one of the shapes above.
    """
    rows, width = f.area.shape
    if value is None or value == []:
        return [None] * (rows * width)
    if not isinstance(value, list):
        raise cells.BadInput(f"must be a list of rows ({rows}x{width} cells), not "
                             f"{type(value).__name__}")
    if value and all(isinstance(v, dict) for v in value):
        return _table(f, value)
    if value and all(isinstance(v, list) for v in value):
        if len(value) > rows or any(len(v) != width for v in value):
            raise cells.BadInput(f"must be at most {rows} rows of {width} values each")
        flat = [v for row in value for v in row]
    elif rows == 1 or width == 1:
        flat = list(value)
        if len(flat) > rows * width:
            raise cells.BadInput(f"must be a list of at most {rows * width} values")
    else:
        raise cells.BadInput(f"must be a list of rows ({rows}x{width} cells)")
    return flat + [None] * (rows * width - len(flat))


def _table(f: Field, value: list[dict[str, Any]]) -> list[Any]:
    rows, width = f.area.shape
    if f.header is None:
        raise cells.BadInput("is a range without column names in its first row: give a "
                             "list of rows")
    if len(value) > rows - 1:
        raise cells.BadInput(f"must be at most {rows - 1} rows")
    unknown = {k for row in value for k in row} - set(f.header)
    if unknown:
        raise cells.BadInput(f"has no column {sorted(unknown)[0]!r} (columns: "
                             f"{', '.join(f.header)})")
    flat: list[Any] = list(f.header)
    for row in value:
        flat += [row.get(h) for h in f.header]
    return flat + [None] * (rows * width - len(flat))


def _value(v: Any, dated: bool) -> Any:
    if dated:
        try:
            v = dates.to_serial(v)
        except dates.NotADate as exc:
            raise cells.BadInput(str(exc)) from None
    return v if type(v) is float else cells.from_json(v)


def columns(found: dict[str, Field], records: list[Any],
            results: list[Any]) -> tuple[list[int], dict[Cell, np.ndarray]]:
    """The good records' positions, and each input cell's column of their values.

    A record that is not an object, or holds a value no cell can take, gets its
    :class:`RecordError` in ``results`` and no place in the columns.
    """
    rows = [at for at, rec in enumerate(records) if isinstance(rec, dict)]
    for at in set(range(len(records))) - set(rows):
        results[at] = RecordError("a record must be an object of input values",
                                  code="invalid_record")
    good = [records[at] for at in rows]
    values: dict[Cell, list[Any]] = {}
    bad: dict[int, RecordError] = {}
    for f in found.values():
        if f.area.is_cell:
            _one_cell(f, good, values, bad)
        else:
            _one_range(f, good, values, bad)
    if bad:
        for i, err in bad.items():
            results[rows[i]] = err
        keep = [i for i in range(len(rows)) if i not in bad]
        rows = [rows[i] for i in keep]
        values = {cell: [col[i] for i in keep] for cell, col in values.items()}
    out = {}
    for cell, col in values.items():
        column = np.empty((len(rows), 1), dtype=object)
        column[:, 0] = col
        out[cell] = column
    return rows, out


def _one_cell(f: Field, good: list[dict[str, Any]], values: dict[Cell, list[Any]],
              bad: dict[int, RecordError]) -> None:
    default = f.default[0]
    convert = functools.partial(_value, dated=True) if f.dated[0] else cells.from_json
    col = [rec.get(f.name, default) for rec in good]
    for i, v in enumerate(col):
        if type(v) is not float and v is not default:  # most values are floats
            try:
                col[i] = convert(v)
            except cells.BadInput as exc:
                bad.setdefault(i, _bad(f, exc))
    values[f.area.first] = col


def _one_range(f: Field, good: list[dict[str, Any]], values: dict[Cell, list[Any]],
               bad: dict[int, RecordError]) -> None:
    cols: list[list[Any]] = [[] for _ in f.default]
    for i, rec in enumerate(good):
        given = rec.get(f.name, _MISSING)
        try:
            each = list(f.default) if given is _MISSING else [
                _value(v, d) for v, d in zip(_cells_of(f, given), f.dated, strict=True)]
        except cells.BadInput as exc:
            bad.setdefault(i, _bad(f, exc))
            each = list(f.default)
        for col, v in zip(cols, each, strict=True):
            col.append(v)
    for cell, col in zip(f.area.cells(), cols, strict=True):
        values[cell] = col


def _bad(f: Field, exc: Exception) -> RecordError:
    return RecordError(f"input {f.name!r} {exc}", code="invalid_record")
