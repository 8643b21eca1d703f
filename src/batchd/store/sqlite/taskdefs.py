"""Task definitions made over the API, on SQLite (mixed into SqliteStore)."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from batchd.store.sqlite.connection import SqliteConnections
from batchd.store.taskdefs import TaskDefStore, TaskRecord

COLUMNS = "name, version, kind, spec, tenant_id, created_at"


def _record(r: Any) -> TaskRecord:
    return TaskRecord(
        name=r[0], version=r[1], kind=r[2], spec=orjson.loads(r[3]), tenant_id=r[4],
        created_at=r[5],
    )


class SqliteTaskDefs(TaskDefStore):
    db: SqliteConnections

    async def save_task_def(self, record: TaskRecord) -> TaskRecord:
        t = record

        def run(conn: sqlite3.Connection) -> TaskRecord:
            conn.execute(
                f"INSERT INTO task_defs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (name, version) DO NOTHING",
                (t.name, t.version, t.kind, orjson.dumps(t.spec), t.tenant_id, t.created_at),
            )
            return _record(conn.execute(
                f"SELECT {COLUMNS} FROM task_defs WHERE name = ? AND version = ?",
                (t.name, t.version),
            ).fetchone())

        return await self.db.write(run)

    async def task_defs(self) -> list[TaskRecord]:
        sql = f"SELECT {COLUMNS} FROM task_defs ORDER BY pk"
        return await self.db.read(lambda c: [_record(r) for r in c.execute(sql)])
