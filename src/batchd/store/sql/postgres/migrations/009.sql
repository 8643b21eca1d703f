-- 9: model upstreams and the /v1 dialects (OpenAI Batch + Files, Anthropic Message Batches)
-- upstream_shares: each process's share of an upstream's limits (batchd.domain.upstreams).
CREATE TABLE upstream_shares (
    upstream text NOT NULL,
    process_id text NOT NULL,
    concurrency bigint NOT NULL,
    rpm bigint NOT NULL,
    tpm bigint NOT NULL,
    demand bigint NOT NULL,
    lease_until double precision NOT NULL,
    paused_until double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (upstream, process_id)
);
-- Files of /v1/files: the row, and the content in parts (never one value of 200 MB)
CREATE TABLE v1_files (
    pk bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    tenant_id text NOT NULL,
    owner text NOT NULL,
    purpose text NOT NULL,
    filename text NOT NULL,
    bytes bigint NOT NULL DEFAULT 0,
    status text NOT NULL,
    batch_pk bigint,
    created_at double precision NOT NULL,
    expires_at double precision
);
CREATE INDEX v1_files_tenant ON v1_files (tenant_id, pk);
CREATE TABLE v1_file_parts (
    file_pk bigint NOT NULL,
    seq bigint NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (file_pk, seq)
);
-- Batches of /v1/batches and /v1/messages/batches, over an engine batch each.
CREATE TABLE v1_batches (
    pk bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    tenant_id text NOT NULL,
    owner text NOT NULL,
    dialect text NOT NULL,
    engine_batch_id text,
    input_file_id text,
    endpoint text NOT NULL,
    completion_window text NOT NULL,
    metadata bytea,
    status text NOT NULL,
    errors bytea,
    output_file_id text,
    error_file_id text,
    created_at double precision NOT NULL,
    expires_at double precision,
    in_progress_at double precision,
    finalizing_at double precision,
    completed_at double precision,
    failed_at double precision,
    expired_at double precision,
    cancelling_at double precision,
    cancelled_at double precision,
    finalizer text,
    finalize_until double precision,
    deleted bigint NOT NULL DEFAULT 0
);
CREATE INDEX v1_batches_tenant ON v1_batches (tenant_id, dialect, pk);
CREATE INDEX v1_batches_open ON v1_batches (status) WHERE status IN ('in_progress', 'cancelling', 'finalizing');
