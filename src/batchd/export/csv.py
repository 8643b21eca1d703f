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

A table given as row dicts (:class:`TableRows`, the native results) must come out as
the csv module writes those dicts, byte for byte: there a JSON string becomes its
bare text, unless it holds a comma (then it keeps its quotes, as the module would
put them); with no comma inside any string the page is the array's text without its
quotes. Everything else goes through the csv module as the dicts would.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson

from batchd.export.base import CHUNK_BYTES, Pages
from batchd.export.flat import NO_SHAPE, Document, FlatExporter, flatten
from batchd.export.spool import Spool
from batchd.export.table import (
    Column,
    Constant,
    Numbered,
    Table,
    TablePage,
    TableRows,
    interleave,
    parse,
)
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

    def _writes(self, table: Table) -> bool:
        """Whether the table's rows are this writer's rows (its columns, by name)."""
        return (self.columns == list(table.columns) and self.nested == list(table.documents)
                and self.trailing == list(table.trailing))

    async def stream(self, pages: Pages) -> AsyncIterator[bytes]:
        rows = pages()
        if isinstance(rows, TableRows) and self._writes(rows.table):
            async for chunk in _stream_table(rows.table, AS_MODULE):
                yield chunk
            return
        seen: dict[str, dict[str, None]] = {n: {} for n in self.nested}
        async for page in rows:
            for row in page:
                for k in self.flat_nested(row, {}):
                    seen[k.split(".", 1)[0]].setdefault(k, None)
        header = self.columns + [k for n in self.nested for k in seen[n]] + self.trailing
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=header, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        async for page in pages():
            for row in page:
                writer.writerow(self._flat(row))
            if text.tell() >= CHUNK_BYTES:
                yield text.getvalue().encode()
                text.seek(0)
                text.truncate()
        yield text.getvalue().encode()

    def stream_table(self, table: Table) -> AsyncIterator[bytes]:
        return _stream_table(table, QUOTED)


async def _stream_table(table: Table, style: Style) -> AsyncIterator[bytes]:
    documents = [Document(prefix) for prefix in table.documents]
    with Spool() as spool, tuned_for_export():
        async for page in table.pages():
            spool.put(_first_pass(page, documents, style))
        header = [*table.columns]
        for d in documents:
            header.extend(d.freeze(missing=""))
        header.extend(table.trailing)
        yield _csv_lines([header])
        out: list[bytes] = []
        size = 0
        for record in spool.records():
            text = _second_pass(record, documents, style)
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
# each row's cells as JSON text in the shape's order) when every row has that one shape,
# or (LEAVES, PageLeaves) for pass two to place; per trailing document its CSV text (the
# same in every row) or each row's.
TEXT, LEAVES = 0, 1


def _plain_texts(column: Column, style: Style) -> bytes | list[bytes]:
    if isinstance(column, Constant):
        return style.constant(column.value)
    return style.numbered(column) if isinstance(column, Numbered) else style.plain(column)


def _first_pass(page: TablePage, documents: list[Document], style: Style) -> Any:
    plain = [_plain_texts(column, style) for column in page.columns]
    kept: list[Any] = []
    for d, docs in zip(documents, page.documents, strict=False):
        flat = d.flat_texts(docs.texts())
        if flat is not None:
            kept.append((TEXT, *flat))
            continue
        leaves = d.page(docs, parse(docs))
        texts = _fast_cells(leaves[1]) if leaves[0] != NO_SHAPE else None
        kept.append((TEXT, leaves[0], texts) if texts is not None else (LEAVES, leaves))
    trailing = [style.whole(docs.texts()) for docs in page.documents[len(documents):]]
    return page.size, plain, kept, trailing


def _second_pass(record: Any, documents: list[Document], style: Style) -> bytes:
    size, plain, kept, trailing = record
    if not size:
        return b""
    parts: list[bytes | list[bytes]] = []
    for p in plain:
        parts += [p, b","]
    for d, doc in zip(documents, kept, strict=True):
        if not d.empty:
            continue  # the document has no columns at all (no run has an output yet)
        if doc[0] == TEXT:
            _, shape, texts = doc
            pad = d.padding(shape)
            if pad is not None:
                parts += [style.shaped(texts, d.width(shape)), pad + b","]
                continue
            # Its columns are spread among others': place them one by one.
            doc = (LEAVES, (shape, [orjson.loads(b"[" + t + b"]") for t in texts]))
        parts += [style.rows(d.cells(doc[1])), b","]
    for t in trailing:
        parts += [t, b","]
    end = parts[-1]
    assert isinstance(end, bytes)  # each group ends with its separator, a text of its own
    parts[-1] = end[:-1] + b"\n"
    return interleave(parts, size)


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
    return fast if fast is not None else _csv_texts(rows, within=False)


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


def _whole_value(text: bytes) -> Any:
    """A trailing document's cell value, as the row dicts' writer gets it (the JSON text
    of an object or a list)."""
    value = orjson.loads(text)
    return orjson.dumps(value).decode() if isinstance(value, dict | list) else value


