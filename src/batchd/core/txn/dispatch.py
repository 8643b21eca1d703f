"""Handing work to workers and taking their outcomes: claim, finish, heartbeat, reap.

A claim deals its slots over the batches with :class:`batchd.core.scheduling.ClaimPlan`
and leases each share with :func:`claim_batch`. With one writer (SQLite) the whole
claim is one transaction; where many processes claim at once (PostgreSQL,
``Store.concurrent_claims``) each batch's share is a transaction of its own, so a
claim never holds two batch locks, and an unbudgeted batch is leased in one statement.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from batchd.core import accounting, lifecycle, scheduling
from batchd.core.scheduling import Candidate
from batchd.core.txn import lifecycle as batches
from batchd.core.txn import usage, webhooks
from batchd.core.txn.reads import export_row
from batchd.core.txn.runner import Runner
from batchd.domain import errors, states
from batchd.domain.models import (
    NO_FREED_SLOTS,
    ClaimedItem,
    FreedSlots,
    Outcome,
    Promotion,
)
from batchd.domain.records import ExportRow
from batchd.domain.states import ItemStatus, StopReason
from batchd.store import script as q
from batchd.store.script import Script
from batchd.tasks.registry import TaskRegistry

log = logging.getLogger(__name__)

LEASABLE = states.item_sources(ItemStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class ClaimBatch:
    """A batch a claim takes items from, as read (and locked) by the claiming transaction."""

    pk: int
    parallelism: int
    running: int
    budget_usd: float | None
    actual_usd: float
    reserved_usd: float
    task: str
    version: str
    runner: str | None
    item_timeout_s: float | None
    max_attempts: int
    retry_backoff_s: float
    records_per_item: int


def candidates(
    now: float, freed: FreedSlots, tasks: scheduling.Claimable | None = None,
    reserve: Mapping[str, int] | None = None,
) -> Script[tuple[list[Candidate], dict[str, int]]]:
    """Batches with work to hand out, of the ``tasks`` the claimer may run (None: any),
    and the running items of each tenant; the slots ``freed`` by the claimer are left out
    of both (a batch full without them is one). The batches the claimer would hold
    items of in ``reserve`` are candidates even when full."""
    rows = yield q.rows(
        "claim_candidates", now=now, freed=q.array(sorted({*freed.items, *(reserve or ())})),
        all_tasks=tasks is None, names=q.array(tasks.names if tasks else ()),
        versions=q.array(tasks.versions if tasks else ()),
        kinds=q.array(tasks.kinds if tasks else ()),
    )
    if not rows:
        return [], {}
    found = []
    for r in rows:
        mine = len(reusable(freed, r[0], budgeted=bool(r[6])))
        found.append(Candidate(batch_id=r[0], tenant_id=r[1], priority=r[2], parallelism=r[3],
                               running=r[4] - mine, created_at=r[5], budgeted=bool(r[6]),
                               freed=mine))
    running = yield q.rows("running_per_tenant")
    return found, {t: int(n) - freed.tenants.get(t, 0) for t, n in running}


def reusable(freed: FreedSlots, batch_id: str, *, budgeted: bool) -> list[int]:
    """The claimer's freed slots of a batch that it may take again before their outcomes
    are committed: none of a budgeted batch, whose next item is admitted on what the
    finished ones cost (known to the budget only once committed; an item may cost more
    than its estimate)."""
    return [] if budgeted else freed.of(batch_id)


def _claimed(c: Candidate, r: Any, *, reserved: bool = False) -> ClaimedItem:
    # columns: id, seq, n_records, attempts, fence, est_usd, runner, input, task, version,
    # item_timeout_s, max_attempts, retry_backoff_s, records_per_item
    return ClaimedItem(
        rowid=r[0], batch_id=c.batch_id, tenant_id=c.tenant_id, seq=r[1], n_records=r[2],
        attempts=r[3], fence=r[4], est_usd=r[5], runner=r[6], input=bytes(r[7]), task=r[8],
        version=r[9], item_timeout_s=r[10], max_attempts=r[11], retry_backoff_s=r[12],
        records_per_item=r[13], reserved=reserved,
    )


def claim_batch(
    c: Candidate, want: int, *, owner: str, now: float, lease_s: float, one_statement: bool,
    freed: list[int], adopt: Sequence[int] = (), started_at: float | None = None,
) -> Script[list[ClaimedItem]]:
    """Lease up to ``want`` ready items of one batch, within its room and its budget; a
    batch whose budget nothing fits any more stops as ``budget_exceeded``.

    ``freed`` are the claimer's items of this batch that finished without their outcome
    committed yet: their slots may be taken again (the batch still counts them).
    ``adopt``: items the claimer holds in reserve that it may lease like any ready one.
    ``started_at``: when the items start, if later than ``now`` (the lease's grant)."""
    until = now + lease_s
    started = now if started_at is None else started_at
    if one_statement and not c.budgeted and c.parallelism - c.running - c.freed >= want:
        rows = yield q.rows("claim_unbudgeted", batch=c.batch_id, now=now, want=want,
                            owner=owner, until=until, adopt=q.array(adopt), started=started)
        return [_claimed(c, r) for r in rows]
    row = yield q.one("claim_batch", c.batch_id)
    if row is None:
        return []  # stopped or ended since the candidates were read
    b = ClaimBatch(*row)
    running = b.running  # fresh counts: other claimers may have run
    if freed and b.parallelism - running < want:
        # Counted under the batch's lock: exact, whatever commits of ours landed since.
        running -= yield q.value("still_running_of", owner, q.array(freed))
    want = min(want, b.parallelism - running)
    if want <= 0:
        return []
    ready = yield q.rows("ready_items", b.pk, now, now, q.array(adopt), want)
    if b.budget_usd is not None:
        fit = scheduling.budget_fit([r[1] for r in ready], budget_usd=b.budget_usd,
                                    actual_usd=b.actual_usd, reserved_usd=b.reserved_usd,
                                    running=b.running)
        if fit.exhausted:
            yield from batches.stop(c.batch_id, StopReason.BUDGET_EXCEEDED, None, now)
        ready = ready[: fit.n]
    if not ready:
        return []
    ids = q.array([r[0] for r in ready])
    leased = yield q.rows("lease_items", owner, until, started, ids, q.array(LEASABLE))
    yield q.run("count_claimed", len(leased), len(leased), sum(r[5] for r in leased), now,
                b.pk)
    return (yield from _with_inputs(c, b, leased, reserved=False))


def _with_inputs(
    c: Candidate, b: ClaimBatch, leased: list[Any], *, reserved: bool
) -> Script[list[ClaimedItem]]:
    """The claimed items of leased rows (``id, seq, n_records, attempts, fence, est_usd,
    runner``), with their inputs."""
    if not leased:
        return []
    found = yield q.rows("claimed_inputs", q.array([r[0] for r in leased]))
    inputs = {r[0]: r[1] for r in found}
    return [
        _claimed(c, (r[0], r[1], r[2], r[3], r[4], r[5], r[6] or b.runner, inputs[r[0]],
                     b.task, b.version, b.item_timeout_s, b.max_attempts, b.retry_backoff_s,
                     b.records_per_item), reserved=reserved)
        for r in leased
    ]


def reserve_batch(
    c: Candidate, want: int, *, owner: str, now: float, lease_s: float
) -> Script[list[ClaimedItem]]:
    """Hold up to ``want`` ready items of a full batch in reserve for the claimer: each
    starts in the slot of one of its items of the batch when that one's handler returns
    (:func:`promote`), with no claim in between, so a batch held at its cap by slow
    claims runs closer to it. Only a batch with no room left (items it has room for are
    claimed, not reserved) and no budget (whose next item waits for the last one's cost)."""
    row = yield q.one("claim_batch", c.batch_id)
    if row is None:
        return []
    b = ClaimBatch(*row)
    if b.budget_usd is not None or b.running < b.parallelism:
        return []
    ready = yield q.rows("ready_items", b.pk, now, now, q.array(()), want)
    if not ready:
        return []
    held = yield q.rows("reserve_items", owner, now + lease_s, q.array([r[0] for r in ready]))
    return (yield from _with_inputs(c, b, held, reserved=True))


def promote(
    promotions: Sequence[Promotion], *, owner: str, lease_until: float
) -> Script[list[Promotion]]:
    """Record reserved items started in freed slots as claimed (running from their start);
    those no longer held, or of a batch no longer dispatching, are marked ``refused``
    and given back. Returns those recorded: the caller counts them."""
    if not promotions:
        return []
    live = {r[0] for r in (yield q.rows(
        "dispatching_batches", q.array(sorted({p.batch_id for p in promotions}))))}
    held = [p for p in promotions if p.batch_id in live]
    started: set[int] = set()
    if held:
        rows = yield q.rows(
            "promote_items", lease_until, q.array([p.rowid for p in held]),
            q.array([p.fence for p in held]), q.array([p.started_at for p in held]), owner,
        )
        started = {r[0] for r in rows}
    for p in promotions:  # each time: a transaction tried again runs this again
        p.refused = p.rowid not in started
    yield from release(owner, [p.rowid for p in promotions if p.refused])
    return [p for p in promotions if p.rowid in started]


def release(owner: str, rowids: list[int]) -> Script[None]:
    """Give items ``owner`` held in reserve back to every claimer."""
    if rowids:
        yield q.run("release_reserved", owner, q.array(rowids))


def claim(
    owner: str, limit: int, now: float, lease_s: float, tenant_cap: int, freed: FreedSlots,
    finished: Sequence[Outcome] = (), tasks: scheduling.Claimable | None = None,
    promotions: Sequence[Promotion] = (), reserve: Mapping[str, int] | None = None,
    adopt: Sequence[int] = (),
) -> Script[list[ClaimedItem]]:
    """A whole claim in one transaction (one writer: nothing else claims meanwhile), after
    recording the claimer's ``promotions`` and ``finished`` outcomes; then the items it
    asked to hold in ``reserve``."""
    if finished or promotions:
        yield from finish(list(finished), now, promotions, owner=owner,
                          lease_until=now + lease_s)
    found, tenant_running = yield from candidates(now, freed, tasks, reserve)
    plan = scheduling.ClaimPlan(found, limit=limit, tenant_running=tenant_running,
                                tenant_cap=tenant_cap)
    claimed: list[ClaimedItem] = []
    for c, want in plan:
        got = yield from claim_batch(c, want, owner=owner, now=now, lease_s=lease_s,
                                     one_statement=False, adopt=adopt,
                                     freed=reusable(freed, c.batch_id, budgeted=c.budgeted))
        plan.took(len(got))
        claimed.extend(got)
    for c, want in reserve_shares(found, reserve):
        claimed.extend((yield from reserve_batch(c, want, owner=owner, now=now,
                                                 lease_s=lease_s)))
    return claimed


def reserve_shares(
    found: list[Candidate], reserve: Mapping[str, int] | None
) -> list[tuple[Candidate, int]]:
    """The candidate batches the claimer asked to hold items of in reserve, and how many:
    those it found full (after its own share; :func:`reserve_batch` looks again under
    the batch's lock), so that a batch with room or no cap costs no reserve round trip."""
    if not reserve:
        return []
    return [(c, reserve[c.batch_id]) for c in found
            if reserve.get(c.batch_id, 0) > 0 and not c.budgeted
            and c.running >= c.parallelism]


def _leased_item(r: Any) -> accounting.LeasedItem:
    # Positional, in the field order (the hot path of every group commit): id, batch_id,
    # fence, status, cancel_requested, est_usd, n_records, stop_reason, tenant_id, size,
    # deliver, fail_fast.
    return accounting.LeasedItem(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8],
                                 r[9], bool(r[10]), bool(r[11]))


