"""``/api/batches/{id}/retry|pause|resume``: the operator actions (core.actions), allowed
to whoever may cancel the batch."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from batchd.api import jsonbody
from batchd.api.deps import Caller, Manager
from batchd.api.native.schemas import batch_json
from batchd.api.responses import JsonResponse
from batchd.core import actions
from batchd.core.actions import ActionResult

router = APIRouter(tags=["batches"], route_class=jsonbody.PolicyRoute)


class RetryBody(BaseModel):
    """Which items to retry: failed and cancelled ones by default."""

    model_config = ConfigDict(extra="forbid")
    status: list[Literal["failed", "cancelled"]] | Literal["failed", "cancelled"] | None = None
    error_code: str | None = Field(default=None, max_length=actions.MAX_ERROR_FILTER)
    error: str | None = Field(default=None, max_length=actions.MAX_ERROR_FILTER,
                              description="text found in the error's code or message")


def _result(mgr: Manager, r: ActionResult) -> Response:
    return JsonResponse({"action": r.action, "touched": r.touched,
                         "batch": batch_json(r.batch, now=mgr.clock())})


@router.post("/batches/{batch_id}/retry")
async def retry_batch(batch_id: str, caller: Caller, mgr: Manager,
                      body: RetryBody | None = None) -> Response:
    """Queue the batch's failed or cancelled items that match again, with fresh attempts;
    a finished batch reopens. ``touched``: how many. 409 for a cancelled or expired batch."""
    body = body or RetryBody()
    wanted = [body.status] if isinstance(body.status, str) else body.status
    f = actions.retry_filter(wanted, error_code=body.error_code, error_text=body.error)
    return _result(mgr, await mgr.retry_items(caller, batch_id, f))


@router.post("/batches/{batch_id}/pause")
async def pause_batch(batch_id: str, caller: Caller, mgr: Manager) -> Response:
    """Hand out none of the batch's items until resumed; running ones finish. ``touched``:
    the queued items held back. 409 for a batch that has ended."""
    return _result(mgr, await mgr.pause_batch(caller, batch_id))


@router.post("/batches/{batch_id}/resume")
async def resume_batch(batch_id: str, caller: Caller, mgr: Manager) -> Response:
    """Hand out the batch's items again. ``touched``: the queued items released."""
    return _result(mgr, await mgr.resume_batch(caller, batch_id))
