-- The webhook outbox, its delivery log and the tenants' signing secrets.

-- name: insert_webhook_messages
INSERT INTO webhook_outbox (id, tenant_id, batch_id, item_id, event, url, created_at,
                            next_attempt_at)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[],
                     %s::float8[], %s::float8[]);
