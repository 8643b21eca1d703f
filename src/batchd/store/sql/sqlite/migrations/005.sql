-- Webhooks (a durable outbox written with the outcomes, and its delivery log), per-item
-- runners and webhooks, tenants' signing secrets, and tasks defined over the API.
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
