"""Tables: rows to export given as columns of plain values plus raw JSON documents.

A dialect that exports many rows hands the writers a :class:`Table` rather than
row dicts. Each page holds, per plain column, its values, and per document column,
its rows' JSON (bytes, or None). Writers never build a dict per row: JSON writers
splice the documents in as they are, CSV and Parquet parse a page's documents in
one call and flatten them under their prefixes (``input.arguments`` →
``input.arguments.company``); trailing documents stay whole (one column of JSON text).

A source of row dicts (``Pages``) may be a :class:`TableRows`: the dicts of a table,
which the writers that know tables read as the table itself.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(slots=True)
class Documents:
    """One document column of a page: ``text`` is a JSON array of the rows' documents
    (``null`` for an absent one), ``lengths`` each document's length in it."""

    text: bytes
    lengths: list[int]

    @classmethod
    def of(cls, blobs: list[bytes | None]) -> Documents:
        docs = [b"null" if b is None else b for b in blobs]
        return cls(text=b"[" + b",".join(docs) + b"]", lengths=[len(d) for d in docs])

    def texts(self) -> list[bytes]:
        """Each row's JSON text (``null`` when absent)."""
        out: list[bytes] = []
        text, at = self.text, 1
        for n in self.lengths:
            out.append(text[at : at + n])
            at += n + 1
        return out

    def rows(self) -> list[bytes | None]:
        """Each row's document (None when absent)."""
        return [None if doc == b"null" else doc for doc in self.texts()]

    def first(self) -> bytes | None:
        doc = self.text[1 : 1 + self.lengths[0]] if self.lengths else b"null"
        return None if doc == b"null" else doc


@dataclass(slots=True)
class DocumentTexts:
    """One document column of a page as each row's JSON text (``null`` for an absent
    one): how a database page cut into rows at C speed comes (compact JSON holds no
    line end, so a page of them one a line splits in one call)."""

    items: list[bytes]

    def texts(self) -> list[bytes]:
        """Each row's JSON text (``null`` when absent)."""
        return self.items

    @property
    def text(self) -> bytes:
        """The rows' documents as one JSON array."""
        return b"[" + b",".join(self.items) + b"]"

    def rows(self) -> list[bytes | None]:
        """Each row's document (None when absent)."""
        return [None if doc == b"null" else doc for doc in self.items]

    def first(self) -> bytes | None:
        doc = self.items[0] if self.items else b"null"
        return None if doc == b"null" else doc


DocumentColumn = Documents | DocumentTexts


@dataclass(frozen=True, slots=True)
class Constant:
    """A plain column with the same value in every row of a page."""

    value: Any


@dataclass(frozen=True, slots=True)
class Numbered:
    """A plain column of integers given as their decimal digits, as a database writes
    them (each row's JSON text and CSV cell already); with a ``prefix``, of texts: the
    prefix and the digits (``itm_42``)."""

    digits: list[bytes]
    prefix: str | None = None

    def values(self) -> list[Any]:
        if self.prefix is None:
            return orjson.loads(b"[" + b",".join(self.digits) + b"]")  # type: ignore[no-any-return]
        if not self.digits:
            return []
        start = self.prefix.encode()
        return (start + (b"," + start).join(self.digits)).decode().split(",")


Column = list[Any] | Constant | Numbered


@dataclass(slots=True)
class TablePage:
    """``columns[c]`` holds plain column ``c`` (each row's value, one Constant, or a
    Numbered column); ``documents[d]`` the JSON of document column ``d`` (the table's
    documents, then its trailing ones)."""

    size: int
    columns: list[Column]
    documents: list[DocumentColumn]

    def values(self, column: int) -> list[Any]:
        found = self.columns[column]
        if isinstance(found, Constant):
            return [found.value] * self.size
        return found.values() if isinstance(found, Numbered) else found


TablePages = Callable[[], AsyncIterator[TablePage]]
"""Returns a fresh iterator over the pages (a writer may read them twice)."""


