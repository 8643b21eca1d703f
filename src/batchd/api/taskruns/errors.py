"""The dialect's error shape, in one place: ``{"detail": …}`` as FastAPI answers.

A message for most errors (``{"detail": "task 'x' not found"}``); for a request
the dialect refuses field by field, a list of ``{loc, msg, type}`` naming the field:
a run that fails the task's input schema is
``{"loc": ["body", "task_run_requests", 1, "arguments", "company"], "msg": "'company' is a
required property", "type": "schema_error"}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from batchd.api.errors import jsonable, native_error
from batchd.api.responses import JsonResponse
from batchd.domain import errors

RUNS = "task_run_requests"
FIELDS = {"input": "arguments", "runner": "runner", "webhook": "callback_webhook"}


def invalid_run(index: int, field: str, message: str, *, kind: str = "value_error",
                path: list[Any] | None = None) -> errors.InvalidInput:
    loc = ["body", RUNS, index, field, *(path or [])]
    return errors.InvalidInput(f"{RUNS}[{index}].{field}: {message}",
                               details=[{"loc": loc, "msg": message, "type": kind}])


def taskruns_error(exc: errors.BatchdError) -> Response:
    if isinstance(exc, errors.InvalidRecord):
        field = FIELDS.get(exc.field, exc.field)
        kind = "schema_error" if exc.field == "input" else "value_error"
        body = {"detail": [{"loc": ["body", RUNS, exc.index, field], "msg": exc.problem,
                            "type": kind}]}
        return JsonResponse(jsonable(body), status_code=422)
    return native_error(exc)


def use_taskruns_errors(request: Request) -> None:
    """Errors of this request take the dialect's shape (the ingress calls it)."""
    request.state.error_handler = taskruns_error
