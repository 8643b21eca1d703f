"""Task definitions made over the API (HTTP, LLM, Python kinds).

They are kept in the database so that every server and worker sharing it can build
them into its registry (see :mod:`batchd.tasks.catalog`). A version, once stored, is
never changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(slots=True)
class TaskRecord:
    name: str
    version: str
    kind: str
    spec: dict[str, Any]
    tenant_id: str | None
    created_at: float


class TaskDefStore(Protocol):
    """Where definitions are kept (the engine's database:
    :class:`batchd.core.txn.taskdefs.TaskDefOps`)."""

    async def save_task_def(self, record: TaskRecord) -> TaskRecord:
        """Store ``record``, or return the definition already stored under its name and
        version (which the caller compares)."""
        ...

    async def task_defs(self) -> list[TaskRecord]:
        """Every stored definition, oldest first."""
        ...