def finish(
    outcomes: list[Outcome], now: float, promotions: Sequence[Promotion] = (), *,
    owner: str = "", lease_until: float = 0.0,
) -> Script[int]:
    """Group-commit ``outcomes``: those still holding their lease are written and counted.
    ``owner``'s ``promotions`` are recorded first (an item may have started in a freed
    slot and finished since): the slot an outcome frees is counted taken again by the
    reserved item started in it, in the same commit or before."""
    promoted = yield from promote(promotions, owner=owner, lease_until=lease_until)
    if not outcomes and not promoted:
        return 0
    current, hooks = (yield from _leased_items(outcomes)) if outcomes else ({}, {})
    plan = accounting.plan_group_commit(outcomes, current, now=now)
    accounting.count_promotions(plan, promoted)
    yield from _write_outcomes(plan, hooks, now)
    yield from _settle_batches(plan, now)
    return plan.applied


def _leased_items(
    outcomes: list[Outcome],
) -> Script[tuple[dict[int, accounting.LeasedItem], dict[int, webhooks.Hook]]]:
    """The items ``outcomes`` are for, as they stand (locked), and their webhooks."""
    rows = yield q.rows("items_for_finish", q.array(sorted({o.rowid for o in outcomes})))
    # That read waited for the items' row locks, but the batch columns it joined are as of
    # its start (PostgreSQL, read committed): a stop that committed meanwhile is read again
    # here, so that, say, a cancelled batch gets no output counted to deliver.
    stopped = dict((yield q.rows("stop_reasons_of_batches",
                                 q.array(sorted({r[1] for r in rows})))))
    current: dict[int, accounting.LeasedItem] = {}
    hooks: dict[int, webhooks.Hook] = {}
    for r in rows:
        item = current[r[0]] = _leased_item(r)
        item.stop_reason = stopped.get(item.batch_id, item.stop_reason)
        if r[12] is not None:  # webhook_url, webhook_event
            hooks[r[0]] = (r[8], r[1], r[0], r[13], r[12])
    return current, hooks


