"""Server-sent events framing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson


def frame(event: str, data: Any, *, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


async def sse_stream(events: AsyncIterator[tuple[str, Any]]) -> AsyncIterator[bytes]:
    n = 0
    async for name, data in events:
        n += 1
        yield frame(name, data, event_id=n)
