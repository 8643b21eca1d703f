"""JSON Lines and JSON array writers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from batchd.export.base import CHUNK_BYTES, Exporter, Pages
from batchd.export.table import Table, skeleton
from batchd.export.tuning import tuned_for_export


async def _objects(table: Table) -> AsyncIterator[list[bytes]]:
    """Each page's rows as JSON objects, the documents spliced in without parsing."""
    segments, order = skeleton(table)
    names = table.columns
    dumps = orjson.dumps
    with tuned_for_export():
        async for out in _spliced(table, segments, order, names, dumps):
            yield out


async def _spliced(table: Table, segments: list[bytes], order: list[int],
                   names: tuple[str, ...], dumps: Any) -> AsyncIterator[list[bytes]]:
    async for page in table.pages():
        rows = zip(*(page.values(c) for c in range(len(names))), strict=True)
        heads = (
            [dumps(dict(zip(names, values, strict=True)))[:-1] for values in rows]
            if names else [b"{"] * page.size
        )
        docs = [page.documents[slot].rows() for slot in order]
        out = []
        for i, head in enumerate(heads):
            parts = [head]
            for segment, blobs in zip(segments, docs, strict=False):
                blob = blobs[i]
                parts.append(segment)
                parts.append(b"null" if blob is None else blob)
            parts.append(segments[-1])
            out.append(b"".join(parts))
        yield out


class JsonlExporter(Exporter):
    media_type = "application/x-ndjson"
    extension = "jsonl"

    def __init__(self, **_: Any) -> None:
        pass

    async def stream(self, pages: Pages) -> AsyncIterator[bytes]:
        dumps = orjson.dumps
        buf = bytearray()
        async for rows in pages():
            for row in rows:
                buf += dumps(row)
                buf += b"\n"
            if len(buf) >= CHUNK_BYTES:
                yield bytes(buf)
                buf.clear()
        if buf:
            yield bytes(buf)

    async def stream_table(self, table: Table) -> AsyncIterator[bytes]:
        buf = bytearray()
        async for objects in _objects(table):
            for obj in objects:
                buf += obj
                buf += b"\n"
            if len(buf) >= CHUNK_BYTES:
                yield bytes(buf)
                buf.clear()
        if buf:
            yield bytes(buf)


class JsonExporter(Exporter):
    media_type = "application/json"
    extension = "json"

    def __init__(self, **_: Any) -> None:
        pass

    async def stream(self, pages: Pages) -> AsyncIterator[bytes]:
        dumps = orjson.dumps
        buf = bytearray(b"[")
        first = True
        async for rows in pages():
            for row in rows:
                if not first:
                    buf += b",\n"
                first = False
                buf += dumps(row)
            if len(buf) >= CHUNK_BYTES:
                yield bytes(buf)
                buf.clear()
        buf += b"]\n"
        yield bytes(buf)

    async def stream_table(self, table: Table) -> AsyncIterator[bytes]:
        buf = bytearray(b"[")
        first = True
        async for objects in _objects(table):
            for obj in objects:
                if not first:
                    buf += b",\n"
                first = False
                buf += obj
            if len(buf) >= CHUNK_BYTES:
                yield bytes(buf)
                buf.clear()
        buf += b"]\n"
        yield bytes(buf)
