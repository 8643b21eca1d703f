"""CSV writer: nested objects become dotted columns (``input.a.b``)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson

from batchd.export.base import CHUNK_BYTES, Exporter, Pages


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


class CsvExporter(Exporter):
    """Writes ``columns`` as they are, then the flattened ``nested`` ones.

    The header is the union of all flattened keys, found in a first pass over the
    rows (constant memory: only key names are kept).
    """

    media_type = "text/csv"
    extension = "csv"

    def __init__(
        self, *, columns: Iterable[str] = ("item_id", "seq", "status"),
        nested: Iterable[str] = ("input", "output"), trailing: Iterable[str] = ("error",),
    ) -> None:
        self.columns = list(columns)
        self.nested = list(nested)
        self.trailing = list(trailing)

    def _flat(self, row: dict[str, Any]) -> dict[str, Any]:
        flat: dict[str, Any] = {c: row.get(c) for c in self.columns}
        for n in self.nested:
            if n in row:
                flatten(n, row[n], flat)
        for t in self.trailing:
            v = row.get(t)
            flat[t] = orjson.dumps(v).decode() if isinstance(v, dict | list) else v
        return flat

    async def stream(self, pages: Pages) -> AsyncIterator[bytes]:
        seen: dict[str, dict[str, None]] = {n: {} for n in self.nested}
        async for rows in pages():
            for row in rows:
                flat: dict[str, Any] = {}
                for n in self.nested:
                    if n in row:
                        flatten(n, row[n], flat)
                for k in flat:
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
