-- 9: model upstreams and the /v1 dialects (OpenAI Batch + Files, Anthropic Message Batches)
-- upstream_shares: each process's share of an upstream's limits (batchd.domain.upstreams).
CREATE TABLE upstream_shares (
    upstream TEXT NOT NULL,
    process_id TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    rpm INTEGER NOT NULL,
    tpm INTEGER NOT NULL,
    demand INTEGER NOT NULL,
    lease_until REAL NOT NULL,
    paused_until REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (upstream, process_id)
);
-- Files of /v1/files: the row, and the content in parts (never one value of 200 MB)
CREATE TABLE v1_files (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    purpose TEXT NOT NULL,
    filename TEXT NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    batch_pk INTEGER,
    created_at REAL NOT NULL,
    expires_at REAL
);
CREATE INDEX v1_files_tenant ON v1_files (tenant_id, pk);
CREATE TABLE v1_file_parts (
    file_pk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (file_pk, seq)
);
-- Batches of /v1/batches and /v1/messages/batches, over an engine batch each.
CREATE TABLE v1_batches (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    dialect TEXT NOT NULL,
    engine_batch_id TEXT,
    input_file_id TEXT,
    endpoint TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    metadata BLOB,
    status TEXT NOT NULL,
    errors BLOB,
    output_file_id TEXT,
    error_file_id TEXT,
    created_at REAL NOT NULL,
    expires_at REAL,
    in_progress_at REAL,
    finalizing_at REAL,
    completed_at REAL,
    failed_at REAL,
    expired_at REAL,
    cancelling_at REAL,
    cancelled_at REAL,
    finalizer TEXT,
    finalize_until REAL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX v1_batches_tenant ON v1_batches (tenant_id, dialect, pk);
CREATE INDEX v1_batches_open ON v1_batches (status) WHERE status IN ('in_progress', 'cancelling', 'finalizing');
