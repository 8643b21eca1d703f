-- AI job queue (seed 003): jobs waiting for a flush, and the provider batches they went to.
CREATE TABLE aibatch_batches (
    pk bigserial PRIMARY KEY,
    tenant_id text NOT NULL,
    provider text NOT NULL,
    provider_batch_id text,
    model text,
    status text NOT NULL,
    n_jobs integer NOT NULL,
    created_at double precision NOT NULL,
    submitted_at double precision,
    ended_at double precision
);
CREATE INDEX aibatch_batches_provider_id ON aibatch_batches(provider_batch_id);
CREATE INDEX aibatch_batches_open ON aibatch_batches(status) WHERE status != 'ended';
CREATE TABLE aibatch_jobs (
    pk bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    tenant_id text NOT NULL,
    owner text NOT NULL,
    job_type text NOT NULL,
    status text NOT NULL,
    priority integer NOT NULL,
    custom_id text NOT NULL,
    idempotency_key text,
    run_after double precision,
    batch_pk bigint,
    payload bytea NOT NULL,
    result bytea,
    error_message text,
    tokens_in bigint NOT NULL DEFAULT 0,
    tokens_out bigint NOT NULL DEFAULT 0,
    cost_usd double precision NOT NULL DEFAULT 0,
    savings_usd double precision NOT NULL DEFAULT 0,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    completed_at double precision,
    polled_at double precision
);
CREATE UNIQUE INDEX aibatch_jobs_idem ON aibatch_jobs(tenant_id, owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX aibatch_jobs_owner ON aibatch_jobs(tenant_id, owner, status);
CREATE INDEX aibatch_jobs_tenant ON aibatch_jobs(tenant_id, pk);
CREATE INDEX aibatch_jobs_ready ON aibatch_jobs(tenant_id, priority DESC, pk)
    WHERE status = 'pending';
CREATE INDEX aibatch_jobs_batch ON aibatch_jobs(batch_pk) WHERE batch_pk IS NOT NULL;
