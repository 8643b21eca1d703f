-- Usage per tenant and billing period, and the batch event log.

-- name: add_usage
INSERT INTO usage (tenant_id, period, metric, value) VALUES (%s, %s, %s, %s)
ON CONFLICT (tenant_id, period, metric) DO UPDATE SET value = usage.value + excluded.value;

-- name: usage_of_metrics
SELECT metric, value FROM usage WHERE tenant_id = %s AND period = %s AND metric = ANY(%s);

-- name: usage_of_period
SELECT metric, value FROM usage WHERE tenant_id = %s AND period = %s;

-- name: usage_since
SELECT period, metric, value FROM usage WHERE tenant_id = %s AND period >= %s;

-- name: insert_event
INSERT INTO events (at, tenant_id, batch_id, kind, data) VALUES (%s, %s, %s, %s, %s);

-- name: events_of_batch
SELECT id, at, kind, data FROM events WHERE batch_id = %s AND id > %s ORDER BY id LIMIT %s;
