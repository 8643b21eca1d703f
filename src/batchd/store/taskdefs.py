"""The storage interface of task definitions made over the API (HTTP, LLM, Python kinds).

They are kept in the database so that every server and worker sharing it can build
them into its registry (see :mod:`batchd.tasks.catalog`). A version, once stored, is
never changed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class TaskRecord:
    name: str
    version: str
    kind: str
    spec: dict[str, Any]
    tenant_id: str | None
    created_at: float


class TaskDefStore(ABC):
    @abstractmethod
    async def save_task_def(self, record: TaskRecord) -> TaskRecord:
        """Store ``record``, or return the definition already stored under its name and
        version (which the caller compares)."""

    @abstractmethod
    async def task_defs(self) -> list[TaskRecord]:
        """Every stored definition, oldest first."""
