"""Contract for the AI job queue's decisions, on every backend: the ready filter and the
outcome partition are pure functions in core (:mod:`batchd.core.jobs`), and what each
store's queries pick and record must agree with them."""

from __future__ import annotations

import pytest

from batchd.core import jobs
from batchd.core.db import Database
from batchd.core.jobs import JobOutcome, JobPick, JobStatus, NewJob, ReadyCount, ResultKind
from tests.conftest import scaled
from tests.integration import test_store_contract as contract
from tests.integration.test_store_contract import NOW

store = contract.store  # the contract suite's fixture: every backend

pytestmark = pytest.mark.timeout(scaled(30))


def new_job(name: str, *, tenant: str = "ten_a", run_after: float | None = None,
            priority: int = 50) -> NewJob:
    return NewJob(id=name, tenant_id=tenant, owner="alice", job_type="echo", payload=b"{}",
                  priority=priority, run_after=run_after, idempotency_key=None, custom_id=name)


async def take_all(db: Database, *, now: float, tenant: str = "ten_a") -> list[str]:
    taken = await db.take_jobs(tenant_id=tenant, pick=JobPick(max_jobs=100), provider="local",
                               model=None, now=now)
    return [] if taken is None else sorted(j.id for j in taken[1])


# the ready filter

def test_ready_filter_is_pending_and_run_after_passed() -> None:
    assert jobs.is_ready(JobStatus.PENDING, None, now=NOW)
    assert jobs.is_ready(JobStatus.PENDING, NOW, now=NOW)  # due exactly now
    assert jobs.is_ready(JobStatus.PENDING, NOW - 1, now=NOW)
    assert not jobs.is_ready(JobStatus.PENDING, NOW + 0.5, now=NOW)
    for status in (JobStatus.PROCESSING, JobStatus.CANCELLED, JobStatus.COMPLETED):
        assert not jobs.is_ready(status, None, now=NOW)


def test_flush_due_by_count_or_by_age() -> None:
    ready = ReadyCount("ten_a", count=3, oldest=NOW - 10)
    assert jobs.flush_due(ready, min_count=3, oldest_before=None)
    assert not jobs.flush_due(ready, min_count=4, oldest_before=None)
    assert not jobs.flush_due(ready, min_count=0, oldest_before=None)  # 0: never by count
    assert jobs.flush_due(ready, min_count=0, oldest_before=NOW - 9)
    assert not jobs.flush_due(ready, min_count=0, oldest_before=NOW - 10)  # strictly older


async def test_take_picks_exactly_the_ready_jobs(store: Database) -> None:
    cases = {  # job id: (run_after, status before the take)
        "due_none": (None, JobStatus.PENDING),
        "due_past": (NOW - 60, JobStatus.PENDING),
        "due_now": (NOW, JobStatus.PENDING),
        "due_later": (NOW + 1, JobStatus.PENDING),
        "cancelled": (None, JobStatus.CANCELLED),
        "flushed": (None, JobStatus.PROCESSING),
    }
    await store.enqueue_job(new_job("flushed"), now=NOW - 100)
    assert await take_all(store, now=NOW - 100) == ["flushed"]
    for name, (run_after, _) in cases.items():
        if name != "flushed":
            await store.enqueue_job(new_job(name, run_after=run_after), now=NOW - 100)
    assert await store.cancel_job("cancelled", tenant_id="ten_a", now=NOW - 50) is not None

    expected = sorted(n for n, (after, status) in cases.items()
                      if jobs.is_ready(status, after, now=NOW))
    assert expected == ["due_none", "due_now", "due_past"]
    assert await take_all(store, now=NOW) == expected
    assert await take_all(store, now=NOW) == []
    assert await take_all(store, now=NOW + 1) == ["due_later"]


async def test_ready_tenants_count_only_ready_jobs(store: Database) -> None:
    for n in range(2):
        await store.enqueue_job(new_job(f"a{n}"), now=NOW - 30)
    await store.enqueue_job(new_job("a_later", run_after=NOW + 60), now=NOW - 90)
    await store.enqueue_job(new_job("b0", tenant="ten_b"), now=NOW - 5)
    await store.enqueue_job(new_job("b1", tenant="ten_b"), now=NOW)
    await store.enqueue_job(new_job("b2", tenant="ten_b"), now=NOW)
    await store.cancel_job("b2", tenant_id="ten_b", now=NOW)

    async def due(min_count: int, oldest_before: float | None) -> list[str]:
        return sorted(await store.ready_tenants(now=NOW, min_count=min_count,
                                                oldest_before=oldest_before))

    assert await due(2, None) == ["ten_a", "ten_b"]
    assert await due(3, None) == []  # neither a_later (not due) nor b2 (cancelled) counts
    assert await due(0, NOW - 10) == ["ten_a"]  # a_later is older, but not ready
    assert await due(0, None) == []
    assert await store.ready_tenants(now=NOW + 60, min_count=3, oldest_before=None) == ["ten_a"]


