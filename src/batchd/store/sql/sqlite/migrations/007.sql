-- 7: incremental auto-vacuum, so that the pages of a discarded upload can be given back
-- to the filesystem (PRAGMA incremental_vacuum) instead of staying in the file for good.
-- Switching an existing database over takes one VACUUM, which rewrites the whole file
-- (and needs about as much free disk as the file's size, once). VACUUM cannot run
-- inside a transaction, and the marker below has this migration run outside one.
-- batchd: no transaction
PRAGMA auto_vacuum = INCREMENTAL;
VACUUM;
