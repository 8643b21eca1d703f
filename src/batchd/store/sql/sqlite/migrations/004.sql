-- AI job queue (seed 003): jobs waiting for a flush, and the provider batches they went to.
CREATE TABLE aibatch_batches (
    pk INTEGER PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    provider_batch_id TEXT,
    model TEXT,
    status TEXT NOT NULL,
    n_jobs INTEGER NOT NULL,
    created_at REAL NOT NULL,
    submitted_at REAL,
    ended_at REAL
);
CREATE INDEX aibatch_batches_provider_id ON aibatch_batches(provider_batch_id);
CREATE INDEX aibatch_batches_open ON aibatch_batches(status) WHERE status != 'ended';
CREATE TABLE aibatch_jobs (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    job_type TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    idempotency_key TEXT,
    run_after REAL,
    batch_pk INTEGER,
    payload BLOB NOT NULL,
    result BLOB,
    error_message TEXT,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    savings_usd REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    completed_at REAL,
    polled_at REAL
);
CREATE UNIQUE INDEX aibatch_jobs_idem ON aibatch_jobs(tenant_id, owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX aibatch_jobs_owner ON aibatch_jobs(tenant_id, owner, status);
CREATE INDEX aibatch_jobs_tenant ON aibatch_jobs(tenant_id, pk);
CREATE INDEX aibatch_jobs_ready ON aibatch_jobs(tenant_id, priority DESC, pk)
    WHERE status = 'pending';
CREATE INDEX aibatch_jobs_batch ON aibatch_jobs(batch_pk) WHERE batch_pk IS NOT NULL;
