"""Writers turn pages of rows into byte chunks, in constant memory."""

from __future__ import annotations

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
    """The writer of ``fmt`` (``jsonl``, ``json``, ``csv``, ``parquet``).

    Raises:
        errors.InvalidInput: an unknown format, or ``parquet`` on a server without
            pyarrow (the message names the extra to install).
    """
    try:
        factory = FORMATS[fmt]
    except KeyError:
        raise errors.InvalidInput(
            f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}",
            details=[{"loc": ["query", "format"], "type": "enum",
                      "msg": f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}"}],
        ) from None
    return factory(**options)


def _parquet(**options: Any) -> Exporter:
    # pyarrow is imported on first use, not at start-up: most servers never write
    # Parquet, and it costs tens of MB.
    try:
        from batchd.export.parquet import ParquetExporter, require_pyarrow

        require_pyarrow()
    except ImportError as exc:
        message = (f"Parquet export needs pyarrow on the server "
                   f"(pip install 'batchd[parquet]'): {exc}")
        raise errors.InvalidInput(message, details=[
            {"loc": ["query", "format"], "msg": message, "type": "format_unavailable"}
        ]) from None
    return ParquetExporter(**options)


def _formats() -> dict[str, Callable[..., Exporter]]:
    from batchd.export.csv import CsvExporter
    from batchd.export.json import JsonExporter, JsonlExporter

    return {"jsonl": JsonlExporter, "json": JsonExporter, "csv": CsvExporter,
            "parquet": _parquet}


FORMATS: dict[str, Callable[..., Exporter]] = _formats()
"""Every export format; ``parquet`` needs the optional ``parquet`` extra (pyarrow)."""