class Style:
    """How cells become CSV text: plain columns' values (``plain``, ``constant``), any
    row of cells (``rows``), pass one's JSON text of a shape's cells (``shaped``), a
    trailing document's JSON text (``whole``); each row's text, no line end."""

    def plain(self, values: list[Any]) -> list[bytes]:
        return _column_texts(values)

    def numbered(self, column: Numbered) -> list[bytes]:
        return self.plain(column.values())

    def constant(self, value: Any) -> bytes:
        return _row_texts([(value,)], objects=True)[0]

    def rows(self, rows: Sequence[Sequence[Any]]) -> list[bytes]:
        return _row_texts(rows)

    def shaped(self, texts: list[bytes], width: int) -> list[bytes]:
        return texts

    def whole(self, texts: list[bytes]) -> bytes | list[bytes]:
        values = [None if t == b"null" else _whole_value(t) for t in texts]
        return _row_texts([(v,) for v in values], objects=True)


class ModuleStyle(Style):
    """The csv module's bytes for the same cells (as :meth:`CsvExporter.stream` writes
    row dicts): a string bare unless it holds a comma, a quote or a line end."""

    def plain(self, values: list[Any]) -> list[bytes]:
        text = orjson.dumps(values)
        if b"null" in text:
            text = orjson.dumps(["" if v is None else v for v in values])
        n = len(values)
        if (b"\\" in text or b"{" in text or text.count(b"[") != 1
                or text.count(b",") != n - 1 or not n):
            return _module_texts([(v,) for v in values])
        return text[1:-1].replace(b'"', b"").split(b",")

    def numbered(self, column: Numbered) -> list[bytes]:
        if column.prefix is None:
            return column.digits
        start = column.prefix.encode()
        if not column.digits or any(c in start for c in b',"\r\n'):
            return self.plain(column.values())
        return (start + (b"," + start).join(column.digits)).split(b",")

    def constant(self, value: Any) -> bytes:
        return self.plain([value])[0]

    def rows(self, rows: Sequence[Sequence[Any]]) -> list[bytes]:
        fast = _module_cells(rows)
        return fast if fast is not None else _module_texts(rows)

    def shaped(self, texts: list[bytes], width: int) -> list[bytes]:
        # No backslash and no nested array in pass one's text: the only commas are the
        # separators, unless a string holds one.
        joined = b"\n".join(texts)
        if joined.count(b",") == len(texts) * (width - 1):
            return joined.replace(b'"', b"").split(b"\n") if texts else []
        return _module_texts([orjson.loads(b"[" + t + b"]") for t in texts])

    def whole(self, texts: list[bytes]) -> bytes | list[bytes]:
        if texts.count(b"null") == len(texts):
            return b""
        return [_module_whole(t) for t in texts]


QUOTED = Style()
AS_MODULE = ModuleStyle()


def _module_whole(text: bytes) -> bytes:
    if text == b"null":
        return b""
    if text[:1] in (b"{", b"["):
        # Its JSON text, which holds no line end: quoted if it holds a comma or a quote.
        if b"," in text or b'"' in text:
            return b'"' + text.replace(b'"', b'""') + b'"'
        return text
    return _module_texts([(_whole_value(text),)])[0]


def _module_cells(rows: Sequence[Sequence[Any]]) -> list[bytes] | None:
    """Each row's cells as the csv module writes them, cut from their JSON text when no
    string holds a backslash escape or a comma (see _fast_cells); else None."""
    text = orjson.dumps(rows)
    if b"null" in text:
        text = orjson.dumps([["" if v is None else v for v in row] for row in rows])
    n = len(rows)
    # Commas beyond the separators (n - 1 between rows, len - 1 in each) are in strings.
    if (b"\\" in text or text.count(b"[") != n + 1 or b"{" in text
            or text.count(b",") != sum(map(len, rows)) - 1 or not n):
        return None
    return text[2:-2].replace(b'"', b"").split(b"],[")


def _module_texts(rows: Sequence[Sequence[Any]]) -> list[bytes]:
    """Each row's cells as the csv module writes them within a longer row (no line end)."""
    return _csv_texts(rows, within=True)


def _csv_texts(rows: Sequence[Sequence[Any]], *, within: bool) -> list[bytes]:
    """Each row's cells as the csv module writes them, without the line end: as a whole
    row, or ``within`` a longer one (where one empty cell is '', not '""')."""
    text = io.StringIO()
    # A line end the writer knows: a cell holding one is quoted.
    writer = csv.writer(text, lineterminator="\n")
    out = []
    for row in rows:
        text.seek(0)
        text.truncate()
        if within:  # one more, empty, cell: a row of one empty cell alone is '""'
            writer.writerow([*map(cell, row), ""])
            out.append(text.getvalue()[:-2].encode() if row else b"")
        else:
            writer.writerow([cell(v) for v in row])
            out.append(text.getvalue()[:-1].encode())
    return out
