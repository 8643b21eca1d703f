-- Operator actions on a batch: retry its failed or cancelled items, pause and resume its
-- dispatch. Core (core/actions.py) decides what may happen; these only read and write.
-- An item filter: the states to retry (of 'failed', 'cancelled'), an error code (exact)
-- and a text found in the error's code or message (lower case); NULL matches any.

-- name: batch_for_action
SELECT pk, tenant_id, status, stop_reason, paused_at FROM batches
WHERE id = ? AND staging = 0;

-- name: retry_tally
-- Per state of the matching items: how many, their records, their input bytes, and
-- those of them whose result waits undelivered (count, records, output bytes).
SELECT i.status, COUNT(*), COALESCE(SUM(i.n_records), 0), COALESCE(SUM(i.size), 0),
       COALESCE(SUM(i.delivered = 0), 0),
       COALESCE(SUM(CASE WHEN i.delivered = 0 THEN i.n_records ELSE 0 END), 0),
       COALESCE(SUM(CASE WHEN i.delivered = 0 THEN LENGTH(o.data) ELSE 0 END), 0)
FROM items i LEFT JOIN item_outputs o ON o.id = i.id
WHERE i.batch_pk = :pk AND i.status IN ('failed', 'cancelled')
  AND i.status IN (SELECT value FROM json_each(:statuses))
  AND (:code IS NULL OR json_extract(CAST(i.error AS TEXT), '$.code') = :code)
  AND (:text IS NULL
       OR instr(lower(COALESCE(json_extract(CAST(i.error AS TEXT), '$.code'), '') || ' ' ||
                      COALESCE(json_extract(CAST(i.error AS TEXT), '$.message'), '')),
                :text) > 0)
GROUP BY i.status;

-- name: retry_drop_outputs
DELETE FROM item_outputs WHERE id IN (
    SELECT id FROM items i
    WHERE i.batch_pk = :pk AND i.status IN ('failed', 'cancelled')
      AND i.status IN (SELECT value FROM json_each(:statuses))
      AND (:code IS NULL OR json_extract(CAST(i.error AS TEXT), '$.code') = :code)
      AND (:text IS NULL
           OR instr(lower(COALESCE(json_extract(CAST(i.error AS TEXT), '$.code'), '') || ' ' ||
                          COALESCE(json_extract(CAST(i.error AS TEXT), '$.message'), '')),
                    :text) > 0));

-- name: retry_items_matching
-- Queued again with fresh attempts; the fencing token is kept (it only ever grows).
UPDATE items SET status = 'queued', attempts = 0, run_after = :now, error = NULL,
                 usage = NULL, started_at = NULL, finished_at = NULL, compute_ms = NULL,
                 cancel_requested = 0, lease_owner = NULL, lease_expires = NULL,
                 delivered = CASE WHEN delivered IS NULL THEN NULL ELSE 0 END
WHERE batch_pk = :pk AND status IN ('failed', 'cancelled')
  AND status IN (SELECT value FROM json_each(:statuses))
  AND (:code IS NULL OR json_extract(CAST(error AS TEXT), '$.code') = :code)
  AND (:text IS NULL
       OR instr(lower(COALESCE(json_extract(CAST(error AS TEXT), '$.code'), '') || ' ' ||
                      COALESCE(json_extract(CAST(error AS TEXT), '$.message'), '')),
                :text) > 0);

-- name: count_retried
-- Parameters: core.actions.RetryDelta's fields in their order, then the batch pk.
UPDATE batches SET n_queued = n_queued + ?, n_failed = n_failed - ?,
                   n_cancelled = n_cancelled - ?, r_failed = r_failed - ?,
                   in_buffer_bytes = in_buffer_bytes + ?, n_undelivered = n_undelivered - ?,
                   r_undelivered = r_undelivered - ?,
                   out_buffer_bytes = MAX(0, out_buffer_bytes - ?)
WHERE pk = ?;

-- name: reopen_batch
-- A retried batch dispatches again: its stop and its end are undone.
UPDATE batches SET status = ?, stop_reason = NULL, error = NULL, finished_at = NULL,
                   last_activity_at = ?
WHERE pk = ? AND status IN (SELECT value FROM json_each(?));

-- name: pause_batch
UPDATE batches SET paused_at = ?
WHERE pk = ? AND paused_at IS NULL AND status IN ('open', 'closed')
RETURNING n_queued;

-- name: resume_batch
UPDATE batches SET paused_at = NULL WHERE pk = ? AND paused_at IS NOT NULL
RETURNING n_queued;
