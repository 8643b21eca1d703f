-- Model upstreams: each process's share of an upstream's limits (batchd.domain.upstreams).

-- name: lock_upstream_shares
-- One share decision at a time per upstream (SQLite: the one writer already is).
SELECT :upstream IS NOT NULL;

-- name: upstream_shares
SELECT process_id, concurrency, rpm, tpm, demand, lease_until, paused_until
FROM upstream_shares WHERE upstream = :upstream ORDER BY process_id;

-- name: put_upstream_share
INSERT INTO upstream_shares (upstream, process_id, concurrency, rpm, tpm, demand, lease_until,
                             paused_until)
VALUES (:upstream, :process_id, :concurrency, :rpm, :tpm, :demand, :lease_until, :paused_until)
ON CONFLICT (upstream, process_id) DO UPDATE SET
    concurrency = excluded.concurrency, rpm = excluded.rpm, tpm = excluded.tpm,
    demand = excluded.demand, lease_until = excluded.lease_until,
    paused_until = excluded.paused_until;

-- name: drop_stale_upstream_shares
DELETE FROM upstream_shares WHERE upstream = :upstream AND lease_until < :before;

-- name: drop_upstream_share
DELETE FROM upstream_shares WHERE upstream = :upstream AND process_id = :process_id;
