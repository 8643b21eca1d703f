-- 11: workbook services. The .xlsx file of every published version, kept whole and
-- found by its SHA-256 (a version's task definition names it). The same file published
-- as two versions is kept once.
CREATE TABLE service_files (
    sha256 text PRIMARY KEY,
    filename text NOT NULL,
    size_bytes bigint NOT NULL,
    content bytea NOT NULL,
    tenant_id text,
    created_at double precision NOT NULL
);