# the outcome partition

def test_partition_outcomes_splits_processing_from_cancelled() -> None:
    unrecorded = [jobs.Unrecorded("p", 1, JobStatus.PROCESSING),
                  jobs.Unrecorded("c", 2, JobStatus.CANCELLED)]
    outcomes = [JobOutcome("p", ResultKind.ERRORED, error="boom", tokens_in=3),
                JobOutcome("c", ResultKind.SUCCEEDED, tokens_in=5, cost_usd=0.1),
                JobOutcome("gone", ResultKind.SUCCEEDED),
                JobOutcome("p", ResultKind.SUCCEEDED)]  # a second result for p: ignored
    plan = jobs.partition_outcomes(outcomes, unrecorded, now=NOW)
    assert [(f.pk, f.status, f.completed_at) for f in plan.finals] == [
        (1, JobStatus.FAILED, NOW)]
    assert [(pk, o.custom_id) for pk, o in plan.tokens_only] == [(2, "c")]
    assert plan.done == ["p"]


def test_expire_missing_fails_only_processing_jobs() -> None:
    waiting = [jobs.WaitingJob("p", "p", "echo", JobStatus.PROCESSING),
               jobs.WaitingJob("q", "q", "echo", JobStatus.PROCESSING),
               jobs.WaitingJob("c", "c", "echo", JobStatus.CANCELLED)]
    expired = jobs.expire_missing(waiting, {"p"})
    assert [(o.custom_id, o.kind) for o in expired] == [("q", ResultKind.EXPIRED)]


async def test_outcomes_follow_the_partition(store: Database) -> None:
    for name in ("ok", "bad", "late_cancel", "never_flushed"):
        await store.enqueue_job(new_job(name), now=NOW)
    await store.cancel_job("never_flushed", tenant_id="ten_a", now=NOW)
    taken = await store.take_jobs(tenant_id="ten_a", pick=JobPick(max_jobs=10),
                                  provider="local", model=None, now=NOW)
    assert taken is not None
    batch = taken[0]
    assert sorted(j.id for j in taken[1]) == ["bad", "late_cancel", "ok"]
    assert await store.mark_submitted(batch.pk, "bat_p", now=NOW)
    await store.cancel_job("late_cancel", tenant_id="ten_a", now=NOW + 1)
    waiting = {w.custom_id: w.status for w in await store.waiting_jobs(batch.pk)}
    assert waiting == {"ok": "processing", "bad": "processing", "late_cancel": "cancelled"}

    outcomes = [
        JobOutcome("ok", ResultKind.SUCCEEDED, result=b'{"a": 1}', tokens_in=4, tokens_out=2,
                   cost_usd=0.5, savings_usd=0.5),
        JobOutcome("late_cancel", ResultKind.SUCCEEDED, result=b'{"b": 2}', tokens_in=7,
                   tokens_out=1, cost_usd=0.25, savings_usd=0.25),
        JobOutcome("never_flushed", ResultKind.SUCCEEDED, tokens_in=99),  # not of the batch
    ]
    done, remaining = await store.record_outcomes(batch.pk, outcomes, ended=False, now=NOW + 2)
    assert (done, remaining) == (["ok"], 1)
    ok = await store.get_job("ok", tenant_id="ten_a", full=True)
    late = await store.get_job("late_cancel", tenant_id="ten_a", full=True)
    never = await store.get_job("never_flushed", tenant_id="ten_a")
    assert ok and ok.status == "completed" and ok.result == b'{"a": 1}'
    assert ok.completed_at == NOW + 2 and ok.tokens_used == 6 and ok.cost_usd == 0.5
    assert late and late.status == "cancelled" and late.result is None
    assert late.completed_at is None and late.tokens_used == 8 and late.cost_usd == 0.25
    assert never and never.status == "cancelled" and never.tokens_used == 0
    assert [w.custom_id for w in await store.waiting_jobs(batch.pk)] == ["bad"]

    failed = [JobOutcome("bad", ResultKind.ERRORED, error="boom", finished_at=NOW + 3)]
    assert await store.record_outcomes(batch.pk, failed, ended=True, now=NOW + 4) == (["bad"], 0)
    bad = await store.get_job("bad", tenant_id="ten_a")
    assert bad and bad.status == "failed" and bad.error_message == "boom"
    assert bad.completed_at == NOW + 3
    assert await store.record_outcomes(batch.pk, outcomes + failed, ended=True,
                                       now=NOW + 5) == ([], 0)
