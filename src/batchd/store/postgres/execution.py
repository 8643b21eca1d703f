"""Claim, finish, stop and reap on PostgreSQL.

Lock order, to stay free of deadlocks between many servers and workers: a
finishing transaction locks its item rows (by id) and then batch rows (by pk); a
claiming transaction locks one batch row and then items with ``SKIP LOCKED``, so it
never waits on an item. Anything that still deadlocks is retried by the caller.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg import AsyncConnection

from batchd.core import scheduling
from batchd.core.accounting import BatchDelta, cancelled_error, plan_group_commit
from batchd.core.scheduling import Candidate, retry_delay_s
from batchd.domain import states
from batchd.domain.models import ClaimedItem, Outcome
from batchd.domain.states import BatchStatus, StopReason
from batchd.store.postgres import webhooks

Conn = AsyncConnection[Any]
ACTIVE = "('open', 'closed')"
Q_DELTA = ", ".join(f"{c} = {c} + %s" for c in BatchDelta.columns())


def period_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m")


async def add_usage(conn: Conn, tenant_id: str, now: float, **metrics: float) -> None:
    rows = [(tenant_id, period_of(now), k, v) for k, v in sorted(metrics.items()) if v]
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO usage (tenant_id, period, metric, value) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (tenant_id, period, metric) "
                "DO UPDATE SET value = usage.value + excluded.value",
                rows,
            )


async def add_event(
    conn: Conn, tenant_id: str, batch_id: str | None, kind: str, now: float,
    data: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO events (at, tenant_id, batch_id, kind, data) VALUES (%s, %s, %s, %s, %s)",
        (now, tenant_id, batch_id, kind, orjson.dumps(data) if data else None),
    )


async def candidates(
    conn: Conn, now: float
) -> tuple[list[Candidate], dict[str, int], set[str]]:
    """Batches with work to hand out, running items per tenant, batches with a budget."""
    cur = await conn.execute(
        f"SELECT id, tenant_id, priority, parallelism, n_running, created_at, "
        f"budget_usd IS NOT NULL FROM batches "
        f"WHERE status IN {ACTIVE} AND NOT staging AND stop_reason IS NULL "
        f"AND n_queued > 0 AND n_running < parallelism AND run_after <= %s "
        f"AND (max_output_bytes IS NULL OR out_buffer_bytes < max_output_bytes)",
        (now,),
    )
    rows = await cur.fetchall()
    found = [
        Candidate(batch_id=r[0], tenant_id=r[1], priority=r[2], parallelism=r[3],
                  running=r[4], created_at=r[5])
        for r in rows
    ]
    budgeted = {r[0] for r in rows if r[6]}
    cur = await conn.execute(
        f"SELECT tenant_id, SUM(n_running) FROM batches WHERE status IN {ACTIVE} "
        f"AND n_running > 0 GROUP BY tenant_id"
    )
    return found, {t: int(n) for t, n in await cur.fetchall()}, budgeted


# Claiming from a batch without a budget, in one round trip: lock the batch row,
# take ready items (skipping any another claimer holds), lease them, count them.
Q_CLAIM = """
WITH b AS (
    SELECT pk, task, version, runner, item_timeout_s, max_attempts, retry_backoff_s,
           records_per_item, parallelism - n_running AS room
    FROM batches
    WHERE id = %(batch)s AND status IN ('open', 'closed') AND stop_reason IS NULL
    FOR UPDATE
), picked AS (
    SELECT id FROM items
    WHERE batch_pk = (SELECT pk FROM b) AND status = 'queued' AND run_after <= %(now)s
    ORDER BY seq LIMIT GREATEST(0, LEAST(%(want)s, (SELECT room FROM b)))
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE items i SET status = 'running', attempts = attempts + 1, fence = fence + 1,
        lease_owner = %(owner)s, lease_expires = %(until)s, started_at = %(now)s
    FROM picked WHERE i.id = picked.id
    RETURNING i.id, i.seq, i.n_records, i.attempts, i.fence, i.est_usd, i.runner
), counted AS (
    UPDATE batches SET n_running = n_running + (SELECT COUNT(*) FROM leased),
        n_queued = n_queued - (SELECT COUNT(*) FROM leased),
        reserved_usd = reserved_usd + (SELECT COALESCE(SUM(est_usd), 0) FROM leased),
        started_at = COALESCE(started_at, %(now)s)
    WHERE pk = (SELECT pk FROM b)
)
SELECT l.id, l.seq, l.n_records, l.attempts, l.fence, l.est_usd, d.data, b.task, b.version,
       COALESCE(l.runner, b.runner), b.item_timeout_s, b.max_attempts, b.retry_backoff_s,
       b.records_per_item
