"""JSON Lines and JSON array writers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from batchd.export.base import CHUNK_BYTES, Exporter, Pages


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
