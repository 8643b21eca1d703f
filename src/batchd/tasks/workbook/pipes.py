"""A compiled formula as a plain sequence of calls.

``formulas`` compiles a formula into a schedula ``DispatchPipe``: the engine's functions
in evaluation order, run by a general dispatcher that builds a solution object per call
(most of the 0.6 ms one formula costs per record). When the pipe is a plain sequence
(every node computed once, in order, no sub-dispatchers, no filters but the engine's
``bypass``), :func:`flatten` gives a function that makes the same calls in the same
order with the same values, without the dispatcher; any other pipe is kept as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_FUNCTION_KEYS = {"type", "inputs", "outputs", "wait_inputs", "index", "function",
                  "solve_cycle"}
_DATA_KEYS = {"type", "wait_inputs", "index", "filters"}

Step = tuple[Callable[..., Any], tuple[str, ...], str]


def flatten(fn: Any) -> Callable[..., Any]:
    """``fn`` (a compiled formula) as plain calls, or ``fn`` itself if it is not plain."""
    try:
        plan = _plan(fn)
    except (AttributeError, KeyError, TypeError, ValueError):
        return fn  # type: ignore[no-any-return]
    if plan is None:
        return fn  # type: ignore[no-any-return]
    names, constants, steps, output = plan

    def call(*args: Any) -> Any:
        values = dict(constants)
        values.update(zip(names, args, strict=True))
        for func, inputs, out in steps:
            values[out] = func(*[values[i] for i in inputs])
        return values[output]

    return call


def _plan(fn: Any) -> tuple[tuple[str, ...], dict[str, Any], list[Step], str] | None:
    nodes, defaults = fn.dsp.nodes, fn.dsp.default_values
    names = tuple(fn.inputs)
    if len(fn.outputs) != 1:
        return None
    constants = {k: v["value"] for k, v in defaults.items()}
    known = set(names) | set(constants)
    steps: list[Step] = []
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
        steps.append((node["function"], tuple(node["inputs"]), node["outputs"][0]))
        known.add(node["outputs"][0])
    output = fn.outputs[0]
    return (names, constants, steps, output) if output in known else None


def _bypass_only(filters: Any) -> bool:
    return all(getattr(f, "__name__", "") == "bypass" for f in filters)
