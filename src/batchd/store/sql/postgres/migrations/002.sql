-- 2: input/output buffers, result delivery (pull-style dialects), idle timeout.
ALTER TABLE batches ADD COLUMN in_buffer_bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN out_buffer_bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN n_undelivered bigint NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN r_undelivered bigint NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN compute_ms double precision NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN deliver boolean NOT NULL DEFAULT false;
ALTER TABLE batches ADD COLUMN idle_timeout_s double precision;
ALTER TABLE batches ADD COLUMN last_activity_at double precision;
ALTER TABLE batches ADD COLUMN close_reason text;
ALTER TABLE items ADD COLUMN ext_id text;
ALTER TABLE items ADD COLUMN meta bytea;
ALTER TABLE items ADD COLUMN delivered boolean;
ALTER TABLE items ADD COLUMN compute_ms double precision;
CREATE INDEX items_undelivered ON items(batch_pk, seq) WHERE delivered = false;
CREATE INDEX batches_idle ON batches(last_activity_at)
    WHERE status = 'open' AND idle_timeout_s IS NOT NULL;
