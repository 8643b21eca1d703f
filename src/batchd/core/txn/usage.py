"""Usage metering (in the transactions of its effects) and the batch event log."""

from __future__ import annotations

from typing import Any

import orjson

from batchd.core.quotas import Metering
from batchd.core.txn.runner import Runner
from batchd.core.usage import period_of
from batchd.store import script as q
from batchd.store.script import Script


def add_usage(tenant_id: str, now: float, **metrics: float) -> Script[None]:
    period = period_of(now)
    # Sorted: one lock order for every transaction that adds to a tenant's usage.
    rows = [(tenant_id, period, k, v) for k, v in sorted(metrics.items()) if v]
    if rows:
        yield q.each("add_usage", rows)


def add_event(
    tenant_id: str, batch_id: str | None, kind: str, now: float,
    data: dict[str, Any] | None = None,
) -> Script[None]:
    yield q.run("insert_event", now, tenant_id, batch_id, kind,
                orjson.dumps(data) if data else None)


def meter(metering: Metering, now: float) -> Script[None]:
    """Add ``metering``'s usage and check its quotas; raises QuotaExceeded (rolls back)."""
    yield from add_usage(metering.tenant_id, now, **metering.add)
    metrics = metering.metrics
    if not metrics:
        return
    # In the writing transaction: the rows it added stay locked (PostgreSQL) or the one
    # writer holds the file (SQLite), so no concurrent request slips past the same quota.
    rows = yield q.rows("usage_of_metrics", metering.tenant_id, period_of(now),
                        q.array(metrics))
    exceeded = metering.exceeded({r[0]: r[1] for r in rows})
    if exceeded is not None:
        raise exceeded


def usage(tenant_id: str, period: str) -> Script[dict[str, float]]:
    return {r[0]: r[1] for r in (yield q.rows("usage_of_period", tenant_id, period))}


def usage_since(tenant_id: str, first_period: str) -> Script[dict[str, dict[str, float]]]:
    out: dict[str, dict[str, float]] = {}
    for period, metric, value in (yield q.rows("usage_since", tenant_id, first_period)):
        out.setdefault(period, {})[metric] = value
    return out


def events(batch_id: str, after_id: int, limit: int) -> Script[list[dict[str, Any]]]:
    return [
        {"id": r[0], "at": r[1], "kind": r[2], "data": orjson.loads(r[3]) if r[3] else None}
        for r in (yield q.rows("events_of_batch", batch_id, after_id, limit))
    ]


class UsageOps(Runner):
    async def usage(self, tenant_id: str, period: str) -> dict[str, float]:
        return await self._read(usage, tenant_id, period)

    async def usage_since(self, tenant_id: str, first_period: str) -> dict[str, dict[str, float]]:
        """``{period: {metric: value}}`` of every period from ``first_period`` on."""
        return await self._read(usage_since, tenant_id, first_period)

    async def meter(self, metering: Metering, *, now: float) -> None:
        """Add a request's usage to the period of ``now`` and check its quotas, in one
        transaction; raises QuotaExceeded, having added nothing, if one is passed."""
        await self._write(meter, metering, now)

    async def events(self, batch_id: str, *, after_id: int, limit: int) -> list[dict[str, Any]]:
        return await self._read(events, batch_id, after_id, limit)
