"""Chunks out: a delivered item as a ``chunkresults`` chunk.

``outputs`` take the shape of the inputs: a table (header row, then one row per record)
when the inputs were a table, else one object per record. The ``unique_record_key``
column comes first when the inputs have it, then the service outputs the ``output``
filter keeps. ``summary_output`` is computed here, from the outputs, when pulled.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from batchd.domain.records import ExportRow

_REGEX_CHARS = re.compile(r"[.^$*+?{}\[\]\\|()]")


class OutputFilter:
    """Which outputs to keep: all (no filter), names, or regular expressions.

    A plain name keeps that output only; a string with regular-expression characters
    keeps every output it matches from the start of the name (``value_*`` keeps
    ``value_1``).
    """

    def __init__(self, patterns: list[str] | None) -> None:
        self.everything = patterns is None
        self.names = {p for p in patterns or () if not _REGEX_CHARS.search(p)}
        self.regexes = [re.compile(p) for p in patterns or () if _REGEX_CHARS.search(p)]
        self._seen: dict[str, bool] = {}

    def keeps(self, name: str) -> bool:
        if self.everything:
            return True
        kept = self._seen.get(name)
        if kept is None:
            kept = name in self.names or any(r.match(name) for r in self.regexes)
            self._seen[name] = kept
        return kept


def chunk_result(
    row: ExportRow, meta: dict[str, Any], *, key: str | None, keep: OutputFilter,
    output_given: bool,
) -> dict[str, Any]:
    """``row``'s chunk on the wire; ``meta`` is what :mod:`.records` kept with it."""
    n = row.n_records
    summary = meta.get("s")
    if row.status == "succeeded" and row.output is not None:
        outs = [_as_object(o) for o in orjson.loads(row.output)]
        rec_errors = (row.error or {}).get("records") or [None] * n
    else:  # the whole chunk failed: every record carries the chunk's error
        outs = [None] * n
        rec_errors = [row.error] * n
    per_record_ms = math.ceil(row.compute_ms / n) if n and row.compute_ms else 0
    inputs = orjson.loads(row.input) if key is not None else None
    table = bool(meta.get("t"))
    if summary is not None and not output_given and key is None:
        outputs: list[Any] = [[] for _ in range(n + 1)] if table else [{} for _ in range(n)]
    elif table:
        outputs = _table(outs, inputs, key, keep)
    else:
        outputs = _objects(outs, inputs, key, keep)
    return {
        "id": row.ext_id,
        "summary_output": _summary(summary, outs, rec_errors),
        "outputs": outputs,
        "warnings": [None] * n,
        "errors": rec_errors,
        "process_time": [per_record_ms] * n,
    }


def _as_object(out: Any) -> dict[str, Any] | None:
    if out is None or isinstance(out, dict):
        return out
    return {"value": out}


def _table(
    outs: list[dict[str, Any] | None], inputs: list[Any] | None, key: str | None,
    keep: OutputFilter,
) -> list[list[Any]]:
    # Table records share their columns: the first one tells whether the key is there.
    key_col = key if key is not None and inputs and key in inputs[0] else None
    names: list[str] = []
    seen: set[str] = {key_col} if key_col is not None else set()
    for out in outs:
        for name in out or ():
            if name not in seen:
                seen.add(name)
                if keep.keeps(name):
                    names.append(name)
    rows: list[list[Any]] = [([key_col] if key_col is not None else []) + names]
    blank = [None] * len(names)
    if key_col is not None and inputs is not None:
        for inp, out in zip(inputs, outs, strict=True):
            rows.append([inp.get(key_col), *([out.get(c) for c in names] if out else blank)])
    else:
        for out in outs:
            rows.append([out.get(c) for c in names] if out else list(blank))
    return rows


def _objects(
    outs: list[dict[str, Any] | None], inputs: list[Any] | None, key: str | None,
    keep: OutputFilter,
) -> list[dict[str, Any]]:
    result = []
    for i, out in enumerate(outs):
        obj: dict[str, Any] = {}
        if inputs is not None and key is not None and key in inputs[i]:
            obj[key] = inputs[i][key]
        for name, value in (out or {}).items():
            if name not in obj and keep.keeps(name):
                obj[name] = value
        result.append(obj)
    return result


def _summary(
    spec: dict[str, Any] | None, outs: list[dict[str, Any] | None], rec_errors: list[Any]
) -> list[Any]:
    if not spec or not spec.get("aggregation"):
        return [[]]
    header = []
    values = []
    for agg in spec["aggregation"]:
        header.append(f"{agg['output_name']}_{agg['operator']}")
        values.append(_sum(agg["output_name"], outs, rec_errors,
                           ignore_error=bool(spec.get("ignore_error"))))
    return [[header, values]]


def _sum(
    name: str, outs: list[dict[str, Any] | None], rec_errors: list[Any], *, ignore_error: bool
) -> float | int | None:
    """SUM of one output; None (Excel's #N/A) when a record errs, unless ignored."""
    numbers: list[float | int] = []
    for out, err in zip(outs, rec_errors, strict=True):
        value = out.get(name) if out is not None else None
        if err is None and isinstance(value, int | float) and not isinstance(value, bool):
            numbers.append(value)
        elif not ignore_error:
            return None
    if all(isinstance(v, int) for v in numbers):
        return sum(numbers)
    return math.fsum(numbers)
