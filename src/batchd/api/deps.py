"""Dependencies shared by the dialects: the manager, the caller, the request body."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

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


async def principal(
    request: Request, mgr: Annotated[BatchManager, Depends(manager)]
) -> Principal:
    return await mgr.authenticate(bearer_or_header(request))


Caller = Annotated[Principal, Depends(principal)]
Manager = Annotated[BatchManager, Depends(manager)]
Config = Annotated[Settings, Depends(settings)]


def check_declared_size(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.LimitExceeded(f"request body is larger than the limit of {limit} bytes")


async def limited_stream(
    request: Request, limit: int, hasher: hashlib._Hash | None = None
) -> AsyncIterator[bytes]:
    """The request body as it arrives; fails cleanly past ``limit`` bytes."""
    check_declared_size(request, limit)
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise errors.LimitExceeded(f"request body is larger than the limit of {limit} bytes")
        if hasher is not None:
            hasher.update(chunk)
        if chunk:
            yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    parts = [c async for c in limited_stream(request, limit)]
    return b"".join(parts)
