"""Tables: rows to export given as columns of plain values plus raw JSON documents.

A dialect that exports many rows hands the writers a :class:`Table` rather than
row dicts. Each page holds, per plain column, its values, and per document column,
its rows' JSON (bytes, or None). Writers never build a dict per row: JSON writers
splice the documents in as they are, CSV and Parquet parse a page's documents in
one call and flatten them under their prefixes (``input.arguments`` →
``input.arguments.company``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
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

    def rows(self) -> list[bytes | None]:
        """Each row's document (None when absent)."""
        out: list[bytes | None] = []
        text, at = self.text, 1
        for n in self.lengths:
            doc = text[at : at + n]
            out.append(None if doc == b"null" else doc)
            at += n + 1
        return out

    def first(self) -> bytes | None:
        doc = self.text[1 : 1 + self.lengths[0]] if self.lengths else b"null"
        return None if doc == b"null" else doc


@dataclass(frozen=True, slots=True)
class Constant:
    """A plain column with the same value in every row of a page."""

    value: Any


Column = list[Any] | Constant


@dataclass(slots=True)
class TablePage:
    """``columns[c]`` holds plain column ``c`` (each row's value, or one Constant);
    ``documents[d]`` the JSON of document column ``d``."""

    size: int
    columns: list[Column]
    documents: list[Documents]

    def values(self, column: int) -> list[Any]:
        found = self.columns[column]
        return [found.value] * self.size if isinstance(found, Constant) else found


TablePages = Callable[[], AsyncIterator[TablePage]]
"""Returns a fresh iterator over the pages (a writer may read them twice)."""


@dataclass(frozen=True, slots=True)
class Table:
    """``columns`` name the plain columns; ``documents`` (dotted prefixes) the JSON ones."""

    columns: tuple[str, ...]
    documents: tuple[str, ...]
    pages: TablePages


@dataclass(slots=True)
class Parsed:
    """A page's documents of one column, parsed in one call."""

    values: list[Any]
    braces: int  # how many ``{`` their text holds


def parse(docs: Documents) -> Parsed:
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
    for path, blob in zip(table.documents, blobs, strict=True):
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
    for i, path in enumerate(table.documents):
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
