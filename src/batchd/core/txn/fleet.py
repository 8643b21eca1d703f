"""The processes sharing the database: their announcements (see :mod:`batchd.core.fleet`)."""

from __future__ import annotations

from typing import Any

from batchd.core.txn.runner import Runner
from batchd.store import script as q
from batchd.store.script import Script


def announce(
    process_id: str, info: bytes, now: float, forget_before: float,
) -> Script[None]:
    yield q.run("announce_process", process_id, info, now, now)
    yield q.run("forget_processes_seen_before", forget_before)


def processes() -> Script[list[tuple[str, bytes, float, float]]]:
    # columns: id, info, started_at, seen_at
    return [(r[0], bytes(r[1]), r[2], r[3]) for r in (yield q.rows("processes"))]


def forget(process_id: str) -> Script[None]:
    yield q.run("forget_process", process_id)


def defined_task_kind(name: str, version: str) -> Script[str | None]:
    kind: Any = yield q.value("defined_task_kind", name, version)
    return None if kind is None else str(kind)


class FleetOps(Runner):
    async def announce_process(
        self, process_id: str, *, info: bytes, now: float, forget_before: float,
    ) -> None:
        """Record (or refresh) a running process's announcement; forget those not seen
        since ``forget_before``."""
        await self._write(announce, process_id, info, now, forget_before)

    async def processes(self) -> list[tuple[str, bytes, float, float]]:
        """Every announcement: ``(id, info, started_at, seen_at)``, oldest first."""
        return await self._read(processes)

    async def forget_process(self, process_id: str) -> None:
        """Remove a process's announcement (it is stopping)."""
        await self._write(forget, process_id)

    async def defined_task_kind(self, name: str, version: str) -> str | None:
        """The kind of the task defined over the API as ``name`` ``version``, if any."""
        return await self._read(defined_task_kind, name, version)
