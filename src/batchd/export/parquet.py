"""Parquet writer (with the optional ``parquet`` extra: ``pip install 'batchd[parquet]'``).

Columns are those of the CSV export (nested keys flattened with dots). A first pass
finds them and their types: a column of only integers is ``int64``, of numbers
``double``, of booleans ``bool``, anything else ``string`` (lists, objects and
mixed values as JSON text). Parquet needs its schema before its first row group, so
the first pass keeps each page's flattened rows in a temporary file (as the CSV
writer does) and the second writes them from there in row groups of
:data:`ROW_GROUP_ROWS` rows, each streamed out as soon as it is written. The rows
are read once: a row that arrives between the passes (a running batch) cannot
disagree with the schema, and memory holds one page and one row group.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson

from batchd.export.base import Exporter, Pages
from batchd.export.flat import FlatExporter
from batchd.export.spool import Spool
from batchd.export.table import Table
from batchd.export.tuning import tuned_for_export

ROW_GROUP_ROWS = 50_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def require_pyarrow() -> None:
    """Raises ImportError when pyarrow (the ``parquet`` extra) cannot be imported."""
    import pyarrow  # noqa: F401
    import pyarrow.parquet  # noqa: F401


class _Sink:
    """A file object the Parquet writer writes to; the exporter drains it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.position = 0
        self.closed = False

    def write(self, chunk: Any) -> int:
        view = memoryview(chunk)
        self.data += view
        self.position += len(view)
        return len(view)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        return out


def _kind(value: Any) -> str:
    kind = type(value)
    if kind is bool:
        return "bool"
    if kind is int:
        return "int" if INT64_MIN <= value <= INT64_MAX else "json"
    if kind is float:
        return "float"
    return "str" if kind is str else "json"


def _arrow_type(kinds: set[str]) -> Any:
    import pyarrow as pa

    if kinds == {"bool"}:
        return pa.bool_()
    if kinds == {"int"}:
        return pa.int64()
    if kinds and kinds <= {"int", "float"}:
        return pa.float64()
    return pa.string()


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if type(value) is int:
        return str(value)  # also beyond 64 bits, which orjson refuses
    return orjson.dumps(value).decode()


class ParquetExporter(FlatExporter):
    media_type = "application/vnd.apache.parquet"
    extension = "parquet"

    @classmethod
    def require(cls) -> None:
        try:
            require_pyarrow()
        except ImportError as exc:
            raise ImportError(f"Parquet export needs pyarrow on the server "
                              f"(pip install 'batchd[parquet]'): {exc}") from exc

    def stream_table(self, table: Table) -> AsyncIterator[bytes]:
        # The table's own columns, its documents nested under their first names.
        nested = list(dict.fromkeys(path.split(".")[0] for path in table.documents))
        writer = ParquetExporter(columns=table.columns, nested=nested, trailing=table.trailing)
        return Exporter.stream_table(writer, table)

    async def stream(self, pages: Pages) -> AsyncIterator[bytes]:
        import pyarrow as pa

        with Spool() as spool, tuned_for_export():
            types = await self._first_pass(pages, spool)
            schema = pa.schema([(n, _arrow_type(kinds)) for n, kinds in types.items()])
            for chunk in _row_groups(schema, spool.records()):
                yield chunk

    async def _first_pass(self, pages: Pages, spool: Spool) -> dict[str, set[str]]:
        """Spools the flattened rows; each column's kinds of values, in column order."""
        kinds: dict[str, set[str]] = {c: set() for c in self.columns}
        nested: dict[str, set[str]] = {}
        for t in self.trailing:
            kinds.setdefault(t, set())
        async for rows in pages():
            flats = [self.flat_row(row) for row in rows]
            for flat in flats:
                for k, v in flat.items():
                    bucket = kinds.get(k)
                    if bucket is None:
                        bucket = nested.setdefault(k, set())
                    if v is not None:
                        bucket.add(_kind(v))
            spool.put(flats)
        types = {**kinds, **nested}
        return {n: types[n] for n in [*self.columns, *nested, *self.trailing]}


def _row_groups(schema: Any, pages: Iterator[list[dict[str, Any]]]) -> Iterator[bytes]:
    """The Parquet file of the spooled rows, a row group at a time."""
    import pyarrow.parquet as pq

    names = schema.names
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema)
    group: dict[str, list[Any]] = {n: [] for n in names}
    size = 0
    try:
        for flats in pages:
            for flat in flats:
                for n in names:
                    group[n].append(flat.get(n))
            size += len(flats)
            if size >= ROW_GROUP_ROWS:
                writer.write_table(_table(schema, group))
                group = {n: [] for n in names}
                size = 0
                yield sink.drain()
        if size:
            writer.write_table(_table(schema, group))
    finally:
        writer.close()
    yield sink.drain()


def _table(schema: Any, group: dict[str, list[Any]]) -> Any:
    import pyarrow as pa

    arrays = []
    for field in schema:
        values = group[field.name]
        if pa.types.is_string(field.type):
            values = [_text(v) for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)
