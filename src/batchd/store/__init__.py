"""Storage backends behind one interface."""

from __future__ import annotations

from batchd.store.base import Store


def open_store(database_url: str, **kwargs: object) -> Store:
    """The store for ``database_url`` (``sqlite:///path`` or ``postgresql://…``)."""
    if database_url.startswith("sqlite:"):
        from batchd.store.sqlite import SqliteStore

        return SqliteStore(database_url, **kwargs)  # type: ignore[arg-type]
    if database_url.startswith(("postgresql:", "postgres:")):
        from batchd.store.postgres import PostgresStore

        return PostgresStore(database_url, **kwargs)  # type: ignore[arg-type]
    raise ValueError(f"unsupported database url: {database_url.split(':', 1)[0]}")


__all__ = ["Store", "open_store"]
