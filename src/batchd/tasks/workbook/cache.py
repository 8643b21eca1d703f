"""Compiled workbooks, once per process: the first chunk of a version compiles it."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from batchd.tasks.workbook.compiler import Compiled, compile_workbook

MAX_PLANS = 32  # versions kept compiled; the least recently used goes first

_plans: OrderedDict[str, Compiled] = OrderedDict()
_lock = threading.Lock()


async def plan(key: str, content: Callable[[], Awaitable[bytes]]) -> Compiled:
    """The compiled workbook kept under ``key``; ``content`` gives the file when it is
    not compiled yet (compiled in a thread, one workbook at a time)."""
    with _lock:
        found = _plans.get(key)
        if found is not None:
            _plans.move_to_end(key)
            return found
    data = await content()
    return await asyncio.to_thread(_compile_once, key, data)


def _compile_once(key: str, data: bytes) -> Compiled:
    with _lock:
        found = _plans.get(key)
        if found is not None:
            return found
        compiled = compile_workbook(data)
        _plans[key] = compiled
        while len(_plans) > MAX_PLANS:
            _plans.popitem(last=False)
        return compiled


def clear() -> None:
    with _lock:
        _plans.clear()
