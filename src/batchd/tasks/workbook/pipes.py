"""A compiled formula as a plain sequence of calls.

``formulas`` compiles a formula into a schedula ``DispatchPipe``: the engine's functions
in evaluation order, run by a general dispatcher that builds a solution object per call
(most of the 0.6 ms one formula costs per record). When the pipe is a plain sequence
(every node computed once, in order, no sub-dispatchers, no filters but the engine's
``bypass``), :func:`flatten` gives a :class:`Pipe`: the same calls in the same order with
the same values, without the dispatcher, and the nodes visible (which function reads
which value: see :mod:`.columns`); any other pipe is kept as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_FUNCTION_KEYS = {"type", "inputs", "outputs", "wait_inputs", "index", "function",
                  "solve_cycle"}
_DATA_KEYS = {"type", "wait_inputs", "index", "filters"}
_PREFIXES = ("_XLFN._XLWS.", "_XLFN.", "_XLWS.")
_NUMBERED = re.compile(r"<\d+>$")  # the engine's id of a function's second use: SUM<0>
_FUNCTION = re.compile(r"^[A-Z_][A-Z0-9._]*$")


def canonical(name: str) -> str:
    """A function's name as Excel shows it: ``_xlfn.IFS`` → ``IFS``, ``SUM<0>`` → ``SUM``."""
    name = _NUMBERED.sub("", name.upper())
    for prefix in _PREFIXES:
        name = name.removeprefix(prefix)
    return name


def is_function(name: str) -> bool:
    """A canonical node name that is a function (not an operator such as ``+`` or ``u-``)."""
    return bool(_FUNCTION.match(name))


@dataclass(frozen=True, slots=True)
class Node:
    """One call of a formula: ``function`` (canonical) reads ``inputs``, gives ``output``."""

    function: str
    call: Callable[..., Any]
    inputs: tuple[str, ...]
    output: str


class Pipe:
    """A formula as plain calls; called with its inputs' values in ``names`` order."""

    __slots__ = ("names", "constants", "nodes", "output")

    def __init__(self, names: tuple[str, ...], constants: dict[str, Any], nodes: list[Node],
                 output: str) -> None:
        self.names = names
        self.constants = constants
        self.nodes = nodes
        self.output = output

    def __call__(self, *args: Any) -> Any:
        values = dict(self.constants)
        values.update(zip(self.names, args, strict=True))
        for node in self.nodes:
            values[node.output] = node.call(*[values[i] for i in node.inputs])
        return values[self.output]


def flatten(fn: Any) -> Callable[..., Any]:
    """``fn`` (a compiled formula) as a :class:`Pipe`, or ``fn`` itself if it is not plain."""
    try:
        return _plan(fn) or fn  # type: ignore[no-any-return]
    except (AttributeError, KeyError, TypeError, ValueError):
        return fn  # type: ignore[no-any-return]


def _plan(fn: Any) -> Pipe | None:
    nodes, defaults = fn.dsp.nodes, fn.dsp.default_values
    names = tuple(fn.inputs)
    if len(fn.outputs) != 1:
        return None
    constants = {k: v["value"] for k, v in defaults.items()}
    known = set(names) | set(constants)
    steps: list[Node] = []
    for x, _next_nodes, next_dsp in fn.pipe:
        node_id = x[-1][0]
        node = nodes[node_id]
        if next_dsp:
            return None
        if node["type"] == "data":
            if set(node) - _DATA_KEYS or not _bypass_only(node.get("filters", ())):
                return None
            if node_id not in known:
                return None  # a value no step computed
            continue
        if node["type"] != "function" or set(node) - _FUNCTION_KEYS:
            return None
        if len(node["outputs"]) != 1 or any(i not in known for i in node["inputs"]):
            return None
        steps.append(Node(function=canonical(str(node_id)), call=node["function"],
                          inputs=tuple(node["inputs"]), output=node["outputs"][0]))
        known.add(node["outputs"][0])
    output = fn.outputs[0]
    return Pipe(names, constants, steps, output) if output in known else None


def _bypass_only(filters: Any) -> bool:
    return all(getattr(f, "__name__", "") == "bypass" for f in filters)
