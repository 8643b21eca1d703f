-- Operator actions on a batch: retry its failed or cancelled items, pause and resume its
-- dispatch. Core (core/actions.py) decides what may happen; these only read and write.
-- An item filter: the states to retry (of 'failed', 'cancelled'), an error code (exact)
-- and a text found in the error's code or message (lower case); NULL matches any.

-- name: batch_for_action
-- Locked: a cancel, a claim or another action on the batch waits for this one.
SELECT pk, tenant_id, status, stop_reason, paused_at FROM batches
WHERE id = %s AND NOT staging
FOR UPDATE;

-- name: retry_tally
-- Per state of the matching items: how many, their records, their input bytes, and
-- those of them whose result waits undelivered (count, records, output bytes).
SELECT i.status, COUNT(*), COALESCE(SUM(i.n_records), 0), COALESCE(SUM(i.size), 0),
       COUNT(*) FILTER (WHERE NOT i.delivered),
       COALESCE(SUM(i.n_records) FILTER (WHERE NOT i.delivered), 0),
       COALESCE(SUM(octet_length(o.data)) FILTER (WHERE NOT i.delivered), 0)
FROM items i LEFT JOIN item_outputs o ON o.id = i.id
WHERE i.batch_pk = %(pk)s AND i.status IN ('failed', 'cancelled')
  AND i.status = ANY(%(statuses)s)
  AND (%(code)s::text IS NULL
       OR convert_from(i.error, 'UTF8')::jsonb ->> 'code' = %(code)s)
  AND (%(text)s::text IS NULL
       OR strpos(lower(COALESCE(convert_from(i.error, 'UTF8')::jsonb ->> 'code', '') || ' ' ||
                       COALESCE(convert_from(i.error, 'UTF8')::jsonb ->> 'message', '')),
                 %(text)s) > 0)
GROUP BY i.status;

-- name: retry_drop_outputs
DELETE FROM item_outputs WHERE id IN (
    SELECT id FROM items i
    WHERE i.batch_pk = %(pk)s AND i.status IN ('failed', 'cancelled')
      AND i.status = ANY(%(statuses)s)
      AND (%(code)s::text IS NULL
           OR convert_from(i.error, 'UTF8')::jsonb ->> 'code' = %(code)s)
      AND (%(text)s::text IS NULL
           OR strpos(lower(COALESCE(convert_from(i.error, 'UTF8')::jsonb ->> 'code', '')
                           || ' ' ||
                           COALESCE(convert_from(i.error, 'UTF8')::jsonb ->> 'message', '')),
                     %(text)s) > 0));

-- name: retry_items_matching
-- Queued again with fresh attempts; the fencing token is kept (it only ever grows).
UPDATE items SET status = 'queued', attempts = 0, run_after = %(now)s, error = NULL,
                 usage = NULL, started_at = NULL, finished_at = NULL, compute_ms = NULL,
                 cancel_requested = false, lease_owner = NULL, lease_expires = NULL,
                 delivered = CASE WHEN delivered IS NULL THEN NULL ELSE false END
WHERE batch_pk = %(pk)s AND status IN ('failed', 'cancelled')
  AND status = ANY(%(statuses)s)
  AND (%(code)s::text IS NULL
       OR convert_from(error, 'UTF8')::jsonb ->> 'code' = %(code)s)
  AND (%(text)s::text IS NULL
       OR strpos(lower(COALESCE(convert_from(error, 'UTF8')::jsonb ->> 'code', '') || ' ' ||
                       COALESCE(convert_from(error, 'UTF8')::jsonb ->> 'message', '')),
                 %(text)s) > 0);

-- name: count_retried
-- Parameters: core.actions.RetryDelta's fields in their order, then the batch pk.
UPDATE batches SET n_queued = n_queued + %s, n_failed = n_failed - %s,
                   n_cancelled = n_cancelled - %s, r_failed = r_failed - %s,
                   in_buffer_bytes = in_buffer_bytes + %s, n_undelivered = n_undelivered - %s,
                   r_undelivered = r_undelivered - %s,
                   out_buffer_bytes = GREATEST(0, out_buffer_bytes - %s)
WHERE pk = %s;

-- name: reopen_batch
-- A retried batch dispatches again: its stop and its end are undone.
UPDATE batches SET status = %s, stop_reason = NULL, error = NULL, finished_at = NULL,
                   last_activity_at = %s
WHERE pk = %s AND status = ANY(%s);

-- name: pause_batch
UPDATE batches SET paused_at = %s
WHERE pk = %s AND paused_at IS NULL AND status IN ('open', 'closed')
RETURNING n_queued;

-- name: resume_batch
UPDATE batches SET paused_at = NULL WHERE pk = %s AND paused_at IS NOT NULL
RETURNING n_queued;
