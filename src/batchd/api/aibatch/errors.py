"""The AI queue dialect's error shape, in one place: FastAPI's ``detail`` list.

Every error, not only a validation error, is answered as the document shows::

    {"detail": [{"loc": ["path", "job_id"], "msg": "job job_… not found", "type": "not_found"}]}

``type`` is the core exception's code unless the raiser gave finer details.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from batchd.api import errors as native
from batchd.api.responses import JsonResponse
from batchd.domain import errors

AUTH_LOC = ["header", "Authorization"]


def _where(exc: errors.BatchdError) -> list[str]:
    if isinstance(exc, errors.Unauthorized | errors.Forbidden):
        return AUTH_LOC
    return ["body"] if isinstance(exc, errors.InvalidInput) else []


def detail_of(exc: errors.BatchdError) -> list[dict[str, Any]]:
    problems = native.field_problems(exc)
    if problems:
        return problems
    return [{"loc": _where(exc), "msg": exc.message, "type": exc.code}]


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"detail": {"type": "array", "items": native.PROBLEM_SCHEMA}},
    "required": ["detail"],
}


def error_response(exc: errors.BatchdError) -> Response:
    return JsonResponse({"detail": native.jsonable(detail_of(exc))},
                        status_code=native.status_of(exc), headers=native.headers_of(exc))


def bind(request: Request) -> None:
    """Errors of this request take the dialect's shape (the ingress calls it; validation
    errors already do: the app's handler answers FastAPI's own list)."""
    request.state.error_handler = error_response
