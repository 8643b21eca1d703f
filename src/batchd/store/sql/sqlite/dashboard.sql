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
WHERE tenant_id = :tenant_id AND staging = 0
  AND (:owner IS NULL OR owner = :owner)
  AND (:status IS NULL OR status = :status)
  AND (:task IS NULL OR task = :task)
  AND (:since IS NULL OR created_at >= :since)
  AND (:until IS NULL OR created_at < :until)
  AND (:search IS NULL OR instr(CAST(metadata AS TEXT), :search) > 0)
  AND (:before_pk IS NULL OR pk < :before_pk)
ORDER BY pk DESC LIMIT :limit;

-- name: dash_items
-- The columns of core.txn.dashboard.ItemLine, in seq order after a seq.
SELECT id, seq, status, attempts, error, started_at, finished_at, n_records
FROM items
WHERE batch_pk = :pk AND seq > :after_seq AND status != 'staged'
  AND (:status IS NULL OR status = :status)
  AND (:text IS NULL OR instr(lower(CAST(error AS TEXT)), :text) > 0)
ORDER BY seq LIMIT :limit;

-- name: dash_unsuccessful_items
-- As dash_items, for failed or cancelled items only (the partial index items_unsuccessful).
SELECT id, seq, status, attempts, error, started_at, finished_at, n_records
FROM items
WHERE batch_pk = :pk AND status IN ('failed', 'cancelled') AND status = :status
  AND seq > :after_seq
  AND (:text IS NULL OR instr(lower(CAST(error AS TEXT)), :text) > 0)
ORDER BY seq LIMIT :limit;

-- name: dash_outcomes_over_time
-- Finished items per time slot of :step seconds from :t0, per final state.
SELECT CAST((finished_at - :t0) / :step AS INTEGER) AS slot, status, COUNT(*)
FROM items
WHERE batch_pk = :pk AND status IN ('succeeded', 'failed', 'cancelled')
  AND finished_at IS NOT NULL
GROUP BY slot, status;

-- name: dash_in_flight
-- Running items per worker (lease owner), of a tenant's batches (an owner's, if set), and
-- how many each started since :since.
SELECT i.lease_owner, COUNT(*), SUM(i.started_at >= :since)
FROM items i JOIN batches b ON b.pk = i.batch_pk
WHERE i.status = 'running' AND b.tenant_id = :tenant_id
  AND (:owner IS NULL OR b.owner = :owner)
GROUP BY i.lease_owner;
