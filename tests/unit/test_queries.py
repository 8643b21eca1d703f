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
