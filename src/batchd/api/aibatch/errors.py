"""The AI queue dialect's error shape, in one place: FastAPI's ``detail`` list.

Every error, not only a validation error, is answered as the document shows::

    {"detail": [{"loc": ["path", "job_id"], "msg": "job job_… not found", "type": "not_found"}]}

``type`` is the core exception's code unless the raiser gave finer details.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from batchd.api.responses import JsonResponse
from batchd.domain import errors

AUTH_LOC = ["header", "Authorization"]


def _where(exc: errors.BatchdError) -> list[str]:
    if isinstance(exc, errors.Unauthorized | errors.Forbidden):
        return AUTH_LOC
    return ["body"] if isinstance(exc, errors.InvalidInput) else []


def detail_of(exc: errors.BatchdError) -> list[dict[str, Any]]:
    if isinstance(exc.details, list) and exc.details:
        return exc.details
    return [{"loc": _where(exc), "msg": exc.message, "type": exc.code}]


def error_response(exc: errors.BatchdError) -> Response:
    headers: dict[str, str] | None = None
    if isinstance(exc, errors.Busy | errors.StoreError):
        headers = {"Retry-After": "1"}
    elif isinstance(exc, errors.Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    return JsonResponse({"detail": detail_of(exc)}, status_code=exc.http_status,
                        headers=headers)


async def bind(request: Request) -> None:
    """Router dependency: errors of this request take the dialect's shape (validation
    errors already do: the app's handler answers FastAPI's own list)."""
    request.state.error_handler = error_response
