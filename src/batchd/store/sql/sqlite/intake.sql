-- Creating batches and adding items: stage, then commit or discard.

-- name: insert_batch
INSERT INTO batches (id, tenant_id, owner, task, version, runner, status, records_per_item,
                     priority, parallelism, fail_fast, max_error_pct, budget_usd, run_after,
                     item_timeout_s, max_attempts, retry_backoff_s, expires_at,
                     max_input_bytes, max_output_bytes, est_usd_per_record, metadata,
                     created_at, deliver, idle_timeout_s, last_activity_at, webhook_url,
                     webhook_event, dialect)
VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
        ?, ?);

-- name: reserve_seqs
-- Moves the batch's next seq and record number past an upload of (items, records).
UPDATE batches SET next_seq = next_seq + ?, next_rec = next_rec + ?
WHERE id = ? RETURNING next_seq, next_rec, pk, staging, deliver;

-- name: reserve_item_ids
-- The ids of that many new items: dealt here, under the one writer's lock, so that
-- items and item_inputs both get them.
WITH RECURSIVE ids(id, last) AS (
    SELECT COALESCE(MAX(id), 0) + 1, COALESCE(MAX(id), 0) + ? FROM items
    UNION ALL
    SELECT id + 1, last FROM ids WHERE id < last
)
SELECT id FROM ids;

-- name: insert_items
INSERT INTO items (id, batch_pk, seq, rec0, n_records, status, stage, est_usd, size, ext_id,
                   meta, delivered, runner, webhook_url, webhook_event)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: insert_item_inputs
INSERT INTO item_inputs (id, data) VALUES (?, ?);

-- name: insert_packed_items
-- An item per element of the JSON array :inputs (core.staging.PackedItems), in order. An
-- element that is an array or object comes out of json_each as its own text, byte for byte
-- (a scalar would come out decoded: core never packs one). The new ids follow the largest
-- in the table, one by one, as reserve_item_ids deals them.
INSERT INTO items (batch_pk, seq, rec0, n_records, status, stage, est_usd, size, delivered)
SELECT :pk, :seq + key, :rec + key, 1, :status, :stage, :est_usd, length(CAST(value AS BLOB)),
       :delivered
FROM json_each(CAST(:inputs AS TEXT));

-- name: insert_packed_inputs
-- The inputs of the :count items insert_packed_items has just added: the largest ids.
INSERT INTO item_inputs (id, data)
SELECT (SELECT MAX(id) FROM items) - :count + 1 + key, CAST(value AS BLOB)
FROM json_each(CAST(:inputs AS TEXT));

-- name: batch_for_commit
-- The columns of core.admission.CommitTarget.
SELECT pk, tenant_id, status, staging, stop_reason, in_buffer_bytes, max_input_bytes, n_total
FROM batches WHERE id = ?;

-- name: batch_for_discard
-- As batch_for_commit, without a lock: a discard deletes items first, like the reaper.
SELECT pk, tenant_id, status, staging, stop_reason, in_buffer_bytes, max_input_bytes, n_total
FROM batches WHERE id = ?;

-- name: batch_id_by_idempotency
SELECT id FROM batches WHERE tenant_id = ? AND idempotency_key = ?;

-- name: upload_totals_of_batch
-- The columns of core.admission.Upload: every item of a batch being created.
SELECT COUNT(*), COALESCE(SUM(n_records), 0), COALESCE(SUM(est_usd), 0),
       COALESCE(SUM(size), 0)
FROM items WHERE batch_pk = ?;

-- name: upload_totals_of_stage
-- The columns of core.admission.Upload: the staged items of one upload.
SELECT COUNT(*), COALESCE(SUM(n_records), 0), COALESCE(SUM(est_usd), 0),
       COALESCE(SUM(size), 0)
FROM items WHERE batch_pk = ? AND status = 'staged' AND stage = ?;

-- name: tenant_input_used
SELECT COALESCE(SUM(in_buffer_bytes), 0) FROM batches
WHERE tenant_id = ? AND status IN ('open', 'closed');

-- name: queue_new_batch
-- SQLite stages in place: the items of a batch being created went straight to the queue
-- (the batch is invisible until its commit), so this finds nothing to change.
UPDATE items SET status = 'queued', stage = NULL WHERE batch_pk = ? AND status = 'staged';

-- name: queue_stage
-- SQLite stages in place: the upload's items change status (delete_stage_* then find none).
UPDATE items SET status = 'queued', stage = NULL
WHERE batch_pk = ? AND status = 'staged' AND stage = ?;

-- name: count_upload
UPDATE batches SET n_total = n_total + ?, n_queued = n_queued + ?, r_total = r_total + ?,
                   est_usd = est_usd + ?, in_bytes = in_bytes + ?,
                   in_buffer_bytes = in_buffer_bytes + ?, last_activity_at = ?, staging = 0,
                   idempotency_key = COALESCE(?, idempotency_key),
                   request_hash = COALESCE(?, request_hash),
                   status = CASE WHEN ? THEN 'closed' ELSE status END,
                   closed_at = CASE WHEN ? THEN ? ELSE closed_at END
WHERE pk = ?;

-- name: notify_work
-- Nothing to do: SQLite's workers poll (PostgreSQL sends a NOTIFY).
SELECT 1;

-- name: reclaim_space
-- Run by the driver outside a transaction, stepped to its end, then the WAL truncated: the
-- free pages (a discarded upload's) leave the file (auto_vacuum is INCREMENTAL: migration 7).
PRAGMA incremental_vacuum;
