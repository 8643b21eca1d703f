-- Files of /v1/files: rows and their content in parts; /v1 batches over engine batches.

-- name: insert_v1_file
INSERT INTO v1_files (id, tenant_id, owner, purpose, filename, bytes, status, batch_pk,
                      created_at, expires_at)
VALUES (%(id)s, %(tenant_id)s, %(owner)s, %(purpose)s, %(filename)s, 0, 'uploading', %(batch_pk)s, %(created_at)s,
        %(expires_at)s)
RETURNING pk;

-- name: insert_v1_file_part
INSERT INTO v1_file_parts (file_pk, seq, data) VALUES (%(file_pk)s, %(seq)s, %(data)s);

-- name: publish_v1_file
UPDATE v1_files SET status = 'processed', bytes = %(bytes)s,
       purpose = COALESCE(CAST(%(purpose)s AS text), purpose),
       filename = COALESCE(CAST(%(filename)s AS text), filename),
       expires_at = COALESCE(CAST(%(expires_at)s AS double precision), expires_at)
WHERE pk = %(pk)s AND status = 'uploading';

-- name: v1_file
SELECT pk, id, tenant_id, owner, purpose, filename, bytes, status, created_at, expires_at
FROM v1_files
WHERE id = %(id)s AND tenant_id = %(tenant_id)s AND status = 'processed'
  AND (CAST(%(owner)s AS text) IS NULL OR owner = %(owner)s);

-- name: v1_files_after
SELECT pk, id, tenant_id, owner, purpose, filename, bytes, status, created_at, expires_at
FROM v1_files
WHERE tenant_id = %(tenant_id)s AND status = 'processed'
  AND (CAST(%(owner)s AS text) IS NULL OR owner = %(owner)s)
  AND (CAST(%(purpose)s AS text) IS NULL OR purpose = %(purpose)s)
  AND pk > %(after_pk)s
ORDER BY pk LIMIT %(limit)s;

-- name: v1_files_before
SELECT pk, id, tenant_id, owner, purpose, filename, bytes, status, created_at, expires_at
FROM v1_files
WHERE tenant_id = %(tenant_id)s AND status = 'processed'
  AND (CAST(%(owner)s AS text) IS NULL OR owner = %(owner)s)
  AND (CAST(%(purpose)s AS text) IS NULL OR purpose = %(purpose)s)
  AND pk < %(before_pk)s
ORDER BY pk DESC LIMIT %(limit)s;

-- name: v1_file_parts
SELECT seq, data FROM v1_file_parts WHERE file_pk = %(file_pk)s AND seq > %(after_seq)s
ORDER BY seq LIMIT %(limit)s;

-- name: delete_v1_file_parts
DELETE FROM v1_file_parts WHERE file_pk = %(file_pk)s;

-- name: delete_v1_file
DELETE FROM v1_files WHERE pk = %(pk)s;

-- name: stale_v1_uploads
SELECT pk FROM v1_files WHERE status = 'uploading' AND batch_pk IS NULL AND created_at < %(before)s
LIMIT 100;

-- name: expired_v1_files
-- Files past their expires_at (core.files.expired), a bounded number at a time.
SELECT pk FROM v1_files WHERE status = 'processed' AND expires_at <= %(now)s
LIMIT 100;

-- name: unpublished_v1_files_of_batch
SELECT pk FROM v1_files WHERE batch_pk = %(batch_pk)s AND status = 'uploading';

-- name: insert_v1_batch
INSERT INTO v1_batches (id, tenant_id, owner, dialect, engine_batch_id, input_file_id, endpoint,
                        completion_window, metadata, status, errors, created_at, expires_at,
                        in_progress_at, failed_at)
VALUES (%(id)s, %(tenant_id)s, %(owner)s, %(dialect)s, %(engine_batch_id)s, %(input_file_id)s, %(endpoint)s,
        %(completion_window)s, %(metadata)s, %(status)s, %(errors)s, %(created_at)s, %(expires_at)s,
        %(in_progress_at)s, %(failed_at)s)
RETURNING pk;

-- fragment: v1_batch_cols
-- A /v1 batch row with its engine batch's progress (core.txn.files, V1BatchRow).
v.pk, v.id, v.tenant_id, v.owner, v.dialect, v.engine_batch_id, v.input_file_id,
       v.endpoint, v.completion_window, v.metadata, v.status, v.errors, v.output_file_id,
       v.error_file_id, v.created_at, v.expires_at, v.in_progress_at, v.finalizing_at,
       v.completed_at, v.failed_at, v.expired_at, v.cancelling_at, v.cancelled_at,
       b.status, b.n_total, b.n_queued, b.n_running, b.n_succeeded, b.n_failed, b.n_cancelled,
       b.tokens_in, b.tokens_out, b.finished_at

