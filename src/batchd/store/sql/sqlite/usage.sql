-- Usage per tenant and billing period, and the batch event log.

-- name: add_usage
INSERT INTO usage (tenant_id, period, metric, value) VALUES (?, ?, ?, ?)
ON CONFLICT (tenant_id, period, metric) DO UPDATE SET value = value + excluded.value;

-- name: usage_of_metrics
SELECT metric, value FROM usage
WHERE tenant_id = ? AND period = ? AND metric IN (SELECT value FROM json_each(?));

-- name: usage_of_period
SELECT metric, value FROM usage WHERE tenant_id = ? AND period = ?;

-- name: usage_since
SELECT period, metric, value FROM usage WHERE tenant_id = ? AND period >= ?;

-- name: insert_event
INSERT INTO events (at, tenant_id, batch_id, kind, data) VALUES (?, ?, ?, ?, ?);

-- name: events_of_batch
SELECT id, at, kind, data FROM events WHERE batch_id = ? AND id > ? ORDER BY id LIMIT ?;
