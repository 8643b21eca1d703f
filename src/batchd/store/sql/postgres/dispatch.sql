-- Handing work to workers and taking their outcomes: claim, finish, heartbeat, reap.
--
-- Lock order, to stay free of deadlocks between many servers and workers: a finishing
-- transaction locks its item rows (by id) and then batch rows (by id, sorted); a
-- claiming transaction locks one batch row and then items with SKIP LOCKED, so it
-- never waits on an item. Anything that still deadlocks is retried by the store.

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
WHERE {dispatching} AND NOT staging
  AND n_queued > 0 AND run_after <= %(now)s
  AND (n_running < parallelism OR id = ANY(%(freed)s::text[]))
  AND (max_output_bytes IS NULL OR out_buffer_bytes < max_output_bytes)
  AND (%(all_tasks)s
       OR (task, version) IN (SELECT * FROM unnest(%(names)s::text[], %(versions)s::text[]))
       OR EXISTS (SELECT 1 FROM task_defs d
                  WHERE d.name = batches.task AND d.version = batches.version
                    AND d.kind = ANY(%(kinds)s::text[])));

-- name: running_per_tenant
SELECT tenant_id, SUM(n_running) FROM batches
WHERE status IN ('open', 'closed') AND n_running > 0
GROUP BY tenant_id;

-- name: claim_unbudgeted
-- A claim from a batch without a budget, in one round trip: lock the batch row, take
-- ready items (skipping any another claimer holds), lease them, count them.
-- Returns the columns of core.txn.dispatch.claimed_item's rows. The picked items are
-- leased and read by key (ANY of an array, a subquery per row): the planner cannot tell
-- how many the LIMIT takes, guesses a tenth of the batch, and for a batch of a million
-- items hashed all of items and item_inputs on every claim (0.9 s) instead.
WITH b AS (
    SELECT pk, task, version, runner, item_timeout_s, max_attempts, retry_backoff_s,
           records_per_item, parallelism - n_running AS room
    FROM batches
    WHERE id = %(batch)s AND {dispatching}
    FOR UPDATE
), picked AS (
    SELECT id FROM items
    WHERE batch_pk = (SELECT pk FROM b) AND status = 'queued' AND run_after <= %(now)s
      AND (lease_expires IS NULL OR lease_expires < %(now)s OR id = ANY(%(adopt)s))
    ORDER BY seq LIMIT GREATEST(0, LEAST(%(want)s, (SELECT room FROM b)))
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE items i SET status = 'running', attempts = attempts + 1, fence = fence + 1,
        lease_owner = %(owner)s, lease_expires = %(until)s, started_at = %(started)s
    WHERE i.id = ANY(ARRAY(SELECT id FROM picked)) AND i.status = 'queued'
    RETURNING i.id, i.seq, i.n_records, i.attempts, i.fence, i.est_usd, i.runner
), counted AS (
    UPDATE batches SET n_running = n_running + (SELECT COUNT(*) FROM leased),
        n_queued = n_queued - (SELECT COUNT(*) FROM leased),
        reserved_usd = reserved_usd + (SELECT COALESCE(SUM(est_usd), 0) FROM leased),
        started_at = COALESCE(started_at, %(now)s)
    WHERE pk = (SELECT pk FROM b)
)
SELECT l.id, l.seq, l.n_records, l.attempts, l.fence, l.est_usd, COALESCE(l.runner, b.runner),
       (SELECT d.data FROM item_inputs d WHERE d.id = l.id), b.task, b.version,
       b.item_timeout_s, b.max_attempts, b.retry_backoff_s, b.records_per_item
FROM leased l CROSS JOIN b;

-- name: claim_batch
-- The columns of core.txn.dispatch.ClaimBatch: a batch still dispatching, locked.
SELECT pk, parallelism, n_running, budget_usd, actual_usd, reserved_usd, task, version,
       runner, item_timeout_s, max_attempts, retry_backoff_s, records_per_item
