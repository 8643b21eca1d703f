"""Records through a compiled workbook: column-wise where the graph allows, else per record.

Each input cell becomes the column of a chunk's values (an ``(n, 1)`` array). An
element-wise step is called once with those columns; any other step (an aggregate, a
range holding record values, a lookup whose table depends on the record) is called
once per record with ``(1, 1)`` values, exactly as the per-record path calls every
step. An element-wise step whose answer does not have one value per record falls back
to the per-record call too, so the two paths give the same results.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from batchd.tasks.context import RecordError
from batchd.tasks.workbook import cells
from batchd.tasks.workbook.cells import EMPTY, Area, Cell
from batchd.tasks.workbook.compiler import Compiled, Step, scalar


def evaluate(plan: Compiled, records: list[Any], *, vectorised: bool = True) -> list[Any]:
    """One output object (or :class:`RecordError`) per record.

    ``vectorised=False`` evaluates each record alone, every step once per record: the
    reference the column-wise path must equal.
    """
    with plan.lock:
        return evaluate_held(plan, records, vectorised=vectorised)


def evaluate_held(plan: Compiled, records: list[Any], *, vectorised: bool = True) -> list[Any]:
    """:func:`evaluate` for a caller that holds ``plan.lock``."""
    with np.errstate(all="ignore"):  # overflow is Excel's #NUM!, not a warning
        return _evaluate(plan, records, vectorised=vectorised)


def _evaluate(plan: Compiled, records: list[Any], *, vectorised: bool) -> list[Any]:
    results: list[Any] = [None] * len(records)
    rows, columns = _columns(plan, records, results)
    if not rows:
        return results
    if vectorised:
        failed: dict[int, RecordError] = {}
        env = _run(plan, columns, len(rows), vectorised=True, failed=failed)
        for i, at in enumerate(rows):
            results[at] = failed.get(i) or _outputs(plan, env, i)
        return results
    for i, at in enumerate(rows):
        one = {cell: col[i:i + 1] for cell, col in columns.items()}
        failed = {}
        env = _run(plan, one, 1, vectorised=False, failed=failed)
        results[at] = failed.get(0) or _outputs(plan, env, 0)
    return results


def _columns(plan: Compiled, records: list[Any],
             results: list[Any]) -> tuple[list[int], dict[Cell, np.ndarray]]:
    """The good records' positions, and each input cell's column of their values.

    A record that is not an object, or holds a value no cell can (a list, an object),
    gets its :class:`RecordError` in ``results`` and no place in the columns.
    """
    rows = [at for at, rec in enumerate(records) if isinstance(rec, dict)]
    for at in set(range(len(records))) - set(rows):
        results[at] = RecordError("a record must be an object of input values",
                                  code="invalid_record")
    good = [records[at] for at in rows]
    values: dict[str, list[Any]] = {}
    bad: dict[int, RecordError] = {}
    for name in plan.inputs:
        default = plan.defaults[name]
        col = [rec.get(name, default) for rec in good]
        for i, v in enumerate(col):
            if type(v) is not float and v is not default:  # most values are floats
                try:
                    col[i] = cells.from_json(v)
                except cells.BadInput as exc:
                    bad.setdefault(i, RecordError(f"input {name!r} {exc}",
                                                  code="invalid_record"))
        values[name] = col
    if bad:
        for i, err in bad.items():
            results[rows[i]] = err
        keep = [i for i in range(len(rows)) if i not in bad]
        rows = [rows[i] for i in keep]
        values = {name: [col[i] for i in keep] for name, col in values.items()}
    columns = {}
    for name, area in plan.inputs.items():
        column = np.empty((len(rows), 1), dtype=object)
        column[:, 0] = values[name]
        columns[area.first] = column
    return rows, columns


def _run(plan: Compiled, env: dict[Cell, np.ndarray], n: int, *, vectorised: bool,
         failed: dict[int, RecordError]) -> dict[Cell, np.ndarray]:
    """Every step's column; a record whose formula raises goes into ``failed``."""
    env = dict(env)
    for step in plan.steps:
        col = _column_call(step, plan, env, n) if vectorised and step.elementwise else None
        env[step.cell] = col if col is not None else _per_record(step, plan, env, n, failed)
    return env


def _column_call(step: Step, plan: Compiled, env: dict[Cell, np.ndarray],
                 n: int) -> np.ndarray | None:
    try:
        return _as_column(_call(step, plan, env), n)
    except Exception:  # e.g. a failed record's value in the column: go record by record
        return None


def _per_record(step: Step, plan: Compiled, env: dict[Cell, np.ndarray], n: int,
                failed: dict[int, RecordError]) -> np.ndarray:
    col = np.empty((n, 1), dtype=object)
    for i in range(n):
        if i in failed:
            col[i, 0] = EMPTY
            continue
        try:
            col[i, 0] = scalar(step.fn(*[_arg_at(a, plan, env, i) for a in step.args]))
        except Exception as exc:  # the engine's own failure on this record's values
            failed[i] = RecordError(f"{cells.label(step.cell)}: the formula failed: {exc}",
                                    code="formula_failed")
            col[i, 0] = EMPTY
    return col


def _call(step: Step, plan: Compiled, env: dict[Cell, np.ndarray]) -> Any:
    args = []
    for a in step.args:
        if a.is_cell:
            col = env.get(a.first)
            args.append(col if col is not None else _one(plan.values.get(a.first, EMPTY)))
        else:
            args.append(plan.tables[a])
    return step.fn(*args)


def _as_column(result: Any, n: int) -> np.ndarray | None:
    arr = result if isinstance(result, np.ndarray) else np.array(result, dtype=object)
    if arr.shape == (n, 1):
        return arr.astype(object, copy=False)
    if n == 1 and arr.size == 1:
        return arr.reshape(1, 1).astype(object, copy=False)
    # Not one value per record (a function that answered one error for the whole
    # column, say): the per-record calls decide.
    return None


def _arg_at(a: Area, plan: Compiled, env: dict[Cell, np.ndarray], i: int) -> np.ndarray:
    if a.is_cell:
        col = env.get(a.first)
        return col[i:i + 1] if col is not None else _one(plan.values.get(a.first, EMPTY))
    fixed = plan.tables.get(a)
    if fixed is not None:
        return fixed
    rows = [[_cell_at(c, plan, env, i) for c in row] for row in a.rows()]
    return np.array(rows, dtype=object).reshape(a.shape)


def _cell_at(c: Cell, plan: Compiled, env: dict[Cell, np.ndarray], i: int) -> Any:
    col = env.get(c)
    return col[i, 0] if col is not None else plan.values.get(c, EMPTY)


def _one(value: Any) -> np.ndarray:
    arr = np.empty((1, 1), dtype=object)
    arr[0, 0] = value
    return arr


def _outputs(plan: Compiled, env: dict[Cell, np.ndarray], i: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, area in plan.outputs.items():
        if area.is_cell:
            out[name] = cells.to_json(_cell_at(area.first, plan, env, i))
        else:
            out[name] = [[cells.to_json(_cell_at(c, plan, env, i)) for c in row]
                         for row in area.rows()]
    return out
