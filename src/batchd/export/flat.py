"""Flattening JSON documents into dotted columns, fast for rows that share a shape.

The rule (CSV and Parquet): a document's object keys become columns under its prefix,
nested objects recursively (``output.info.hq``); lists and empty objects are one
column holding their JSON text; a missing document (no output) leaves its columns
empty. The columns are the union of every row's keys, in the order first seen.

Rows of a batch mostly share one shape, so neither pass walks each row: a shape is
compiled once into a function returning a row's leaf values in order, and picked by
the row's top-level keys and its number of ``{`` (one per object, so a row with an
object where its shape has a plain value cannot pass for it). The function checks
the keys of every nested object too; a row that fits no shape is flattened the slow
way. A page whose rows are all flat objects with the same keys in the columns' order
needs no per-row work at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson

from batchd.domain.records import RESULT_COLUMNS, RESULT_DOCUMENTS, RESULT_TRAILING
from batchd.export.base import Exporter
from batchd.export.table import DocumentColumn, Parsed


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """``{"a": {"b": 1}}`` under ``input`` → ``{"input.a.b": 1}``; lists stay JSON text."""
    if value is None and "." not in prefix:
        return  # no output yet: leave the nested columns empty
    if isinstance(value, dict) and value:
        for k, v in value.items():
            flatten(f"{prefix}.{k}", v, out)
    elif isinstance(value, list | dict):
        out[prefix] = orjson.dumps(value).decode()
    else:
        out[prefix] = value


class FlatExporter(Exporter):
    """A writer of flat rows (CSV, Parquet): ``columns`` as they are, then the ``nested``
    documents flattened into dotted columns, then the ``trailing`` columns (an object
    or a list there as its JSON text)."""

    def __init__(
        self, *, columns: Iterable[str] = RESULT_COLUMNS,
        nested: Iterable[str] = RESULT_DOCUMENTS, trailing: Iterable[str] = RESULT_TRAILING,
    ) -> None:
        self.columns = list(columns)
        self.nested = list(nested)
        self.trailing = list(trailing)

    def flat_nested(self, row: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
        """The row's nested documents flattened into ``out``."""
        for n in self.nested:
            if n in row:
                flatten(n, row[n], out)
        return out

    def flat_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row's cells by column name (absent nested columns left out)."""
        flat = self.flat_nested(row, {c: row.get(c) for c in self.columns})
        for t in self.trailing:
            v = row.get(t)
            flat[t] = orjson.dumps(v).decode() if isinstance(v, dict | list) else v
        return flat


Extract = Callable[[dict[str, Any]], Sequence[Any] | None]
MAX_SHAPES_PER_KEYS = 8  # beyond, rows with these top-level keys are flattened one by one


@dataclass(slots=True)
class Shape:
    """``extract`` gives a matching row's leaf values (None: it does not match) for the
    columns ``paths``; ``id`` numbers it within its document."""

    paths: tuple[str, ...]
    extract: Extract
    id: int = -1
    keys: tuple[tuple[str, ...], ...] = ()  # each leaf's keys from the top
    objects: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()  # (keys, its keys)

    @property
    def braces(self) -> int:
        """How many ``{`` the JSON text of a row of this shape holds (no string has one)."""
        return 1 + len(self.objects)

    def columns_of(self, values: list[dict[str, Any]]) -> list[Any] | None:
        """The leaves of a page of rows of this shape, a column at a time with no Python
        work per row; None if a nested object differs in some row (KeyError if one lacks
        a key)."""
        found: dict[tuple[str, ...], list[Any]] = {(): values}
        for path, keys in self.objects:  # parents come before their children
            objects = list(map(itemgetter(path[-1]), found[path[:-1]]))
            if (list(map(type, objects)).count(dict) != len(objects)
                    or set(map(len, objects)) != {len(keys)}):
                return None
            found[path] = objects
        columns = [map(itemgetter(k[-1]), found[k[:-1]]) for k in self.keys]
        return list(zip(*columns, strict=True))


def _values(v: dict[str, Any]) -> Sequence[Any]:
    return v.values()  # type: ignore[return-value]


