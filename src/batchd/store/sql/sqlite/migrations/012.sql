-- 12: the dialect a batch was made through, attempts that did not succeed, and the
-- workers' claim counters.
-- dialect: one of domain.models.DIALECTS. Existing batches get it from what each dialect
-- leaves in them (task or metadata), and the rest were native.
ALTER TABLE batches ADD COLUMN dialect TEXT NOT NULL DEFAULT 'native';
UPDATE batches SET dialect = CASE
    WHEN task = 'simulation' THEN 'simulations'
    WHEN task = 'aibatch' THEN 'aibatch'
    WHEN json_extract(CAST(metadata AS TEXT), '$.spark') IS NOT NULL THEN 'spark'
    WHEN json_extract(CAST(metadata AS TEXT), '$.taskruns') IS NOT NULL THEN 'taskruns'
    WHEN json_extract(CAST(metadata AS TEXT), '$.v1.dialect') IN ('openai', 'anthropic')
        THEN json_extract(CAST(metadata AS TEXT), '$.v1.dialect')
    ELSE 'native' END
WHERE task IN ('simulation', 'aibatch') OR (metadata IS NOT NULL AND json_valid(CAST(metadata AS TEXT))
    AND (json_extract(CAST(metadata AS TEXT), '$.spark') IS NOT NULL
         OR json_extract(CAST(metadata AS TEXT), '$.taskruns') IS NOT NULL
         OR json_extract(CAST(metadata AS TEXT), '$.v1.dialect') IS NOT NULL));
-- An attempt that failed, was retried, expired or was cancelled, written with its outcome
-- (a succeeded one stays on its item alone). attempt: the item's count when it ran (a
-- retry of the batch starts it again at 1).
CREATE TABLE item_attempts (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error BLOB,
    usage BLOB,
    worker TEXT,
    started_at REAL,
    ended_at REAL NOT NULL
);
CREATE INDEX item_attempts_item ON item_attempts(item_id, pk);
-- Items a worker claimed since it started, as its heartbeats report, and the count and
-- time of the heartbeat before: a claim rate over the last heartbeat interval.
ALTER TABLE workers ADD COLUMN claimed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN claimed_before INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN claimed_before_at REAL;
