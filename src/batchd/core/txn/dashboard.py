"""The dashboard's reads (rules and scoping in core.dashboard)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from batchd.core.txn.runner import Runner
from batchd.domain.models import item_public_id
from batchd.store import script as q
from batchd.store.script import Script


@dataclass(frozen=True, slots=True)
class ItemLine:
    """An item as a list shows it: no input or output."""

    rowid: int
    seq: int
    status: str
    attempts: int
    error: dict[str, Any] | None
    started_at: float | None
    finished_at: float | None
    n_records: int

    @property
    def id(self) -> str:
        return item_public_id(self.rowid)


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt of an item: ``outcome`` retried, failed or cancelled (recorded with it),
    or the item's own state for the attempt it holds (running, succeeded)."""

    attempt: int
    outcome: str
    error: dict[str, Any] | None
    usage: dict[str, Any] | None
    worker: str | None
    started_at: float | None
    ended_at: float | None


@dataclass(frozen=True, slots=True)
class WorkerClaims:
    """A worker's claim counter at its last two heartbeats."""

    worker: str
    claimed: int
    claimed_before: int
    at: float
    before_at: float | None


def _json(v: Any) -> Any:
    return orjson.loads(v) if v else None


def _line(r: Any) -> ItemLine:
    return ItemLine(rowid=r[0], seq=r[1], status=r[2], attempts=r[3], error=_json(r[4]),
                    started_at=r[5], finished_at=r[6], n_records=r[7])


def items(query: str, filters: dict[str, Any]) -> Script[list[ItemLine]]:
    return [_line(r) for r in (yield q.rows(query, **filters))]


def outcomes(pk: int, t0: float, step: float) -> Script[list[tuple[int, str, int]]]:
    rows = yield q.rows("dash_outcomes_over_time", pk=pk, t0=t0, step=step)
    return [(int(r[0]), r[1], int(r[2])) for r in rows]


def in_flight(tenant_id: str, owner: str | None,
              since: float) -> Script[list[tuple[str, int, int]]]:
    rows = yield q.rows("dash_in_flight", tenant_id=tenant_id, owner=owner, since=since)
    return [(r[0], int(r[1]), int(r[2] or 0)) for r in rows]


def attempts(rowid: int, limit: int) -> Script[list[Attempt]]:
    rows = yield q.rows("dash_item_attempts", item_id=rowid, limit=limit)
    return [Attempt(attempt=r[0], outcome=r[1], error=_json(r[2]), usage=_json(r[3]),
                    worker=r[4], started_at=r[5], ended_at=r[6]) for r in rows]


def worker_claims(since: float) -> Script[list[WorkerClaims]]:
    rows = yield q.rows("dash_worker_claims", since=since)
    return [WorkerClaims(worker=r[0], claimed=int(r[1]), claimed_before=int(r[2]), at=r[3],
                         before_at=r[4]) for r in rows]


def tenants(limit: int) -> Script[list[tuple[str, str]]]:
    return [(r[0], r[1]) for r in (yield q.rows("dash_tenants", limit=limit))]


def tenant_of_batch(batch_id: str) -> Script[tuple[str, str] | None]:
    r = yield q.one("dash_tenant_of_batch", batch_id=batch_id)
    return None if r is None else (r[0], r[1])


class DashboardOps(Runner):
    async def dashboard_items(self, *, unsuccessful: bool, **filters: Any) -> list[ItemLine]:
        """A batch's items in seq order (``unsuccessful``: a failed or cancelled status
        is asked for, read by its own index)."""
        name = "dash_unsuccessful_items" if unsuccessful else "dash_items"
        return await self._read(items, name, filters)

    async def outcomes_over_time(self, batch_pk: int, *, t0: float,
                                 step: float) -> list[tuple[int, str, int]]:
        return await self._read(outcomes, batch_pk, t0, step)

    async def items_in_flight(self, tenant_id: str, *, owner: str | None,
                              since: float) -> list[tuple[str, int, int]]:
        return await self._read(in_flight, tenant_id, owner, since)

    async def item_attempts(self, rowid: int, *, limit: int) -> list[Attempt]:
        """The recorded attempts of item ``rowid`` (those that did not succeed), oldest
        first."""
        return await self._read(attempts, rowid, limit)

    async def worker_claims(self, *, since: float) -> list[WorkerClaims]:
        """The claim counters of the workers that sent a heartbeat since ``since``."""
        return await self._read(worker_claims, since)

    async def tenants(self, *, limit: int) -> list[tuple[str, str]]:
        """``(id, name)`` of the tenants, by name."""
        return await self._read(tenants, limit)

    async def tenant_of_batch(self, batch_id: str) -> tuple[str, str] | None:
        """``(id, name)`` of the tenant of ``batch_id``, whoever's it is."""
        return await self._read(tenant_of_batch, batch_id)
