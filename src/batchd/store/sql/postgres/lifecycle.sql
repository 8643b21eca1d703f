-- A batch's life after intake: stop, close, finish; deleting items.
-- Guarded updates take their allowed source states from core (domain/states.py).

-- name: stop_batch
UPDATE batches SET status = %s, stop_reason = %s, error = %s, closed_at = COALESCE(closed_at, %s)
WHERE id = %s AND status = ANY(%s) AND stop_reason IS NULL
RETURNING tenant_id, pk;

-- name: queued_totals
SELECT COUNT(*), COALESCE(SUM(size), 0) FROM items WHERE batch_pk = %s AND status = 'queued';

-- name: queued_hooks
SELECT id, webhook_url, webhook_event FROM items
WHERE batch_pk = %s AND status = 'queued' AND webhook_url IS NOT NULL;

-- name: cancel_queued_items
UPDATE items SET status = 'cancelled', error = %s, finished_at = %s
WHERE batch_pk = %s AND status = 'queued';

-- name: flag_running_items
UPDATE items SET cancel_requested = true WHERE batch_pk = %s AND status = 'running';

-- name: count_stopped_items
UPDATE batches SET n_queued = n_queued - %s, n_cancelled = n_cancelled + %s,
                   in_buffer_bytes = in_buffer_bytes - %s
WHERE pk = %s;

-- name: release_output_buffer
UPDATE batches SET out_buffer_bytes = 0, n_undelivered = 0, r_undelivered = 0 WHERE pk = %s;

-- name: batch_for_finish
-- The columns of core.lifecycle.FinishRow, then tenant_id, webhook_url, webhook_event.
SELECT finished_at, staging, status, n_queued, n_running, n_total, n_succeeded, n_failed,
       n_cancelled, r_total, r_failed, stop_reason, max_error_pct,
       tenant_id, webhook_url, webhook_event
FROM batches WHERE id = %s;

-- name: finish_batch
UPDATE batches SET status = %s, finished_at = %s
WHERE id = %s AND status = ANY(%s);

-- name: close_batch
UPDATE batches SET status = 'closed', closed_at = %s, close_reason = %s
WHERE id = %s AND status = ANY(%s)
RETURNING tenant_id;

-- name: delete_batch_inputs
DELETE FROM item_inputs WHERE id IN (SELECT id FROM items WHERE batch_pk = %s);

-- name: delete_batch_outputs
DELETE FROM item_outputs WHERE id IN (SELECT id FROM items WHERE batch_pk = %s);

-- name: delete_batch_items
DELETE FROM items WHERE batch_pk = %s;

-- name: delete_batch_stage
-- What waits in the stage for a batch, every upload of it (function: migration 7).
SELECT batchd_clear_stage(%s, NULL);

-- name: delete_stage_inputs
-- Staged inputs go with their items (delete_stage_items): nothing to do here.
SELECT %s::bigint, %s::text WHERE false;

-- name: delete_stage_outputs
-- Staged items have never run: nothing to delete.
SELECT %s::bigint, %s::text WHERE false;

-- name: delete_stage_items
-- One upload's items and inputs out of the stage (function: migration 7).
SELECT batchd_clear_stage(%s, %s);

-- name: delete_batch_row
DELETE FROM batches WHERE pk = %s;

-- name: bulk_begin
-- PostgreSQL spills big sorts and hashes past work_mem by itself: nothing to do.
SELECT NULL WHERE false;

-- name: bulk_end
SELECT NULL WHERE false;
