-- A batch's life after intake: stop, close, finish; deleting items.
-- Guarded updates take their allowed source states from core (domain/states.py).

-- name: stop_batch
UPDATE batches SET status = ?, stop_reason = ?, error = ?, closed_at = COALESCE(closed_at, ?)
WHERE id = ? AND status IN (SELECT value FROM json_each(?)) AND stop_reason IS NULL
RETURNING tenant_id, pk;

-- name: queued_totals
SELECT COUNT(*), COALESCE(SUM(size), 0) FROM items WHERE batch_pk = ? AND status = 'queued';

-- name: queued_hooks
SELECT id, webhook_url, webhook_event FROM items
WHERE batch_pk = ? AND status = 'queued' AND webhook_url IS NOT NULL;

-- name: cancel_queued_items
UPDATE items SET status = 'cancelled', error = ?, finished_at = ?
WHERE batch_pk = ? AND status = 'queued';

-- name: flag_running_items
UPDATE items SET cancel_requested = 1 WHERE batch_pk = ? AND status = 'running';

-- name: count_stopped_items
UPDATE batches SET n_queued = n_queued - ?, n_cancelled = n_cancelled + ?,
                   in_buffer_bytes = in_buffer_bytes - ?
WHERE pk = ?;

-- name: release_output_buffer
UPDATE batches SET out_buffer_bytes = 0, n_undelivered = 0, r_undelivered = 0 WHERE pk = ?;

-- name: batch_for_finish
-- The columns of core.lifecycle.FinishRow, then tenant_id, webhook_url, webhook_event.
SELECT finished_at, staging, status, n_queued, n_running, n_total, n_succeeded, n_failed,
       n_cancelled, r_total, r_failed, stop_reason, max_error_pct,
       tenant_id, webhook_url, webhook_event
FROM batches WHERE id = ?;

-- name: finish_batch
UPDATE batches SET status = ?, finished_at = ?
WHERE id = ? AND status IN (SELECT value FROM json_each(?));

-- name: close_batch
UPDATE batches SET status = 'closed', closed_at = ?, close_reason = ?
WHERE id = ? AND status IN (SELECT value FROM json_each(?))
RETURNING tenant_id;

-- name: delete_batch_inputs
DELETE FROM item_inputs WHERE id IN (SELECT id FROM items WHERE batch_pk = ?);

-- name: delete_batch_outputs
DELETE FROM item_outputs WHERE id IN (SELECT id FROM items WHERE batch_pk = ?);

-- name: delete_batch_items
DELETE FROM items WHERE batch_pk = ?;

-- name: delete_batch_stage
-- SQLite stages in place: delete_batch_items took a batch's staged items too.
DELETE FROM items WHERE batch_pk = ? AND status = 'staged';

-- name: delete_stage_inputs
DELETE FROM item_inputs
WHERE id IN (SELECT id FROM items WHERE batch_pk = ? AND status = 'staged' AND stage = ?);

-- name: delete_stage_outputs
DELETE FROM item_outputs
WHERE id IN (SELECT id FROM items WHERE batch_pk = ? AND status = 'staged' AND stage = ?);

-- name: delete_stage_items
DELETE FROM items WHERE batch_pk = ? AND status = 'staged' AND stage = ?;

-- name: delete_batch_row
DELETE FROM batches WHERE pk = ?;

-- name: bulk_begin
-- Deleting many rows ahead: the temporary b-trees of a big DELETE … IN (SELECT …) spill
-- to a file past the page cache instead of growing in memory (a discarded 5-million-item
-- upload took 60 MB). Only then: small statements keep theirs in memory, which the hot
-- path (every claim and commit) needs (a temporary file there cost a fifth of its speed).
PRAGMA temp_store = FILE;

-- name: bulk_end
PRAGMA temp_store = MEMORY;
