"""The AI job queue's optional background loops: auto-flush and auto-poll (off by default).

Safe to run in several servers at once: a flush takes its jobs in one transaction
(``SKIP LOCKED`` on PostgreSQL) and a poll records each job's outcome once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from batchd.settings import Settings

log = logging.getLogger(__name__)


class Queue(Protocol):
    """What the loops drive (the AI job queue, :class:`batchd.core.jobqueue.JobQueue`)."""

    async def auto_flush(self, *, min_count: int, max_age_s: float, max_jobs: int) -> int:
        """Flush the tenants whose ready jobs reach ``min_count`` or ``max_age_s``."""
        ...

    async def poll_open(self) -> int:
        """Poll every unfinished provider batch once."""
        ...


class QueueLoops:
    """Flushes tenants whose ready jobs reach a count or an age, and polls unfinished
    provider batches, as ``settings`` ask."""

    def __init__(self, *, queue: Queue, settings: Settings) -> None:
        self.queue = queue
        self.settings = settings
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def enabled(self) -> bool:
        s = self.settings
        return bool(s.aibatch_auto_flush_count or s.aibatch_auto_flush_age_s
                    or s.aibatch_auto_poll_interval_s)

    def start(self) -> None:
        s = self.settings
        if s.aibatch_auto_flush_count or s.aibatch_auto_flush_age_s:
            self._tasks.append(asyncio.create_task(
                self._every(s.aibatch_loop_interval_s, self._flush, "auto-flush")
            ))
        if s.aibatch_auto_poll_interval_s:
            self._tasks.append(asyncio.create_task(
                self._every(s.aibatch_auto_poll_interval_s, self.queue.poll_open, "auto-poll")
            ))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()

    async def _flush(self) -> int:
        s = self.settings
        return await self.queue.auto_flush(
            min_count=s.aibatch_auto_flush_count, max_age_s=s.aibatch_auto_flush_age_s,
            max_jobs=s.aibatch_auto_flush_max_jobs,
        )

    @staticmethod
    async def _every(interval_s: float, step: Callable[[], Awaitable[int]], what: str) -> None:
        while True:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any one failure
                log.exception("%s failed; trying again", what)
            await asyncio.sleep(interval_s)
