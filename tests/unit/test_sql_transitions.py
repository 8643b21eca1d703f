"""Every guarded state change in the named SQL follows the transition table
(domain/states.py): the one source of allowed transitions.

A guard is either built by the script from the table (an array parameter) or, on the
hot paths where a literal keeps PostgreSQL's partial indexes usable, a literal that this
test holds to the table.
"""

from __future__ import annotations

import re

import pytest

from batchd.domain.states import BATCH_TRANSITIONS, ITEM_TRANSITIONS, BatchStatus, ItemStatus
from batchd.store import queries

TABLES = {
    "items": ({s.value: {t.value for t in nxt} for s, nxt in ITEM_TRANSITIONS.items()},
              {s.value for s in ItemStatus}),
    "batches": ({s.value: {t.value for t in nxt} for s, nxt in BATCH_TRANSITIONS.items()},
                {s.value for s in BatchStatus}),
}
UPDATE = re.compile(
    r"UPDATE (items|batches)\b(?:\s+\w+)?\s+SET\s+(.*?)\s+WHERE\s+(.*)", re.S | re.I
)
SETS = re.compile(r"(?<![\w.])status = '(\w+)'")
GUARD_LITERAL = re.compile(
    r"(?<![\w.])(?:\w+\.)?status = '(\w+)'|(?<![\w.])(?:\w+\.)?status IN \(([^)]*'[^)]*)\)"
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
