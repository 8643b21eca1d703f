-- 3: per-key overrides of the tier's limits (JSON).
ALTER TABLE api_keys ADD COLUMN limits bytea;
