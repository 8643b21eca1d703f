"""Records through a compiled workbook: column-wise where the graph allows, else per record.

Each input cell becomes the column of a chunk's values (an ``(n, 1)`` array,
:mod:`.inputs`). An element-wise step is called once with those columns (one whose
aggregates take each record's values through :mod:`.columns`, a range of record values
as a stack); any other step (a range of record values inside arithmetic, a lookup whose
table depends on the record) is called once per record with ``(1, 1)`` values, exactly
as the per-record path calls every step. An element-wise step whose answer does not
have one value per record falls back to the per-record call too, so the two paths give
the same results.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from batchd.tasks.context import RecordError
from batchd.tasks.workbook import cells, columns, dates, inputs
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
    rows, given = inputs.columns(plan.fields, records, results)
    if not rows:
        return results
    if vectorised:
        failed: dict[int, RecordError] = {}
        env = _run(plan, given, len(rows), vectorised=True, failed=failed)
        for i, at in enumerate(rows):
            results[at] = failed.get(i) or _outputs(plan, env, i)
        return results
    for i, at in enumerate(rows):
        one = {cell: col[i:i + 1] for cell, col in given.items()}
        failed = {}
        env = _run(plan, one, 1, vectorised=False, failed=failed)
        results[at] = failed.get(0) or _outputs(plan, env, 0)
    return results


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
        return _as_column(_call(step, plan, env, n), n)
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


def _call(step: Step, plan: Compiled, env: dict[Cell, np.ndarray], n: int) -> Any:
    if step.pipe is None:
        return step.fn(*[_column_arg(a, plan, env) for a in step.args])
    args: list[Any] = []
    for a in step.args:
        if a.is_cell:
            col = env.get(a.first)
            args.append(_one(plan.values.get(a.first, EMPTY)) if col is None
                        else columns.Records(col))
        else:
            fixed = plan.tables.get(a)
            args.append(fixed if fixed is not None
                        else columns.Records(_stack(a, plan, env, n), stack=True))
    return columns.call(step.pipe, args, n)


def _column_arg(a: Area, plan: Compiled, env: dict[Cell, np.ndarray]) -> Any:
    if not a.is_cell:
        return plan.tables[a]
    col = env.get(a.first)
    return col if col is not None else _one(plan.values.get(a.first, EMPTY))


def _stack(a: Area, plan: Compiled, env: dict[Cell, np.ndarray], n: int) -> np.ndarray:
    """The range's values, record by record: ``(n, rows, columns)``."""
    stack = np.empty((n, *a.shape), dtype=object)
    for r, row in enumerate(a.rows()):
        for c, cell in enumerate(row):
            col = env.get(cell)
            stack[:, r, c] = col[:, 0] if col is not None else plan.values.get(cell, EMPTY)
    return stack


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
    plain = not plan.output_dates  # the common case first: no date-formatted output
    for name, area in plan.outputs.items():
        if area.is_cell:
            out[name] = cells.to_json(_cell_at(area.first, plan, env, i)) if plain \
                else _output(plan, area.first, env, i)
        else:
            out[name] = [[_output(plan, c, env, i) for c in row] for row in area.rows()]
    return out


def _output(plan: Compiled, c: Cell, env: dict[Cell, np.ndarray], i: int) -> Any:
    value = cells.to_json(_cell_at(c, plan, env, i))
    kind = plan.output_dates.get(c)
    return value if kind is None else dates.to_iso(value, kind)
