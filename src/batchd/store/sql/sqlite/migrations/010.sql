-- 10: operator actions and dashboard sessions. A paused batch (paused_at set) hands out
-- no items, and what runs finishes. The failed and cancelled items of a batch are found by a
-- small partial index (retry, and the dashboard's filters). A dashboard session is a
-- random token held by the browser, and only its hash is stored, with the key it acts as.
ALTER TABLE batches ADD COLUMN paused_at REAL;
CREATE INDEX items_unsuccessful ON items(batch_pk, status, seq)
    WHERE status IN ('failed', 'cancelled');
CREATE TABLE ui_sessions (
    token_hash TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX ui_sessions_expiry ON ui_sessions(expires_at);
