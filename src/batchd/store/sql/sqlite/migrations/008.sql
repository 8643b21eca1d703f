-- 8: every server and worker announces itself while it runs: its role, the tasks it
-- claims and the settings the others must share (JSON, read by batchd.core.fleet). A row
-- not refreshed for a while belongs to a process that is gone.
CREATE TABLE processes (
    id TEXT PRIMARY KEY,
    info BLOB NOT NULL,
    started_at REAL NOT NULL,
    seen_at REAL NOT NULL
);
