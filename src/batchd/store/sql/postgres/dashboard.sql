-- The dashboard's reads (core/dashboard.py): batches with more filters than the API's
-- list, a batch's items without their payloads, and a batch's outcomes over time.
-- A NULL filter matches every row.

-- name: dash_batches
-- A batch row (core.txn.reads.batch_row), newest first, before a pk.
SELECT pk, id, tenant_id, owner, task, version, runner, status, stop_reason,
       records_per_item, priority, parallelism, fail_fast, max_error_pct, budget_usd,
       run_after, item_timeout_s, max_attempts, expires_at, metadata, error, n_total,
       n_queued, n_running, n_succeeded, n_failed, n_cancelled, r_total, r_succeeded,
       r_failed, est_usd, reserved_usd, actual_usd, tokens_in, tokens_out, in_bytes,
       out_bytes, created_at, started_at, closed_at, finished_at, idempotency_key,
       request_hash, max_input_bytes, max_output_bytes, in_buffer_bytes, out_buffer_bytes,
       n_undelivered, r_undelivered, compute_ms, deliver, idle_timeout_s, last_activity_at,
       close_reason, webhook_url, webhook_event, paused_at
FROM batches
WHERE tenant_id = %(tenant_id)s AND NOT staging
  AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(since)s::float8 IS NULL OR created_at >= %(since)s)
  AND (%(until)s::float8 IS NULL OR created_at < %(until)s)
  AND (%(search)s::text IS NULL OR strpos(convert_from(metadata, 'UTF8'), %(search)s) > 0)
  AND (%(before_pk)s::bigint IS NULL OR pk < %(before_pk)s)
ORDER BY pk DESC LIMIT %(limit)s;

-- name: dash_items
-- The columns of core.txn.dashboard.ItemLine, in seq order after a seq.
SELECT id, seq, status, attempts, error, started_at, finished_at, n_records
FROM items
WHERE batch_pk = %(pk)s AND seq > %(after_seq)s AND status != 'staged'
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(text)s::text IS NULL
       OR strpos(lower(convert_from(error, 'UTF8')), %(text)s) > 0)
ORDER BY seq LIMIT %(limit)s;

-- name: dash_unsuccessful_items
-- As dash_items, for failed or cancelled items only (the partial index items_unsuccessful).
SELECT id, seq, status, attempts, error, started_at, finished_at, n_records
FROM items
WHERE batch_pk = %(pk)s AND status IN ('failed', 'cancelled') AND status = %(status)s
  AND seq > %(after_seq)s
  AND (%(text)s::text IS NULL
       OR strpos(lower(convert_from(error, 'UTF8')), %(text)s) > 0)
ORDER BY seq LIMIT %(limit)s;

-- name: dash_outcomes_over_time
-- Finished items per time slot of :step seconds from :t0, per final state.
SELECT floor((finished_at - %(t0)s) / %(step)s)::int AS slot, status, COUNT(*)
FROM items
WHERE batch_pk = %(pk)s AND status IN ('succeeded', 'failed', 'cancelled')
  AND finished_at IS NOT NULL
GROUP BY slot, status;

-- name: dash_in_flight
-- Running items per worker (lease owner), of a tenant's batches (an owner's, if set), and
-- how many each started since :since.
SELECT i.lease_owner, COUNT(*), COUNT(*) FILTER (WHERE i.started_at >= %(since)s)
FROM items i JOIN batches b ON b.pk = i.batch_pk
WHERE i.status = 'running' AND b.tenant_id = %(tenant_id)s
  AND (%(owner)s::text IS NULL OR b.owner = %(owner)s)
GROUP BY i.lease_owner;
