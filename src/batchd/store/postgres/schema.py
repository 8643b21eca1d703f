"""PostgreSQL migrations, applied in order under an advisory lock."""

MIGRATIONS: list[str] = [
    """
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
    """,
]

# 2: input/output buffers, result delivery (pull-style dialects), idle timeout.
MIGRATIONS.append(
    """
    ALTER TABLE batches ADD COLUMN in_buffer_bytes bigint NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN out_buffer_bytes bigint NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN n_undelivered bigint NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN r_undelivered bigint NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN compute_ms double precision NOT NULL DEFAULT 0;
    ALTER TABLE batches ADD COLUMN deliver boolean NOT NULL DEFAULT false;
    ALTER TABLE batches ADD COLUMN idle_timeout_s double precision;
    ALTER TABLE batches ADD COLUMN last_activity_at double precision;
    ALTER TABLE batches ADD COLUMN close_reason text;
    ALTER TABLE items ADD COLUMN ext_id text;
    ALTER TABLE items ADD COLUMN meta bytea;
    ALTER TABLE items ADD COLUMN delivered boolean;
    ALTER TABLE items ADD COLUMN compute_ms double precision;
    CREATE INDEX items_undelivered ON items(batch_pk, seq) WHERE delivered = false;
    CREATE INDEX batches_idle ON batches(last_activity_at)
        WHERE status = 'open' AND idle_timeout_s IS NOT NULL;
    """
)

# 3: per-key overrides of the tier's limits (JSON).
MIGRATIONS.append(
    """
    ALTER TABLE api_keys ADD COLUMN limits bytea;
    """
)

# AI job queue (seed 003): jobs waiting for a flush, and the provider batches they went to.
MIGRATIONS.append(
    """
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
    """
)

# Webhooks (a durable outbox written with the outcomes, and its delivery log), per-item
# runners and webhooks, tenants' signing secrets, and tasks defined over the API.
MIGRATIONS.append(
    """
    ALTER TABLE items ADD COLUMN runner text;
    ALTER TABLE items ADD COLUMN webhook_url text;
    ALTER TABLE items ADD COLUMN webhook_event text;
    ALTER TABLE batches ADD COLUMN webhook_url text;
    ALTER TABLE batches ADD COLUMN webhook_event text;
    ALTER TABLE tenants ADD COLUMN webhook_secret text;
    CREATE TABLE webhook_outbox (
        pk bigserial PRIMARY KEY,
        id text NOT NULL UNIQUE,
        tenant_id text NOT NULL,
        batch_id text NOT NULL,
        item_id bigint,
        event text NOT NULL,
        url text NOT NULL,
        status text NOT NULL DEFAULT 'pending',
        attempts integer NOT NULL DEFAULT 0,
        created_at double precision NOT NULL,
        next_attempt_at double precision,
        last_attempt_at double precision,
        delivered_at double precision,
        last_status integer,
        last_error text
    );
    CREATE INDEX webhook_outbox_due ON webhook_outbox(next_attempt_at) WHERE status = 'pending';
    CREATE INDEX webhook_outbox_batch ON webhook_outbox(batch_id, pk);
    CREATE INDEX webhook_outbox_tenant ON webhook_outbox(tenant_id, pk);
    CREATE TABLE webhook_attempts (
        id bigserial PRIMARY KEY,
        message_pk bigint NOT NULL,
        attempt integer NOT NULL,
        at double precision NOT NULL,
        status_code integer,
        error text,
        duration_ms double precision NOT NULL DEFAULT 0
    );
    CREATE INDEX webhook_attempts_message ON webhook_attempts(message_pk, id);
    CREATE TABLE task_defs (
        pk bigserial PRIMARY KEY,
        name text NOT NULL,
        version text NOT NULL,
        kind text NOT NULL,
        spec bytea NOT NULL,
        tenant_id text,
        created_at double precision NOT NULL,
        UNIQUE (name, version)
    );
    """
)
