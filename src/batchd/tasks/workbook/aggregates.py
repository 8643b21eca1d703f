"""Aggregates over every record at once, when every value they read is a number.

In a column-wise formula an aggregate's arguments are each record's own values (a
column of cells, a stack of a range's cells, or a fixed value). When every one of them
is a finite number, the engine's answer for a record is a plain reduction of those
numbers in the engine's order (arguments in turn, each range row by row), and the
same reduction over a ``(records, values)`` matrix, row by row, gives the same doubles:

- ``SUM``, ``AVERAGE``: numpy's sum (pairwise, as the engine's ``np.sum`` on one record's
  values), the mean dividing it by the count;
- ``PRODUCT``: numpy's product; ``SUMPRODUCT``: the arguments multiplied in turn, then
  summed (arguments of one shape only);
- ``MIN``, ``MAX``: the first smallest or largest value, as Python's ``min``/``max``;
- ``COUNT``: how many values.

Anything else (text, ``true``/``false``, empty cells, errors, a result that overflows)
is left to the engine, once per record (:func:`reduce` answers None).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_NUMBER_TYPES = (float, int, np.float64, np.int64)  # not bool: type() is exact


def _matrix(value: Any, per_record: bool, n: int) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """``value``'s numbers as an ``(n, k)`` matrix and one record's shape, or None."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            numbers = value.astype(np.float64, copy=False)
        elif value.dtype == object and all(type(v) in _NUMBER_TYPES for v in value.flat):
            numbers = value.astype(np.float64)
        else:
            return None
        if per_record:  # a column (n, 1): (1, 1) a record; a stack (n, r, c): (r, c)
            shape = value.shape[1:] if value.ndim == 3 else (1, 1)
            return np.ascontiguousarray(numbers.reshape(n, -1)), shape
        row = numbers.reshape(1, -1)
        return np.ascontiguousarray(np.broadcast_to(row, (n, row.shape[1]))), value.shape
    if type(value) in _NUMBER_TYPES and not per_record:
        return np.full((n, 1), float(value)), ()
    return None


def reduce(function: str, args: list[tuple[Any, bool]], n: int) -> list[Any] | None:
    """Each record's ``function`` of ``args`` (``(value, per_record)`` pairs: a per-record
    value is an ``(n, …)`` array, record first), or None: not all numbers."""
    reducer = _REDUCERS.get(function)
    if reducer is None or not args:
        return None
    parts = []
    for value, per_record in args:
        found = _matrix(value, per_record, n)
        if found is None:
            return None
        parts.append(found)
    with np.errstate(all="ignore"):
        result = reducer([m for m, _ in parts], [shape for _, shape in parts])
    if result is None:
        return None
    if isinstance(result, list):
        return result
    if not np.all(np.isfinite(result)):
        return None  # overflow: the engine says what it becomes
    return list(result)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.ascontiguousarray(np.concatenate(parts, axis=1))


def _sum(parts: list[np.ndarray], shapes: list[tuple[int, ...]]) -> np.ndarray:
    return np.sum(_joined(parts), axis=1)


def _average(parts: list[np.ndarray], shapes: list[tuple[int, ...]]) -> np.ndarray:
    return np.mean(_joined(parts), axis=1)


def _product(parts: list[np.ndarray], shapes: list[tuple[int, ...]]) -> np.ndarray:
    return np.prod(_joined(parts), axis=1)


def _sumproduct(parts: list[np.ndarray], shapes: list[tuple[int, ...]]) -> np.ndarray | None:
    if any(shape != shapes[0] or len(shape) != 2 for shape in shapes):
        return None  # the engine's #VALUE! for ranges of different shapes
    product = parts[0]
    for part in parts[1:]:
        product = product * part
    return np.sum(np.ascontiguousarray(product), axis=1)


def _extreme(greater: bool) -> Any:
    def pick(parts: list[np.ndarray], shapes: list[tuple[int, ...]]) -> list[Any]:
        m = _joined(parts)
        best = m[:, 0].copy()
        for j in range(1, m.shape[1]):
            col = m[:, j]
            better = col > best if greater else col < best
            best[better] = col[better]
        return best.tolist()  # type: ignore[no-any-return]

    return pick


def _count(parts: list[np.ndarray], shapes: list[tuple[int, ...]]) -> list[Any]:
    return [sum(p.shape[1] for p in parts)] * parts[0].shape[0]


_REDUCERS: dict[str, Any] = {
    "SUM": _sum, "AVERAGE": _average, "PRODUCT": _product, "SUMPRODUCT": _sumproduct,
    "MAX": _extreme(True), "MIN": _extreme(False), "COUNT": _count,
}
FAST = frozenset(_REDUCERS)
