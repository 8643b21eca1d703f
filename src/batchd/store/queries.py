"""Named queries: ``store/sql/<backend>/*.sql``, one ``-- name: …`` block per query.

Both backends define the same names (a unit test holds them to it); a transaction
script in core asks for a query by name and each store runs its own text.

A text that several queries share (a row's column list) is written once, in a
``-- fragment: …`` block of any of the backend's files, and a query names it as
``{fragment_name}``: :func:`load` puts the fragment's text there. A ``{word}`` that is
not a fragment of the backend is an error, as is a fragment defined twice or unused.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_BLOCK = re.compile(r"^--\s*(name|fragment):\s*(\w+)\s*$", re.M)
_USE = re.compile(r"\{(\w+)\}")
QUERY, FRAGMENT = "name", "fragment"


def parse_blocks(text: str, *, source: str = "<sql>") -> dict[str, dict[str, str]]:
    """``{"name": {query: sql}, "fragment": {fragment: sql}}`` of the blocks of ``text``,
    fragments not yet put in."""
    parts = _BLOCK.split(text)
    found: dict[str, dict[str, str]] = {QUERY: {}, FRAGMENT: {}}
    for kind, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        if kind == FRAGMENT:  # its own comments stay here, not in every query using it
            body = "\n".join(ln for ln in body.splitlines() if not ln.lstrip().startswith("--"))
        sql = body.strip().rstrip(";").strip()
        what = "query" if kind == QUERY else "fragment"
        if name in found[QUERY] or name in found[FRAGMENT]:
            raise ValueError(f"{source}: {what} {name!r} defined twice")
        if not sql:
            raise ValueError(f"{source}: {what} {name!r} is empty")
        found[kind][name] = sql
    return found


def expand(queries: dict[str, str], fragments: dict[str, str], *,
           source: str = "<sql>") -> dict[str, str]:
    """``queries`` with each ``{fragment}`` replaced by its text; every fragment must be
    known and used."""
    used: set[str] = set()

    def put(name: str, sql: str) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(1) not in fragments:
                raise ValueError(f"{source}: query {name!r} uses an unknown fragment "
                                 f"{m.group(1)!r}")
            used.add(m.group(1))
            return fragments[m.group(1)]
        return _USE.sub(one, sql)

    out = {name: put(name, sql) for name, sql in queries.items()}
    unused = sorted(set(fragments) - used)
    if unused:
        raise ValueError(f"{source}: fragment {unused[0]!r} is never used")
    return out


def parse(text: str, *, source: str = "<sql>") -> dict[str, str]:
    """``{name: sql}`` of every ``-- name:`` block in ``text``, its fragments put in."""
    blocks = parse_blocks(text, source=source)
    return expand(blocks[QUERY], blocks[FRAGMENT], source=source)


@functools.cache
def load(backend: str) -> dict[str, str]:
    """Every named query of ``backend`` (``sqlite`` or ``postgres``)."""
    folder = resources.files("batchd.store") / "sql" / backend
    found: dict[str, dict[str, str]] = {QUERY: {}, FRAGMENT: {}}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for kind, blocks in parse_blocks(entry.read_text("utf-8"), source=entry.name).items():
            for name, sql in blocks.items():
                if name in found[QUERY] or name in found[FRAGMENT]:
                    raise ValueError(f"{backend}/{entry.name}: {name!r} defined twice")
                found[kind][name] = sql
    return expand(found[QUERY], found[FRAGMENT], source=backend)


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
