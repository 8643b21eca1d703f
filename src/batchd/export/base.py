"""Writers turn pages of row dicts into byte chunks, in constant memory."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import Any

from batchd.core import errors

Pages = Callable[[], AsyncIterator[list[dict[str, Any]]]]
"""Returns a fresh iterator over the rows (a writer may need two passes)."""

CHUNK_BYTES = 256 * 1024


class Exporter(ABC):
    media_type: str
    extension: str

    @abstractmethod
    def stream(self, pages: Pages) -> AsyncIterator[bytes]: ...


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

    return {"jsonl": JsonlExporter, "json": JsonExporter, "csv": CsvExporter}


FORMATS: dict[str, Callable[..., Exporter]] = _formats()
