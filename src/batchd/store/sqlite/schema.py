"""SQLite migrations, applied in order; ``PRAGMA user_version`` records the last one."""

MIGRATIONS: list[str] = [
    """
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
    """,
]

# 2: input/output buffers, result delivery (pull-style dialects), idle timeout.
MIGRATIONS.append(
    """
    ALTER TABLE batches ADD COLUMN in_buffer_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN out_buffer_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN n_undelivered INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN r_undelivered INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN compute_ms REAL NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN deliver INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN idle_timeout_s REAL;
    ALTER TABLE batches ADD COLUMN last_activity_at REAL;
    ALTER TABLE batches ADD COLUMN close_reason TEXT;
    ALTER TABLE items ADD COLUMN ext_id TEXT;
    ALTER TABLE items ADD COLUMN meta BLOB;
    ALTER TABLE items ADD COLUMN delivered INTEGER;
    ALTER TABLE items ADD COLUMN compute_ms REAL;
    CREATE INDEX items_undelivered ON items(batch_pk, seq) WHERE delivered = 0;
    CREATE INDEX batches_idle ON batches(last_activity_at)
        WHERE status = 'open' AND idle_timeout_s IS NOT NULL;
    """
)

# 3: per-key overrides of the tier's limits (JSON).
MIGRATIONS.append(
    """
    ALTER TABLE api_keys ADD COLUMN limits BLOB;
    """
)

# AI job queue (seed 003): jobs waiting for a flush, and the provider batches they went to.
MIGRATIONS.append(
    """
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
    """
)

# Webhooks (a durable outbox written with the outcomes, and its delivery log), per-item
# runners and webhooks, tenants' signing secrets, and tasks defined over the API.
MIGRATIONS.append(
    """
    ALTER TABLE items ADD COLUMN runner TEXT;
    ALTER TABLE items ADD COLUMN webhook_url TEXT;
    ALTER TABLE items ADD COLUMN webhook_event TEXT;
    ALTER TABLE batches ADD COLUMN webhook_url TEXT;
    ALTER TABLE batches ADD COLUMN webhook_event TEXT;
    ALTER TABLE tenants ADD COLUMN webhook_secret TEXT;
    CREATE TABLE webhook_outbox (
        pk INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        tenant_id TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        item_id INTEGER,
        event TEXT NOT NULL,
        url TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        next_attempt_at REAL,
        last_attempt_at REAL,
        delivered_at REAL,
        last_status INTEGER,
        last_error TEXT
    );
    CREATE INDEX webhook_outbox_due ON webhook_outbox(next_attempt_at) WHERE status = 'pending';
    CREATE INDEX webhook_outbox_batch ON webhook_outbox(batch_id, pk);
    CREATE INDEX webhook_outbox_tenant ON webhook_outbox(tenant_id, pk);
    CREATE TABLE webhook_attempts (
        id INTEGER PRIMARY KEY,
        message_pk INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        at REAL NOT NULL,
        status_code INTEGER,
        error TEXT,
        duration_ms REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX webhook_attempts_message ON webhook_attempts(message_pk, id);
    CREATE TABLE task_defs (
        pk INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        kind TEXT NOT NULL,
        spec BLOB NOT NULL,
        tenant_id TEXT,
        created_at REAL NOT NULL,
        UNIQUE (name, version)
    );
    """
)
