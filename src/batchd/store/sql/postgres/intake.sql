-- Creating batches and adding items: stage, then commit or discard.
-- An upload waits in the unlogged stage tables (migration 7) until its commit moves it
-- into items and item_inputs; reclaim_space truncates them once no upload is in them.

-- name: insert_batch
INSERT INTO batches (id, tenant_id, owner, task, version, runner, status, records_per_item,
                     priority, parallelism, fail_fast, max_error_pct, budget_usd, run_after,
                     item_timeout_s, max_attempts, retry_backoff_s, expires_at,
                     max_input_bytes, max_output_bytes, est_usd_per_record, metadata,
                     created_at, deliver, idle_timeout_s, last_activity_at, webhook_url,
                     webhook_event, dialect)
VALUES (%s, %s, %s, %s, %s, %s, 'open', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
        %s, %s, %s, %s, %s, %s, %s, %s, %s);

-- name: reserve_seqs
-- Moves the batch's next seq and record number past an upload of (items, records).
UPDATE batches SET next_seq = next_seq + %s, next_rec = next_rec + %s
WHERE id = %s RETURNING next_seq, next_rec, pk, staging, deliver;

-- name: reserve_item_ids
-- The ids of that many new items, so that items and item_inputs both get them.
SELECT nextval('items_id_seq') FROM generate_series(1, %s);

-- name: insert_items
COPY item_stage (id, batch_pk, seq, rec0, n_records, status, stage, est_usd, size, ext_id,
                 meta, delivered, runner, webhook_url, webhook_event) FROM STDIN;

-- name: insert_item_inputs
COPY item_stage_inputs (id, data) FROM STDIN;

-- name: insert_packed_items
-- An item per element of the JSON array %(inputs)b (core.staging.PackedItems), in order,
-- with its input: json (unlike jsonb) hands each element out as its text, byte for byte.
-- One statement for both tables: the ids nextval deals are not known beforehand.
WITH new AS MATERIALIZED (
    SELECT nextval('items_id_seq') AS id, n - 1 AS k, convert_to(value::text, 'UTF8') AS data
    FROM json_array_elements(convert_from(%(inputs)b, 'UTF8')::json)
         WITH ORDINALITY AS e(value, n)
),
inputs AS (
    INSERT INTO item_stage_inputs (id, data) SELECT id, data FROM new
)
INSERT INTO item_stage (id, batch_pk, seq, rec0, n_records, status, stage, est_usd, size,
                        delivered)
SELECT id, %(pk)s::bigint, %(seq)s::bigint + k, %(rec)s::bigint + k, 1, %(status)s::text,
       %(stage)s::text, %(est_usd)s::double precision, octet_length(data),
       %(delivered)s::boolean
FROM new;

-- name: insert_packed_inputs
-- Nothing left to do: insert_packed_items wrote the inputs with the items.
SELECT 1;

-- name: batch_for_commit
-- The columns of core.admission.CommitTarget.
SELECT pk, tenant_id, status, staging, stop_reason, in_buffer_bytes, max_input_bytes, n_total
FROM batches WHERE id = %s FOR UPDATE;

-- name: batch_for_discard
-- As batch_for_commit, without a lock: a discard deletes items first, like the reaper.
SELECT pk, tenant_id, status, staging, stop_reason, in_buffer_bytes, max_input_bytes, n_total
FROM batches WHERE id = %s;

-- name: batch_id_by_idempotency
SELECT id FROM batches WHERE tenant_id = %s AND idempotency_key = %s;

-- name: upload_totals_of_batch
-- The columns of core.admission.Upload: every item of a batch being created.
SELECT COUNT(*), COALESCE(SUM(n_records), 0), COALESCE(SUM(est_usd), 0),
       COALESCE(SUM(size), 0)
FROM item_stage WHERE batch_pk = %s;

