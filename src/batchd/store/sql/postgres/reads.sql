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
WHERE id = %(batch_id)s AND NOT staging
  AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s);

-- name: batch_by_idempotency
SELECT {batch_cols}
FROM batches WHERE tenant_id = %s AND idempotency_key = %s;

-- name: batches_page_before
-- A tenant's batches newest first, before a pk (the API's list and the dashboard's):
-- created in [since, until), with a text in the metadata (search).
SELECT {batch_cols}
FROM batches
WHERE tenant_id = %(tenant_id)s AND NOT staging
  AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(dialect)s::text IS NULL OR dialect = %(dialect)s)
  AND (%(since)s::float8 IS NULL OR created_at >= %(since)s)
  AND (%(until)s::float8 IS NULL OR created_at < %(until)s)
  AND (%(search)s::text IS NULL OR strpos(convert_from(metadata, 'UTF8'), %(search)s) > 0)
  AND (%(before_pk)s::bigint IS NULL OR pk < %(before_pk)s)
ORDER BY pk DESC LIMIT %(limit)s;

-- name: recent_batches
-- Active batches and those finished since a time, newest first.
SELECT {batch_cols}
FROM batches
WHERE tenant_id = %(tenant_id)s AND NOT staging
  AND (status IN ('open', 'closed') OR finished_at >= %(finished_since)s)
  AND (%(owner)s::text IS NULL OR owner = %(owner)s)
ORDER BY pk DESC LIMIT %(limit)s;

-- name: tenant_buffers
SELECT COALESCE(SUM(in_buffer_bytes), 0), COALESCE(SUM(out_buffer_bytes), 0)
FROM batches WHERE tenant_id = %s AND status IN ('open', 'closed');

-- name: count_batches_matching
-- The batches of a core BatchQuery (as are the next two).
SELECT COUNT(*) FROM batches
WHERE tenant_id = %(tenant_id)s AND NOT staging
  AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s))
  AND (%(started)s::boolean IS NULL OR (started_at IS NOT NULL) = %(started)s);

-- name: batches_matching
SELECT {batch_cols}
FROM batches
WHERE tenant_id = %(tenant_id)s AND NOT staging
  AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s))
  AND (%(started)s::boolean IS NULL OR (started_at IS NOT NULL) = %(started)s)
ORDER BY pk DESC LIMIT %(limit)s OFFSET %(offset)s;

-- name: batch_totals_matching
-- The columns of domain.records.BatchTotals.
SELECT status, started_at IS NOT NULL AS started, COUNT(*), COALESCE(SUM(n_total), 0),
       COALESCE(SUM(actual_usd), 0), COALESCE(SUM(tokens_in + tokens_out), 0)
FROM batches
WHERE tenant_id = %(tenant_id)s AND NOT staging
  AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s))
  AND (%(started)s::boolean IS NULL OR (started_at IS NOT NULL) = %(started)s)
GROUP BY status, started;

-- name: items_page
SELECT i.id, i.seq, i.rec0, i.n_records, i.status, i.attempts, d.data, o.data, i.error,
       i.usage, i.started_at, i.finished_at, i.runner
FROM items i JOIN item_inputs d ON d.id = i.id LEFT JOIN item_outputs o ON o.id = i.id
WHERE i.batch_pk = (SELECT pk FROM batches WHERE id = %(batch_id)s)
  AND i.seq > %(after_seq)s AND i.status != 'staged'
  AND (%(status)s::text IS NULL OR i.status = %(status)s)
ORDER BY i.seq LIMIT %(limit)s;

-- name: item_of_batch
SELECT i.id, i.seq, i.rec0, i.n_records, i.status, i.attempts, d.data, o.data, i.error,
       i.usage, i.started_at, i.finished_at, i.runner
FROM items i JOIN item_inputs d ON d.id = i.id LEFT JOIN item_outputs o ON o.id = i.id
WHERE i.id = %s AND i.status != 'staged'
  AND i.batch_pk = (SELECT pk FROM batches WHERE id = %s);

-- name: finished_items_page
-- The columns of core.txn.reads.export_row.
SELECT i.id, i.seq, i.rec0, i.n_records, i.status, d.data, o.data, i.error, i.ext_id,
       i.meta, i.compute_ms, i.usage