FROM leased l JOIN item_inputs d ON d.id = l.id CROSS JOIN b
"""


async def claim_unbudgeted(
    conn: Conn, c: Candidate, want: int, *, owner: str, now: float, lease_s: float,
) -> list[ClaimedItem]:
    cur = await conn.execute(
        Q_CLAIM,
        {"batch": c.batch_id, "now": now, "want": want, "owner": owner, "until": now + lease_s},
    )
    return [
        ClaimedItem(
            rowid=r[0], batch_id=c.batch_id, tenant_id=c.tenant_id, seq=r[1], n_records=r[2],
            records_per_item=r[13], attempts=r[3], fence=r[4], input=bytes(r[6]), task=r[7],
            version=r[8], runner=r[9], item_timeout_s=r[10], max_attempts=r[11],
            retry_backoff_s=r[12], est_usd=r[5],
        )
        for r in await cur.fetchall()
    ]


async def claim_from_batch(
    conn: Conn, c: Candidate, want: int, *, owner: str, now: float, lease_s: float,
) -> list[ClaimedItem]:
    """One transaction's worth: lock the batch row, take ready items, count them."""
    cur = await conn.execute(
        "SELECT pk, status, stop_reason, parallelism, n_running, budget_usd, actual_usd, "
        "reserved_usd, task, version, runner, item_timeout_s, max_attempts, retry_backoff_s, "
        "records_per_item FROM batches WHERE id = %s FOR UPDATE",
        (c.batch_id,),
    )
    b = await cur.fetchone()
    if b is None or b[1] not in ("open", "closed") or b[2] is not None:
        return []
    (pk, _, _, parallelism, running, budget, actual, reserved, task, version, runner,
     timeout_s, max_attempts, backoff_s, rpi) = b
    want = min(want, parallelism - running)  # fresh counts: other claimers may have run
    if want <= 0:
        return []
    cur = await conn.execute(
        "SELECT id, est_usd FROM items WHERE batch_pk = %s AND status = 'queued' "
        "AND run_after <= %s ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED",
        (pk, now, want),
    )
    ready = await cur.fetchall()
    if budget is not None:
        fit = scheduling.budget_fit([r[1] for r in ready], budget_usd=budget, actual_usd=actual,
                                    reserved_usd=reserved, running=running)
        if fit.exhausted:
            await stop(conn, c.batch_id, StopReason.BUDGET_EXCEEDED, None, now)
            return []
        ready = ready[: fit.n]
    if not ready:
        return []
    ids = [r[0] for r in ready]
    cur = await conn.execute(
        "UPDATE items SET status = 'running', attempts = attempts + 1, fence = fence + 1, "
        "lease_owner = %s, lease_expires = %s, started_at = %s "
        "WHERE id = ANY(%s) AND status = 'queued' "
        "RETURNING id, seq, n_records, attempts, fence, est_usd, runner",
        (owner, now + lease_s, now, ids),
    )
    got = await cur.fetchall()
    cur = await conn.execute("SELECT id, data FROM item_inputs WHERE id = ANY(%s)", (ids,))
    inputs = dict(await cur.fetchall())
    await conn.execute(
        "UPDATE batches SET n_running = n_running + %s, n_queued = n_queued - %s, "
        "reserved_usd = reserved_usd + %s, started_at = COALESCE(started_at, %s) WHERE pk = %s",
        (len(got), len(got), sum(r[5] for r in got), now, pk),
    )
    return [
        ClaimedItem(
            rowid=r[0], batch_id=c.batch_id, tenant_id=c.tenant_id, seq=r[1], n_records=r[2],
            records_per_item=rpi, attempts=r[3], fence=r[4], input=bytes(inputs[r[0]]),
            task=task, version=version, runner=r[6] or runner, item_timeout_s=timeout_s,
            max_attempts=max_attempts, retry_backoff_s=backoff_s, est_usd=r[5],
        )
        for r in got
    ]