def _write_outcomes(
    plan: accounting.GroupCommit, hooks: dict[int, webhooks.Hook], now: float
) -> Script[None]:
    if plan.attempts:  # first: it reads the attempt from the item while it is running
        yield q.each("record_attempts", plan.attempts)
    if plan.retries:
        yield q.each("retry_items", plan.retries)
    if plan.finals:
        yield q.each("finish_items", plan.finals)
    if plan.outputs:
        yield q.each("put_outputs", plan.outputs)
    if hooks:
        # The outbox message commits with the outcome it announces, or neither does.
        yield from webhooks.enqueue([hooks[f[5]] for f in plan.finals if f[5] in hooks], now)


def _settle_batches(plan: accounting.GroupCommit, now: float) -> Script[None]:
    for batch_id in sorted(plan.deltas):  # sorted: one lock order for every finisher
        yield q.run("add_batch_delta", *plan.deltas[batch_id].values(), batch_id)
    by_tenant = plan.usage_by_tenant()
    for tenant_id in sorted(by_tenant):
        yield from usage.add_usage(tenant_id, now, **by_tenant[tenant_id])
    for batch_id in sorted(plan.deltas):
        if batch_id in plan.fail_fast:
            yield from batches.stop(batch_id, StopReason.FAIL_FAST, None, now)
        yield from batches.maybe_finish(batch_id, now)


