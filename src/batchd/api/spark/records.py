"""Chunks in: ``data.inputs`` (a table with a header row, or objects) to engine records."""

from __future__ import annotations

from typing import Any

from batchd.api.spark import schemas
from batchd.core.manager import Chunk
from batchd.domain import errors


def to_chunks(body: schemas.ChunksBody, *, as_bson: bool) -> list[Chunk]:
    """One engine chunk per wire chunk, with what its result needs kept in ``meta``.

    ``meta`` holds ``t`` (the inputs were a table), ``s`` (the ``data.summary`` spec)
    and ``b`` (the chunk came as BSON, so its result goes back as BSON).
    """
    chunks = []
    for i, wire_chunk in enumerate(body.chunks):
        data = wire_chunk.data
        records, table = _records(data.inputs, data.parameters or {}, where=i)
        meta: dict[str, Any] = {"t": int(table)}
        if data.summary is not None:
            meta["s"] = data.summary.model_dump()
        if as_bson:
            meta["b"] = 1
        chunks.append(Chunk(records=records, ext_id=wire_chunk.id, meta=meta))
    return chunks


def _records(
    inputs: list[Any], parameters: dict[str, Any], *, where: int
) -> tuple[list[dict[str, Any]], bool]:
    """The records of one chunk, with ``parameters`` under each (a record's own value wins)."""
    if not inputs or isinstance(inputs[0], dict):
        records = []
        for j, rec in enumerate(inputs):
            if not isinstance(rec, dict):
                raise _bad(where, j, "every input must be an object when the first one is")
            records.append({**parameters, **rec} if parameters else rec)
        return records, False
    header = inputs[0]
    if not isinstance(header, list):
        raise _bad(where, 0, "inputs must be a table (a header row, then rows) or objects")
    if not all(isinstance(h, str) for h in header):
        raise _bad(where, 0, "the header row must hold column names (strings)")
    if len(set(header)) != len(header):
        raise _bad(where, 0, "the header row names a column twice")
    width = len(header)
    records = []
    for j in range(1, len(inputs)):
        row = inputs[j]
        if not isinstance(row, list) or len(row) != width:
            raise _bad(where, j, f"every row must be a list of {width} values, as the header")
        rec = dict(zip(header, row, strict=True))
        records.append({**parameters, **rec} if parameters else rec)
    return records, True


def _bad(chunk: int, row: int, why: str) -> errors.InvalidInput:
    loc = ["body", "chunks", chunk, "data", "inputs", row]
    return errors.InvalidInput(
        f"chunks[{chunk}].data.inputs[{row}]: {why}",
        details=[{"loc": loc, "msg": why, "type": "invalid_inputs"}],
    )
