"""What every task kind shares: turning a :class:`TaskSpec` and a handler into a TaskDef."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from batchd.domain import errors
from batchd.tasks.kinds.spec import TaskSpec
from batchd.tasks.registry import Mode, TaskDef


def config_of(model: type[BaseModel], spec: TaskSpec) -> Any:
    """The kind's config, checked; raises InvalidInput naming the bad field."""
    try:
        return model.model_validate(spec.config)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in ("config", *first["loc"]))
        raise errors.InvalidInput(
            f"{where}: {first['msg']}",
            details=[{"loc": ["body", "config", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                     for e in exc.errors(include_url=False)],
        ) from None


def task_def(
    spec: TaskSpec, *, handler: Callable[..., Any], mode: Mode | None = None,
    vectorised: bool = False, max_attempts: int | None = None,
) -> TaskDef:
    params = [
        p for p in inspect.signature(handler).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return TaskDef(
        name=spec.name, version=spec.version, handler=handler, vectorised=vectorised,
        mode=mode or ("async" if inspect.iscoroutinefunction(handler) else "thread"),
        kind=spec.kind, description=spec.description, input_schema=spec.input_schema,
        output_schema=spec.output_schema, runners={r.name: r.runner() for r in spec.runners},
        cost=spec.cost.model(), timeout_s=spec.timeout_s,
        max_attempts=spec.max_attempts or max_attempts, takes_context=len(params) >= 2,
    )


def retryable_status(status_code: int) -> bool:
    """Answers worth another attempt: timeouts, rate limits, server errors."""
    return status_code in (408, 425, 429) or status_code >= 500