def compile_shape(prefix: str, sample: dict[str, Any]) -> Shape | None:
    """The shape of ``sample`` (a non-empty object), or None when a value is an empty
    object (which a count of braces cannot tell from a nested one)."""
    paths: list[str] = []
    exprs: list[str] = []
    lines: list[str] = []
    keys: list[tuple[str, ...]] = []
    objects: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    counter = [0]

    def walk(var: str, obj: dict[str, Any], path: str, at: tuple[str, ...]) -> bool:
        for key, value in obj.items():
            if type(value) is dict:
                if not value:
                    return False
                counter[0] += 1
                inner = f"v{counter[0]}"
                lines.append(f"    {inner} = {var}[{key!r}]")
                lines.append(f"    if type({inner}) is not dict or tuple({inner}) != "
                             f"{tuple(value)!r}: return None")
                objects.append(((*at, key), tuple(value)))
                if not walk(inner, value, f"{path}.{key}", (*at, key)):
                    return False
            else:
                paths.append(f"{path}.{key}")
                exprs.append(f"{var}[{key!r}]")
                keys.append((*at, key))
        return True

    if not walk("v", sample, prefix, ()):
        return None
    if not lines:
        return Shape(paths=tuple(paths), extract=_values, keys=tuple(keys))
    # Keys enter the code only as repr() literals.
    source = "def extract(v):\n" + "\n".join(lines) + f"\n    return ({', '.join(exprs)},)\n"
    scope: dict[str, Any] = {}
    exec(compile(source, f"<shape of {prefix}>", "exec"), scope)
    return Shape(paths=tuple(paths), extract=scope["extract"], keys=tuple(keys),
                 objects=tuple(objects))


# Bytes that stand for a flat object's keys after its first (never raw in compact JSON).
MARKERS = bytes(b for b in range(1, 32) if b != 0x0A)
NOT_MARKERS = bytes(b for b in range(256) if b not in MARKERS and b != 0x0A)
TO_COMMAS = bytes.maketrans(MARKERS, b"," * len(MARKERS))

MISSING = -1  # a row without this document
GENERIC = -2  # a row flattened the slow way: its leaves are (column, value) pairs
NO_SHAPE = -1  # a page whose rows do not all share one flat shape

PageLeaves = tuple[int, list[Any]]
"""A page of one document, pass one's result: ``(shape, rows)``. When every row is a
flat object of one shape, ``shape`` is its id and ``rows`` each row's values; else
``shape`` is NO_SHAPE and each row is ``(shape id | MISSING | GENERIC, leaves)``."""


def _objects_in(values: Iterable[Any]) -> bool:
    return dict in set(map(type, values))


def _rows(values: list[dict[str, Any]], keys: tuple[str, ...]) -> list[Any]:
    """Each object's values of ``keys``, in that order (KeyError if one lacks a key)."""
    if len(keys) == 1:
        return [(v,) for v in map(itemgetter(keys[0]), values)]
    return list(map(itemgetter(*keys), values))


