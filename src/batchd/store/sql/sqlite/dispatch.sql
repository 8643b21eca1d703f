-- Handing work to workers and taking their outcomes: claim, finish, heartbeat, reap.
-- SQLite has one writer: a whole claim is one transaction, and nothing needs row locks.

-- fragment: dispatching
-- A batch that hands out items: open or closed, neither stopped nor paused (what a claim
-- takes from, and what a reserved item may start in).
status IN ('open', 'closed') AND stop_reason IS NULL AND paused_at IS NULL

-- name: claim_candidates
-- The columns of core.scheduling.Candidate. Parameters: now; freed, the ids of batches
-- whose items the claimer finished but has not committed yet (their slots are free); the
-- tasks it may claim (core.scheduling.Claimable): all_tasks (any), else those of names[i]
-- at versions[i], and those defined over the API with one of kinds.
SELECT id, tenant_id, priority, parallelism, n_running, created_at, budget_usd IS NOT NULL
FROM batches
WHERE {dispatching} AND staging = 0
  AND n_queued > 0 AND run_after <= :now
  AND (n_running < parallelism OR id IN (SELECT value FROM json_each(:freed)))
  AND (max_output_bytes IS NULL OR out_buffer_bytes < max_output_bytes)
  AND (:all_tasks
       OR (task, version) IN (SELECT n.value, v.value
                              FROM json_each(:names) n JOIN json_each(:versions) v
                                ON v.key = n.key)
       OR EXISTS (SELECT 1 FROM task_defs d
                  WHERE d.name = batches.task AND d.version = batches.version
                    AND d.kind IN (SELECT value FROM json_each(:kinds))));

-- name: running_per_tenant
SELECT tenant_id, SUM(n_running) FROM batches
WHERE status IN ('open', 'closed') AND n_running > 0
GROUP BY tenant_id;

-- name: claim_unbudgeted
-- Not used on SQLite: PostgreSQL leases an unbudgeted batch's items in one statement (a
-- data-modifying CTE SQLite cannot run); SQLite's Store.concurrent_claims is false, so
-- its claims go step by step (claim_batch ... count_claimed).
SELECT NULL WHERE 0;

-- name: claim_batch
-- The columns of core.txn.dispatch.ClaimBatch: a batch still dispatching.
SELECT pk, parallelism, n_running, budget_usd, actual_usd, reserved_usd, task, version,
       runner, item_timeout_s, max_attempts, retry_backoff_s, records_per_item
FROM batches
WHERE id = ? AND {dispatching};

-- name: still_running_of
-- How many of these items (finished by the claimer, their outcomes not yet committed)
-- still count as running for it: the slots a claim may take again. Read after the
-- batch row is locked, so that no commit of theirs can land in between.
SELECT COUNT(*) FROM items
WHERE lease_owner = ? AND status = 'running' AND id IN (SELECT value FROM json_each(?));

-- name: ready_items
-- Parameters: batch pk, now, now, adopt, how many. An item some claimer holds in reserve
-- (queued, its lease live: see reserve_items) is not ready, unless the claimer adopts it
-- (one of its own it has no freed slot to start in).
SELECT id, est_usd FROM items
WHERE batch_pk = ? AND status = 'queued' AND run_after <= ?
  AND (lease_expires IS NULL OR lease_expires < ? OR id IN (SELECT value FROM json_each(?)))
ORDER BY seq LIMIT ?;

-- name: reserve_items
-- Parameters: owner, lease_expires, item ids. Held in reserve by the owner: still queued
-- (counted as queued, not running), the lease taken so that no other claimer takes them
-- while it lives, the fence moved on so that a stale holder's promotion is refused.
UPDATE items SET fence = fence + 1, lease_owner = ?, lease_expires = ?
WHERE id IN (SELECT value FROM json_each(?)) AND status = 'queued'
RETURNING id, seq, n_records, attempts, fence, est_usd, runner;

