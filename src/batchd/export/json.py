"""JSON Lines and JSON array writers.

Rows given as dicts cost one orjson call each. A table (or a source of row dicts that
is one, :class:`TableRows`) is written a page at a time with no Python work per row:
each plain column's values are dumped in one call and cut apart at their commas (when
no value holds one), the documents are spliced in as stored, and the page's rows are
laid out between the text that joins them (:func:`interleave`). The bytes are those of
``orjson.dumps`` of each row's dict (orjson writes compact text, so a row's text is
its keys' and values' texts joined).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from batchd.export.base import CHUNK_BYTES, Exporter, Pages
from batchd.export.table import (
    Column,
    Constant,
    DocumentColumn,
    Numbered,
    Table,
    TablePage,
    TableRows,
    interleave,
    skeleton,
)
from batchd.export.tuning import tuned_for_export

Part = bytes | list[bytes]
"""Text of a row: the same in every row (bytes), or each row's own."""


def value_texts(values: list[Any]) -> list[bytes]:
    """Each value's JSON text: the list's, cut at its commas when only the values'
    separators are commas (so no value holds one)."""
    text = orjson.dumps(values)
    if values and text.count(b",") == len(values) - 1:
        return text[1:-1].split(b",")
    dumps = orjson.dumps
    return [dumps(v) for v in values]


def _column_parts(column: Column) -> list[Part]:
    if isinstance(column, Constant):
        return [orjson.dumps(column.value)]
    if isinstance(column, Numbered):
        if column.prefix is None:
            return [column.digits]
        quoted = orjson.dumps(column.prefix)  # digits need no escaping: close after them
        return [quoted[:-1], column.digits, b'"']
    return [value_texts(column)]


def _document_part(docs: DocumentColumn, size: int) -> Part:
    texts = docs.texts()
    if texts and texts[0] == b"null" and texts.count(b"null") == size:
        return b"null"  # no output, no error
    return texts


class RowWriter:
    """Writes the pages of one table as JSON objects, each between ``start`` and ``end``."""

    def __init__(self, table: Table, *, start: bytes, end: bytes) -> None:
        self.keys = [(b"," if c else b"") + orjson.dumps(name) + b":"
                     for c, name in enumerate(table.columns)]
        self.segments, self.order = skeleton(table)
        self.start = start
        self.end = end

    def parts(self, page: TablePage) -> list[Part]:
        parts: list[Part] = [self.start + b"{"]
        for key, column in zip(self.keys, page.columns, strict=True):
            parts.append(key)
            parts += _column_parts(column)
        for segment, slot in zip(self.segments, self.order, strict=False):
            parts += [segment, _document_part(page.documents[slot], page.size)]
        parts.append(self.segments[-1] + self.end)
        return parts

    def text(self, page: TablePage) -> bytes:
        """The page's rows."""
        return interleave(self.parts(page), page.size) if page.size else b""


async def _texts(table: Table, *, start: bytes, end: bytes) -> AsyncIterator[bytes]:
    """The table's rows, a chunk of at least CHUNK_BYTES (but the last) at a time."""
    writer = RowWriter(table, start=start, end=end)
    out: list[bytes] = []
    size = 0
    with tuned_for_export():
        async for page in table.pages():
            text = writer.text(page)
            out.append(text)
            size += len(text)
            if size >= CHUNK_BYTES:
                yield out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                size = 0
    if size:
        yield b"".join(out)


class JsonlExporter(Exporter):
    media_type = "application/x-ndjson"
    extension = "jsonl"

    def __init__(self, **_: Any) -> None:
        pass

    async def stream(self, pages: Pages) -> AsyncIterator[bytes]:
        rows = pages()
        if isinstance(rows, TableRows):
            async for chunk in self.stream_table(rows.table):
                yield chunk
            return
        dumps = orjson.dumps
        buf = bytearray()
        async for page in rows:
            for row in page:
                buf += dumps(row)
                buf += b"\n"
            if len(buf) >= CHUNK_BYTES:
                yield bytes(buf)
                buf.clear()
        if buf:
            yield bytes(buf)

    async def stream_table(self, table: Table) -> AsyncIterator[bytes]:
        async for chunk in _texts(table, start=b"", end=b"\n"):
            yield chunk


class JsonExporter(Exporter):
    media_type = "application/json"
    extension = "json"

    def __init__(self, **_: Any) -> None:
        pass

    async def stream(self, pages: Pages) -> AsyncIterator[bytes]:
        rows = pages()
        if isinstance(rows, TableRows):
            async for chunk in self.stream_table(rows.table):
                yield chunk
            return
        dumps = orjson.dumps
        buf = bytearray(b"[")
        first = True
        async for page in rows:
            for row in page:
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
        # Every row after ",\n": the first one's is cut off.
        first = True
        async for chunk in _texts(table, start=b",\n", end=b""):
            yield b"[" + chunk[2:] if first else chunk
            first = False
        yield b"]\n" if not first else b"[]\n"
