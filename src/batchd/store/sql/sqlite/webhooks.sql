-- The webhook outbox, its delivery log and the tenants' signing secrets.

-- name: insert_webhook_messages
INSERT INTO webhook_outbox (id, tenant_id, batch_id, item_id, event, url, created_at,
                            next_attempt_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- Columns of a message: pk, id, tenant_id, batch_id, item_id, event, url, status, attempts,
-- created_at, next_attempt_at, last_attempt_at, delivered_at, last_status, last_error.
-- Columns of an attempt: message_pk, attempt, at, status_code, error, duration_ms.

-- name: claim_webhooks
UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = :lease_until,
       last_attempt_at = :now
WHERE pk IN (SELECT pk FROM webhook_outbox WHERE status = 'pending' AND next_attempt_at <= :now
             ORDER BY next_attempt_at, pk LIMIT :limit)
RETURNING pk, id, tenant_id, batch_id, item_id, event, url, status, attempts, created_at,
          next_attempt_at, last_attempt_at, delivered_at, last_status, last_error;

-- name: insert_webhook_attempt
INSERT INTO webhook_attempts (message_pk, attempt, at, status_code, error, duration_ms)
VALUES (?, ?, ?, ?, ?, ?);

-- name: update_webhook_message
-- Only while pending and this attempt is its latest: a late result never undoes a newer one.
UPDATE webhook_outbox SET status = :status, next_attempt_at = :next_attempt_at,
       last_status = :status_code, last_error = :error,
       delivered_at = CASE WHEN :delivered THEN :at ELSE delivered_at END
WHERE pk = :pk AND status = 'pending' AND attempts = :attempt;

-- name: next_webhook_at
SELECT MIN(next_attempt_at) FROM webhook_outbox WHERE status = 'pending';

-- name: list_webhooks
SELECT o.pk, o.id, o.tenant_id, o.batch_id, o.item_id, o.event, o.url, o.status, o.attempts,
       o.created_at, o.next_attempt_at, o.last_attempt_at, o.delivered_at, o.last_status,
       o.last_error
FROM webhook_outbox o JOIN batches b ON b.id = o.batch_id
WHERE o.tenant_id = :tenant_id
  AND (:owner IS NULL OR b.owner = :owner)
  AND (:batch_id IS NULL OR o.batch_id = :batch_id)
  AND (:status IS NULL OR o.status = :status)
  AND (:before_pk IS NULL OR o.pk < :before_pk)
ORDER BY o.pk DESC LIMIT :limit;

-- name: webhook_with_owner
-- The message's columns, then its batch's owner.
SELECT o.pk, o.id, o.tenant_id, o.batch_id, o.item_id, o.event, o.url, o.status, o.attempts,
       o.created_at, o.next_attempt_at, o.last_attempt_at, o.delivered_at, o.last_status,
       o.last_error, b.owner
FROM webhook_outbox o JOIN batches b ON b.id = o.batch_id
WHERE o.id = ? AND o.tenant_id = ?;

-- name: webhook_attempts
SELECT message_pk, attempt, at, status_code, error, duration_ms
FROM webhook_attempts WHERE message_pk = ? ORDER BY id;

-- name: webhook_secret
SELECT webhook_secret FROM tenants WHERE id = ?;

-- name: set_webhook_secret
-- With rotate the candidate replaces the secret; without, it only fills a missing one.
UPDATE tenants SET webhook_secret = CASE WHEN :rotate THEN :candidate
                                         ELSE COALESCE(webhook_secret, :candidate) END
WHERE id = :tenant_id RETURNING webhook_secret;
