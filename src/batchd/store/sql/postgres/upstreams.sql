-- Model upstreams: each process's share of an upstream's limits (batchd.domain.upstreams).

-- name: lock_upstream_shares
-- One share decision at a time per upstream, across every process on the database.
SELECT pg_advisory_xact_lock(hashtext('upstream:' || %(upstream)s));

-- name: upstream_shares
SELECT process_id, concurrency, rpm, tpm, demand, lease_until, paused_until
FROM upstream_shares WHERE upstream = %(upstream)s ORDER BY process_id;

-- name: put_upstream_share
INSERT INTO upstream_shares (upstream, process_id, concurrency, rpm, tpm, demand, lease_until,
                             paused_until)
VALUES (%(upstream)s, %(process_id)s, %(concurrency)s, %(rpm)s, %(tpm)s, %(demand)s, %(lease_until)s, %(paused_until)s)
ON CONFLICT (upstream, process_id) DO UPDATE SET
    concurrency = excluded.concurrency, rpm = excluded.rpm, tpm = excluded.tpm,
    demand = excluded.demand, lease_until = excluded.lease_until,
    paused_until = excluded.paused_until;

-- name: drop_stale_upstream_shares
DELETE FROM upstream_shares WHERE upstream = %(upstream)s AND lease_until < %(before)s;

-- name: drop_upstream_share
DELETE FROM upstream_shares WHERE upstream = %(upstream)s AND process_id = %(process_id)s;