def heartbeat(
    owner: str, now: float, lease_until: float, info: dict[str, Any], item_ids: list[int] | None,
    claimed: int,
) -> Script[None]:
    yield q.run("record_worker", owner, orjson.dumps(info), now, now, claimed)
    if item_ids is None:
        yield q.run("renew_leases", lease_until, owner)
    elif item_ids:
        yield q.run("renew_leases_of_items", lease_until, owner, q.array(item_ids))


def cancel_requests(owner: str) -> Script[list[int]]:
    return [r[0] for r in (yield q.rows("cancel_requests", owner))]


def _upload_started_at(stage: str) -> float:
    # A staging token starts with the second its upload began (see the intake's tokens).
    return float(stage.split("-", 1)[0])


def _drop_abandoned_uploads(older_than: float) -> Script[None]:
    for batch_pk, stage in (yield q.rows("staged_uploads")):
        if _upload_started_at(stage) < older_than:
            yield from batches.delete_items(batch_pk, stage)
    for (batch_pk,) in (yield q.rows("abandoned_batches", older_than)):
        yield from batches.delete_batch(batch_pk)


# What items needs, as the query items_upkeep says.
UPKEEP_ANALYZE = 1
UPKEEP_VACUUM = 2


def reap(now: float, retry_backoff_max_s: float,
         staging_ttl_s: float) -> Script[tuple[int, bool]]:
    """Settle expired leases, expire batches, close idle ones, drop abandoned uploads;
    refresh the planner's statistics of items when they lag far behind. How many leases
    it settled, and whether items needs a vacuum (which runs outside a transaction)."""
    if not (yield q.value("try_reaper_lock")):
        return 0, False  # another process is reaping right now
    expired = yield q.rows("expired_leases", now)
    n = yield from finish([
        lifecycle.lease_expiry(r[0], r[1], attempts=r[2], max_attempts=r[3],
                               retry_backoff_s=r[4], retry_backoff_max_s=retry_backoff_max_s,
                               now=now)
        for r in expired
    ], now)
    for (batch_id,) in (yield q.rows("expired_batches", now)):
        yield from batches.stop(batch_id, StopReason.EXPIRED, "the batch expired", now)
    for (batch_id,) in (yield q.rows("idle_batches", now)):
        yield from batches.close(batch_id, now, reason="timeout")
    yield from _drop_abandoned_uploads(now - staging_ttl_s)
    upkeep = yield q.value("items_upkeep")
    if upkeep == UPKEEP_ANALYZE:
        yield q.run("analyze_items")  # claims plan on them (see the query)
    return n, upkeep == UPKEEP_VACUUM