-- name: upload_totals_of_stage
-- The columns of core.admission.Upload: the staged items of one upload.
SELECT COUNT(*), COALESCE(SUM(n_records), 0), COALESCE(SUM(est_usd), 0),
       COALESCE(SUM(size), 0)
FROM item_stage WHERE batch_pk = %s AND stage = %s;

-- name: tenant_input_used
SELECT COALESCE(SUM(in_buffer_bytes), 0) FROM batches
WHERE tenant_id = %s AND status IN ('open', 'closed');

-- name: queue_new_batch
-- The items of a batch being created join the queue: copied from the stage, which the
-- script then clears (delete_batch_stage).
WITH b AS (SELECT %s::bigint AS pk),
inputs AS (
    INSERT INTO item_inputs (id, data)
    SELECT d.id, d.data FROM item_stage_inputs d JOIN item_stage s ON s.id = d.id
    WHERE s.batch_pk = (SELECT pk FROM b)
)
INSERT INTO items (id, batch_pk, seq, rec0, n_records, status, est_usd, size, ext_id, meta,
                   delivered, runner, webhook_url, webhook_event)
SELECT id, batch_pk, seq, rec0, n_records, 'queued', est_usd, size, ext_id, meta, delivered,
       runner, webhook_url, webhook_event
FROM item_stage WHERE batch_pk = (SELECT pk FROM b);

-- name: queue_stage
-- The items of one upload to a live batch join the queue: copied from the stage, which the
-- script then clears (delete_stage_*).
WITH u AS (SELECT %s::bigint AS pk, %s::text AS stage),
staged AS (
    SELECT s.* FROM item_stage s JOIN u ON s.batch_pk = u.pk AND s.stage = u.stage
),
inputs AS (
    INSERT INTO item_inputs (id, data)
    SELECT d.id, d.data FROM item_stage_inputs d JOIN staged s ON s.id = d.id
)
INSERT INTO items (id, batch_pk, seq, rec0, n_records, status, est_usd, size, ext_id, meta,
                   delivered, runner, webhook_url, webhook_event)
SELECT id, batch_pk, seq, rec0, n_records, 'queued', est_usd, size, ext_id, meta, delivered,
       runner, webhook_url, webhook_event
FROM staged;

-- name: count_upload
UPDATE batches SET n_total = n_total + %s, n_queued = n_queued + %s, r_total = r_total + %s,
                   est_usd = est_usd + %s, in_bytes = in_bytes + %s,
                   in_buffer_bytes = in_buffer_bytes + %s, last_activity_at = %s,
                   staging = false, idempotency_key = COALESCE(%s, idempotency_key),
                   request_hash = COALESCE(%s, request_hash),
                   status = CASE WHEN %s THEN 'closed' ELSE status END,
                   closed_at = CASE WHEN %s THEN %s ELSE closed_at END
WHERE pk = %s;

-- name: notify_work
-- Wakes idle workers (store.postgres listens on this channel).
NOTIFY batchd_work;

-- name: reclaim_space
-- Run by the driver in a transaction of its own. Empties the stage tables' files when they
-- hold only deleted rows, never waiting: an upload staging right now holds a lock, and the
-- last one to finish truncates. (Deleted rows alone would keep their space until a
-- vacuum, and their index entries for good.)
DO $$
BEGIN
    IF pg_relation_size('item_stage') + pg_relation_size('item_stage_inputs') > 0
       AND NOT EXISTS (SELECT 1 FROM item_stage) AND NOT EXISTS (SELECT 1 FROM item_stage_inputs)
    THEN
        LOCK TABLE item_stage, item_stage_inputs IN ACCESS EXCLUSIVE MODE NOWAIT;
        IF NOT EXISTS (SELECT 1 FROM item_stage)
           AND NOT EXISTS (SELECT 1 FROM item_stage_inputs) THEN
            TRUNCATE item_stage, item_stage_inputs;
        END IF;
    END IF;
EXCEPTION WHEN lock_not_available THEN
    NULL;
END
$$;
