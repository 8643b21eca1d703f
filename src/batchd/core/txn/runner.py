"""The base of :class:`batchd.core.db.Database`: runs transaction scripts on a store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchd.domain import errors
from batchd.store.base import Store
from batchd.store.script import Script, T


class Runner:
    """Holds the store; each ``*Ops`` mixin in :mod:`batchd.core.txn` builds on it."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def _read(self, script: Callable[..., Script[T]], /, *args: Any, **kw: Any) -> T:
        return await self.store.run_read(script, *args, **kw)

    async def _write(self, script: Callable[..., Script[T]], /, *args: Any, **kw: Any) -> T:
        result = await self.store.run_write(script, *args, **kw)
        if isinstance(result, errors.BatchdError):
            raise result  # the script kept its writes and still refused: see store.script
        return result
