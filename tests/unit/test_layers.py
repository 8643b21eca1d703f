"""The package layers: no import cycle between batchd's top-level packages, and the
import-linter contracts of pyproject.toml hold (CI runs ``lint-imports`` too)."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]


def top_level_imports() -> dict[str, dict[str, tuple[str, str]]]:
    """``{importer: {imported: (one importing module, one imported module)}}`` between
    the top-level packages and modules of batchd (the ``batchd`` facade itself left out:
    it re-exports from above every layer)."""
    graph = grimp.build_graph("batchd", cache_dir=None)
    edges: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
    for module in graph.modules:
        if module == "batchd":
            continue
        top = module.split(".")[1]
        for imported in graph.find_modules_directly_imported_by(module):
            if imported == "batchd" or imported.split(".")[1] == top:
                continue
            edges[top].setdefault(imported.split(".")[1], (module, imported))
    return edges


def reachable(edges: dict[str, dict[str, tuple[str, str]]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in edges.get(todo.pop(), {}):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def cycles(edges: dict[str, dict[str, tuple[str, str]]]) -> list[list[str]]:
    """The groups of packages that import each other, directly or not."""
    reach = {node: reachable(edges, node) for node in edges}
    groups = {
        tuple(sorted(other for other in reach[node] if node in reach.get(other, ())))
        for node in sorted(edges) if node in reach[node]
    }
    return sorted(list(g) for g in groups)


def test_cycles_finds_a_loop_and_nothing_else() -> None:
    edge = ("m", "n")
    assert cycles({"a": {"b": edge}, "b": {"c": edge}, "c": {"a": edge}, "d": {"a": edge}}) == [
        ["a", "b", "c"]
    ]
    assert cycles({"a": {"b": edge}, "b": {"c": edge}}) == []


def test_layers_no_import_cycle_between_top_level_packages() -> None:
    edges = top_level_imports()
    found = cycles(edges)
    said = [
        " ; ".join(f"{a} -> {b} ({' imports '.join(edges[a][b])})"
                   for a in group for b in group if b in edges.get(a, {}))
        for group in found
    ]
    assert not found, "import cycles between packages:\n" + "\n".join(said)


def test_layers_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
