"""Task definitions made over the API, on PostgreSQL (mixed into PostgresStore)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from batchd.store.postgres.execution import Conn
from batchd.store.taskdefs import TaskDefStore, TaskRecord

T = TypeVar("T")
COLUMNS = "name, version, kind, spec, tenant_id, created_at"


def _record(r: tuple[Any, ...]) -> TaskRecord:
    return TaskRecord(
        name=r[0], version=r[1], kind=r[2], spec=orjson.loads(bytes(r[3])), tenant_id=r[4],
        created_at=r[5],
    )


class PostgresTaskDefs(TaskDefStore):
    if TYPE_CHECKING:
        async def _tx(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T: ...

        async def _read(self, sql: str, args: Any = ()) -> list[tuple[Any, ...]]: ...

    async def save_task_def(self, record: TaskRecord) -> TaskRecord:
        t = record

        async def run(conn: Conn) -> TaskRecord:
            await conn.execute(
                f"INSERT INTO task_defs ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (name, version) DO NOTHING",
                (t.name, t.version, t.kind, orjson.dumps(t.spec), t.tenant_id, t.created_at),
            )
            cur = await conn.execute(
                f"SELECT {COLUMNS} FROM task_defs WHERE name = %s AND version = %s",
                (t.name, t.version),
            )
            row = await cur.fetchone()
            assert row is not None
            return _record(row)

        return await self._tx(run)

    async def task_defs(self) -> list[TaskRecord]:
        rows = await self._read(f"SELECT {COLUMNS} FROM task_defs ORDER BY pk")
        return [_record(r) for r in rows]
