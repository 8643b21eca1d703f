-- Reading batches, items and results pages.
-- A batch row is the fragment batch_cols (core.txn.reads.batch_row); an item row the
-- columns of core.txn.reads.item_row; a NULL filter matches every row.

-- fragment: batch_cols
-- The columns of domain.models.Batch in field order (core.txn.reads.batch_row).
pk, id, tenant_id, owner, task, version, runner, status, stop_reason,
       records_per_item, priority, parallelism, fail_fast, max_error_pct, budget_usd,
       run_after, item_timeout_s, max_attempts, expires_at, metadata, error, n_total,
       n_queued, n_running, n_succeeded, n_failed, n_cancelled, r_total, r_succeeded,
       r_failed, est_usd, reserved_usd, actual_usd, tokens_in, tokens_out, in_bytes,
       out_bytes, created_at, started_at, closed_at, finished_at, idempotency_key,
       request_hash, max_input_bytes, max_output_bytes, in_buffer_bytes, out_buffer_bytes,
       n_undelivered, r_undelivered, compute_ms, deliver, idle_timeout_s, last_activity_at,
       close_reason, webhook_url, webhook_event, paused_at, dialect

-- name: batch_by_id
SELECT {batch_cols}
FROM batches
WHERE id = :batch_id AND staging = 0
  AND (:tenant_id IS NULL OR tenant_id = :tenant_id);

-- name: batch_by_idempotency
SELECT {batch_cols}
FROM batches WHERE tenant_id = ? AND idempotency_key = ?;

-- name: batches_page_before
-- A tenant's batches newest first, before a pk (the API's list and the dashboard's):
-- created in [since, until), with a text in the metadata (search).
SELECT {batch_cols}
FROM batches
WHERE tenant_id = :tenant_id AND staging = 0
  AND (:owner IS NULL OR owner = :owner)
  AND (:status IS NULL OR status = :status)
  AND (:task IS NULL OR task = :task)
  AND (:dialect IS NULL OR dialect = :dialect)
  AND (:since IS NULL OR created_at >= :since)
  AND (:until IS NULL OR created_at < :until)
  AND (:search IS NULL OR instr(CAST(metadata AS TEXT), :search) > 0)
  AND (:before_pk IS NULL OR pk < :before_pk)
ORDER BY pk DESC LIMIT :limit;

-- name: recent_batches
-- Active batches and those finished since a time, newest first.
SELECT {batch_cols}
FROM batches
WHERE tenant_id = :tenant_id AND staging = 0
  AND (status IN ('open', 'closed') OR finished_at >= :finished_since)
  AND (:owner IS NULL OR owner = :owner)
ORDER BY pk DESC LIMIT :limit;

-- name: tenant_buffers
SELECT COALESCE(SUM(in_buffer_bytes), 0), COALESCE(SUM(out_buffer_bytes), 0)
FROM batches WHERE tenant_id = ? AND status IN ('open', 'closed');

-- name: count_batches_matching
-- The batches of a core BatchQuery (as are the next two).
SELECT COUNT(*) FROM batches
WHERE tenant_id = :tenant_id AND staging = 0
  AND (:owner IS NULL OR owner = :owner)
  AND (:task IS NULL OR task = :task)
  AND (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:started IS NULL OR (started_at IS NOT NULL) = :started);

-- name: batches_matching
SELECT {batch_cols}
FROM batches
WHERE tenant_id = :tenant_id AND staging = 0
  AND (:owner IS NULL OR owner = :owner)
  AND (:task IS NULL OR task = :task)
  AND (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:started IS NULL OR (started_at IS NOT NULL) = :started)
ORDER BY pk DESC LIMIT :limit OFFSET :offset;

-- name: batch_totals_matching
-- The columns of domain.records.BatchTotals.
SELECT status, started_at IS NOT NULL AS started, COUNT(*), COALESCE(SUM(n_total), 0),
       COALESCE(SUM(actual_usd), 0), COALESCE(SUM(tokens_in + tokens_out), 0)
FROM batches
WHERE tenant_id = :tenant_id AND staging = 0
  AND (:owner IS NULL OR owner = :owner)
  AND (:task IS NULL OR task = :task)
  AND (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:started IS NULL OR (started_at IS NOT NULL) = :started)
GROUP BY status, started;

-- name: items_page
SELECT i.id, i.seq, i.rec0, i.n_records, i.status, i.attempts, d.data, o.data, i.error,
       i.usage, i.started_at, i.finished_at, i.runner
FROM items i JOIN item_inputs d ON d.id = i.id LEFT JOIN item_outputs o ON o.id = i.id
WHERE i.batch_pk = (SELECT pk FROM batches WHERE id = :batch_id)
  AND i.seq > :after_seq AND i.status != 'staged'
  AND (:status IS NULL OR i.status = :status)
