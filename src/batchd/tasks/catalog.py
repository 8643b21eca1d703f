"""Tasks defined over the API, kept in the database and built into every process's registry.

``POST /api/tasks`` stores a definition (name, version, kind, schemas, runners, cost,
the kind's config) and adds it to the local registry; other servers and workers
sharing the database build it the first time they are asked for a name or version
they do not know (:meth:`TaskCatalog.get`). Tasks registered in Python (``@task``)
keep their names: a definition may not take one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from batchd.domain import errors
from batchd.domain.taskdefs import TaskDefStore, TaskRecord
from batchd.tasks import kinds
from batchd.tasks.kinds import runtime
from batchd.tasks.kinds.spec import TaskSpec
from batchd.tasks.registry import TaskDef, TaskRegistry

if TYPE_CHECKING:
    from batchd.settings import Settings

log = logging.getLogger(__name__)


class TaskCatalog:
    """Keeps a registry in step with the task definitions in the database.

    Args:
        store: where definitions are kept (the engine's database).
        registry: the process's registry, which gains the stored tasks.
        settings: what task kinds use when they run (the LLM endpoint, outbound policy).
    """

    def __init__(self, *, store: TaskDefStore, registry: TaskRegistry,
                 settings: Settings | None = None) -> None:
        self.store = store
        self.registry = registry
        self._code = set(registry.names())  # names registered in Python
        self._built: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = asyncio.Lock()
        if settings is not None:
            runtime.configure(settings, store=store)

    async def sync(self) -> int:
        """Build the stored definitions this process does not have yet; how many."""
        async with self._lock:
            added = 0
            for record in await self.store.task_defs():
                key = (record.name, record.version)
                if key in self._built or record.name in self._code:
                    continue
                try:
                    task = kinds.build(TaskSpec.model_validate(record.spec))
                except Exception:  # one bad definition must not hide the others
                    log.exception("cannot build task %s %s", record.name, record.version)
                    continue
                self.registry.add(task)
                self._built[key] = record.spec
                added += 1
            return added

    async def get(self, name: str, version: str | None = None) -> TaskDef:
        """The task, looking in the database when this process does not know it.

        Raises:
            errors.NotFound: no such task or version anywhere.
        """
        try:
            return self.registry.get(name, version)
        except errors.NotFound:
            if name in self._code or not await self.sync():
                raise
        return self.registry.get(name, version)

    async def create(self, data: dict[str, Any], *, tenant_id: str, now: float) -> TaskDef:
        """Check, build, store and register a definition.

        Raises:
            errors.InvalidInput: a bad definition (``details`` name the field).
            errors.Conflict: the name belongs to a Python task, or this version exists
                with another definition.
        """
        spec = kinds.parse(data)
        if spec.name in self._code:
            raise errors.Conflict(f"task {spec.name!r} is defined in Python and cannot be "
                                  "redefined over the API")
        task = kinds.build(spec)  # checks the kind's config before anything is stored
        await kinds.check(spec)  # and what it names (an http task's URL)
        stored_spec = spec.model_dump(mode="json")
        stored = await self.store.save_task_def(TaskRecord(
            name=spec.name, version=spec.version, kind=spec.kind, spec=stored_spec,
            tenant_id=tenant_id, created_at=now,
        ))
        if stored.spec != stored_spec:
            raise errors.Conflict(
                f"task {spec.name!r} version {spec.version!r} exists with another definition; "
                "publish a new version"
            )
        async with self._lock:
            if (spec.name, spec.version) not in self._built:
                self.registry.add(task)
                self._built[(spec.name, spec.version)] = stored_spec
        return self.registry.get(spec.name, spec.version)
