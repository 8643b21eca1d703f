"""The executor interface: run one item's records through a task's handler."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from batchd.tasks.context import TaskContext
from batchd.tasks.registry import TaskDef


class Executor(ABC):
    """Runs handlers; the worker decides what an outcome means."""

    @abstractmethod
    async def run(self, task: TaskDef, records: list[Any], ctx: TaskContext) -> list[Any]:
        """One output per record; a :class:`RecordError` in place of a failed record.

        An exception means the whole item failed (it may be retried).
        """

    @abstractmethod
    def close(self) -> None: ...