FROM items i JOIN item_inputs d ON d.id = i.id LEFT JOIN item_outputs o ON o.id = i.id
WHERE i.batch_pk = (SELECT pk FROM batches WHERE id = %s) AND i.seq > %s
  AND i.status IN ('succeeded', 'failed', 'cancelled')
ORDER BY i.seq LIMIT %s;

-- name: last_item_seq
-- The highest seq of a batch's items (staged ones too): where the results export ends.
SELECT max(seq) FROM items WHERE batch_pk = (SELECT pk FROM batches WHERE id = %s);

-- name: results_run
-- binary: bytea comes back as bytes, not hex text to decode.
-- A page of the results export when its items are a run (the common case): consecutive ids
-- whose seqs follow them one for one, all succeeded without an error, and nothing else in
-- their id range. Then the page needs no id, seq or status text: seven columns, the count
-- of the batch's items in the seq range (after, upto] (staged ones and unfinished ones
-- too), the first id and its seq, each item's usage ('null' for none), one a line, or NULL
-- when none has one, the inputs one a line, how many of the items have an output, and the
-- outputs one a line (every item has one) or else each one's id then itself. Not a run:
-- the count alone (then results_page reads the page). The id range is read by primary key
-- (batch_pk + 0: not by the batch's index, which would visit the batch's rows in seq order).
WITH ends AS MATERIALIZED (
    SELECT b.pk, lo, shift, hi, n FROM (SELECT pk FROM batches WHERE id = %(batch_id)s) b
    LEFT JOIN LATERAL (SELECT id AS lo, seq - id AS shift FROM items WHERE batch_pk = b.pk
             AND seq > %(after_seq)s AND seq <= %(upto_seq)s ORDER BY seq LIMIT 1) f ON true
    LEFT JOIN LATERAL (SELECT id AS hi FROM items WHERE batch_pk = b.pk
             AND seq > %(after_seq)s AND seq <= %(upto_seq)s ORDER BY seq DESC LIMIT 1) l ON true
    CROSS JOIN LATERAL (SELECT count(*) AS n FROM items WHERE batch_pk = b.pk
             AND seq > %(after_seq)s AND seq <= %(upto_seq)s) c),
dense AS MATERIALIZED (
    SELECT lo, hi, n, shift, usages,
           (SELECT count(*) FROM item_outputs o WHERE o.id BETWEEN lo AND hi) AS outs
    FROM ends, LATERAL (
        SELECT count(*) AS m, count(usage) AS usages FROM items i
        WHERE i.id BETWEEN lo AND hi
          AND i.batch_pk + 0 = ends.pk
          AND i.seq - i.id = shift AND i.status = 'succeeded' AND i.error IS NULL) r
    WHERE m = n AND hi - lo + 1 = n)
SELECT (SELECT n FROM ends), lo, lo + shift,
    CASE WHEN usages > 0 THEN
        (SELECT string_agg(CASE WHEN length(usage) > 0 THEN usage ELSE 'null'::bytea END,
                           '\x0a'::bytea ORDER BY id) FROM items WHERE id BETWEEN lo AND hi) END,
    (SELECT string_agg(data, '\x0a'::bytea ORDER BY id) FROM item_inputs
     WHERE id BETWEEN lo AND hi),
    outs,
    CASE WHEN outs = n THEN
        (SELECT string_agg(data, '\x0a'::bytea ORDER BY id) FROM item_outputs
         WHERE id BETWEEN lo AND hi)
    ELSE (SELECT string_agg(convert_to(id::text, 'UTF8') || '\x0a'::bytea || data,
                            '\x0a'::bytea ORDER BY id)
          FROM item_outputs WHERE id BETWEEN lo AND hi) END
FROM (SELECT 1) one LEFT JOIN dense ON true;

-- name: results_page
-- binary: bytea comes back as bytes, not hex text to decode.
-- A page of the results export: the finished items of a seq range (after, upto], and the
-- inputs and outputs of the items whose ids lie in the page's, in five texts (None for
-- none): "id,seq,status" of each item, comma-separated, in seq order; each item's error
-- ('null' for none), one a line, in seq order, or None when no item has one; the inputs
-- of the id range, one a line, in id order (compact JSON holds no line end); the outputs
-- of the id range, each one's id then itself, one a line, in id order; each item's usage
-- ('null' for none), one a line, in seq order, or None when no item has one. One scan of one table each, no join: each
-- costs its own rows whatever the planner believes of the tables (with stale statistics
-- it looked items up one by one; with fresh ones it hashed the whole item_inputs for
-- every page), and core checks that the id range held the page's items alone.
WITH page AS MATERIALIZED (
    SELECT id, seq, status, error, usage FROM items
    WHERE batch_pk = (SELECT pk FROM batches WHERE id = %s) AND seq > %s AND seq <= %s
      AND status IN ('succeeded', 'failed', 'cancelled')),
