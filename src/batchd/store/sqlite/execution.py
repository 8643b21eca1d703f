"""Claim, finish, stop and reap: the transactions of the execution path (SQLite)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

import orjson

from batchd.core import scheduling
from batchd.core.accounting import BatchDelta, cancelled_error, plan_group_commit
from batchd.core.scheduling import Candidate, plan_claims, retry_delay_s
from batchd.domain import states
from batchd.domain.models import ClaimedItem, Outcome
from batchd.domain.states import BatchStatus, ItemStatus, StopReason
from batchd.store.sqlite import webhooks

ACTIVE = "('open', 'closed')"

Q_CANDIDATES = f"""
SELECT pk, id, tenant_id, priority, parallelism, n_running, created_at, budget_usd,
       actual_usd, reserved_usd, task, version, runner, item_timeout_s, max_attempts,
       retry_backoff_s, records_per_item
FROM batches
WHERE status IN {ACTIVE} AND staging = 0 AND stop_reason IS NULL
  AND n_queued > 0 AND n_running < parallelism AND run_after <= ?
  AND (max_output_bytes IS NULL OR out_buffer_bytes < max_output_bytes)
"""
Q_TENANT_RUNNING = f"""
SELECT tenant_id, SUM(n_running) FROM batches WHERE status IN {ACTIVE} AND n_running > 0
GROUP BY tenant_id
"""
Q_READY = """
SELECT id, est_usd FROM items
WHERE batch_pk = ? AND status = 'queued' AND run_after <= ? ORDER BY seq LIMIT ?
"""
Q_DELTA = ", ".join(f"{c} = {c} + ?" for c in BatchDelta.columns())


def period_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m")


def add_usage(conn: sqlite3.Connection, tenant_id: str, now: float, **metrics: float) -> None:
    period = period_of(now)
    conn.executemany(
        "INSERT INTO usage (tenant_id, period, metric, value) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (tenant_id, period, metric) DO UPDATE SET value = value + excluded.value",
        [(tenant_id, period, k, v) for k, v in metrics.items() if v],
    )


def add_event(
    conn: sqlite3.Connection, tenant_id: str, batch_id: str | None, kind: str, now: float,
    data: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO events (at, tenant_id, batch_id, kind, data) VALUES (?, ?, ?, ?, ?)",
        (now, tenant_id, batch_id, kind, orjson.dumps(data) if data else None),
    )


def claim(
    conn: sqlite3.Connection, owner: str, limit: int, now: float, lease_s: float, tenant_cap: int
) -> list[ClaimedItem]:
    rows = {r["id"]: r for r in conn.execute(Q_CANDIDATES, (now,))}
    if not rows:
        return []
    tenant_running = {t: int(n) for t, n in conn.execute(Q_TENANT_RUNNING)}
    candidates = [
        Candidate(
            batch_id=r["id"], tenant_id=r["tenant_id"], priority=r["priority"],
            parallelism=r["parallelism"], running=r["n_running"], created_at=r["created_at"],
        )
        for r in rows.values()
    ]
    claimed: list[ClaimedItem] = []
    lease_until = now + lease_s

    def take(c: Candidate, want: int) -> int:
        b = rows[c.batch_id]
        ready = conn.execute(Q_READY, (b["pk"], now, want)).fetchall()
        if b["budget_usd"] is not None:
            ready = _within_budget(conn, b, ready, running=c.running, now=now)
        if not ready:
            return 0
        marks = ",".join("?" * len(ready))
        got = conn.execute(
            f"UPDATE items SET status = 'running', attempts = attempts + 1, fence = fence + 1, "
            f"lease_owner = ?, lease_expires = ?, started_at = ? "
            f"WHERE id IN ({marks}) AND status IN {_sources(ItemStatus.RUNNING)} "
            f"RETURNING id, seq, n_records, attempts, fence, est_usd, runner",
            (owner, lease_until, now, *[r[0] for r in ready]),
        ).fetchall()
        inputs = dict(
            conn.execute(
                f"SELECT id, data FROM item_inputs WHERE id IN ({marks})", [r[0] for r in ready]
            ).fetchall()
        )
        est = sum(r["est_usd"] for r in got)
        conn.execute(
            "UPDATE batches SET n_running = n_running + ?, n_queued = n_queued - ?, "
            "reserved_usd = reserved_usd + ?, started_at = COALESCE(started_at, ?) WHERE id = ?",
            (len(got), len(got), est, now, c.batch_id),
        )
        for r in got:
            claimed.append(
                ClaimedItem(
                    rowid=r["id"], batch_id=c.batch_id, tenant_id=c.tenant_id, seq=r["seq"],
                    n_records=r["n_records"], records_per_item=b["records_per_item"],
                    attempts=r["attempts"], fence=r["fence"], input=inputs[r["id"]],
                    task=b["task"], version=b["version"], runner=r["runner"] or b["runner"],
                    item_timeout_s=b["item_timeout_s"], max_attempts=b["max_attempts"],
                    retry_backoff_s=b["retry_backoff_s"], est_usd=r["est_usd"],
                )
            )
        return len(got)

    plan_claims(
        candidates, limit=limit, tenant_running=tenant_running, tenant_cap=tenant_cap, take=take
    )
    return claimed


def _within_budget(
    conn: sqlite3.Connection, b: sqlite3.Row, ready: list[sqlite3.Row], *, running: int, now: float
) -> list[sqlite3.Row]:
    # Not from ``b``: that row predates this claim, which may deal the batch several shares.
    budget, actual, reserved = conn.execute(
        "SELECT budget_usd, actual_usd, reserved_usd FROM batches WHERE id = ?", (b["id"],)
    ).fetchone()
    fit = scheduling.budget_fit([r["est_usd"] for r in ready], budget_usd=budget,
                                actual_usd=actual, reserved_usd=reserved, running=running)
    if fit.exhausted:
        stop(conn, b["id"], StopReason.BUDGET_EXCEEDED, None, now)
    return ready[: fit.n]


def _sources(target: ItemStatus) -> str:
    return "(" + ", ".join(f"'{s}'" for s in states.item_sources(target)) + ")"


def finish(conn: sqlite3.Connection, outcomes: list[Outcome], now: float) -> int:
    if not outcomes:
        return 0
    ids = [o.rowid for o in outcomes]
    # Plain tuples on the hot path: (id, batch, fence, status, cancel, est, n, stop, tenant).
    cur = conn.cursor()
    cur.row_factory = None
    current: dict[int, tuple[Any, ...]] = {}
    hooks: dict[int, webhooks.Hook] = {}
    for start in range(0, len(ids), 900):
        part = ids[start : start + 900]
        marks = ",".join("?" * len(part))
        for r in cur.execute(
            "SELECT i.id, b.id, i.fence, i.status, i.cancel_requested, i.est_usd, "
            "i.n_records, b.stop_reason, b.tenant_id, i.size, b.deliver, i.webhook_url, "
            f"i.webhook_event FROM items i JOIN batches b "
            f"ON b.pk = i.batch_pk WHERE i.id IN ({marks})",
            part,
        ):
            current[r[0]] = r[:11]
            if r[11] is not None:
                hooks[r[0]] = (r[8], r[1], r[0], r[12], r[11])
    plan = plan_group_commit(outcomes, current, now=now)
    if plan.retries:
        conn.executemany(
            "UPDATE items SET status = 'queued', run_after = ?, error = ?, lease_owner = NULL, "
            "lease_expires = NULL WHERE id = ? AND fence = ? AND status = 'running'",
            plan.retries,
        )
    if plan.finals:
        conn.executemany(
            "UPDATE items SET status = ?, error = ?, usage = ?, finished_at = ?, compute_ms = ?, "
            "lease_owner = NULL, lease_expires = NULL "
            "WHERE id = ? AND fence = ? AND status = 'running'",
            plan.finals,
        )
    if plan.outputs:
        conn.executemany(
            "INSERT OR REPLACE INTO item_outputs (id, data) VALUES (?, ?)", plan.outputs
        )
    if hooks:
        # The outbox message commits with the outcome it announces, or neither does.
        webhooks.enqueue(conn, (hooks[f[5]] for f in plan.finals if f[5] in hooks), now)
    for batch_id, d in plan.deltas.items():
        conn.execute(f"UPDATE batches SET {Q_DELTA} WHERE id = ?", (*d.values(), batch_id))
    for tenant_id, metrics in plan.usage_by_tenant().items():
        add_usage(conn, tenant_id, now, **metrics)
    for batch_id, d in plan.deltas.items():
        if d.n_failed and _fail_fast(conn, batch_id):
            stop(conn, batch_id, StopReason.FAIL_FAST, None, now)
        maybe_finish(conn, batch_id, now)
    return plan.applied


def _fail_fast(conn: sqlite3.Connection, batch_id: str) -> bool:
    row = conn.execute(
        "SELECT fail_fast, stop_reason FROM batches WHERE id = ?", (batch_id,)
    ).fetchone()
    return bool(row["fail_fast"]) and row["stop_reason"] is None


def stop(
    conn: sqlite3.Connection, batch_id: str, reason: str, detail: str | None, now: float,
    *, cancel_running: bool = True,
) -> bool:
    """Stop dispatching ``batch_id``: cancel queued items, flag running ones (if asked)."""
    if reason == StopReason.CANCELLED:
        target = BatchStatus.CANCELLED
    elif reason == StopReason.EXPIRED:
        target = BatchStatus.EXPIRED
    else:
        target = BatchStatus.CLOSED  # fail-fast and budget end partial/failed once drained
    sources = states.batch_sources(target)
    if target == BatchStatus.CLOSED:
        sources = (*sources, BatchStatus.CLOSED.value)
    marks = ",".join("?" * len(sources))
    error = {"code": reason, "message": detail or reason.replace("_", " ")}
    row = conn.execute(
        f"UPDATE batches SET status = ?, stop_reason = ?, error = ?, "
        f"closed_at = COALESCE(closed_at, ?) "
        f"WHERE id = ? AND status IN ({marks}) AND stop_reason IS NULL RETURNING tenant_id, pk",
        (target, reason, orjson.dumps(error), now, batch_id, *sources),
    ).fetchone()
    if row is None:
        return False
    cancelled, size = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM items "
        "WHERE batch_pk = ? AND status = 'queued'",
        (row["pk"],),
    ).fetchone()
    webhooks.enqueue(conn, (
        (row["tenant_id"], batch_id, r[0], r[2], r[1])
        for r in conn.execute(
            "SELECT id, webhook_url, webhook_event FROM items WHERE batch_pk = ? "
            "AND status = 'queued' AND webhook_url IS NOT NULL",
            (row["pk"],),
        ).fetchall()
    ), now)
    conn.execute(
        "UPDATE items SET status = 'cancelled', error = ?, finished_at = ? "
        "WHERE batch_pk = ? AND status = 'queued'",
        (orjson.dumps(cancelled_error(reason)), now, row["pk"]),
    )
    if cancel_running:
        conn.execute(
            "UPDATE items SET cancel_requested = 1 WHERE batch_pk = ? AND status = 'running'",
            (row["pk"],),
        )
    conn.execute(
        "UPDATE batches SET n_queued = n_queued - ?, n_cancelled = n_cancelled + ?, "
        "in_buffer_bytes = in_buffer_bytes - ? WHERE id = ?",
        (cancelled, cancelled, size, batch_id),
    )
    if reason == StopReason.CANCELLED:
        # Nothing is taken from a cancelled batch: its output buffer is released.
        conn.execute(
            "UPDATE batches SET out_buffer_bytes = 0, n_undelivered = 0, r_undelivered = 0 "
            "WHERE id = ?",
            (batch_id,),
        )
    add_event(conn, row["tenant_id"], batch_id, f"batch.{reason}", now, {"cancelled": cancelled})
    maybe_finish(conn, batch_id, now)
    return True


def maybe_finish(conn: sqlite3.Connection, batch_id: str, now: float) -> None:
    b = conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
    if b is None or b["finished_at"] is not None or b["staging"]:
        return
    if b["n_queued"] or b["n_running"] or b["status"] == BatchStatus.OPEN:
        return
    status = states.final_status(
        states.Tally(
            total=b["n_total"], succeeded=b["n_succeeded"], failed=b["n_failed"],
            cancelled=b["n_cancelled"], records_total=b["r_total"], records_failed=b["r_failed"],
        ),
        stop_reason=b["stop_reason"],
        max_error_pct=b["max_error_pct"],
    )
    conn.execute(
        "UPDATE batches SET status = ?, finished_at = ? WHERE id = ?", (status, now, batch_id)
    )
    add_event(conn, b["tenant_id"], batch_id, "batch.finished", now, {"status": status})
    if b["webhook_url"] is not None:
        webhooks.enqueue(
            conn, [(b["tenant_id"], batch_id, None, b["webhook_event"], b["webhook_url"])], now
        )


def reap(
    conn: sqlite3.Connection, now: float, retry_backoff_max_s: float, staging_ttl_s: float
) -> int:
    expired = conn.execute(
        "SELECT i.id, i.fence, i.attempts, b.max_attempts, b.retry_backoff_s FROM items i "
        "JOIN batches b ON b.pk = i.batch_pk "
        "WHERE i.status = 'running' AND i.lease_expires < ? LIMIT 1000",
        (now,),
    ).fetchall()
    outcomes = []
    for r in expired:
        lost = {"code": "lease_expired", "message": "the worker running this item stopped"}
        if r["attempts"] >= r["max_attempts"]:
            outcomes.append(Outcome(rowid=r["id"], fence=r["fence"], status="failed", error=lost))
        else:
            delay = retry_delay_s(
                r["attempts"], base_s=r["retry_backoff_s"], max_s=retry_backoff_max_s
            )
            outcomes.append(
                Outcome(
                    rowid=r["id"], fence=r["fence"], status="queued", error=lost,
                    retry_at=now + delay,
                )
            )
    n = finish(conn, outcomes, now)
    for (batch_id,) in conn.execute(
        f"SELECT id FROM batches WHERE status IN {ACTIVE} AND expires_at IS NOT NULL "
        "AND expires_at < ?",
        (now,),
    ).fetchall():
        stop(conn, batch_id, StopReason.EXPIRED, "the batch expired", now)
    for (batch_id,) in conn.execute(
        "SELECT id FROM batches WHERE status = 'open' AND idle_timeout_s IS NOT NULL "
        "AND last_activity_at + idle_timeout_s < ?",
        (now,),
    ).fetchall():
        close(conn, batch_id, now, reason="timeout")
    _drop_abandoned_uploads(conn, now - staging_ttl_s)
    return n


def close(conn: sqlite3.Connection, batch_id: str, now: float, *, reason: str | None) -> bool:
    r = conn.execute(
        "UPDATE batches SET status = 'closed', closed_at = ?, close_reason = ? "
        "WHERE id = ? AND status = 'open' RETURNING tenant_id",
        (now, reason, batch_id),
    ).fetchone()
    if r is None:
        return False
    add_event(conn, r["tenant_id"], batch_id, "batch.closed", now,
              {"reason": reason} if reason else None)
    maybe_finish(conn, batch_id, now)
    return True


def take_results(
    conn: sqlite3.Connection, batch_id: str, limit: int, now: float
) -> list[tuple[Any, ...]]:
    """Finished, undelivered items (oldest first), marked delivered; frees the output buffer."""
    b = conn.execute("SELECT pk FROM batches WHERE id = ?", (batch_id,)).fetchone()
    if b is None:
        return []
    rows = conn.execute(
        "SELECT i.id, i.seq, i.rec0, i.n_records, i.status, d.data, o.data, i.error, i.ext_id, "
        "i.meta, i.compute_ms FROM items i JOIN item_inputs d ON d.id = i.id "
        "LEFT JOIN item_outputs o ON o.id = i.id "
        "WHERE i.batch_pk = ? AND i.delivered = 0 AND i.status IN ('succeeded', 'failed') "
        "ORDER BY i.seq LIMIT ?",
        (b["pk"], limit),
    ).fetchall()
    conn.execute("UPDATE batches SET last_activity_at = ? WHERE pk = ?", (now, b["pk"]))
    if not rows:
        return []
    conn.executemany("UPDATE items SET delivered = 1 WHERE id = ?", [(r[0],) for r in rows])
    conn.execute(
        "UPDATE batches SET out_buffer_bytes = MAX(0, out_buffer_bytes - ?), "
        "n_undelivered = n_undelivered - ?, r_undelivered = r_undelivered - ? WHERE pk = ?",
        (sum(len(r[6] or b"") for r in rows), len(rows), sum(r[3] for r in rows), b["pk"]),
    )
    return [tuple(r) for r in rows]


def _drop_abandoned_uploads(conn: sqlite3.Connection, older_than: float) -> None:
    for batch_pk, stage in conn.execute(
        "SELECT DISTINCT batch_pk, stage FROM items WHERE status = 'staged'"
    ).fetchall():
        if float(stage.split("-", 1)[0]) < older_than:
            delete_items(conn, "batch_pk = ? AND status = 'staged' AND stage = ?", batch_pk, stage)
    # A batch still staging belongs to a create request that never finished.
    for (batch_pk,) in conn.execute(
        "SELECT pk FROM batches WHERE staging = 1 AND created_at < ?", (older_than,)
    ).fetchall():
        delete_items(conn, "batch_pk = ?", batch_pk)
        conn.execute("DELETE FROM batches WHERE pk = ?", (batch_pk,))


def delete_items(conn: sqlite3.Connection, where: str, *args: Any) -> None:
    """Delete items matching ``where`` together with their payloads."""
    for table in ("item_inputs", "item_outputs"):
        conn.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM items WHERE {where})", args)
    conn.execute(f"DELETE FROM items WHERE {where}", args)
