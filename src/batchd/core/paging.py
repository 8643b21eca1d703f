"""Pages and cursors of reads, and result records as the exports list them (pure)."""

from __future__ import annotations

from typing import Any

import orjson

from batchd.domain import errors
from batchd.domain.models import item_public_id
from batchd.domain.records import ExportRow, record_usages

RecordRow = dict[str, Any]
"""One record of the results export: ``{item_id, seq, status, input, output, usage,
error}``."""


def decode_cursor(cursor: str | None, kind: str) -> int | None:
    """The position a cursor of ``kind`` (``b`` batches, ``s`` items, ``w`` webhooks) holds."""
    if not cursor:
        return None
    digits = cursor[1:]
    if cursor[0] != kind or not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise errors.InvalidInput(
            "invalid cursor",
            details={"field": "cursor", "problem": "invalid cursor", "kind": "value_error"},
        )
    return int(digits)


def next_cursor(rows: list[Any], limit: int, kind: str, key: str) -> tuple[list[Any], str | None]:
    """The first ``limit`` of ``rows`` (read ``limit + 1``), and the cursor after them."""
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (f"{kind}{getattr(rows[-1], key)}" if more and rows else None)


def records_of(row: ExportRow, multi: bool) -> list[RecordRow]:
    """The records of one finished item (``multi``: items of several records)."""
    iid = item_public_id(row.rowid)
    loads = orjson.loads
    if not multi:
        out = loads(row.output) if row.output is not None else None
        return [{"item_id": iid, "seq": row.seq, "status": row.status,
                 "input": loads(row.input), "output": out,
                 "usage": record_usages(row.usage, 1)[0], "error": row.error}]
    inputs = loads(row.input)
    usages = record_usages(row.usage, len(inputs))
    outputs = loads(row.output) if row.output is not None else [None] * len(inputs)
    rec_errors = (row.error or {}).get("records") if row.status == "succeeded" else None
    shared_error = row.error if row.status != "succeeded" else None
    seq = row.rec0
    result = []
    for i, (inp, out) in enumerate(zip(inputs, outputs, strict=False)):
        if rec_errors is not None and rec_errors[i]:
            status, err = "failed", rec_errors[i]
        else:
            status, err = row.status, shared_error
        result.append({"item_id": iid, "seq": seq + i, "status": status, "input": inp,
                       "output": out, "usage": usages[i], "error": err})
    return result