class Document:
    """One document column: pass one finds its columns and each row's leaf values
    (kept by the caller); pass two places the leaves in the columns."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.columns: dict[str, None] = {}
        self._shapes: dict[tuple[tuple[str, ...], int], list[Shape]] = {}
        self._flat_ids: dict[tuple[str, ...], int] = {}
        self._paths: list[tuple[str, ...]] = []  # by shape id
        self._positions: list[list[int]] = []
        self._direct: list[bool] = []
        self._index: dict[str, int] = {}
        self.empty: list[Any] = []

    def _register(self, paths: tuple[str, ...]) -> int:
        for p in paths:
            self.columns.setdefault(p)
        self._paths.append(paths)
        return len(self._paths) - 1

    def _match(self, blob: bytes, value: dict[str, Any]) -> tuple[Shape, Sequence[Any]] | None:
        key = (tuple(value), blob.count(b"{"))
        shapes = self._shapes.get(key)
        if shapes is None:
            shapes = self._shapes[key] = []
        # A "{" in a string makes a row's count of them exceed its shape's: then a row of
        # that count may hide an object where the shape has a plain value.
        for shape in shapes:
            leaves = shape.extract(value)
            if leaves is not None and (shape.braces == key[1] or not _objects_in(leaves)):
                return shape, leaves
        if len(shapes) >= MAX_SHAPES_PER_KEYS:
            return None
        compiled = compile_shape(self.prefix, value)
        if compiled is None:
            return None
        compiled.id = self._register(compiled.paths)
        shapes.append(compiled)
        leaves = compiled.extract(value)
        return None if leaves is None else (compiled, leaves)

    # pass one
    def page(self, docs: DocumentColumn, parsed: Parsed) -> PageLeaves:
        """Record a page's columns; its rows' leaves, to hand back to :meth:`cells`."""
        values = parsed.values
        if values:
            uniform = self._uniform(docs, parsed)
            if uniform is not None:
                return uniform
        rows: list[Any] = []
        for blob, value in zip(docs.rows(), values, strict=True):
            if value is None:
                rows.append((MISSING, None))
                continue
            if blob is not None and type(value) is dict and value:
                found = self._match(blob, value)
                if found is not None:
                    rows.append((found[0].id, tuple(found[1])))
                    continue
            flat: dict[str, Any] = {}
            flatten(self.prefix, value, flat)
            for k in flat:
                self.columns.setdefault(k)
            rows.append((GENERIC, list(flat.items())))
        return NO_SHAPE, rows

    def _uniform(self, docs: DocumentColumn, parsed: Parsed) -> PageLeaves | None:
        """A page of objects all with the first row's keys, in one go, with no Python work
        per row: the same number of keys in every row and every key found in every row
        (``itemgetter`` raises otherwise) make the same keys. Flat objects when the page
        holds one ``{`` per row; else the first row's compiled shape, when the page holds
        exactly that shape's count of ``{`` per row (so no row hides another object)."""
        values = parsed.values
        n = len(values)
        if type(values[0]) is not dict or not values[0]:
            return None
        keys = tuple(values[0])
        try:  # len() of a number, a key of a list or a text: TypeError
            if set(map(len, values)) != {len(keys)}:
                return None
        except TypeError:
            return None
        if parsed.braces == n:  # flat objects
            try:
                leaves = _rows(values, keys)
            except (KeyError, TypeError):
                return None
            return self._flat_shape(keys), leaves
        per_row, rest = divmod(parsed.braces, n)
        first = docs.first()
        if rest or first is None or first.count(b"{") != per_row:
            return None
        found = self._match(first, values[0])
        if found is None:
            return None
        shape = found[0]
        try:
            nested = shape.columns_of(values)
        except (KeyError, TypeError):
            return None
        if nested is None or (shape.braces != per_row
                              and _objects_in(itertools.chain.from_iterable(nested))):
            return None
        return shape.id, nested

    def _flat_shape(self, keys: tuple[str, ...]) -> int:
        sid = self._flat_ids.get(keys)
        if sid is None:
            sid = self._flat_ids[keys] = self._register(tuple(f"{self.prefix}.{k}" for k in keys))
        return sid

    def flat_texts(self, texts: list[bytes]) -> tuple[int, list[bytes]] | None:
        """A page of flat objects that all have the first one's keys, in its order, as
        each row's cells' JSON text (``_fast_cells``'s), cut from the documents' text
        with no parsing: (shape, texts), or None (then :meth:`page`).

        Only pages with no backslash, ``[``, ``null`` or ``{`` but the objects' own: no
        string holds a quote, so every ``"k":`` is a key, and the keys of each object,
        each made a marker byte (a control byte, never raw in compact JSON), must read
        as the first object's in its order."""
        n = len(texts)
        first = orjson.loads(texts[0]) if n else None
        if type(first) is not dict or not first or len(first) > len(MARKERS):
            return None
        keys = tuple(first)
        text = b"\n".join(texts)
        if (b"\\" in text or b"[" in text or b"null" in text or text.count(b"{") != n
                or text.count(b'":') != n * len(keys)):
            return None
        heads = [orjson.dumps(k) + b":" for k in keys]
        markers = MARKERS[: len(keys) - 1]
        # Every row opens with the first key; with one "{" a row, none nests an object.
        start = b"{" + heads[0]
        if not text.startswith(start) or text.count(b"\n" + start) != n - 1:
            return None
        text = text.replace(start, b"")
        for at, head in enumerate(heads[1:]):
            text = text.replace(b"," + head, markers[at : at + 1])
        if text.translate(None, NOT_MARKERS) != b"\n".join([markers] * n):
            return None
        rows = text.translate(TO_COMMAS).replace(b"}\n", b"\n")[:-1].split(b"\n")
        return self._flat_shape(keys), rows

    # pass two
    def freeze(self, *, missing: Any = None) -> list[str]:
        """End pass one; the columns. ``missing`` fills the cells of absent keys."""
        names = list(self.columns)
        self._index = {c: i for i, c in enumerate(names)}
        self.empty = [missing] * len(names)
        identity = list(range(len(names)))
        # Every path was registered in pass one, so every one has its column.
        self._positions = [[self._index[p] for p in paths] for paths in self._paths]
        self._direct = [pos == identity for pos in self._positions]
        return names

    def width(self, shape: int) -> int:
        """How many columns a shape has."""
        return len(self._paths[shape])

    def padding(self, shape: int) -> bytes | None:
        """When a shape's columns are the first of the document's, in order (always so for
        the first shape seen), the CSV text after its cells: the empty cells of the
        other columns. None when its cells must be placed one by one."""
        positions = self._positions[shape]
        if positions != list(range(len(positions))):
            return None
        return b"," * (len(self.empty) - len(positions))

    def cells(self, leaves: PageLeaves) -> list[Sequence[Any]]:
        """Each row's cells, in the columns' order, from pass one's leaves."""
        shape, rows = leaves
        if shape != NO_SHAPE:
            if self._direct[shape]:
                return rows
            return [self._place(shape, r) for r in rows]
        out: list[Sequence[Any]] = []
        for sid, r in rows:
            if sid >= 0:
                out.append(r if self._direct[sid] else self._place(sid, r))
            elif sid == MISSING:
                out.append(self.empty)
            else:
                cells = list(self.empty)
                for k, v in r:
                    cells[self._index[k]] = v
                out.append(cells)
        return out

    def _place(self, shape: int, leaves: Sequence[Any]) -> list[Any]:
        cells = list(self.empty)
        for at, leaf in zip(self._positions[shape], leaves, strict=True):
            cells[at] = leaf
        return cells
