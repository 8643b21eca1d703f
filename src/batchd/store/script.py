"""What a store runs: transaction scripts, plain generators of named queries.

A *transaction script* is a generator that yields :class:`Query` requests — the name
of a query in ``store/sql/<backend>/*.sql`` and its parameters — and receives each
one's result; what it returns is the transaction's result. It does no I/O: a store
runs it inside one transaction on its own connection (SQLite's writer thread, a
PostgreSQL pool connection) and may run it again from the start when the database
asks for a retry, so a script keeps no state outside itself. Every rule is written
once, in core (``batchd.core.txn``), and both backends run it the same way.

Composing: ``row = yield script.one("batch_for_commit", batch_id)``; another script's
steps join with ``result = yield from other(...)``.

A script that must keep what it wrote and still fail (discarding a rejected upload,
say) *returns* the error instead of raising it; :class:`batchd.core.db.Database`
raises it after the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

T = TypeVar("T")


class Fetch(Enum):
    ONE = "one"  # the first row, or None
    ROWS = "rows"  # every row
    VALUE = "value"  # the first column of the first row, or None
    COUNT = "count"  # how many rows the statement changed
    EACH = "each"  # the statement once per row of ``params`` (a bulk write)


class Array(tuple[Any, ...]):
    """A list of values bound as one parameter (``= ANY(%s)`` / ``IN (SELECT value FROM
    json_each(?))``): how a query takes a variable number of ids or statuses."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    params: Sequence[Any] | dict[str, Any]
    fetch: Fetch
    arrays: bool = False  # some parameter is an Array (the driver converts those)


Script = Generator[Query, Any, T]


def _query(name: str, fetch: Fetch, params: tuple[Any, ...], named: dict[str, Any]) -> Query:
    if named:
        return Query(name, named, fetch, any(isinstance(v, Array) for v in named.values()))
    return Query(name, params, fetch, any(isinstance(v, Array) for v in params))


def one(name: str, *params: Any, **named: Any) -> Query:
    return _query(name, Fetch.ONE, params, named)


def rows(name: str, *params: Any, **named: Any) -> Query:
    return _query(name, Fetch.ROWS, params, named)


def value(name: str, *params: Any, **named: Any) -> Query:
    return _query(name, Fetch.VALUE, params, named)


def run(name: str, *params: Any, **named: Any) -> Query:
    """A statement; its result is how many rows it changed."""
    return _query(name, Fetch.COUNT, params, named)


def each(name: str, rows_: Iterable[Sequence[Any]]) -> Query:
    """The statement once per row, however the backend does that fastest (executemany,
    COPY, or one statement over column arrays when the query reads ``unnest``)."""
    return Query(name, list(rows_), Fetch.EACH)


def array(values: Iterable[Any]) -> Array:
    return Array(values)


# What the drivers share: stepping a script, binding arrays, shaping a result.


@dataclass(frozen=True, slots=True)
class Finished:
    value: Any


def advance(script: Script[Any], result: Any) -> Query | Finished:
    """Send ``result`` into ``script``: its next query, or its return value."""
    try:
        return script.send(result)
    except StopIteration as stop:
        return Finished(stop.value)


def bind(query: Query, convert: Callable[[Array], Any]) -> Any:
    """``query``'s parameters with every :class:`Array` passed through ``convert``."""
    if not query.arrays:
        return query.params
    if isinstance(query.params, dict):
        return {k: convert(v) if isinstance(v, Array) else v for k, v in query.params.items()}
    return [convert(v) if isinstance(v, Array) else v for v in query.params]


def shape(fetch: Fetch, rows: Sequence[Any] | None, rowcount: int) -> Any:
    """The result a script receives for a statement that returned ``rows``."""
    if fetch is Fetch.COUNT:
        return rowcount
    assert rows is not None
    if fetch is Fetch.ROWS:
        return rows
    first = rows[0] if rows else None
    return first if fetch is Fetch.ONE or first is None else first[0]