ORDER BY i.seq LIMIT :limit;

-- name: item_of_batch
SELECT i.id, i.seq, i.rec0, i.n_records, i.status, i.attempts, d.data, o.data, i.error,
       i.usage, i.started_at, i.finished_at, i.runner
FROM items i JOIN item_inputs d ON d.id = i.id LEFT JOIN item_outputs o ON o.id = i.id
WHERE i.id = ? AND i.status != 'staged'
  AND i.batch_pk = (SELECT pk FROM batches WHERE id = ?);

-- name: finished_items_page
-- The columns of core.txn.reads.export_row.
SELECT i.id, i.seq, i.rec0, i.n_records, i.status, d.data, o.data, i.error, i.ext_id,
       i.meta, i.compute_ms, i.usage
FROM items i JOIN item_inputs d ON d.id = i.id LEFT JOIN item_outputs o ON o.id = i.id
WHERE i.batch_pk = (SELECT pk FROM batches WHERE id = ?) AND i.seq > ?
  AND i.status IN ('succeeded', 'failed', 'cancelled')
ORDER BY i.seq LIMIT ?;

-- name: last_item_seq
-- The highest seq of a batch's items (staged ones too): where the results export ends.
SELECT max(seq) FROM items WHERE batch_pk = (SELECT pk FROM batches WHERE id = ?);

