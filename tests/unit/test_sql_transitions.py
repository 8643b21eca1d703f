"""Every guarded state change in the named SQL follows the transition table
(domain/states.py): the one source of allowed transitions.

A guard is either built by the script from the table (an array parameter) or, on the
hot paths where a literal keeps PostgreSQL's partial indexes usable, a literal that this
test holds to the table.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from batchd.domain import states
from batchd.domain.states import BatchStatus, ItemStatus
from batchd.store import queries


def _allowed(*tables: dict[Any, frozenset[Any]]) -> dict[str, set[str]]:
    """Every allowed move: the engine's table and a person's retry."""
    allowed: dict[str, set[str]] = {}
    for table in tables:
        for s, nxt in table.items():
            allowed.setdefault(s.value, set()).update(t.value for t in nxt)
    return allowed


TABLES = {
    "items": (_allowed(states.ITEM_TRANSITIONS, states.RETRY_ITEM_TRANSITIONS),
              {s.value for s in ItemStatus}),
    "batches": (_allowed(states.BATCH_TRANSITIONS, states.RETRY_BATCH_TRANSITIONS),
                {s.value for s in BatchStatus}),
}
UPDATE = re.compile(
    r"UPDATE (items|batches)\b(?:\s+\w+)?\s+SET\s+(.*?)\s+WHERE\s+(.*)", re.S | re.I
)
SETS = re.compile(r"(?<![\w.])status = '(\w+)'")
# "status = (SELECT 'running')" guards as "status = 'running'" does (the subquery only
# keeps the planner off a partial index: see the query record_attempts).
GUARD_LITERAL = re.compile(
    r"(?<![\w.])(?:\w+\.)?status = (?:\(SELECT )?'(\w+)'"
    r"|(?<![\w.])(?:\w+\.)?status IN \(([^)]*'[^)]*)\)"
)
GUARD_PARAM = re.compile(r"status (?:= ANY\(%s\)|IN \(SELECT value FROM json_each\(\?\)\))")


def _state_changes(backend: str) -> list[tuple[str, str, str, str]]:
    found = []
    for name, sql in queries.load(backend).items():
        for m in UPDATE.finditer(sql):
            table, sets, where = m.groups()
            for target in SETS.findall(sets):
                found.append((name, table, target, where))
    return found


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sql_literal_state_changes_follow_the_transition_table(backend: str) -> None:
    changes = _state_changes(backend)
    assert changes, "no state change found: the pattern no longer matches the SQL"
    for name, table, target, where in changes:
        allowed, known = TABLES[table]
        assert target in known, (name, target)
        if GUARD_PARAM.search(where):
            continue  # the script passes the sources, from the table
        sources = {a or b for a, b in GUARD_LITERAL.findall(where)}
        sources = {s.strip(" '") for part in sources for s in part.split(",")}
        assert sources, f"{backend} query {name!r} changes {table}.status without a guard"
        for source in sources:
            assert target in allowed.get(source, set()) or source == target, (
                f"{backend} query {name!r}: {table} {source} -> {target} is not in the table"
            )
