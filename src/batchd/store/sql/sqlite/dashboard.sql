-- The dashboard's reads (core/dashboard.py): a batch's items without their payloads, its
-- outcomes over time, an item's attempts, the workers' load; its batch list is the API's
-- (batches_page_before).
-- A NULL filter matches every row.

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

-- name: dash_item_attempts
-- The columns of core.txn.dashboard.Attempt: an item's recorded attempts, oldest first.
SELECT attempt, outcome, error, usage, worker, started_at, ended_at
FROM item_attempts WHERE item_id = :item_id ORDER BY pk LIMIT :limit;

-- name: dash_worker_claims
-- Per worker seen since :since: items claimed at its last heartbeat and at the one before,
-- and when those were.
SELECT id, claimed, claimed_before, heartbeat_at, claimed_before_at
FROM workers WHERE heartbeat_at >= :since;

-- name: dash_tenants
-- (id, name) of every tenant, by name: an operator's choice of tenant.
SELECT id, name FROM tenants ORDER BY name LIMIT :limit;

-- name: dash_tenant_of_batch
-- (id, name) of the tenant of a batch, whoever's it is (an operator's view of it).
SELECT t.id, t.name FROM batches b JOIN tenants t ON t.id = b.tenant_id WHERE b.id = :batch_id;
