CREATE TABLE tenants (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    tier text NOT NULL,
    created_at double precision NOT NULL
);
CREATE TABLE api_keys (
    id text PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants(id),
    key_hash text NOT NULL UNIQUE,
    prefix text NOT NULL,
    role text NOT NULL,
    tier text NOT NULL,
    owner text NOT NULL,
    created_at double precision NOT NULL,
    revoked_at double precision
);
CREATE TABLE batches (
    pk bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    tenant_id text NOT NULL,
    owner text NOT NULL,
    task text NOT NULL,
    version text NOT NULL,
    runner text,
    status text NOT NULL,
    stop_reason text,
    staging boolean NOT NULL DEFAULT true,
    records_per_item integer NOT NULL,
    priority integer NOT NULL,
    parallelism integer NOT NULL,
    fail_fast boolean NOT NULL,
    max_error_pct double precision NOT NULL,
    budget_usd double precision,
    run_after double precision NOT NULL,
    item_timeout_s double precision,
    max_attempts integer NOT NULL,
    retry_backoff_s double precision NOT NULL,
    expires_at double precision,
    max_input_bytes bigint,
    max_output_bytes bigint,
    est_usd_per_record double precision NOT NULL DEFAULT 0,
    metadata bytea,
    error bytea,
    n_total bigint NOT NULL DEFAULT 0,
    n_queued bigint NOT NULL DEFAULT 0,
    n_running bigint NOT NULL DEFAULT 0,
    n_succeeded bigint NOT NULL DEFAULT 0,
    n_failed bigint NOT NULL DEFAULT 0,
    n_cancelled bigint NOT NULL DEFAULT 0,
    r_total bigint NOT NULL DEFAULT 0,
    r_succeeded bigint NOT NULL DEFAULT 0,
    r_failed bigint NOT NULL DEFAULT 0,
    est_usd double precision NOT NULL DEFAULT 0,
    reserved_usd double precision NOT NULL DEFAULT 0,
    actual_usd double precision NOT NULL DEFAULT 0,
    tokens_in bigint NOT NULL DEFAULT 0,
    tokens_out bigint NOT NULL DEFAULT 0,
    in_bytes bigint NOT NULL DEFAULT 0,
    out_bytes bigint NOT NULL DEFAULT 0,
    next_seq bigint NOT NULL DEFAULT 0,
    next_rec bigint NOT NULL DEFAULT 0,
    idempotency_key text,
    request_hash text,
    created_at double precision NOT NULL,
    started_at double precision,
    closed_at double precision,
    finished_at double precision
);
CREATE UNIQUE INDEX batches_idem ON batches(tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX batches_tenant ON batches(tenant_id, pk);
CREATE INDEX batches_active ON batches(status) WHERE status IN ('open', 'closed');
CREATE TABLE items (
    id bigserial PRIMARY KEY,
    batch_pk bigint NOT NULL,
    seq bigint NOT NULL,
    rec0 bigint NOT NULL,
    n_records integer NOT NULL,
    status text NOT NULL,
    stage text,
    run_after double precision NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    fence bigint NOT NULL DEFAULT 0,
    lease_owner text,
    lease_expires double precision,
    cancel_requested boolean NOT NULL DEFAULT false,
    est_usd double precision NOT NULL DEFAULT 0,
    size integer NOT NULL DEFAULT 0,
    error bytea,
    usage bytea,
    started_at double precision,
    finished_at double precision
);
CREATE TABLE item_inputs (id bigint PRIMARY KEY, data bytea NOT NULL);
CREATE TABLE item_outputs (id bigint PRIMARY KEY, data bytea NOT NULL);
CREATE UNIQUE INDEX items_seq ON items(batch_pk, seq);
CREATE INDEX items_queued ON items(batch_pk, seq) WHERE status = 'queued';
CREATE INDEX items_lease ON items(lease_expires) WHERE status = 'running';
CREATE INDEX items_staged ON items(batch_pk, stage) WHERE status = 'staged';
CREATE TABLE events (
    id bigserial PRIMARY KEY,
    at double precision NOT NULL,
    tenant_id text NOT NULL,
    batch_id text,
    kind text NOT NULL,
    data bytea
);
CREATE INDEX events_batch ON events(batch_id, id);
CREATE TABLE usage (
    tenant_id text NOT NULL,
    period text NOT NULL,
    metric text NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (tenant_id, period, metric)
);
CREATE TABLE workers (
    id text PRIMARY KEY,
    info bytea,
    started_at double precision NOT NULL,
    heartbeat_at double precision NOT NULL
);
