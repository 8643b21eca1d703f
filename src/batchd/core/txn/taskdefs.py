"""Task definitions made over the API (see :mod:`batchd.domain.taskdefs`)."""

from __future__ import annotations

from typing import Any

import orjson

from batchd.core.txn.runner import Runner
from batchd.domain.taskdefs import TaskRecord
from batchd.store import script as q
from batchd.store.script import Script


def _record(r: Any) -> TaskRecord:
    # columns: name, version, kind, spec, tenant_id, created_at
    return TaskRecord(name=r[0], version=r[1], kind=r[2], spec=orjson.loads(r[3]),
                      tenant_id=r[4], created_at=r[5])


def save_task_def(t: TaskRecord) -> Script[TaskRecord]:
    yield q.run("insert_task_def", t.name, t.version, t.kind, orjson.dumps(t.spec),
                t.tenant_id, t.created_at)
    return _record((yield q.one("task_def", t.name, t.version)))


def task_defs() -> Script[list[TaskRecord]]:
    return [_record(r) for r in (yield q.rows("task_defs"))]


class TaskDefOps(Runner):
    async def save_task_def(self, record: TaskRecord) -> TaskRecord:
        """Store ``record``, or return the definition already stored under its name and
        version (which the caller compares)."""
        return await self._write(save_task_def, record)

    async def task_defs(self) -> list[TaskRecord]:
        """Every stored definition, oldest first."""
        return await self._read(task_defs)
