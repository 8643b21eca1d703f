-- 10: operator actions and dashboard sessions. A paused batch (paused_at set) hands out
-- no items, and what runs finishes. The failed and cancelled items of a batch are found by a
-- small partial index (retry, and the dashboard's filters). A dashboard session is a
-- random token held by the browser, and only its hash is stored, with the key it acts as.
ALTER TABLE batches ADD COLUMN paused_at double precision;
CREATE INDEX items_unsuccessful ON items(batch_pk, status, seq)
    WHERE status IN ('failed', 'cancelled');
CREATE TABLE ui_sessions (
    token_hash text PRIMARY KEY,
    key_id text NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL
);
CREATE INDEX ui_sessions_expiry ON ui_sessions(expires_at);
