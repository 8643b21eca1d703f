"""Task kinds: ``python`` (an importable function), ``http`` (POST to a URL), ``llm``
(a prompt to an OpenAI-compatible endpoint) and ``workbook`` (a published Excel
workbook), built from a :class:`TaskSpec`.

In Python::

    from batchd.tasks import kinds

    kinds.define({"name": "enrich", "kind": "http",
                  "config": {"url": "https://enrich.example.com/v1", "retries": 3}})

Over the API: ``POST /api/tasks`` with the same body (see :mod:`batchd.tasks.catalog`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from batchd.domain import errors
from batchd.tasks.kinds import http, llm, python, workbook
from batchd.tasks.kinds.spec import TaskSpec
from batchd.tasks.registry import TaskDef, TaskRegistry, default_registry

BUILDERS: dict[str, Callable[[TaskSpec], TaskDef]] = {
    "python": python.build,
    "http": http.build,
    "llm": llm.build,
    "workbook": workbook.build,
}

# What a kind checks when a task is defined over the API, beyond its config's shape.
CHECKS: dict[str, Callable[[TaskSpec], Awaitable[None]]] = {
    "http": http.check, "workbook": workbook.check,
}


def parse(data: dict[str, Any]) -> TaskSpec:
    """A checked TaskSpec; raises InvalidInput with pydantic's details."""
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as exc:
        details = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                   for e in exc.errors(include_url=False)]
        first = details[0]
        raise errors.InvalidInput(
            f"{'.'.join(str(p) for p in first['loc'][1:])}: {first['msg']}", details=details
        ) from None


def build(spec: TaskSpec) -> TaskDef:
    """The TaskDef of ``spec``; raises InvalidInput on a bad ``config``."""
    return BUILDERS[spec.kind](spec)


async def check(spec: TaskSpec) -> None:
    """Refuse a definition its kind cannot accept now (an outbound URL the policy refuses)."""
    kind_check = CHECKS.get(spec.kind)
    if kind_check is not None:
        await kind_check(spec)


def define(data: dict[str, Any] | TaskSpec, *, registry: TaskRegistry | None = None) -> TaskDef:
    """Register a task of any kind from its definition, in Python (like ``@task``)."""
    spec = data if isinstance(data, TaskSpec) else parse(data)
    task = build(spec)
    (registry or default_registry).add(task)
    return task


__all__ = ["TaskSpec", "build", "check", "define", "parse"]