-- name: v1_batch
SELECT {v1_batch_cols}
FROM v1_batches v LEFT JOIN batches b ON b.id = v.engine_batch_id
WHERE v.id = %(id)s AND v.tenant_id = %(tenant_id)s AND v.dialect = %(dialect)s AND v.deleted = 0
  AND (CAST(%(owner)s AS text) IS NULL OR v.owner = %(owner)s);

-- name: v1_batches_before
SELECT {v1_batch_cols}
FROM v1_batches v LEFT JOIN batches b ON b.id = v.engine_batch_id
WHERE v.tenant_id = %(tenant_id)s AND v.dialect = %(dialect)s AND v.deleted = 0
  AND (CAST(%(owner)s AS text) IS NULL OR v.owner = %(owner)s) AND v.pk < %(before_pk)s
ORDER BY v.pk DESC LIMIT %(limit)s;

-- name: v1_batches_after
SELECT {v1_batch_cols}
FROM v1_batches v LEFT JOIN batches b ON b.id = v.engine_batch_id
WHERE v.tenant_id = %(tenant_id)s AND v.dialect = %(dialect)s AND v.deleted = 0
  AND (CAST(%(owner)s AS text) IS NULL OR v.owner = %(owner)s) AND v.pk > %(after_pk)s
ORDER BY v.pk LIMIT %(limit)s;

-- name: v1_batch_pk
SELECT pk FROM v1_batches WHERE id = %(id)s;

-- name: cancel_v1_batch
UPDATE v1_batches SET status = 'cancelling', cancelling_at = %(now)s
WHERE pk = %(pk)s AND status IN ('validating', 'in_progress');

-- name: delete_v1_batch
UPDATE v1_batches SET deleted = 1 WHERE pk = %(pk)s;

-- name: v1_batches_to_finalize
-- OpenAI-dialect batches whose engine batch has ended and drained (nothing runs any more),
-- not being finalized by a live process.
SELECT v.pk, b.status FROM v1_batches v JOIN batches b ON b.id = v.engine_batch_id
WHERE v.status IN ('in_progress', 'cancelling', 'finalizing') AND v.dialect = 'openai'
  AND b.status NOT IN ('open', 'closed') AND b.finished_at IS NOT NULL
  AND (v.finalize_until IS NULL OR v.finalize_until < %(now)s)
ORDER BY v.pk LIMIT %(limit)s;

-- name: claim_v1_finalize
UPDATE v1_batches SET status = 'finalizing', finalizing_at = COALESCE(finalizing_at, %(now)s),
                      finalizer = %(finalizer)s, finalize_until = %(until)s
WHERE pk = %(pk)s AND status IN ('in_progress', 'cancelling', 'finalizing')
  AND (finalize_until IS NULL OR finalize_until < %(now)s);

-- name: renew_v1_finalize
UPDATE v1_batches SET finalize_until = %(until)s WHERE pk = %(pk)s AND finalizer = %(finalizer)s;

-- name: end_v1_batch
UPDATE v1_batches SET status = %(status)s, output_file_id = %(output_file_id)s,
                      error_file_id = %(error_file_id)s,
                      completed_at = %(completed_at)s, expired_at = %(expired_at)s,
                      cancelled_at = %(cancelled_at)s, failed_at = %(failed_at)s,
                      finalizer = NULL, finalize_until = NULL
WHERE pk = %(pk)s AND finalizer = %(finalizer)s AND status = 'finalizing';

-- name: start_v1_batch
UPDATE v1_batches SET engine_batch_id = %(engine_batch_id)s, in_progress_at = %(now)s,
       status = CASE WHEN status = 'validating' THEN 'in_progress' ELSE status END
WHERE pk = %(pk)s;

-- name: fail_v1_batch
UPDATE v1_batches SET status = 'failed', errors = %(errors)s, failed_at = %(now)s
WHERE pk = %(pk)s AND status IN ('validating', 'cancelling');

-- name: v1_batch_for_finalize
SELECT id, engine_batch_id, tenant_id, owner, cancelling_at IS NOT NULL
FROM v1_batches WHERE pk = %(pk)s AND engine_batch_id IS NOT NULL;

-- name: stale_validating_v1_batches
-- Batches whose create request never finished (its server stopped while validating).
SELECT pk, id, tenant_id FROM v1_batches
WHERE status = 'validating' AND engine_batch_id IS NULL AND deleted = 0 AND created_at < %(before)s
ORDER BY pk LIMIT 100;
