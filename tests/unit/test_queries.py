"""The named queries: both backends define the same ones, and every name a core script
asks for exists."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from batchd.store import queries

CORE = Path(__file__).resolve().parents[2] / "src" / "batchd" / "core"


def test_queries_both_backends_define_the_same_names() -> None:
    sqlite, postgres = queries.load("sqlite"), queries.load("postgres")
    assert sorted(set(sqlite) - set(postgres)) == []
    assert sorted(set(postgres) - set(sqlite)) == []


def _asked_for() -> set[str]:
    """Every query name a core script passes to ``q.one/rows/value/run/each``."""
    names = set()
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "q"
                    and node.func.attr in {"one", "rows", "value", "run", "each"}
                    and node.args and isinstance(node.args[0], ast.Constant)):
                names.add(node.args[0].value)
    return names


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_queries_every_name_a_script_uses_exists(backend: str) -> None:
    assert sorted(_asked_for() - set(queries.load(backend))) == []


def test_queries_parse_rejects_a_name_defined_twice() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        queries.parse("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_queries_fragment_is_put_in_every_query_naming_it() -> None:
    found = queries.parse(
        "-- fragment: cols\n-- a comment kept out of the queries\na, b\n\n"
        "-- name: one\nSELECT {cols} FROM t;\n-- name: two\nSELECT {cols} FROM u WHERE a = 1;\n"
    )
    assert found == {"one": "SELECT a, b FROM t", "two": "SELECT a, b FROM u WHERE a = 1"}


@pytest.mark.parametrize(("text", "problem"), [
    ("-- name: a\nSELECT {nope} FROM t;\n", "unknown fragment 'nope'"),
    ("-- fragment: cols\na\n-- name: a\nSELECT 1;\n", "fragment 'cols' is never used"),
    ("-- fragment: a\nx\n-- name: a\nSELECT {a};\n", "defined twice"),
])
def test_queries_fragment_mistakes_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        queries.parse(text)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_queries_batch_rows_are_one_column_list(backend: str) -> None:
    """Every query reading a batch row selects the fragment batch_cols, whose columns
    are the Batch fields (core.txn.reads.batch_row maps them by position)."""
    from batchd.core.txn.reads import BATCH_FIELDS

    loaded = queries.load(backend)
    cols = [c.strip() for c in loaded["batch_by_id"].split("FROM")[0][len("SELECT"):].split(",")]
    assert tuple(cols) == BATCH_FIELDS
    for name in ("batch_by_idempotency", "batches_page_before", "recent_batches",
                 "batches_matching"):
        assert loaded["batch_by_id"].split("FROM")[0] in loaded[name]
