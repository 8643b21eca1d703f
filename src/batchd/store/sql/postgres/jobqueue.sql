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
VALUES (%s, %s, %s, %s, 'pending', %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (tenant_id, owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING pk;

-- name: job_by_idempotency_key
SELECT j.pk, j.id, j.tenant_id, j.owner, j.job_type, j.status, j.priority, j.custom_id,
       b.provider_batch_id, j.created_at, j.updated_at, j.run_after, j.completed_at,
       j.tokens_in, j.tokens_out, j.cost_usd, j.savings_usd, j.error_message, NULL, NULL
FROM aibatch_jobs j LEFT JOIN aibatch_batches b ON b.pk = j.batch_pk
WHERE j.tenant_id = %s AND j.owner = %s AND j.idempotency_key = %s;

-- name: job
SELECT j.pk, j.id, j.tenant_id, j.owner, j.job_type, j.status, j.priority, j.custom_id,
       b.provider_batch_id, j.created_at, j.updated_at, j.run_after, j.completed_at,
       j.tokens_in, j.tokens_out, j.cost_usd, j.savings_usd, j.error_message, NULL, NULL
FROM aibatch_jobs j LEFT JOIN aibatch_batches b ON b.pk = j.batch_pk
WHERE j.id = %s AND j.tenant_id = %s;

-- name: job_full
SELECT j.pk, j.id, j.tenant_id, j.owner, j.job_type, j.status, j.priority, j.custom_id,
       b.provider_batch_id, j.created_at, j.updated_at, j.run_after, j.completed_at,
       j.tokens_in, j.tokens_out, j.cost_usd, j.savings_usd, j.error_message, j.payload,
       j.result
FROM aibatch_jobs j LEFT JOIN aibatch_batches b ON b.pk = j.batch_pk
WHERE j.id = %s AND j.tenant_id = %s;

-- name: list_jobs
-- Every owner's when the owner is NULL.
SELECT j.pk, j.id, j.tenant_id, j.owner, j.job_type, j.status, j.priority, j.custom_id,
       b.provider_batch_id, j.created_at, j.updated_at, j.run_after, j.completed_at,
       j.tokens_in, j.tokens_out, j.cost_usd, j.savings_usd, j.error_message, NULL, NULL
FROM aibatch_jobs j LEFT JOIN aibatch_batches b ON b.pk = j.batch_pk
WHERE j.tenant_id = %(tenant_id)s AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
ORDER BY j.pk DESC LIMIT %(limit)s;

-- name: job_counts
SELECT j.status, COUNT(*) FROM aibatch_jobs j
WHERE j.tenant_id = %(tenant_id)s AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
GROUP BY j.status;

-- name: job_totals
-- Per status: jobs, tokens, cost, savings, seconds from creation to completion.
SELECT j.status, COUNT(*), COALESCE(SUM(j.tokens_in + j.tokens_out), 0),
       COALESCE(SUM(j.cost_usd), 0), COALESCE(SUM(j.savings_usd), 0),
       COALESCE(SUM(j.completed_at - j.created_at), 0)
FROM aibatch_jobs j
WHERE j.tenant_id = %(tenant_id)s AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
GROUP BY j.status;

-- name: job_status_for_update
SELECT status FROM aibatch_jobs WHERE id = %s AND tenant_id = %s FOR UPDATE;

-- name: cancel_job
UPDATE aibatch_jobs SET status = 'cancelled', updated_at = %s WHERE id = %s;

-- name: insert_queue_batch
INSERT INTO aibatch_batches (tenant_id, provider, model, status, n_jobs, created_at)
VALUES (%s, %s, %s, 'submitting', 0, %s) RETURNING pk;

-- name: take_ready_jobs
-- The ready jobs of a pick, highest priority first; all job types when job_types is NULL.
-- SKIP LOCKED: several servers flush one tenant's queue at once, never taking a job twice.
WITH picked AS (SELECT pk FROM aibatch_jobs
                WHERE tenant_id = %(tenant_id)s AND status = 'pending'
                  AND (run_after IS NULL OR run_after <= %(now)s)
                  AND priority >= %(min_priority)s
                  AND (%(job_types)s::text[] IS NULL OR job_type = ANY(%(job_types)s))
                ORDER BY priority DESC, pk LIMIT %(max_jobs)s FOR UPDATE SKIP LOCKED)
UPDATE aibatch_jobs j SET status = 'processing', batch_pk = %(batch_pk)s, updated_at = %(now)s
FROM picked WHERE j.pk = picked.pk;

-- name: set_queue_batch_size
UPDATE aibatch_batches SET n_jobs = %s WHERE pk = %s;

-- name: delete_queue_batch
DELETE FROM aibatch_batches WHERE pk = %s;

-- name: jobs_of_batch
SELECT j.pk, j.id, j.tenant_id, j.owner, j.job_type, j.status, j.priority, j.custom_id,
       b.provider_batch_id, j.created_at, j.updated_at, j.run_after, j.completed_at,
       j.tokens_in, j.tokens_out, j.cost_usd, j.savings_usd, j.error_message, j.payload,
       j.result
FROM aibatch_jobs j LEFT JOIN aibatch_batches b ON b.pk = j.batch_pk
WHERE j.batch_pk = %s ORDER BY j.priority DESC, j.pk;

-- name: mark_submitted
UPDATE aibatch_batches SET provider_batch_id = %s, status = 'in_progress', submitted_at = %s
WHERE pk = %s AND status = 'submitting';

-- name: release_jobs
UPDATE aibatch_jobs SET status = 'pending', batch_pk = NULL, updated_at = %s
WHERE batch_pk = %s AND status = 'processing';

-- name: detach_jobs
UPDATE aibatch_jobs SET batch_pk = NULL WHERE batch_pk = %s;

-- name: stale_submissions
SELECT pk FROM aibatch_batches WHERE status = 'submitting' AND created_at < %s;

-- name: queue_batch
SELECT pk, tenant_id, provider, provider_batch_id, model, status, n_jobs, created_at, ended_at
FROM aibatch_batches WHERE provider_batch_id = %s AND tenant_id = %s;

-- name: open_queue_batches
SELECT pk, tenant_id, provider, provider_batch_id, model, status, n_jobs, created_at, ended_at
FROM aibatch_batches WHERE status = 'in_progress' ORDER BY pk LIMIT %s;

-- name: waiting_jobs
SELECT custom_id, id, job_type, status FROM aibatch_jobs
WHERE batch_pk = %s AND polled_at IS NULL AND status IN ('processing', 'cancelled');

-- name: unrecorded_jobs_for_update
-- Row locks in pk order, as every other writer of these rows takes them.
SELECT custom_id, pk, status FROM aibatch_jobs
WHERE batch_pk = %s AND polled_at IS NULL AND status IN ('processing', 'cancelled')
ORDER BY pk FOR UPDATE;

-- name: record_job_outcome
UPDATE aibatch_jobs SET status = %s, result = %s, error_message = %s, tokens_in = %s,
       tokens_out = %s, cost_usd = %s, savings_usd = %s, completed_at = %s, polled_at = %s,
       updated_at = %s
WHERE pk = %s AND status = 'processing';

-- name: record_job_tokens
UPDATE aibatch_jobs SET tokens_in = %s, tokens_out = %s, cost_usd = %s, savings_usd = %s,
       polled_at = %s
WHERE pk = %s;

-- name: end_queue_batch
UPDATE aibatch_batches SET status = 'ended', ended_at = %s WHERE pk = %s;

-- name: count_processing_jobs
SELECT COUNT(*) FROM aibatch_jobs WHERE batch_pk = %s AND status = 'processing';

-- name: ready_job_counts
-- Per tenant: how many jobs are ready, and when the oldest of them was enqueued.
SELECT tenant_id, COUNT(*), MIN(created_at) FROM aibatch_jobs
WHERE status = 'pending' AND (run_after IS NULL OR run_after <= %s)
GROUP BY tenant_id;
