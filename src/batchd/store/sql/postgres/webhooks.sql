-- The webhook outbox, its delivery log and the tenants' signing secrets.

-- name: insert_webhook_messages
INSERT INTO webhook_outbox (id, tenant_id, batch_id, item_id, event, url, created_at,
                            next_attempt_at)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[],
                     %s::float8[], %s::float8[]);

-- Columns of a message: pk, id, tenant_id, batch_id, item_id, event, url, status, attempts,
-- created_at, next_attempt_at, last_attempt_at, delivered_at, last_status, last_error.
-- Columns of an attempt: message_pk, attempt, at, status_code, error, duration_ms.

-- name: claim_webhooks
-- Deliverers on several machines claim due messages without waiting on each other.
WITH due AS (SELECT pk FROM webhook_outbox
             WHERE status = 'pending' AND next_attempt_at <= %(now)s
             ORDER BY next_attempt_at, pk LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
UPDATE webhook_outbox o SET attempts = o.attempts + 1, next_attempt_at = %(lease_until)s,
       last_attempt_at = %(now)s
FROM due WHERE o.pk = due.pk
RETURNING o.pk, o.id, o.tenant_id, o.batch_id, o.item_id, o.event, o.url, o.status, o.attempts,
          o.created_at, o.next_attempt_at, o.last_attempt_at, o.delivered_at, o.last_status,
          o.last_error;

-- name: insert_webhook_attempt
INSERT INTO webhook_attempts (message_pk, attempt, at, status_code, error, duration_ms)
VALUES (%s, %s, %s, %s, %s, %s);

-- name: update_webhook_message
-- Only while pending and this attempt is its latest: a late result never undoes a newer one.
UPDATE webhook_outbox SET status = %(status)s, next_attempt_at = %(next_attempt_at)s,
       last_status = %(status_code)s, last_error = %(error)s,
       delivered_at = CASE WHEN %(delivered)s THEN %(at)s ELSE delivered_at END
WHERE pk = %(pk)s AND status = 'pending' AND attempts = %(attempt)s;

-- name: next_webhook_at
SELECT MIN(next_attempt_at) FROM webhook_outbox WHERE status = 'pending';

-- name: list_webhooks
SELECT o.pk, o.id, o.tenant_id, o.batch_id, o.item_id, o.event, o.url, o.status, o.attempts,
       o.created_at, o.next_attempt_at, o.last_attempt_at, o.delivered_at, o.last_status,
       o.last_error
FROM webhook_outbox o JOIN batches b ON b.id = o.batch_id
WHERE o.tenant_id = %(tenant_id)s
  AND (%(owner)s::text IS NULL OR b.owner = %(owner)s)
  AND (%(batch_id)s::text IS NULL OR o.batch_id = %(batch_id)s)
  AND (%(status)s::text IS NULL OR o.status = %(status)s)
  AND (%(before_pk)s::bigint IS NULL OR o.pk < %(before_pk)s)
ORDER BY o.pk DESC LIMIT %(limit)s;

-- name: webhook_with_owner
-- The message's columns, then its batch's owner.
SELECT o.pk, o.id, o.tenant_id, o.batch_id, o.item_id, o.event, o.url, o.status, o.attempts,
       o.created_at, o.next_attempt_at, o.last_attempt_at, o.delivered_at, o.last_status,
       o.last_error, b.owner
FROM webhook_outbox o JOIN batches b ON b.id = o.batch_id
WHERE o.id = %s AND o.tenant_id = %s;

-- name: webhook_attempts
SELECT message_pk, attempt, at, status_code, error, duration_ms
FROM webhook_attempts WHERE message_pk = %s ORDER BY id;

-- name: webhook_secret
SELECT webhook_secret FROM tenants WHERE id = %s;

-- name: set_webhook_secret
-- With rotate the candidate replaces the secret; without, it only fills a missing one.
UPDATE tenants SET webhook_secret = CASE WHEN %(rotate)s THEN %(candidate)s
                                         ELSE COALESCE(webhook_secret, %(candidate)s) END
WHERE id = %(tenant_id)s RETURNING webhook_secret;
