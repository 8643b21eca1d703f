"""Dependencies shared by the dialects: the manager, the caller, the request body."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from batchd.api.ingress import principal_of
from batchd.core.manager import BatchManager
from batchd.domain import errors
from batchd.domain.models import Principal
from batchd.settings import Settings


def manager(request: Request) -> BatchManager:
    return request.app.state.manager  # type: ignore[no-any-return]


def settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def bearer_or_header(request: Request, header: str = "x-api-key") -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get(header)


async def principal(request: Request) -> Principal:
    """The caller, whose key the ingress checked (:mod:`batchd.api.ingress`)."""
    return principal_of(request)  # type: ignore[no-any-return]


Caller = Annotated[Principal, Depends(principal)]
Manager = Annotated[BatchManager, Depends(manager)]
Config = Annotated[Settings, Depends(settings)]


async def body_stream(
    request: Request, hasher: hashlib._Hash | None = None
) -> AsyncIterator[bytes]:
    """The request body as it arrives; the ingress counts it under the route's limit."""
    async for chunk in request.stream():
        if hasher is not None:
            hasher.update(chunk)
        if chunk:
            yield chunk


async def read_body(request: Request, limit: int | None = None, *, instead: str = "") -> bytes:
    """The whole body. ``limit``: a bound of the route's own below the ingress's (a
    body held whole on a route that also streams); ``instead`` says what to send then."""
    parts: list[bytes] = []
    seen = 0
    async for chunk in body_stream(request):
        seen += len(chunk)
        if limit is not None and seen > limit:
            raise errors.LimitExceeded(
                f"request body is larger than the limit of {limit} bytes{instead}",
                details={"limit": limit})
        parts.append(chunk)
    return b"".join(parts)
