-- Task definitions made over the API.
-- Columns of a definition: name, version, kind, spec, tenant_id, created_at.

-- name: insert_task_def
INSERT INTO task_defs (name, version, kind, spec, tenant_id, created_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (name, version) DO NOTHING;

-- name: task_def
SELECT name, version, kind, spec, tenant_id, created_at
FROM task_defs WHERE name = %s AND version = %s;

-- name: task_defs
SELECT name, version, kind, spec, tenant_id, created_at FROM task_defs ORDER BY pk;
