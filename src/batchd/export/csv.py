"""CSV writer: nested objects become dotted columns (``input.a.b``).

Cells: text as is, numbers, ``true``/``false``, empty for null or absent, and the
JSON text of lists and empty objects. The header is the union of every row's
flattened keys (first-seen order), found in a first pass over the rows; the second
pass writes them. Both read a page at a time: memory does not grow with the rows.

Fast path (tables): a page of rows is serialised by orjson as one JSON array of
arrays. When that text holds no backslash (so no quote, newline or control
character in any string), no object, no nested array and no null, every JSON
string is already a valid quoted CSV field and every number, true and false a bare
one: the page becomes CSV by cutting the array apart at ``],[``. Other pages go
through the csv module.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from itertools import repeat
from typing import Any

import orjson

from batchd.export.base import CHUNK_BYTES, Pages
from batchd.export.flat import NO_SHAPE, Document, FlatExporter, flatten
from batchd.export.spool import Spool
from batchd.export.table import Constant, Table, TablePage, parse
from batchd.export.tuning import tuned_for_export

__all__ = ["CsvExporter", "flatten"]


def cell(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int:
        return value
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    return orjson.dumps(value).decode()  # floats as JSON writes them, lists, objects


class CsvExporter(FlatExporter):
    """Writes ``columns`` as they are, then the flattened ``nested`` ones.

    The header is the union of all flattened keys, found in a first pass over the
    rows (constant memory: only key names are kept).
    """

    media_type = "text/csv"
    extension = "csv"

    def _flat(self, row: dict[str, Any]) -> dict[str, Any]:
        return {k: cell(v) for k, v in self.flat_row(row).items()}

    async def stream(self, pages: Pages) -> AsyncIterator[bytes]:
        seen: dict[str, dict[str, None]] = {n: {} for n in self.nested}
        async for rows in pages():
            for row in rows:
                for k in self.flat_nested(row, {}):
                    seen[k.split(".", 1)[0]].setdefault(k, None)
        header = self.columns + [k for n in self.nested for k in seen[n]] + self.trailing
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=header, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        async for rows in pages():
            for row in rows:
                writer.writerow(self._flat(row))
            if text.tell() >= CHUNK_BYTES:
                yield text.getvalue().encode()
                text.seek(0)
                text.truncate()
        yield text.getvalue().encode()

    async def stream_table(self, table: Table) -> AsyncIterator[bytes]:
        documents = [Document(prefix) for prefix in table.documents]
        with Spool() as spool, tuned_for_export():
            async for page in table.pages():
                spool.put(_first_pass(page, documents))
            header = [*table.columns]
            for d in documents:
                header.extend(d.freeze(missing=""))
            yield _csv_lines([header])
            out: list[bytes] = []
            size = 0
            for record in spool.records():
                text = _second_pass(record, documents)
                out.append(text)
                size += len(text)
                if size >= CHUNK_BYTES:
                    yield b"".join(out)
                    out.clear()
                    size = 0
            if out:
                yield b"".join(out)


# What pass one keeps of a page: its size; per plain column either its CSV text (a
# Constant's, the same in every row) or each row's; per document either (TEXT, shape,
# each row's CSV text in the shape's order) when every row has that one shape, or
# (LEAVES, PageLeaves) for pass two to place.
TEXT, LEAVES = 0, 1


def _first_pass(page: TablePage, documents: list[Document]) -> Any:
    plain: list[bytes | list[bytes]] = []
    for column in page.columns:
        if isinstance(column, Constant):
            plain.append(_row_texts([(column.value,)], objects=True)[0])
        else:
            plain.append(_column_texts(column))
    kept: list[Any] = []
    for d, docs in zip(documents, page.documents, strict=True):
        leaves = d.page(docs, parse(docs))
        texts = _fast_cells(leaves[1]) if leaves[0] != NO_SHAPE else None
        kept.append((TEXT, leaves[0], texts) if texts is not None else (LEAVES, leaves))
    return page.size, plain, kept


def _second_pass(record: Any, documents: list[Document]) -> bytes:
    size, plain, kept = record
    if not size:
        return b""
    groups: list[Iterable[bytes]] = [
        repeat(p, size) if isinstance(p, bytes) else p for p in plain
    ]
    for d, doc in zip(documents, kept, strict=True):
        if not d.empty:
            continue  # the document has no columns at all (no run has an output yet)
        if doc[0] == TEXT:
            _, shape, texts = doc
            pad = d.padding(shape)
            if pad is not None:
                groups.append([t + pad for t in texts] if pad else texts)
                continue
            # Its columns are spread among others': place them one by one.
            doc = (LEAVES, (shape, [orjson.loads(b"[" + t + b"]") for t in texts]))
        groups.append(_row_texts(d.cells(doc[1])))
    return b"\n".join(map(b",".join, zip(*groups, strict=True))) + b"\n"


def _column_texts(values: list[Any]) -> list[bytes]:
    """Each row's CSV text of one plain column."""
    n = len(values)
    text = orjson.dumps(values)
    if b"null" in text:
        text = orjson.dumps(["" if v is None else v for v in values])
    if (b"\\" in text or b"{" in text or b"null" in text or text.count(b"[") != 1
            or text.count(b",") != n - 1):
        return _row_texts([(v,) for v in values], objects=True)
    return text[1:-1].split(b",") if n else []


def _row_texts(rows: Sequence[Sequence[Any]], *, objects: bool = False) -> list[bytes]:
    """Each row's cells as CSV text (no line end); ``objects``: cells may hold objects."""
    fast = _fast_cells(rows, objects=objects)
    if fast is not None:
        return fast
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="")
    out = []
    for row in rows:
        text.seek(0)
        text.truncate()
        writer.writerow([cell(v) for v in row])
        out.append(text.getvalue().encode())
    return out


def _fast_cells(rows: Sequence[Sequence[Any]], *, objects: bool = False) -> list[bytes] | None:
    """Each row's cells as CSV text, cut from their JSON text (quoted strings, bare
    numbers and booleans); None when the text cannot be cut so.

    Without a backslash, no string holds a quote, a line end or a control character;
    with one ``[`` per row, no cell is a list and no string holds ``[`` (so none holds
    the ``],[`` the rows are cut at). Flattened documents hold no objects (a page's
    count of ``{`` proved it); other cells (``objects``) are checked for them too.
    """
    text = orjson.dumps(rows)
    if b"null" in text:
        text = orjson.dumps([["" if v is None else v for v in row] for row in rows])
    n = len(rows)
    if (b"\\" in text or b"null" in text or text.count(b"[") != n + 1
            or (objects and b"{" in text)):
        return None
    return text[2:-2].split(b"],[")


def _csv_lines(rows: list[list[Any]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue().encode()
