"""A task that runs another task per record, so one batch can mix tasks.

A batch has one task. A dialect whose batches mix task kinds (the Simulations
dialect mixes templates) submits its records to a dispatcher instead: each record
names its task under ``key``, and the dispatcher checks the rest of the record
against that task's input schema, prices it with that task's cost model and runs
that task's handler with it.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from batchd.domain import errors
from batchd.domain.cost import CostModel
from batchd.tasks.context import RecordError, TaskContext
from batchd.tasks.registry import TaskDef, TaskRegistry

SIMULATION = "simulation"
"""The dispatcher of the Simulations dialect: records carry ``template_id``."""
TEMPLATE_KEY = "template_id"
KIND = "dispatch"  # a dispatcher's TaskDef.kind: never the target of another dispatcher
AIBATCH = "aibatch"
"""The dispatcher of the AI job queue's local provider: ``{job_type, payload, custom_id}``."""


def split(record: Any, key: str, params_key: str | None = None) -> tuple[str, Any]:
    """The task a record names, and the task's input: the record without that name, or
    the record's ``params_key`` field when given."""
    if not isinstance(record, dict) or not isinstance(record.get(key), str):
        raise RecordError(f"the record needs {key!r}, a task name", code="invalid_input")
    if params_key is not None:
        return record[key], record.get(params_key)
    params = {k: v for k, v in record.items() if k != key}
    return record[key], params


def target(registry: TaskRegistry, name: str, *, dispatcher: str) -> TaskDef:
    """The task a record names; raises errors.UnknownTask."""
    if name == dispatcher:
        raise errors.UnknownTask(f"{name!r} cannot run inside itself")
    try:
        task = registry.get(name)
    except errors.NotFound:
        raise errors.UnknownTask(f"task {name!r} is not registered") from None
    if task.kind == KIND:
        raise errors.UnknownTask(f"{name!r} is a dispatcher, not a task to run")
    return task


def dispatcher(
    registry: TaskRegistry, *, name: str = SIMULATION, key: str = TEMPLATE_KEY,
    version: str = "1.0.0", params_key: str | None = None,
) -> TaskDef:
    """A task ``name`` running, for each record, the task named by ``record[key]``
    (with ``record[params_key]`` as its input when ``params_key`` is given).

    Tasks are looked up in ``registry`` at run time (their newest version). Sync
    handlers run in a thread (process-mode ones too), async ones on the loop.
    """

    def estimate(record: Any) -> float:
        try:
            task_name, params = split(record, key, params_key)
            task = target(registry, task_name, dispatcher=name)
        except (RecordError, errors.BatchdError):
            return 0.0  # refused at run time; nothing to reserve
        return task.cost.estimate_item([params])

    async def handler(record: Any, ctx: TaskContext) -> Any:
        task_name, params = split(record, key, params_key)
        try:
            task = target(registry, task_name, dispatcher=name)
        except errors.UnknownTask as exc:
            raise RecordError(exc.message, code="unknown_task") from None
        problem = task.input_errors(params)
        if problem:
            raise RecordError(f"{task_name}: {problem}", code="invalid_input")
        run = _run(task, params, ctx)
        return await (asyncio.wait_for(run, task.timeout_s) if task.timeout_s else run)

    return TaskDef(
        name=name, version=version, handler=handler, mode="async", kind=KIND,
        description=f"Runs, for each record, the task named by its {key!r} with "
        + (f"its {params_key!r}." if params_key else "the rest of it."),
        input_schema={"type": "object", "required": [key], "properties": {key: {"type": "string"}}},
        cost=CostModel(per_record=estimate),
    )


def _call(task: TaskDef, params: Any, ctx: TaskContext) -> Any:
    arg = [params] if task.vectorised else params
    return task.handler(arg, ctx) if task.takes_context else task.handler(arg)


async def _run(task: TaskDef, params: Any, ctx: TaskContext) -> Any:
    if task.mode == "async" or inspect.iscoroutinefunction(task.handler):
        out = await _call(task, params, ctx)
    elif task.mode == "inline":
        out = _call(task, params, ctx)
    else:
        out = await asyncio.to_thread(_call, task, params, ctx)
    if task.vectorised:
        outs = list(out)
        if len(outs) != 1:
            raise RuntimeError(f"task {task.name!r} returned {len(outs)} outputs for 1 record")
        out = outs[0]
    if isinstance(out, RecordError):
        raise out
    return out