FROM batches
WHERE id = %s AND {dispatching}
FOR UPDATE;

-- name: still_running_of
-- How many of these items (finished by the claimer, their outcomes not yet committed)
-- still count as running for it: the slots a claim may take again. Read after the
-- batch row is locked, so that no commit of theirs can land in between.
SELECT COUNT(*) FROM items
WHERE lease_owner = %s AND status = 'running' AND id = ANY(%s);

-- name: ready_items
-- Parameters: batch pk, now, now, adopt, how many. An item some claimer holds in reserve
-- (queued, its lease live: see reserve_items) is not ready, unless the claimer adopts it
-- (one of its own it has no freed slot to start in).
SELECT id, est_usd FROM items
WHERE batch_pk = %s AND status = 'queued' AND run_after <= %s
  AND (lease_expires IS NULL OR lease_expires < %s OR id = ANY(%s))
ORDER BY seq LIMIT %s
FOR UPDATE SKIP LOCKED;

-- name: reserve_items
-- Parameters: owner, lease_expires, item ids. Held in reserve by the owner: still queued
-- (counted as queued, not running), the lease taken so that no other claimer takes them
-- while it lives, the fence moved on so that a stale holder's promotion is refused.
UPDATE items SET fence = fence + 1, lease_owner = %s, lease_expires = %s
WHERE id = ANY(%s) AND status = 'queued'
RETURNING id, seq, n_records, attempts, fence, est_usd, runner;

-- name: dispatching_batches
-- Of these batch ids, those still handing out items (what claim_batch requires).
SELECT id FROM batches
WHERE id = ANY(%s) AND {dispatching};

-- name: promote_items
-- Parameters: lease_expires; the promotions' item ids, fences and start times (arrays
-- of one length); the owner. Its reserved items started in freed slots run from then
-- on, if still held (fence, lease). Returns the ids of those promoted.
UPDATE items i SET status = 'running', attempts = i.attempts + 1, lease_expires = %s,
                   started_at = p.started
FROM unnest(%s::bigint[], %s::bigint[], %s::float8[]) AS p(id, fence, started)
WHERE i.id = p.id AND i.fence = p.fence AND i.lease_owner = %s AND i.status = 'queued'
RETURNING i.id;

-- name: release_reserved
-- Parameters: owner, item ids. Items it held in reserve, given back to every claimer.
UPDATE items SET lease_owner = NULL, lease_expires = NULL
WHERE lease_owner = %s AND status = 'queued' AND id = ANY(%s);

-- name: lease_items
-- Parameters: owner, lease_expires, now, item ids, the states an item may start from.
UPDATE items SET status = 'running', attempts = attempts + 1, fence = fence + 1,
                 lease_owner = %s, lease_expires = %s, started_at = %s
WHERE id = ANY(%s) AND status = ANY(%s)
RETURNING id, seq, n_records, attempts, fence, est_usd, runner;

-- name: claimed_inputs
SELECT id, data FROM item_inputs WHERE id = ANY(%s);

-- name: count_claimed
UPDATE batches SET n_running = n_running + %s, n_queued = n_queued - %s,
                   reserved_usd = reserved_usd + %s, started_at = COALESCE(started_at, %s)
WHERE pk = %s;

-- name: items_for_finish
-- The columns of core.accounting.LeasedItem, then webhook_url, webhook_event.
SELECT i.id, b.id, i.fence, i.status, i.cancel_requested, i.est_usd, i.n_records,
       b.stop_reason, b.tenant_id, i.size, b.deliver, b.fail_fast,
       i.webhook_url, i.webhook_event
FROM items i JOIN batches b ON b.pk = i.batch_pk
WHERE i.id = ANY(%s)
ORDER BY i.id FOR UPDATE OF i;