async def finish(conn: Conn, outcomes: list[Outcome], now: float) -> int:
    if not outcomes:
        return 0
    ids = sorted({o.rowid for o in outcomes})
    cur = await conn.execute(
        "SELECT i.id, b.id, i.fence, i.status, i.cancel_requested, i.est_usd, i.n_records, "
        "b.stop_reason, b.tenant_id, i.size, b.deliver, i.webhook_url, i.webhook_event "
        "FROM items i JOIN batches b ON b.pk = i.batch_pk "
        "WHERE i.id = ANY(%s) ORDER BY i.id FOR UPDATE OF i",
        (ids,),
    )
    current: dict[int, tuple[Any, ...]] = {}
    hooks: dict[int, webhooks.Hook] = {}
    for r in await cur.fetchall():
        current[r[0]] = r[:11]
        if r[11] is not None:
            hooks[r[0]] = (r[8], r[1], r[0], r[12], r[11])
    plan = plan_group_commit(outcomes, current, now=now)
    # One statement per kind of change, whatever the group's size (arrays, not rows).
    if plan.retries:
        at, errs, ids_, fences = zip(*plan.retries, strict=True)
        await conn.execute(
            "UPDATE items i SET status = 'queued', run_after = u.at, error = u.error, "
            "lease_owner = NULL, lease_expires = NULL "
            "FROM unnest(%s::float8[], %s::bytea[], %s::bigint[], %s::bigint[]) "
            "AS u(at, error, id, fence) "
            "WHERE i.id = u.id AND i.fence = u.fence AND i.status = 'running'",
            (list(at), list(errs), list(ids_), list(fences)),
        )
    if plan.finals:
        st, errs, usages, fin, ms, ids_, fences = zip(*plan.finals, strict=True)
        await conn.execute(
            "UPDATE items i SET status = u.status, error = u.error, usage = u.usage, "
            "finished_at = u.fin, compute_ms = u.ms, lease_owner = NULL, lease_expires = NULL "
            "FROM unnest(%s::text[], %s::bytea[], %s::bytea[], %s::float8[], %s::float8[], "
            "%s::bigint[], %s::bigint[]) AS u(status, error, usage, fin, ms, id, fence) "
            "WHERE i.id = u.id AND i.fence = u.fence AND i.status = 'running'",
            (list(st), list(errs), list(usages), list(fin), list(ms), list(ids_),
             list(fences)),
        )
    if plan.outputs:
        out_ids, datas = zip(*plan.outputs, strict=True)
        await conn.execute(
            "INSERT INTO item_outputs (id, data) "
            "SELECT * FROM unnest(%s::bigint[], %s::bytea[]) "
            "ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            (list(out_ids), list(datas)),
        )
    if hooks:
        # The outbox message commits with the outcome it announces, or neither does.
        await webhooks.enqueue(
            conn, [hooks[f[5]] for f in plan.finals if f[5] in hooks], now
        )
    for batch_id in sorted(plan.deltas):  # sorted: one lock order for every finisher
        d = plan.deltas[batch_id]
        await conn.execute(f"UPDATE batches SET {Q_DELTA} WHERE id = %s", (*d.values(), batch_id))
    usage = plan.usage_by_tenant()
    for tenant_id in sorted(usage):
        await add_usage(conn, tenant_id, now, **usage[tenant_id])
    for batch_id in sorted(plan.deltas):
        if plan.deltas[batch_id].n_failed and await _fail_fast(conn, batch_id):
            await stop(conn, batch_id, StopReason.FAIL_FAST, None, now)
        await maybe_finish(conn, batch_id, now)
    return plan.applied


async def _fail_fast(conn: Conn, batch_id: str) -> bool:
    cur = await conn.execute(
        "SELECT fail_fast, stop_reason FROM batches WHERE id = %s", (batch_id,)
    )
    row = await cur.fetchone()
    return row is not None and bool(row[0]) and row[1] is None


