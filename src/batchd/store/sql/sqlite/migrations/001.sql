CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    tier TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    role TEXT NOT NULL,
    tier TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE batches (
    pk INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    task TEXT NOT NULL,
    version TEXT NOT NULL,
    runner TEXT,
    status TEXT NOT NULL,
    stop_reason TEXT,
    staging INTEGER NOT NULL DEFAULT 1,
    records_per_item INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    parallelism INTEGER NOT NULL,
    fail_fast INTEGER NOT NULL,
    max_error_pct REAL NOT NULL,
    budget_usd REAL,
    run_after REAL NOT NULL,
    item_timeout_s REAL,
    max_attempts INTEGER NOT NULL,
    retry_backoff_s REAL NOT NULL,
    expires_at REAL,
    max_input_bytes INTEGER,
    max_output_bytes INTEGER,
    est_usd_per_record REAL NOT NULL DEFAULT 0,
    metadata BLOB,
    error BLOB,
    n_total INTEGER NOT NULL DEFAULT 0,
    n_queued INTEGER NOT NULL DEFAULT 0,
    n_running INTEGER NOT NULL DEFAULT 0,
    n_succeeded INTEGER NOT NULL DEFAULT 0,
    n_failed INTEGER NOT NULL DEFAULT 0,
    n_cancelled INTEGER NOT NULL DEFAULT 0,
    r_total INTEGER NOT NULL DEFAULT 0,
    r_succeeded INTEGER NOT NULL DEFAULT 0,
    r_failed INTEGER NOT NULL DEFAULT 0,
    est_usd REAL NOT NULL DEFAULT 0,
    reserved_usd REAL NOT NULL DEFAULT 0,
    actual_usd REAL NOT NULL DEFAULT 0,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    in_bytes INTEGER NOT NULL DEFAULT 0,
    out_bytes INTEGER NOT NULL DEFAULT 0,
    next_seq INTEGER NOT NULL DEFAULT 0,
    next_rec INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT,
    request_hash TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    closed_at REAL,
    finished_at REAL
);
CREATE UNIQUE INDEX batches_idem ON batches(tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX batches_tenant ON batches(tenant_id, pk);
CREATE INDEX batches_active ON batches(status) WHERE status IN ('open', 'closed');
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    batch_pk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    rec0 INTEGER NOT NULL,
    n_records INTEGER NOT NULL,
    status TEXT NOT NULL,
    stage TEXT,
    run_after REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    fence INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    est_usd REAL NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    error BLOB,
    usage BLOB,
    started_at REAL,
    finished_at REAL
);
-- Payloads live apart from the item rows, so the state changes of claiming,
-- finishing and committing an upload rewrite small rows, not the data.
CREATE TABLE item_inputs (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE item_outputs (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE UNIQUE INDEX items_seq ON items(batch_pk, seq);
CREATE INDEX items_queued ON items(batch_pk, seq) WHERE status = 'queued';
CREATE INDEX items_lease ON items(lease_expires) WHERE status = 'running';
CREATE INDEX items_staged ON items(batch_pk, stage) WHERE status = 'staged';
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    tenant_id TEXT NOT NULL,
    batch_id TEXT,
    kind TEXT NOT NULL,
    data BLOB
);
CREATE INDEX events_batch ON events(batch_id, id);
CREATE TABLE usage (
    tenant_id TEXT NOT NULL,
    period TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (tenant_id, period, metric)
);
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    info BLOB,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);
