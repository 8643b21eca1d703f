-- 2: input/output buffers, result delivery (pull-style dialects), idle timeout.
ALTER TABLE batches ADD COLUMN in_buffer_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN out_buffer_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN n_undelivered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN r_undelivered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN compute_ms REAL NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN deliver INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN idle_timeout_s REAL;
ALTER TABLE batches ADD COLUMN last_activity_at REAL;
ALTER TABLE batches ADD COLUMN close_reason TEXT;
ALTER TABLE items ADD COLUMN ext_id TEXT;
ALTER TABLE items ADD COLUMN meta BLOB;
ALTER TABLE items ADD COLUMN delivered INTEGER;
ALTER TABLE items ADD COLUMN compute_ms REAL;
CREATE INDEX items_undelivered ON items(batch_pk, seq) WHERE delivered = 0;
CREATE INDEX batches_idle ON batches(last_activity_at)
    WHERE status = 'open' AND idle_timeout_s IS NOT NULL;
