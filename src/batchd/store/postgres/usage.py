"""Metering and usage reads (PostgreSQL): requests counted in the transactions of their effects."""

from __future__ import annotations

from batchd.core.quotas import Metering
from batchd.store.postgres import execution as ex
from batchd.store.postgres.execution import Conn


async def meter(conn: Conn, metering: Metering, now: float) -> None:
    """Add ``metering``'s usage and check its quotas; raises QuotaExceeded (rolls back)."""
    await ex.add_usage(conn, metering.tenant_id, now, **metering.add)
    await check(conn, metering, now)


async def check(conn: Conn, metering: Metering, now: float) -> None:
    metrics = metering.metrics
    if not metrics:
        return
    # The rows this transaction added to stay locked until it ends, so no concurrent
    # request can slip past the same quota between this read and the commit.
    cur = await conn.execute(
        "SELECT metric, value FROM usage WHERE tenant_id = %s AND period = %s "
        "AND metric = ANY(%s)",
        (metering.tenant_id, ex.period_of(now), metrics),
    )
    exceeded = metering.exceeded({m: v for m, v in await cur.fetchall()})
    if exceeded is not None:
        raise exceeded


async def usage_since(conn: Conn, tenant_id: str, first_period: str) -> dict[str, dict[str, float]]:
    cur = await conn.execute(
        "SELECT period, metric, value FROM usage WHERE tenant_id = %s AND period >= %s",
        (tenant_id, first_period),
    )
    out: dict[str, dict[str, float]] = {}
    for period, metric, value in await cur.fetchall():
        out.setdefault(period, {})[metric] = value
    return out
