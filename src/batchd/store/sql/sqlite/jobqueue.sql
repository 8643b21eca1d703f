-- The AI job queue: jobs waiting for a flush, and the provider batches they went to.
-- Columns of a job: pk, id, tenant_id, owner, job_type, status, priority, custom_id,
-- provider_batch_id, created_at, updated_at, run_after, completed_at, tokens_in, tokens_out,
-- cost_usd, savings_usd, error_message, payload, result (the last two NULL unless "full").
-- Columns of a provider batch: pk, tenant_id, provider, provider_batch_id, model, status,
-- n_jobs, created_at, ended_at.
-- Ready (core.jobs.is_ready): status = 'pending' AND (run_after IS NULL OR run_after <= now).

-- name: insert_job
INSERT INTO aibatch_jobs (id, tenant_id, owner, job_type, status, priority, custom_id,
                          idempotency_key, run_after, payload, created_at, updated_at)
VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant_id, owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING pk;

-- name: job_by_idempotency_key
SELECT j.pk, j.id, j.tenant_id, j.owner, j.job_type, j.status, j.priority, j.custom_id,
       b.provider_batch_id, j.created_at, j.updated_at, j.run_after, j.completed_at,
       j.tokens_in, j.tokens_out, j.cost_usd, j.savings_usd, j.error_message, NULL, NULL
FROM aibatch_jobs j LEFT JOIN aibatch_batches b ON b.pk = j.batch_pk
WHERE j.tenant_id = ? AND j.owner = ? AND j.idempotency_key = ?;

-- name: job
SELECT j.pk, j.id, j.tenant_id, j.owner, j.job_type, j.status, j.priority, j.custom_id,
       b.provider_batch_id, j.created_at, j.updated_at, j.run_after, j.completed_at,
       j.tokens_in, j.tokens_out, j.cost_usd, j.savings_usd, j.error_message, NULL, NULL
FROM aibatch_jobs j LEFT JOIN aibatch_batches b ON b.pk = j.batch_pk
WHERE j.id = ? AND j.tenant_id = ?;

-- name: job_full
SELECT j.pk, j.id, j.tenant_id, j.owner, j.job_type, j.status, j.priority, j.custom_id,
       b.provider_batch_id, j.created_at, j.updated_at, j.run_after, j.completed_at,
       j.tokens_in, j.tokens_out, j.cost_usd, j.savings_usd, j.error_message, j.payload,
       j.result
FROM aibatch_jobs j LEFT JOIN aibatch_batches b ON b.pk = j.batch_pk
WHERE j.id = ? AND j.tenant_id = ?;

-- name: list_jobs
-- Every owner's when the owner is NULL.
SELECT j.pk, j.id, j.tenant_id, j.owner, j.job_type, j.status, j.priority, j.custom_id,
       b.provider_batch_id, j.created_at, j.updated_at, j.run_after, j.completed_at,
       j.tokens_in, j.tokens_out, j.cost_usd, j.savings_usd, j.error_message, NULL, NULL
FROM aibatch_jobs j LEFT JOIN aibatch_batches b ON b.pk = j.batch_pk
WHERE j.tenant_id = :tenant_id AND (:owner IS NULL OR j.owner = :owner)
ORDER BY j.pk DESC LIMIT :limit;

-- name: job_counts
SELECT j.status, COUNT(*) FROM aibatch_jobs j
WHERE j.tenant_id = :tenant_id AND (:owner IS NULL OR j.owner = :owner)
GROUP BY j.status;

-- name: job_totals
-- Per status: jobs, tokens, cost, savings, seconds from creation to completion.
SELECT j.status, COUNT(*), COALESCE(SUM(j.tokens_in + j.tokens_out), 0),
       COALESCE(SUM(j.cost_usd), 0), COALESCE(SUM(j.savings_usd), 0),
       COALESCE(SUM(j.completed_at - j.created_at), 0)
FROM aibatch_jobs j
WHERE j.tenant_id = :tenant_id AND (:owner IS NULL OR j.owner = :owner)
GROUP BY j.status;

-- name: job_status_for_update
SELECT status FROM aibatch_jobs WHERE id = ? AND tenant_id = ?;

-- name: cancel_job
UPDATE aibatch_jobs SET status = 'cancelled', updated_at = ? WHERE id = ?;

