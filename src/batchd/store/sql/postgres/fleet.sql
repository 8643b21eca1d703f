-- The processes sharing the database: what each announces of itself (batchd.core.fleet).

-- name: announce_process
-- Parameters: id, info (JSON), started_at, seen_at.
INSERT INTO processes (id, info, started_at, seen_at) VALUES (%s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET info = excluded.info, seen_at = excluded.seen_at;

-- name: forget_processes_seen_before
DELETE FROM processes WHERE seen_at < %s;

-- name: forget_process
DELETE FROM processes WHERE id = %s;

-- name: processes
SELECT id, info, started_at, seen_at FROM processes ORDER BY started_at, id;

-- name: defined_task_kind
SELECT kind FROM task_defs WHERE name = %s AND version = %s;
