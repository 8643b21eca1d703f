"""Metering and usage reads (SQLite): requests counted in the transactions of their effects."""

from __future__ import annotations

import sqlite3

from batchd.core.quotas import Metering
from batchd.store.sqlite import execution as ex


def meter(conn: sqlite3.Connection, metering: Metering, now: float) -> None:
    """Add ``metering``'s usage and check its quotas; raises QuotaExceeded (rolls back)."""
    ex.add_usage(conn, metering.tenant_id, now, **metering.add)
    check(conn, metering, now)


def check(conn: sqlite3.Connection, metering: Metering, now: float) -> None:
    metrics = metering.metrics
    if not metrics:
        return
    # Inside the write transaction: the one writer sees every committed addition.
    usage = dict(
        conn.execute(
            "SELECT metric, value FROM usage WHERE tenant_id = ? AND period = ? "
            f"AND metric IN ({','.join('?' * len(metrics))})",
            (metering.tenant_id, ex.period_of(now), *metrics),
        ).fetchall()
    )
    exceeded = metering.exceeded(usage)
    if exceeded is not None:
        raise exceeded


def usage_since(
    conn: sqlite3.Connection, tenant_id: str, first_period: str
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for period, metric, value in conn.execute(
        "SELECT period, metric, value FROM usage WHERE tenant_id = ? AND period >= ?",
        (tenant_id, first_period),
    ):
        out.setdefault(period, {})[metric] = value
    return out