-- name: record_attempts
-- Rows of core.accounting.GroupCommit.attempts: (outcome, error, usage, ended_at, id, fence),
-- each the attempt of an item still running it (as retry_items and finish_items, run next).
-- In these three the items are found by id: "status = (SELECT 'running')" keeps the
-- planner off the partial index of running items (items_lease), whose dead entries (an
-- item's every claim leaves one) it would walk on each commit when its statistics say few
-- items run: a no-op batch's commits then took 14 ms instead of 3, and it ran at 18,000
-- items/s instead of 27,000.
INSERT INTO item_attempts (item_id, attempt, outcome, error, usage, worker, started_at,
                           ended_at)
SELECT i.id, i.attempts, u.outcome, u.error, u.usage, i.lease_owner, i.started_at, u.ended
FROM unnest(%s::text[], %s::bytea[], %s::bytea[], %s::float8[], %s::bigint[], %s::bigint[])
     AS u(outcome, error, usage, ended, id, fence)
JOIN items i ON i.id = u.id AND i.fence = u.fence AND i.status = (SELECT 'running');

-- name: retry_items
-- Rows of core.accounting.GroupCommit.retries: (run_after, error, id, fence).
UPDATE items i SET status = 'queued', run_after = u.at, error = u.error,
                   lease_owner = NULL, lease_expires = NULL
FROM unnest(%s::float8[], %s::bytea[], %s::bigint[], %s::bigint[]) AS u(at, error, id, fence)
WHERE i.id = u.id AND i.fence = u.fence AND i.status = (SELECT 'running');

-- name: finish_items
-- Rows of core.accounting.GroupCommit.finals:
-- (status, error, usage, finished_at, compute_ms, id, fence).
UPDATE items i SET status = u.status, error = u.error, usage = u.usage, finished_at = u.fin,
                   compute_ms = u.ms, lease_owner = NULL, lease_expires = NULL
FROM unnest(%s::text[], %s::bytea[], %s::bytea[], %s::float8[], %s::float8[],
            %s::bigint[], %s::bigint[]) AS u(status, error, usage, fin, ms, id, fence)
WHERE i.id = u.id AND i.fence = u.fence AND i.status = (SELECT 'running');

-- name: put_outputs
INSERT INTO item_outputs (id, data)
SELECT * FROM unnest(%s::bigint[], %s::bytea[])
ON CONFLICT (id) DO UPDATE SET data = excluded.data;

-- name: add_batch_delta
-- Parameters: core.accounting.BatchDelta's fields in their order, then the batch id.
UPDATE batches SET n_queued = n_queued + %s, n_running = n_running + %s,
    n_succeeded = n_succeeded + %s, n_failed = n_failed + %s, n_cancelled = n_cancelled + %s,
    r_succeeded = r_succeeded + %s, r_failed = r_failed + %s,
    reserved_usd = reserved_usd + %s, actual_usd = actual_usd + %s,
    tokens_in = tokens_in + %s, tokens_out = tokens_out + %s, out_bytes = out_bytes + %s,
    in_buffer_bytes = in_buffer_bytes + %s, out_buffer_bytes = out_buffer_bytes + %s,
    n_undelivered = n_undelivered + %s, r_undelivered = r_undelivered + %s,
    compute_ms = compute_ms + %s
WHERE id = %s;

-- name: record_worker
-- Parameters: id, info, started_at, heartbeat_at, claimed (the heartbeat before is kept).
INSERT INTO workers (id, info, started_at, heartbeat_at, claimed) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
    claimed = excluded.claimed, claimed_before = workers.claimed,
    claimed_before_at = workers.heartbeat_at;

-- name: renew_leases
-- Running items, and queued ones held in reserve.
UPDATE items SET lease_expires = %s
WHERE lease_owner = %s AND status IN ('running', 'queued');

-- name: renew_leases_of_items
UPDATE items SET lease_expires = %s
WHERE lease_owner = %s AND status IN ('running', 'queued') AND id = ANY(%s);

-- name: cancel_requests
SELECT id FROM items WHERE lease_owner = %s AND status = 'running' AND cancel_requested;

-- name: try_reaper_lock
-- One reaper at a time across every server and worker (0x72656170: "reap").
SELECT pg_try_advisory_xact_lock(1919246704);

-- name: items_upkeep
-- What items needs: 2 a vacuum, 1 fresh planner statistics, 0 nothing.
-- A vacuum when its dead rows outnumber 50,000 and a fifth of the table (autovacuum's
-- rule, with a higher floor): each claim steps over the index entries of the batch's
-- claimed items until a vacuum removes them. Without one (autovacuum off, as on our CI
-- machine) a batch of a million items ran in 132 s instead of 81-116 s.
-- Statistics when the table holds more than twice the rows they were gathered on (and
-- 10,000 more), or none were: without fresh ones a new batch of a million items looked
-- like 13 rows, and each claim sorted all its queued items (257 ms) instead of reading
-- the first few in order. Not on updates alone: claims and outcomes change every row
-- twice, and re-reading the statistics that often cost a tenth of a no-op batch's time
-- on the database.
SELECT COALESCE((SELECT CASE WHEN s.n_dead_tup > 50000 + s.n_live_tup / 5 THEN 2
                             WHEN c.reltuples < 0 OR s.n_live_tup > 10000 + 2 * c.reltuples
                             THEN 1
                             ELSE 0 END
                 FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
                 WHERE s.relid = 'items'::regclass), 0);

-- name: analyze_items
ANALYZE items;

-- name: vacuum_items
-- Outside a transaction. SKIP_LOCKED: never waits for another vacuum of it (autovacuum's,
-- or another server's).
VACUUM (ANALYZE, SKIP_LOCKED) items;

-- name: expired_leases
SELECT i.id, i.fence, i.attempts, b.max_attempts, b.retry_backoff_s
FROM items i JOIN batches b ON b.pk = i.batch_pk
WHERE i.status = 'running' AND i.lease_expires < %s
ORDER BY i.id LIMIT 1000;

-- name: expired_batches
SELECT id FROM batches
WHERE status IN ('open', 'closed') AND expires_at IS NOT NULL AND expires_at < %s;

-- name: idle_batches
SELECT id FROM batches
WHERE status = 'open' AND idle_timeout_s IS NOT NULL AND last_activity_at + idle_timeout_s < %s;

-- name: staged_uploads
-- Uploads to live batches (a new batch's items wait without a stage token).
SELECT DISTINCT batch_pk, stage FROM item_stage WHERE stage IS NOT NULL;

-- name: abandoned_batches
-- Batches still staging: their create request never finished.
SELECT pk FROM batches WHERE staging AND created_at < %s;

-- name: result_batch
SELECT pk FROM batches WHERE id = %s;

-- name: take_results
-- Finished, undelivered items of a batch, marked delivered (returned in no set order).
WITH taken AS (
    SELECT id FROM items
    WHERE batch_pk = %s AND delivered = false AND status IN ('succeeded', 'failed')
    ORDER BY seq LIMIT %s
    FOR UPDATE SKIP LOCKED
), marked AS (
    UPDATE items i SET delivered = true FROM taken WHERE i.id = taken.id
    RETURNING i.id, i.seq, i.rec0, i.n_records, i.status, i.error, i.ext_id, i.meta,
              i.compute_ms, i.usage
)
SELECT m.id, m.seq, m.rec0, m.n_records, m.status, d.data, o.data, m.error, m.ext_id,
       m.meta, m.compute_ms, m.usage
FROM marked m JOIN item_inputs d ON d.id = m.id LEFT JOIN item_outputs o ON o.id = m.id;

-- name: release_results
-- Parameters: now, output bytes taken, items taken, records taken, batch pk.
UPDATE batches SET last_activity_at = %s,
                   out_buffer_bytes = GREATEST(0, out_buffer_bytes - %s),
                   n_undelivered = n_undelivered - %s, r_undelivered = r_undelivered - %s
WHERE pk = %s;

-- name: stop_reasons_of_batches
-- Read after the items are locked: fresher than the join of items_for_finish.
SELECT id, stop_reason FROM batches WHERE id = ANY(%s);
