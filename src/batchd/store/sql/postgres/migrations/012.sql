-- 12: the dialect a batch was made through, attempts that did not succeed, and the
-- workers' claim counters.
-- dialect: one of domain.models.DIALECTS. Existing batches get it from what each dialect
-- leaves in them (task or metadata), and the rest were native.
ALTER TABLE batches ADD COLUMN dialect text NOT NULL DEFAULT 'native';
UPDATE batches SET dialect = 'simulations' WHERE task = 'simulation';
UPDATE batches SET dialect = 'aibatch' WHERE task = 'aibatch';
UPDATE batches SET dialect = CASE
    WHEN m ? 'spark' THEN 'spark'
    WHEN m ? 'taskruns' THEN 'taskruns'
    WHEN m #>> '{v1,dialect}' IN ('openai', 'anthropic') THEN m #>> '{v1,dialect}'
    ELSE dialect END
FROM (SELECT pk AS mpk, convert_from(metadata, 'UTF8')::jsonb AS m FROM batches
      WHERE metadata IS NOT NULL AND task NOT IN ('simulation', 'aibatch')) AS meta
WHERE batches.pk = meta.mpk AND jsonb_typeof(m) = 'object'
  AND (m ? 'spark' OR m ? 'taskruns' OR m #>> '{v1,dialect}' IS NOT NULL);
-- An attempt that failed, was retried, expired or was cancelled, written with its outcome
-- (a succeeded one stays on its item alone). attempt: the item's count when it ran (a
-- retry of the batch starts it again at 1).
CREATE TABLE item_attempts (
    pk bigserial PRIMARY KEY,
    item_id bigint NOT NULL,
    attempt integer NOT NULL,
    outcome text NOT NULL,
    error bytea,
    usage bytea,
    worker text,
    started_at double precision,
    ended_at double precision NOT NULL
);
CREATE INDEX item_attempts_item ON item_attempts(item_id, pk);
-- Items a worker claimed since it started, as its heartbeats report, and the count and
-- time of the heartbeat before: a claim rate over the last heartbeat interval.
ALTER TABLE workers ADD COLUMN claimed bigint NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN claimed_before bigint NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN claimed_before_at double precision;
