"""Writers turn pages of rows into byte chunks, in constant memory."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import Any

from batchd.domain import errors
from batchd.export.table import Table, nested_rows

Pages = Callable[[], AsyncIterator[list[dict[str, Any]]]]
"""Returns a fresh iterator over the rows (a writer may need two passes)."""

CHUNK_BYTES = 256 * 1024


class Exporter(ABC):
    media_type: str
    extension: str

    @classmethod
    def require(cls) -> None:
        """Raises ImportError, saying what to install, when the writer cannot run here."""
        return None

    @abstractmethod
    def stream(self, pages: Pages) -> AsyncIterator[bytes]:
        """Rows given as dicts (nested values flattened or written as they are)."""

    def stream_table(self, table: Table) -> AsyncIterator[bytes]:
        """Rows given as a :class:`Table`; writers with a faster way override this."""

        async def pages() -> AsyncIterator[list[dict[str, Any]]]:
            async for page in table.pages():
                yield nested_rows(table, page)

        return self.stream(pages)


FORMATS: dict[str, str] = {
    "jsonl": "batchd.export.json:JsonlExporter",
    "json": "batchd.export.json:JsonExporter",
    "csv": "batchd.export.csv:CsvExporter",
    "parquet": "batchd.export.parquet:ParquetExporter",
}
"""Every export format, as ``module:class`` of its writer (imported on first use:
``parquet`` needs the optional ``parquet`` extra, pyarrow, and most servers never load it)."""


def exporter_for(fmt: str, **options: Any) -> Exporter:
    """The writer of ``fmt`` (``jsonl``, ``json``, ``csv``, ``parquet``).

    Raises:
        errors.InvalidInput: an unknown format, or one whose optional dependency is
            missing on the server (``parquet`` without pyarrow: the message names the
            extra to install).
    """
    try:
        module, _, name = FORMATS[fmt].partition(":")
    except KeyError:
        raise errors.InvalidInput(
            f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}",
            details=[{"loc": ["query", "format"], "type": "enum",
                      "msg": f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}"}],
        ) from None
    writer: type[Exporter] = getattr(importlib.import_module(module), name)
    try:
        writer.require()
    except ImportError as exc:
        raise errors.InvalidInput(str(exc), details=[
            {"loc": ["query", "format"], "msg": str(exc), "type": "format_unavailable"}
        ]) from None
    return writer(**options)