@dataclass(frozen=True, slots=True)
class Table:
    """``columns`` name the plain columns; ``documents`` (dotted prefixes) the JSON ones,
    flattened in CSV and Parquet; ``trailing`` JSON columns after them, kept whole (one
    column of JSON text there, as a row dict's trailing columns are)."""

    columns: tuple[str, ...]
    documents: tuple[str, ...]
    pages: TablePages
    trailing: tuple[str, ...] = ()

    @property
    def json_columns(self) -> tuple[str, ...]:
        """Every JSON column, in the order of a page's ``documents``."""
        return self.documents + self.trailing


@dataclass(slots=True)
class Parsed:
    """A page's documents of one column, parsed in one call."""

    values: list[Any]
    braces: int  # how many ``{`` their text holds


def parse(docs: DocumentColumn) -> Parsed:
    return Parsed(values=orjson.loads(docs.text), braces=docs.text.count(b"{"))


def nested_rows(table: Table, page: TablePage) -> list[dict[str, Any]]:
    """The page's rows as dicts, documents nested under their prefixes (generic writers)."""
    docs = [d.rows() for d in page.documents]
    columns = [page.values(c) for c in range(len(page.columns))]
    return [nest(table, [c[i] for c in columns], [d[i] for d in docs])
            for i in range(page.size)]


def nest(table: Table, values: list[Any], blobs: list[bytes | None]) -> dict[str, Any]:
    """One row as a dict, documents nested under their prefixes."""
    out: dict[str, Any] = dict(zip(table.columns, values, strict=True))
    for path, blob in zip(table.json_columns, blobs, strict=True):
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = None if blob is None else orjson.loads(blob)
    return out


def skeleton(table: Table) -> tuple[list[bytes], list[int]]:
    """JSON text around a row's documents: ``segments[i]`` precedes the i-th slot and
    ``order[i]`` is the document in it (documents sharing a prefix share an object);
    the last segment closes the row."""
    tree: dict[str, Any] = {}
    for i, path in enumerate(table.json_columns):
        node = tree
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = i
    segments: list[bytes] = []
    order: list[int] = []
    text = bytearray()

    def walk(node: dict[str, Any], first: bool) -> None:
        for key, value in node.items():
            if not first:
                text.extend(b",")
            first = False
            text.extend(orjson.dumps(key) + b":")
            if isinstance(value, dict):
                text.extend(b"{")
                walk(value, True)
                text.extend(b"}")
            else:
                segments.append(bytes(text))
                order.append(value)
                text.clear()

    walk(tree, not table.columns)
    segments.append(bytes(text) + b"}")
    return segments, order


class TableRows:
    """A table's rows as pages of row dicts (documents parsed and nested), for writers of
    row dicts; the writers that know tables take :attr:`table` instead, and write the
    same bytes without the dicts."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._pages: AsyncGenerator[list[dict[str, Any]], None] | None = None

    def __aiter__(self) -> TableRows:
        return self

    async def __anext__(self) -> list[dict[str, Any]]:
        if self._pages is None:
            self._pages = self._dicts()
        return await self._pages.__anext__()

    async def aclose(self) -> None:
        if self._pages is not None:
            await self._pages.aclose()

    async def _dicts(self) -> AsyncGenerator[list[dict[str, Any]], None]:
        async for page in self.table.pages():
            yield nested_rows(self.table, page)


def interleave(parts: list[bytes | list[bytes]], size: int) -> bytes:
    """``size`` rows, each the concatenation of ``parts``: a part is the same text in
    every row (bytes) or each row's own (a list). Made in C calls: a row's list of parts
    repeated, each list laid into its slots, one join."""
    fixed: list[bytes | None] = []
    lists: list[tuple[int, list[bytes]]] = []
    for part in parts:
        if isinstance(part, bytes):
            if fixed and fixed[-1] is not None:
                fixed[-1] += part
            else:
                fixed.append(part)
        else:
            lists.append((len(fixed), part))
            fixed.append(None)
    width = len(fixed)
    out = fixed * size
    for at, texts in lists:
        out[at::width] = texts
    return b"".join(out)  # type: ignore[arg-type]