-- name: results_run
-- A page of the results export when its items are a run (the common case): consecutive ids
-- whose seqs follow them one for one, all succeeded without an error, and nothing else in
-- their id range. Then the page needs no id, seq or status text: seven columns, the count
-- of the batch's items in the seq range (after, upto] (staged ones and unfinished ones
-- too), the first id and its seq, each item's usage ('null' for none), one a line, or NULL
-- when none has one, the inputs one a line, how many of the items have an output, and the
-- outputs one a line (every item has one) or else each one's id then itself. Not a run:
-- the count alone (then results_page reads the page). The id range is read by rowid
-- (NOT INDEXED: its rows in rowid order, each table's own rows only); the tables of
-- inputs and outputs have no other index, so their scans are in id order too.
WITH b AS MATERIALIZED (SELECT pk FROM batches WHERE id = :batch_id),
ends AS MATERIALIZED (SELECT
    (SELECT id FROM items WHERE batch_pk = (SELECT pk FROM b)
       AND seq > :after_seq AND seq <= :upto_seq ORDER BY seq LIMIT 1) AS lo,
    (SELECT seq - id FROM items WHERE batch_pk = (SELECT pk FROM b)
       AND seq > :after_seq AND seq <= :upto_seq ORDER BY seq LIMIT 1) AS shift,
    (SELECT id FROM items WHERE batch_pk = (SELECT pk FROM b)
       AND seq > :after_seq AND seq <= :upto_seq ORDER BY seq DESC LIMIT 1) AS hi,
    (SELECT count(*) FROM items WHERE batch_pk = (SELECT pk FROM b)
       AND seq > :after_seq AND seq <= :upto_seq) AS n),
run AS MATERIALIZED (
    SELECT count(*) AS m, count(usage) AS usages FROM items NOT INDEXED
    WHERE id BETWEEN (SELECT lo FROM ends) AND (SELECT hi FROM ends)
      AND batch_pk = (SELECT pk FROM b) AND seq - id = (SELECT shift FROM ends)
      AND status = 'succeeded' AND error IS NULL),
dense AS MATERIALIZED (
    SELECT lo, hi, n, shift, usages,
           (SELECT count(*) FROM item_outputs WHERE id BETWEEN lo AND hi) AS outs
    FROM ends, run WHERE m = n AND hi - lo + 1 = n)
SELECT (SELECT n FROM ends), lo, lo + shift,
    CASE WHEN usages > 0 THEN
        (SELECT CAST(group_concat(CASE WHEN length(usage) > 0 THEN usage ELSE 'null' END,
                                  char(10)) AS BLOB)
         FROM items NOT INDEXED WHERE id BETWEEN lo AND hi) END,
    (SELECT CAST(group_concat(data, char(10)) AS BLOB) FROM item_inputs
     WHERE id BETWEEN lo AND hi),
    outs,
    CASE WHEN outs = n THEN
        (SELECT CAST(group_concat(data, char(10)) AS BLOB) FROM item_outputs
         WHERE id BETWEEN lo AND hi)
    ELSE (SELECT CAST(group_concat(id || char(10) || data, char(10)) AS BLOB)
          FROM item_outputs WHERE id BETWEEN lo AND hi) END
FROM (SELECT 1) LEFT JOIN dense;

-- name: results_page
-- A page of the results export: the finished items of a seq range (after, upto], and the
-- inputs and outputs of the items whose ids lie in the page's, in five texts (None for
-- none): "id,seq,status" of each item, comma-separated, in seq order; each item's error
-- ('null' for none), one a line, in seq order, or None when no item has one; the inputs
-- of the id range, one a line, in id order (compact JSON holds no line end); the outputs
-- of the id range, each one's id then itself, one a line, in id order; each item's usage
-- ('null' for none), one a line, in seq order, or None when no item has one. One scan of one table each, no join: each
-- costs its own rows whatever a planner believes of the tables (core checks that the id
-- range held the page's items alone). The aggregates see their subquery's rows in its
-- order.
WITH page AS MATERIALIZED (
    SELECT id, seq, status, error, usage FROM items
    WHERE batch_pk = (SELECT pk FROM batches WHERE id = ?) AND seq > ? AND seq <= ?
      AND status IN ('succeeded', 'failed', 'cancelled')
    ORDER BY seq),
span AS MATERIALIZED (SELECT min(id) AS lo, max(id) AS hi FROM page)
SELECT
    (SELECT CAST(group_concat(printf('%d,%d,%s', id, seq, status)) AS BLOB) FROM page),
    CASE WHEN EXISTS (SELECT 1 FROM page WHERE length(error) > 0) THEN
        (SELECT CAST(group_concat(CASE WHEN length(error) > 0 THEN error ELSE 'null' END,
                                  char(10)) AS BLOB) FROM page) END,
    (SELECT CAST(group_concat(data, char(10)) AS BLOB)
     FROM (SELECT data FROM item_inputs
           WHERE id BETWEEN (SELECT lo FROM span) AND (SELECT hi FROM span) ORDER BY id)),
    (SELECT CAST(group_concat(id || char(10) || data, char(10)) AS BLOB)
     FROM (SELECT id, data FROM item_outputs
           WHERE id BETWEEN (SELECT lo FROM span) AND (SELECT hi FROM span) ORDER BY id)),
    CASE WHEN EXISTS (SELECT 1 FROM page WHERE length(usage) > 0) THEN
        (SELECT CAST(group_concat(CASE WHEN length(usage) > 0 THEN usage ELSE 'null' END,
                                  char(10)) AS BLOB) FROM page) END;

-- name: finished_items_range
-- The finished items of a seq range (after, upto], in seq order; the columns of
-- core.txn.reads.export_row.
SELECT i.id, i.seq, i.rec0, i.n_records, i.status, d.data, o.data, i.error, i.ext_id,
       i.meta, i.compute_ms, i.usage
FROM items i JOIN item_inputs d ON d.id = i.id LEFT JOIN item_outputs o ON o.id = i.id
WHERE i.batch_pk = (SELECT pk FROM batches WHERE id = ?) AND i.seq > ? AND i.seq <= ?
  AND i.status IN ('succeeded', 'failed', 'cancelled')
ORDER BY i.seq;

-- name: export_page
-- A page of the bulk export, assembled by SQLite in one row: the reading thread then
-- needs the GIL a few times per page rather than for every row. The aggregates see the
-- subquery's rows in its (seq) order, all of them in the same one.
SELECT count(*), max(seq), json_group_array(id), json_group_array(runner),
       CAST('[' || group_concat(CAST(din AS TEXT), ',') || ']' AS BLOB),
       json_group_array(length(din)),
       CAST('[' || group_concat(COALESCE(CAST(dout AS TEXT), 'null'), ',') || ']' AS BLOB),
       json_group_array(COALESCE(length(dout), 4))
FROM (SELECT i.id, i.seq, i.runner, d.data AS din, o.data AS dout FROM items i
      JOIN item_inputs d ON d.id = i.id LEFT JOIN item_outputs o ON o.id = i.id
      WHERE i.batch_pk = (SELECT pk FROM batches WHERE id = ?) AND i.seq > ? AND i.status = ?
      ORDER BY i.seq LIMIT ?);


-- name: item_states
-- (seq, id, status) of a batch's items (staged ones aside), in seq order: one pass
-- reads each item once, whatever it does meanwhile.
SELECT seq, id, status FROM items
WHERE batch_pk = (SELECT pk FROM batches WHERE id = ?) AND seq > ? AND status != 'staged'
ORDER BY seq LIMIT ?;

-- name: batch_of_item
-- The visible batch holding an item, if it is the tenant's.
SELECT b.id FROM items i JOIN batches b ON b.pk = i.batch_pk
WHERE i.id = ? AND b.tenant_id = ? AND b.staging = 0
  AND i.status != 'staged';
