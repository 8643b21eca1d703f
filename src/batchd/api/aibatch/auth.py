"""Who calls: ``Authorization: Bearer <key>`` (checked by the ingress); the internal
routes need a supervisor (or any role above: admin, operator)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from batchd.api.ingress import principal_of
from batchd.core import roles
from batchd.domain.models import Principal

bearer = HTTPBearer(auto_error=False, description="A batchd API key.")


def bearer_key(request: Request) -> str | None:
    """The key of ``Authorization: Bearer <key>``, if the request has one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    # ``credentials`` only documents the scheme in the OpenAPI: the ingress checked it.
    return principal_of(request)  # type: ignore[no-any-return]


async def supervisor(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    roles.require_supervisor(principal, "the internal routes")
    return principal


Caller = Annotated[Principal, Depends(caller)]
Supervisor = Annotated[Principal, Depends(supervisor)]
