"""Shares of the upstreams' limits: one decision per renewal, in one transaction."""

from __future__ import annotations

from batchd.core.txn.runner import Runner
from batchd.domain import upstreams
from batchd.store import script as q
from batchd.store.script import Script


def share(
    name: str, limits: upstreams.UpstreamLimits, process_id: str, want: upstreams.Want,
    now: float, lease_s: float, paused_until: float,
) -> Script[upstreams.Share]:
    yield q.run("lock_upstream_shares", upstream=name)
    yield q.run("drop_stale_upstream_shares", upstream=name, before=now - lease_s)
    rows = yield q.rows("upstream_shares", upstream=name)
    others = [upstreams.Held(process_id=r[0], concurrency=r[1], rpm=r[2], tpm=r[3],
                             demand=r[4], lease_until=r[5], paused_until=r[6]) for r in rows]
    mine = next((h for h in others if h.process_id == process_id), None)
    paused = max(paused_until, mine.paused_until if mine else 0.0)
    decided = upstreams.plan(limits, me=process_id, want=want, others=others, now=now,
                             lease_until=now + lease_s, paused_until=paused)
    h = decided.held
    yield q.run("put_upstream_share", upstream=name, process_id=process_id,
                concurrency=h.concurrency, rpm=h.rpm, tpm=h.tpm, demand=h.demand,
                lease_until=h.lease_until, paused_until=h.paused_until)
    return decided


def release(name: str, process_id: str) -> Script[None]:
    yield q.run("drop_upstream_share", upstream=name, process_id=process_id)


class UpstreamOps(Runner):
    async def share_upstream(
        self, name: str, *, limits: upstreams.UpstreamLimits, process_id: str,
        want: upstreams.Want, now: float, lease_s: float, paused_until: float = 0.0,
    ) -> upstreams.Share:
        """Renew this process's share of upstream ``name``'s limits (see
        :func:`batchd.domain.upstreams.plan`); rows of processes gone for a lease are
        dropped first."""
        return await self._write(share, name, limits, process_id, want, now, lease_s,
                                 paused_until)

    async def release_upstream(self, name: str, *, process_id: str) -> None:
        """Give the whole share back (the process stops, or has had nothing to do)."""
        await self._write(release, name, process_id)
