-- Files of workbook services (see migrations/011.sql).

-- name: insert_service_file
INSERT INTO service_files (sha256, filename, size_bytes, content, tenant_id, created_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (sha256) DO NOTHING;

-- name: service_file
SELECT content FROM service_files WHERE sha256 = ?;

-- name: service_file_known
SELECT 1 FROM service_files WHERE sha256 = ?;
