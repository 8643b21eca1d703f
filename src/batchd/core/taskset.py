"""The tasks batches may use: the process's registry, and tasks defined over the API.

Core knows the definitions kept in the database only through :class:`TaskSource`, an
interface that :class:`batchd.tasks.catalog.TaskCatalog` satisfies (``api/app.py``
wires one in), so core does not import the catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from batchd.core import roles
from batchd.domain import errors
from batchd.domain.models import BatchSpec, Principal
from batchd.tasks.registry import TaskDef, TaskRegistry


class TaskSource(Protocol):
    """Tasks defined over the API, kept for every server and worker."""

    async def get(self, name: str, version: str | None = None) -> TaskDef:
        """The task, built from its stored definition if the registry lacks it."""
        ...

    async def create(self, data: dict[str, Any], *, tenant_id: str, now: float) -> TaskDef:
        """Store a definition and register it; raises InvalidInput or Conflict."""
        ...

    async def sync(self) -> object:
        """Register the definitions other servers stored since the last look."""
        ...


class TaskSet:
    """Looks tasks up and checks a batch's spec against its task."""

    def __init__(self, *, registry: TaskRegistry, source: TaskSource | None,
                 clock: Callable[[], float]) -> None:
        self.registry = registry
        self.source = source
        self.clock = clock

    def task(self, name: str, version: str | None = None) -> TaskDef:
        return self.registry.get(name, version)

    async def find(self, name: str, version: str | None = None) -> TaskDef:
        """The task, including one defined over the API through another server."""
        if self.source is None:
            return self.registry.get(name, version)
        return await self.source.get(name, version)

    async def sync(self) -> None:
        if self.source is not None:
            await self.source.sync()

    async def define(self, principal: Principal, data: dict[str, Any]) -> TaskDef:
        """Store and register a task of kind ``python``, ``http`` or ``llm`` (an operator
        only: every tenant sees and runs the tasks of the one catalog)."""
        roles.require_operator(principal, "defining a task")
        if self.source is None:
            raise errors.Conflict("this server keeps no task definitions")
        return await self.source.create(data, tenant_id=principal.tenant_id, now=self.clock())

    def resolve_spec(self, spec: BatchSpec) -> BatchSpec:
        """Fill a spec's defaults from its task; raises NotFound / InvalidInput."""
        task = self.registry.get(spec.task, spec.version or None)
        spec.version = task.version
        if spec.runner is not None and spec.runner not in task.runners:
            problem = "unknown runner"
            raise errors.InvalidInput(
                f"task {task.name!r} has no runner {spec.runner!r}; "
                f"known: {sorted(task.runners)}",
                details={"field": "runner", "problem": problem, "kind": "value_error"},
            )
        return spec
