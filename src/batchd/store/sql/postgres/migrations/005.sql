-- Webhooks (a durable outbox written with the outcomes, and its delivery log), per-item
-- runners and webhooks, tenants' signing secrets, and tasks defined over the API.
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
