"""Writers turn pages of rows into byte chunks, in constant memory."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import Any

from batchd.core import errors
from batchd.export.table import Table, nested_rows

Pages = Callable[[], AsyncIterator[list[dict[str, Any]]]]
"""Returns a fresh iterator over the rows (a writer may need two passes)."""

CHUNK_BYTES = 256 * 1024


class Exporter(ABC):
    media_type: str
    extension: str

    @abstractmethod
    def stream(self, pages: Pages) -> AsyncIterator[bytes]:
        """Rows given as dicts (nested values flattened or written as they are)."""

    def stream_table(self, table: Table) -> AsyncIterator[bytes]:
        """Rows given as a :class:`Table`; writers with a faster way override this."""

        async def pages() -> AsyncIterator[list[dict[str, Any]]]:
            async for page in table.pages():
                yield nested_rows(table, page)

        return self.stream(pages)


def exporter_for(fmt: str, **options: Any) -> Exporter:
    try:
        factory = FORMATS[fmt]
    except KeyError:
        raise errors.InvalidInput(
            f"unknown export format {fmt!r}; use one of {sorted(FORMATS)}",
            details=[{"loc": ["query", "format"], "msg": "unknown format", "type": "enum"}],
        ) from None
    return factory(**options)


def _formats() -> dict[str, Callable[..., Exporter]]:
    from batchd.export.csv import CsvExporter
    from batchd.export.json import JsonExporter, JsonlExporter

    found: dict[str, Callable[..., Exporter]] = {
        "jsonl": JsonlExporter, "json": JsonExporter, "csv": CsvExporter,
    }
    if importlib.util.find_spec("pyarrow") is not None:  # the optional "parquet" extra
        from batchd.export.parquet import ParquetExporter

        found["parquet"] = ParquetExporter
    return found


FORMATS: dict[str, Callable[..., Exporter]] = _formats()

