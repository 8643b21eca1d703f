-- Dashboard sessions: the hash of a browser's session token and the key it acts as.

-- name: insert_session
INSERT INTO ui_sessions (token_hash, key_id, created_at, expires_at) VALUES (?, ?, ?, ?);

-- name: session_key
-- The live key behind a live session (the columns of core.txn.keys' key rows).
SELECT k.id, k.tenant_id, t.name, k.role, k.tier, k.owner, k.prefix, k.created_at,
       k.revoked_at, k.key_hash, k.limits
FROM ui_sessions s JOIN api_keys k ON k.id = s.key_id JOIN tenants t ON t.id = k.tenant_id
WHERE s.token_hash = ? AND s.expires_at > ? AND k.revoked_at IS NULL;

-- name: delete_session
DELETE FROM ui_sessions WHERE token_hash = ?;

-- name: delete_expired_sessions
DELETE FROM ui_sessions WHERE expires_at <= ?;