-- name: insert_queue_batch
INSERT INTO aibatch_batches (tenant_id, provider, model, status, n_jobs, created_at)
VALUES (?, ?, ?, 'submitting', 0, ?) RETURNING pk;

-- name: take_ready_jobs
-- The ready jobs of a pick, highest priority first; all job types when job_types is NULL.
UPDATE aibatch_jobs SET status = 'processing', batch_pk = :batch_pk, updated_at = :now
WHERE pk IN (SELECT pk FROM aibatch_jobs
             WHERE tenant_id = :tenant_id AND status = 'pending'
               AND (run_after IS NULL OR run_after <= :now) AND priority >= :min_priority
               AND (:job_types IS NULL OR job_type IN (SELECT value FROM json_each(:job_types)))
             ORDER BY priority DESC, pk LIMIT :max_jobs);

-- name: set_queue_batch_size
UPDATE aibatch_batches SET n_jobs = ? WHERE pk = ?;

-- name: delete_queue_batch
DELETE FROM aibatch_batches WHERE pk = ?;

-- name: jobs_of_batch
SELECT j.pk, j.id, j.tenant_id, j.owner, j.job_type, j.status, j.priority, j.custom_id,
       b.provider_batch_id, j.created_at, j.updated_at, j.run_after, j.completed_at,
       j.tokens_in, j.tokens_out, j.cost_usd, j.savings_usd, j.error_message, j.payload,
       j.result
FROM aibatch_jobs j LEFT JOIN aibatch_batches b ON b.pk = j.batch_pk
WHERE j.batch_pk = ? ORDER BY j.priority DESC, j.pk;

-- name: mark_submitted
UPDATE aibatch_batches SET provider_batch_id = ?, status = 'in_progress', submitted_at = ?
WHERE pk = ? AND status = 'submitting';

-- name: release_jobs
UPDATE aibatch_jobs SET status = 'pending', batch_pk = NULL, updated_at = ?
WHERE batch_pk = ? AND status = 'processing';

-- name: detach_jobs
UPDATE aibatch_jobs SET batch_pk = NULL WHERE batch_pk = ?;

-- name: stale_submissions
SELECT pk FROM aibatch_batches WHERE status = 'submitting' AND created_at < ?;

-- name: queue_batch
SELECT pk, tenant_id, provider, provider_batch_id, model, status, n_jobs, created_at, ended_at
FROM aibatch_batches WHERE provider_batch_id = ? AND tenant_id = ?;

-- name: open_queue_batches
SELECT pk, tenant_id, provider, provider_batch_id, model, status, n_jobs, created_at, ended_at
FROM aibatch_batches WHERE status = 'in_progress' ORDER BY pk LIMIT ?;

-- name: waiting_jobs
SELECT custom_id, id, job_type, status FROM aibatch_jobs
WHERE batch_pk = ? AND polled_at IS NULL AND status IN ('processing', 'cancelled');

-- name: unrecorded_jobs_for_update
SELECT custom_id, pk, status FROM aibatch_jobs
WHERE batch_pk = ? AND polled_at IS NULL AND status IN ('processing', 'cancelled');

-- name: record_job_outcome
UPDATE aibatch_jobs SET status = ?, result = ?, error_message = ?, tokens_in = ?,
       tokens_out = ?, cost_usd = ?, savings_usd = ?, completed_at = ?, polled_at = ?,
       updated_at = ?
WHERE pk = ? AND status = 'processing';

-- name: record_job_tokens
UPDATE aibatch_jobs SET tokens_in = ?, tokens_out = ?, cost_usd = ?, savings_usd = ?,
       polled_at = ?
WHERE pk = ?;

-- name: end_queue_batch
UPDATE aibatch_batches SET status = 'ended', ended_at = ? WHERE pk = ?;

-- name: count_processing_jobs
SELECT COUNT(*) FROM aibatch_jobs WHERE batch_pk = ? AND status = 'processing';

-- name: ready_job_counts
-- Per tenant: how many jobs are ready, and when the oldest of them was enqueued.
SELECT tenant_id, COUNT(*), MIN(created_at) FROM aibatch_jobs
WHERE status = 'pending' AND (run_after IS NULL OR run_after <= ?)
GROUP BY tenant_id;
