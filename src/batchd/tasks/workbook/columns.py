"""A formula over a chunk's columns, its aggregates taking each record's own values.

:func:`call` runs a formula's engine calls (a :class:`.pipes.Pipe`) once for the chunk.
A value is either fixed (a constant, a fixed cell or table) or one per record
(:class:`Records`): a column ``(n, 1)``, or the stack ``(n, rows, columns)`` of a range
whose cells hold record values. An element-wise call takes the columns as they are; a
:data:`.graph.RECORDWISE` call (an aggregate…) takes each record's own values: reduced
at once when they are all numbers (:mod:`.aggregates`), else called once per record with
exactly what the per-record path passes it. Anything that does not come out as one
value per record raises :class:`NotColumns`, and the step runs record by record.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from batchd.tasks.workbook import aggregates, graph
from batchd.tasks.workbook.pipes import Node, Pipe


class NotColumns(ValueError):
    """A call's answer is not one value per record."""


class Records:
    """One value per record: ``array`` is a column or a stack (record first); ``each``,
    when a call was made per record, its answers as that call gave them."""

    __slots__ = ("array", "stack", "each")

    def __init__(self, array: np.ndarray, *, stack: bool = False,
                 each: list[Any] | None = None) -> None:
        self.array = array
        self.stack = stack
        self.each = each

    def at(self, i: int) -> Any:
        """Record ``i``'s value, as the per-record path has it."""
        if self.each is not None:
            return self.each[i]
        return self.array[i] if self.stack else self.array[i:i + 1]


def call(pipe: Pipe, args: list[Any], n: int) -> Any:
    """``pipe`` over ``args`` (fixed values or :class:`Records`) for ``n`` records: a
    column, or a fixed value.

    Raises:
        NotColumns: some call gave no single value per record.
    """
    values = dict(pipe.constants)
    values.update(zip(pipe.names, args, strict=True))
    for node in pipe.nodes:
        ins = [values[i] for i in node.inputs]
        if not any(isinstance(v, Records) for v in ins):
            values[node.output] = node.call(*ins)
        elif node.function in graph.RECORDWISE:
            values[node.output] = _by_record(node, ins, n)
        else:
            values[node.output] = _on_columns(node, ins, n)
    out = values[pipe.output]
    return out.array if isinstance(out, Records) else out


def _on_columns(node: Node, ins: list[Any], n: int) -> Records:
    if any(isinstance(v, Records) and v.stack for v in ins):
        raise NotColumns(f"{node.function} reads a range of record values")
    result = node.call(*[v.array if isinstance(v, Records) else v for v in ins])
    if not isinstance(result, np.ndarray) or result.shape != (n, 1):
        raise NotColumns(f"{node.function} gave no column")
    return Records(result)


def _by_record(node: Node, ins: list[Any], n: int) -> Records:
    each = aggregates.reduce(node.function, [
        (v.array, True) if isinstance(v, Records) else (v, False) for v in ins], n) \
        if node.function in aggregates.FAST else None
    if each is None:
        each = [node.call(*[v.at(i) if isinstance(v, Records) else v for v in ins])
                for i in range(n)]
    column = np.empty((n, 1), dtype=object)
    column[:, 0] = [_one(v) for v in each]
    return Records(column, each=each)


def _one(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise NotColumns("an array for one record")
        return value.ravel()[0]
    return value
