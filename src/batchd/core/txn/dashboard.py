"""The dashboard's reads (rules and scoping in core.dashboard)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from batchd.core.txn.reads import batch_row
from batchd.core.txn.runner import Runner
from batchd.domain.models import Batch, item_public_id
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


def _line(r: Any) -> ItemLine:
    return ItemLine(rowid=r[0], seq=r[1], status=r[2], attempts=r[3],
                    error=orjson.loads(r[4]) if r[4] else None, started_at=r[5],
                    finished_at=r[6], n_records=r[7])


def batches(filters: dict[str, Any]) -> Script[list[Batch]]:
    return [batch_row(r) for r in (yield q.rows("dash_batches", **filters))]


def items(query: str, filters: dict[str, Any]) -> Script[list[ItemLine]]:
    return [_line(r) for r in (yield q.rows(query, **filters))]


def outcomes(pk: int, t0: float, step: float) -> Script[list[tuple[int, str, int]]]:
    rows = yield q.rows("dash_outcomes_over_time", pk=pk, t0=t0, step=step)
    return [(int(r[0]), r[1], int(r[2])) for r in rows]


def in_flight(tenant_id: str, owner: str | None,
              since: float) -> Script[list[tuple[str, int, int]]]:
    rows = yield q.rows("dash_in_flight", tenant_id=tenant_id, owner=owner, since=since)
    return [(r[0], int(r[1]), int(r[2] or 0)) for r in rows]


class DashboardOps(Runner):
    async def dashboard_batches(self, **filters: Any) -> list[Batch]:
        """Batches of a tenant newest first, by the filters of query ``dash_batches``."""
        return await self._read(batches, filters)

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
