-- 11: workbook services. The .xlsx file of every published version, kept whole and
-- found by its SHA-256 (a version's task definition names it). The same file published
-- as two versions is kept once.
CREATE TABLE service_files (
    sha256 TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    content BLOB NOT NULL,
    tenant_id TEXT,
    created_at REAL NOT NULL
);