-- name: dispatching_batches
-- Of these batch ids, those still handing out items (what claim_batch requires).
SELECT id FROM batches
WHERE id IN (SELECT value FROM json_each(?)) AND {dispatching};

-- name: promote_items
-- Parameters: lease_expires; the promotions' item ids, fences and start times (arrays
-- of one length); the owner. Its reserved items started in freed slots run from then
-- on, if still held (fence, lease). Returns the ids of those promoted.
UPDATE items SET status = 'running', attempts = attempts + 1, lease_expires = ?1,
                 started_at = p.started
FROM (SELECT i.value AS id, f.value AS fence, s.value AS started
      FROM json_each(?2) i JOIN json_each(?3) f ON f.key = i.key
           JOIN json_each(?4) s ON s.key = i.key) AS p
WHERE items.id = p.id AND items.fence = p.fence AND items.lease_owner = ?5
  AND items.status = 'queued'
RETURNING items.id;

-- name: release_reserved
-- Parameters: owner, item ids. Items it held in reserve, given back to every claimer.
UPDATE items SET lease_owner = NULL, lease_expires = NULL
WHERE lease_owner = ? AND status = 'queued' AND id IN (SELECT value FROM json_each(?));

-- name: lease_items
-- Parameters: owner, lease_expires, now, item ids, the states an item may start from.
UPDATE items SET status = 'running', attempts = attempts + 1, fence = fence + 1,
                 lease_owner = ?, lease_expires = ?, started_at = ?
WHERE id IN (SELECT value FROM json_each(?)) AND status IN (SELECT value FROM json_each(?))
RETURNING id, seq, n_records, attempts, fence, est_usd, runner;

-- name: claimed_inputs
SELECT id, data FROM item_inputs WHERE id IN (SELECT value FROM json_each(?));

-- name: count_claimed
UPDATE batches SET n_running = n_running + ?, n_queued = n_queued - ?,
                   reserved_usd = reserved_usd + ?, started_at = COALESCE(started_at, ?)
WHERE pk = ?;

-- name: items_for_finish
-- The columns of core.accounting.LeasedItem, then webhook_url, webhook_event.
SELECT i.id, b.id, i.fence, i.status, i.cancel_requested, i.est_usd, i.n_records,
       b.stop_reason, b.tenant_id, i.size, b.deliver, b.fail_fast,
       i.webhook_url, i.webhook_event
FROM items i JOIN batches b ON b.pk = i.batch_pk
WHERE i.id IN (SELECT value FROM json_each(?));

-- name: record_attempts
-- Rows of core.accounting.GroupCommit.attempts: (outcome, error, usage, ended_at, id, fence),
-- each the attempt of an item still running it (as retry_items and finish_items, run next).
INSERT INTO item_attempts (item_id, attempt, outcome, error, usage, worker, started_at,
                           ended_at)
SELECT id, attempts, ?, ?, ?, lease_owner, started_at, ? FROM items
WHERE id = ? AND fence = ? AND status = 'running';

-- name: retry_items
-- Rows of core.accounting.GroupCommit.retries: (run_after, error, id, fence).
UPDATE items SET status = 'queued', run_after = ?, error = ?, lease_owner = NULL,
                 lease_expires = NULL
WHERE id = ? AND fence = ? AND status = 'running';

-- name: finish_items
-- Rows of core.accounting.GroupCommit.finals:
-- (status, error, usage, finished_at, compute_ms, id, fence).
UPDATE items SET status = ?, error = ?, usage = ?, finished_at = ?, compute_ms = ?,
                 lease_owner = NULL, lease_expires = NULL
WHERE id = ? AND fence = ? AND status = 'running';

-- name: put_outputs
INSERT OR REPLACE INTO item_outputs (id, data) VALUES (?, ?);

