"""Named queries: ``store/sql/<backend>/*.sql``, one ``-- name: …`` block per query.

Both backends define the same names (a unit test holds them to it); a transaction
script in core asks for a query by name and each store runs its own text.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.M)


def parse(text: str, *, source: str = "<sql>") -> dict[str, str]:
    """``{name: sql}`` of every ``-- name:`` block in ``text``."""
    parts = _NAME.split(text)
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sql = body.strip().rstrip(";").strip()
        if name in found:
            raise ValueError(f"{source}: query {name!r} defined twice")
        if not sql:
            raise ValueError(f"{source}: query {name!r} is empty")
        found[name] = sql
    return found


@functools.cache
def load(backend: str) -> dict[str, str]:
    """Every named query of ``backend`` (``sqlite`` or ``postgres``)."""
    folder = resources.files("batchd.store") / "sql" / backend
    queries: dict[str, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, sql in parse(entry.read_text("utf-8"), source=entry.name).items():
            if name in queries:
                raise ValueError(f"{backend}/{entry.name}: query {name!r} defined twice")
            queries[name] = sql
    return queries


@functools.cache
def migrations(backend: str) -> tuple[str, ...]:
    """The schema migrations of ``backend``, in order (``sql/<backend>/migrations/NNN.sql``).

    A migration, once released, is never edited: a change is a new file.
    """
    folder = resources.files("batchd.store") / "sql" / backend / "migrations"
    files = sorted((e for e in folder.iterdir() if e.name.endswith(".sql")), key=lambda e: e.name)
    for number, entry in enumerate(files, start=1):
        if entry.name != f"{number:03d}.sql":
            raise ValueError(f"{backend} migrations: expected {number:03d}.sql, found {entry.name}")
    return tuple(entry.read_text("utf-8") for entry in files)