async def stop(
    conn: Conn, batch_id: str, reason: str, detail: str | None, now: float, *,
    cancel_running: bool = True,
) -> bool:
    """Stop dispatching ``batch_id``: cancel queued items, flag running ones (if asked)."""
    if reason == StopReason.CANCELLED:
        target = BatchStatus.CANCELLED
    elif reason == StopReason.EXPIRED:
        target = BatchStatus.EXPIRED
    else:
        target = BatchStatus.CLOSED  # fail-fast and budget end partial/failed once drained
    sources = list(states.batch_sources(target))
    if target == BatchStatus.CLOSED:
        sources.append(BatchStatus.CLOSED.value)
    error = {"code": reason, "message": detail or reason.replace("_", " ")}
    cur = await conn.execute(
        "UPDATE batches SET status = %s, stop_reason = %s, error = %s, "
        "closed_at = COALESCE(closed_at, %s) "
        "WHERE id = %s AND status = ANY(%s) AND stop_reason IS NULL RETURNING tenant_id, pk",
        (target, reason, orjson.dumps(error), now, batch_id, sources),
    )
    row = await cur.fetchone()
    if row is None:
        return False
    tenant_id, pk = row
    cur = await conn.execute(
        "UPDATE items SET status = 'cancelled', error = %s, finished_at = %s "
        "WHERE batch_pk = %s AND status = 'queued' "
        "RETURNING size, id, webhook_url, webhook_event",
        (orjson.dumps(cancelled_error(reason)), now, pk),
    )
    sizes = await cur.fetchall()
    cancelled, size = len(sizes), sum(r[0] for r in sizes)
    await webhooks.enqueue(
        conn, [(tenant_id, batch_id, r[1], r[3], r[2]) for r in sizes if r[2] is not None], now
    )
    if cancel_running:
        await conn.execute(
            "UPDATE items SET cancel_requested = true WHERE batch_pk = %s "
            "AND status = 'running'",
            (pk,),
        )
    await conn.execute(
        "UPDATE batches SET n_queued = n_queued - %s, n_cancelled = n_cancelled + %s, "
        "in_buffer_bytes = in_buffer_bytes - %s WHERE pk = %s",
        (cancelled, cancelled, size, pk),
    )
    if reason == StopReason.CANCELLED:
        # Nothing is taken from a cancelled batch: its output buffer is released.
        await conn.execute(
            "UPDATE batches SET out_buffer_bytes = 0, n_undelivered = 0, r_undelivered = 0 "
            "WHERE pk = %s",
            (pk,),
        )
    await add_event(conn, tenant_id, batch_id, f"batch.{reason}", now, {"cancelled": cancelled})
    await maybe_finish(conn, batch_id, now)
    return True


async def maybe_finish(conn: Conn, batch_id: str, now: float) -> None:
    cur = await conn.execute(
        "SELECT finished_at, staging, n_queued, n_running, status, n_total, n_succeeded, "
        "n_failed, n_cancelled, r_total, r_failed, stop_reason, max_error_pct, tenant_id, "
        "webhook_url, webhook_event FROM batches WHERE id = %s",
        (batch_id,),
    )
    b = await cur.fetchone()
    if b is None or b[0] is not None or b[1]:
        return
    if b[2] or b[3] or b[4] == BatchStatus.OPEN:
        return
    status = states.final_status(
        states.Tally(total=b[5], succeeded=b[6], failed=b[7], cancelled=b[8],
                     records_total=b[9], records_failed=b[10]),
        stop_reason=b[11], max_error_pct=b[12],
    )
    await conn.execute(
        "UPDATE batches SET status = %s, finished_at = %s WHERE id = %s", (status, now, batch_id)
    )
    await add_event(conn, b[13], batch_id, "batch.finished", now, {"status": status})
    if b[14] is not None:
        await webhooks.enqueue(conn, [(b[13], batch_id, None, b[15], b[14])], now)


async def expired_leases(conn: Conn, now: float, retry_backoff_max_s: float) -> list[Outcome]:
    cur = await conn.execute(
        "SELECT i.id, i.fence, i.attempts, b.max_attempts, b.retry_backoff_s FROM items i "
        "JOIN batches b ON b.pk = i.batch_pk "
        "WHERE i.status = 'running' AND i.lease_expires < %s ORDER BY i.id LIMIT 1000",
        (now,),
    )
    outcomes = []
    for item_id, fence, attempts, max_attempts, backoff_s in await cur.fetchall():
        lost = {"code": "lease_expired", "message": "the worker running this item stopped"}
        if attempts >= max_attempts:
            outcomes.append(Outcome(rowid=item_id, fence=fence, status="failed", error=lost))
        else:
            delay = retry_delay_s(attempts, base_s=backoff_s, max_s=retry_backoff_max_s)
            outcomes.append(Outcome(rowid=item_id, fence=fence, status="queued", error=lost,
                                    retry_at=now + delay))
    return outcomes


