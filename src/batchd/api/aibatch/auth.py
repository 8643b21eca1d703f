"""Who calls: ``Authorization: Bearer <key>``; the internal routes need a supervisor (or
any role above: admin, operator)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from batchd.core import roles
from batchd.core.manager import BatchManager
from batchd.domain import errors
from batchd.domain.models import Principal

bearer = HTTPBearer(auto_error=False, description="A batchd API key.")


async def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials.strip():
        raise errors.Unauthorized("an API key is required: Authorization: Bearer <key>")
    # Read here, not through a sync dependency: those cost a thread hop per request.
    mgr: BatchManager = request.app.state.manager
    return await mgr.authenticate(credentials.credentials.strip())


async def supervisor(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    roles.require_supervisor(principal, "the internal routes")
    return principal


Caller = Annotated[Principal, Depends(caller)]
Supervisor = Annotated[Principal, Depends(supervisor)]