def vacuum_items() -> Script[None]:
    yield q.run("vacuum_items")


def take_results(batch_id: str, limit: int, now: float) -> Script[list[ExportRow]]:
    pk = yield q.value("result_batch", batch_id)
    if pk is None:
        return []
    rows = sorted((yield q.rows("take_results", pk, limit)), key=lambda r: r[1])  # by seq
    yield q.run("release_results", now, sum(len(r[6] or b"") for r in rows), len(rows),
                sum(r[3] for r in rows), pk)
    return [export_row(r) for r in rows]


class DispatchOps(Runner):
    async def claim_items(
        self, *, owner: str, limit: int, now: float, lease_s: float, tenant_cap: int,
        freed: FreedSlots = NO_FREED_SLOTS, finished: Sequence[Outcome] = (),
        tasks: TaskRegistry | None = None, promotions: Sequence[Promotion] = (),
        reserve: Mapping[str, int] | None = None, adopt: Sequence[int] = (),
    ) -> list[ClaimedItem]:
        """Lease up to ``limit`` ready items, dealt over batches by priority and fair share.

        A slot is free once its handler has returned: ``freed`` are the caller's finished
        items whose outcomes are not committed yet, whose slots it may take again. The
        caller's ``promotions`` and ``finished`` outcomes are recorded first (as
        :meth:`finish_items` does), in the claim's transaction where there is one writer.
        With ``tasks`` (the caller's registry) only batches of tasks it can run are
        claimed (:func:`batchd.core.scheduling.claimable`); without, any. ``reserve``:
        how many more items of each batch the caller would hold in reserve; those of a
        full batch come back ``reserved`` (:func:`reserve_batch`). ``adopt``: items the
        caller holds in reserve that it may lease like any ready item (those of a batch
        it runs nothing of, no freed slot of which would start them)."""
        served = None if tasks is None else scheduling.claimable(tasks)
        asked = time.monotonic()
        if not self.store.concurrent_claims:
            return await self._write(claim, owner, limit, now, lease_s, tenant_cap, freed,
                                     finished, served, promotions, reserve, adopt)
        if finished or promotions:
            await self._write(finish, list(finished), now, promotions, owner=owner,
                              lease_until=now + lease_s)
        found, tenant_running = await self._read(candidates, now, freed, served, reserve)
        plan = scheduling.ClaimPlan(found, limit=limit, tenant_running=tenant_running,
                                    tenant_cap=tenant_cap)
        claimed: list[ClaimedItem] = []
        for c, want in plan:
            # A lease runs lease_s from when it is granted, and its items start then:
            # time spent before (recording outcomes, reading candidates, waiting for a
            # connection) must not come out of the lease, nor count as running (a slot
            # another commit freed meanwhile would seem taken twice). So the script is
            # made once its transaction has a connection.
            def share(c: Candidate = c, want: int = want) -> Script[list[ClaimedItem]]:
                waited = time.monotonic() - asked
                return claim_batch(c, want, owner=owner, now=now, one_statement=True,
                                   lease_s=lease_s + waited, started_at=now + waited,
                                   adopt=adopt,
                                   freed=reusable(freed, c.batch_id, budgeted=c.budgeted))

            try:
                got = await self._write(share)
            except errors.BatchdError as exc:
                if not claimed:
                    raise
                # Items leased by earlier transactions of this claim must still run.
                log.warning("claim from batch %s failed (%s)", c.batch_id, exc.message)
                return claimed
            plan.took(len(got))
            claimed.extend(got)
        for c, want in reserve_shares(found, reserve):
            try:
                claimed.extend(await self._write(reserve_batch, c, want, owner=owner,
                                                 now=now, lease_s=lease_s))
            except errors.BatchdError as exc:  # a reserve is an extra: the claim stands
                log.warning("reserve from batch %s failed (%s)", c.batch_id, exc.message)
        return claimed

    async def finish_items(
        self, outcomes: list[Outcome], *, now: float, promotions: Sequence[Promotion] = (),
        owner: str = "", lease_s: float = 0.0,
    ) -> int:
        """Group-commit outcomes, after ``owner``'s ``promotions`` (leased ``lease_s``
        from ``now``); returns how many outcomes still held their lease."""
        return await self._write(finish, outcomes, now, promotions, owner=owner,
                                 lease_until=now + lease_s)

    async def release_items(self, *, owner: str, rowids: list[int]) -> None:
        """Give items ``owner`` held in reserve back to every claimer."""
        await self._write(release, owner, rowids)

    async def heartbeat(
        self, *, owner: str, now: float, lease_until: float, info: dict[str, Any],
        item_ids: list[int] | None = None, claimed: int = 0,
    ) -> None:
        """Record the worker as alive and renew its leases.

        Only ``item_ids`` are renewed when given (the items the worker still
        tracks), else every running item of ``owner``. ``claimed``: the items the
        worker claimed since it started (its claim rate is read from two heartbeats).
        """
        await self._write(heartbeat, owner, now, lease_until, info, item_ids, claimed)

    async def cancel_requests(self, *, owner: str) -> list[int]:
        """Running items of ``owner`` whose cancellation was requested."""
        return await self._read(cancel_requests, owner)

    async def reap(self, *, now: float, retry_backoff_max_s: float, staging_ttl_s: float) -> int:
        """Return expired leases to the queue, expire batches, drop abandoned uploads; keep
        items' indexes and statistics fit for claims. How many leases it settled."""
        n, vacuum = await self._write(reap, now, retry_backoff_max_s, staging_ttl_s)
        if vacuum:
            # Not a transaction: a read's connection (the vacuum changes no data).
            try:
                await self._read(vacuum_items)
            except errors.BatchdError as exc:
                log.warning("could not vacuum items: %s", exc.message)
        return n

    async def take_results(self, batch_id: str, *, limit: int, now: float) -> list[ExportRow]:
        """Hand out up to ``limit`` finished, undelivered items of a ``deliver`` batch.

        They are marked delivered in the same transaction and leave the output buffer,
        which lets a batch paused on a full buffer run again.
        """
        return await self._write(take_results, batch_id, limit, now)