async def expire_batches(conn: Conn, now: float) -> None:
    cur = await conn.execute(
        f"SELECT id FROM batches WHERE status IN {ACTIVE} AND expires_at IS NOT NULL "
        f"AND expires_at < %s",
        (now,),
    )
    for (batch_id,) in await cur.fetchall():
        await stop(conn, batch_id, StopReason.EXPIRED, "the batch expired", now)


async def close_idle(conn: Conn, now: float) -> None:
    cur = await conn.execute(
        "SELECT id FROM batches WHERE status = 'open' AND idle_timeout_s IS NOT NULL "
        "AND last_activity_at + idle_timeout_s < %s",
        (now,),
    )
    for (batch_id,) in await cur.fetchall():
        await close(conn, batch_id, now, reason="timeout")


async def close(conn: Conn, batch_id: str, now: float, *, reason: str | None) -> bool:
    cur = await conn.execute(
        "UPDATE batches SET status = 'closed', closed_at = %s, close_reason = %s "
        "WHERE id = %s AND status = 'open' RETURNING tenant_id",
        (now, reason, batch_id),
    )
    r = await cur.fetchone()
    if r is None:
        return False
    await add_event(conn, r[0], batch_id, "batch.closed", now,
                    {"reason": reason} if reason else None)
    await maybe_finish(conn, batch_id, now)
    return True


async def take_results(conn: Conn, batch_id: str, limit: int, now: float) -> list[Any]:
    """Finished, undelivered items (oldest first), marked delivered; frees the output buffer."""
    cur = await conn.execute("SELECT pk FROM batches WHERE id = %s", (batch_id,))
    b = await cur.fetchone()
    if b is None:
        return []
    cur = await conn.execute(
        "WITH taken AS ("
        "  SELECT id FROM items WHERE batch_pk = %s AND delivered = false "
        "  AND status IN ('succeeded', 'failed') ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED"
        "), marked AS ("
        "  UPDATE items i SET delivered = true FROM taken WHERE i.id = taken.id "
        "  RETURNING i.id, i.seq, i.rec0, i.n_records, i.status, i.error, i.ext_id, i.meta, "
        "  i.compute_ms"
        ") SELECT m.id, m.seq, m.rec0, m.n_records, m.status, d.data, o.data, m.error, "
        "m.ext_id, m.meta, m.compute_ms FROM marked m JOIN item_inputs d ON d.id = m.id "
        "LEFT JOIN item_outputs o ON o.id = m.id ORDER BY m.seq",
        (b[0], limit),
    )
    rows = await cur.fetchall()
    await conn.execute(
        "UPDATE batches SET last_activity_at = %s, "
        "out_buffer_bytes = GREATEST(0, out_buffer_bytes - %s), "
        "n_undelivered = n_undelivered - %s, r_undelivered = r_undelivered - %s WHERE pk = %s",
        (now, sum(len(r[6] or b"") for r in rows), len(rows), sum(r[3] for r in rows), b[0]),
    )
    return rows


async def drop_abandoned_uploads(conn: Conn, older_than: float) -> None:
    cur = await conn.execute("SELECT DISTINCT batch_pk, stage FROM items WHERE status = 'staged'")
    for batch_pk, stage in await cur.fetchall():
        if float(stage.split("-", 1)[0]) < older_than:
            await delete_items(conn, "batch_pk = %s AND status = 'staged' AND stage = %s",
                               batch_pk, stage)
    cur = await conn.execute(
        "SELECT pk FROM batches WHERE staging AND created_at < %s", (older_than,)
    )
    for (batch_pk,) in await cur.fetchall():
        await delete_items(conn, "batch_pk = %s", batch_pk)
        await conn.execute("DELETE FROM batches WHERE pk = %s", (batch_pk,))


async def delete_items(conn: Conn, where: str, *args: Any) -> None:
    """Delete items matching ``where`` together with their payloads."""
    for table in ("item_inputs", "item_outputs"):
        await conn.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM items WHERE {where})",  # type: ignore[arg-type]
            args,
        )
    await conn.execute(f"DELETE FROM items WHERE {where}", args)  # type: ignore[arg-type]