-- name: add_batch_delta
-- Parameters: core.accounting.BatchDelta's fields in their order, then the batch id.
UPDATE batches SET n_queued = n_queued + ?, n_running = n_running + ?,
    n_succeeded = n_succeeded + ?, n_failed = n_failed + ?, n_cancelled = n_cancelled + ?,
    r_succeeded = r_succeeded + ?, r_failed = r_failed + ?,
    reserved_usd = reserved_usd + ?, actual_usd = actual_usd + ?,
    tokens_in = tokens_in + ?, tokens_out = tokens_out + ?, out_bytes = out_bytes + ?,
    in_buffer_bytes = in_buffer_bytes + ?, out_buffer_bytes = out_buffer_bytes + ?,
    n_undelivered = n_undelivered + ?, r_undelivered = r_undelivered + ?,
    compute_ms = compute_ms + ?
WHERE id = ?;

-- name: record_worker
-- Parameters: id, info, started_at, heartbeat_at, claimed (the heartbeat before is kept).
INSERT INTO workers (id, info, started_at, heartbeat_at, claimed) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
    claimed = excluded.claimed, claimed_before = workers.claimed,
    claimed_before_at = workers.heartbeat_at;

-- name: renew_leases
-- Running items, and queued ones held in reserve.
UPDATE items SET lease_expires = ?
WHERE lease_owner = ? AND status IN ('running', 'queued');

-- name: renew_leases_of_items
UPDATE items SET lease_expires = ?
WHERE lease_owner = ? AND status IN ('running', 'queued')
  AND id IN (SELECT value FROM json_each(?));

-- name: cancel_requests
SELECT id FROM items WHERE lease_owner = ? AND status = 'running' AND cancel_requested = 1;

-- name: try_reaper_lock
-- One writer: every reaper runs alone already.
SELECT 1;

-- name: items_upkeep
-- SQLite plans without gathered statistics (none is kept), and its indexes keep no
-- entries of deleted or changed rows: nothing to do.
SELECT 0;

-- name: analyze_items
SELECT 1;

-- name: vacuum_items
SELECT 1;

-- name: expired_leases
SELECT i.id, i.fence, i.attempts, b.max_attempts, b.retry_backoff_s
FROM items i JOIN batches b ON b.pk = i.batch_pk
WHERE i.status = 'running' AND i.lease_expires < ?
ORDER BY i.id LIMIT 1000;

-- name: expired_batches
SELECT id FROM batches
WHERE status IN ('open', 'closed') AND expires_at IS NOT NULL AND expires_at < ?;

-- name: idle_batches
SELECT id FROM batches
WHERE status = 'open' AND idle_timeout_s IS NOT NULL AND last_activity_at + idle_timeout_s < ?;

-- name: staged_uploads
SELECT DISTINCT batch_pk, stage FROM items WHERE status = 'staged';

-- name: abandoned_batches
-- Batches still staging: their create request never finished.
SELECT pk FROM batches WHERE staging = 1 AND created_at < ?;

-- name: result_batch
SELECT pk FROM batches WHERE id = ?;

-- name: take_results
-- Finished, undelivered items of a batch, marked delivered (returned in no set order).
UPDATE items SET delivered = 1
WHERE id IN (SELECT id FROM items
             WHERE batch_pk = ? AND delivered = 0 AND status IN ('succeeded', 'failed')
             ORDER BY seq LIMIT ?)
RETURNING id, seq, rec0, n_records, status,
          (SELECT data FROM item_inputs d WHERE d.id = items.id),
          (SELECT data FROM item_outputs o WHERE o.id = items.id),
          error, ext_id, meta, compute_ms, usage;

-- name: release_results
-- Parameters: now, output bytes taken, items taken, records taken, batch pk.
UPDATE batches SET last_activity_at = ?, out_buffer_bytes = MAX(0, out_buffer_bytes - ?),
                   n_undelivered = n_undelivered - ?, r_undelivered = r_undelivered - ?
WHERE pk = ?;

-- name: stop_reasons_of_batches
-- Read after the items are locked: fresher than the join of items_for_finish.
SELECT id, stop_reason FROM batches WHERE id IN (SELECT value FROM json_each(?));