span AS MATERIALIZED (SELECT min(id) AS lo, max(id) AS hi FROM page)
SELECT
    (SELECT string_agg(convert_to(id::text || ',' || seq::text || ',' || status, 'UTF8'),
                       ','::bytea ORDER BY seq) FROM page),
    CASE WHEN EXISTS (SELECT 1 FROM page WHERE length(error) > 0) THEN
        (SELECT string_agg(CASE WHEN length(error) > 0 THEN error ELSE 'null'::bytea END,
                           '\x0a'::bytea ORDER BY seq) FROM page) END,
    (SELECT string_agg(data, '\x0a'::bytea ORDER BY id) FROM item_inputs
     WHERE id >= (SELECT lo FROM span) AND id <= (SELECT hi FROM span)),
    (SELECT string_agg(convert_to(id::text, 'UTF8') || '\x0a'::bytea || data, '\x0a'::bytea
                       ORDER BY id) FROM item_outputs
     WHERE id >= (SELECT lo FROM span) AND id <= (SELECT hi FROM span)),
    CASE WHEN EXISTS (SELECT 1 FROM page WHERE length(usage) > 0) THEN
        (SELECT string_agg(CASE WHEN length(usage) > 0 THEN usage ELSE 'null'::bytea END,
                           '\x0a'::bytea ORDER BY seq) FROM page) END;

-- name: finished_items_range
-- The finished items of a seq range (after, upto], in seq order; the columns of
-- core.txn.reads.export_row.
SELECT i.id, i.seq, i.rec0, i.n_records, i.status, d.data, o.data, i.error, i.ext_id,
       i.meta, i.compute_ms, i.usage
FROM items i JOIN item_inputs d ON d.id = i.id LEFT JOIN item_outputs o ON o.id = i.id
WHERE i.batch_pk = (SELECT pk FROM batches WHERE id = %s) AND i.seq > %s AND i.seq <= %s
  AND i.status IN ('succeeded', 'failed', 'cancelled')
ORDER BY i.seq;

-- name: export_page
-- binary: bytea comes back as bytes, not hex text to decode.
-- A page of the bulk export, assembled by the database in one row.
SELECT count(*), max(s.seq), json_agg(s.id ORDER BY s.seq)::text,
       json_agg(s.runner ORDER BY s.seq)::text,
       '['::bytea || string_agg(s.din, ','::bytea ORDER BY s.seq) || ']'::bytea,
       json_agg(length(s.din) ORDER BY s.seq)::text,
       '['::bytea || string_agg(COALESCE(s.dout, 'null'::bytea), ','::bytea ORDER BY s.seq)
           || ']'::bytea,
       json_agg(COALESCE(length(s.dout), 4) ORDER BY s.seq)::text
FROM (SELECT i.id, i.seq, i.runner, d.data AS din, o.data AS dout FROM items i
      JOIN item_inputs d ON d.id = i.id LEFT JOIN item_outputs o ON o.id = i.id
      WHERE i.batch_pk = (SELECT pk FROM batches WHERE id = %s) AND i.seq > %s
        AND i.status = %s ORDER BY i.seq LIMIT %s) s;


-- name: item_states
-- (seq, id, status) of a batch's items (staged ones aside), in seq order: one pass
-- reads each item once, whatever it does meanwhile.
SELECT seq, id, status FROM items
WHERE batch_pk = (SELECT pk FROM batches WHERE id = %s) AND seq > %s AND status != 'staged'
ORDER BY seq LIMIT %s;

-- name: batch_of_item
-- The visible batch holding an item, if it is the tenant's.
SELECT b.id FROM items i JOIN batches b ON b.pk = i.batch_pk
WHERE i.id = %s AND b.tenant_id = %s AND NOT b.staging
  AND i.status != 'staged';
