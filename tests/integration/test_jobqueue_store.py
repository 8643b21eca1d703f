"""The AI job queue's storage operations (core scripts over every backend: the contract
suite's ``store`` fixture, a :class:`~batchd.core.db.Database`)."""

from __future__ import annotations

import asyncio

import pytest

from batchd.core.db import Database
from batchd.core.jobs import JobOutcome, JobPick, NewJob, ResultKind
from tests.conftest import scaled
from tests.integration.test_store_contract import NOW, store  # noqa: F401  (the fixture)

pytestmark = pytest.mark.timeout(scaled(60))


def new_job(n: int, *, priority: int = 50, job_type: str = "echo", owner: str = "alice",
            run_after: float | None = None, key: str | None = None) -> NewJob:
    return NewJob(id=f"job_{n}", tenant_id="ten_a", owner=owner, job_type=job_type,
                  payload=b'{"n": %d}' % n, priority=priority, run_after=run_after,
                  idempotency_key=key, custom_id=f"job_{n}")


@pytest.fixture
def jobs(store: Database) -> Database:  # noqa: F811
    return store


async def test_jobqueue_enqueue_replays_an_idempotency_key_per_owner(jobs: Database) -> None:
    first, created = await jobs.enqueue_job(new_job(1, key="k"), now=NOW)
    assert created and first.status == "pending" and first.batch_id is None
    again, created = await jobs.enqueue_job(new_job(2, key="k", priority=99), now=NOW + 1)
    assert not created and again.id == "job_1" and again.priority == 50
    other, created = await jobs.enqueue_job(new_job(3, key="k", owner="bob"), now=NOW)
    assert created and other.id == "job_3"
    assert await jobs.get_job("job_2", tenant_id="ten_a") is None
    assert await jobs.get_job("job_1", tenant_id="ten_b") is None
    full = await jobs.get_job("job_1", tenant_id="ten_a", full=True)
    assert full is not None and full.payload == b'{"n": 1}'
    assert await jobs.job_counts(tenant_id="ten_a", owner="alice") == {"pending": 1}
    assert await jobs.job_counts(tenant_id="ten_a", owner=None) == {"pending": 2}


async def test_jobqueue_take_orders_by_priority_and_filters(jobs: Database) -> None:
    for n, prio, kind, after in [(1, 10, "echo", None), (2, 90, "echo", None),
                                 (3, 90, "sleep", None), (4, 99, "echo", NOW + 60),
                                 (5, 50, "echo", NOW - 60)]:
        await jobs.enqueue_job(new_job(n, priority=prio, job_type=kind, run_after=after), now=NOW)
    taken = await jobs.take_jobs(tenant_id="ten_a", pick=JobPick(max_jobs=2, job_types=("echo",)),
                                 provider="local", model="local", now=NOW)
    assert taken is not None
    batch, picked = taken
    assert [j.id for j in picked] == ["job_2", "job_5"]  # job_4 waits for its run_after
    assert batch.status == "submitting" and batch.n_jobs == 2 and picked[0].payload
    assert await jobs.take_jobs(tenant_id="ten_a", pick=JobPick(max_jobs=9, min_priority=95),
                                provider="local", model=None, now=NOW) is None
    later = await jobs.take_jobs(tenant_id="ten_a", pick=JobPick(max_jobs=9), provider="local",
                                 model=None, now=NOW + 61)
    assert later is not None and [j.id for j in later[1]] == ["job_4", "job_3", "job_1"]


async def test_jobqueue_concurrent_flushes_never_take_a_job_twice(jobs: Database) -> None:
    for n in range(200):
        await jobs.enqueue_job(new_job(n, priority=n % 7), now=NOW)
    takes = await asyncio.gather(*(
        jobs.take_jobs(tenant_id="ten_a", pick=JobPick(max_jobs=30), provider="local",
                       model=None, now=NOW)
        for _ in range(10)
    ))
    ids = [j.id for t in takes if t is not None for j in t[1]]
    assert len(ids) == len(set(ids)) == 200


async def test_jobqueue_outcomes_are_recorded_once(jobs: Database) -> None:
    for n in range(3):
        await jobs.enqueue_job(new_job(n), now=NOW)
    taken = await jobs.take_jobs(tenant_id="ten_a", pick=JobPick(max_jobs=10), provider="local",
                                 model=None, now=NOW)
    assert taken is not None
    batch = taken[0]
    assert await jobs.mark_submitted(batch.pk, "bat_x", now=NOW)
    assert not await jobs.mark_submitted(batch.pk, "bat_y", now=NOW)
    cancelled = await jobs.cancel_job("job_2", tenant_id="ten_a", now=NOW + 1)
    assert cancelled is not None and cancelled[1] == "processing"
    assert cancelled[0].batch_id == "bat_x"
    outcomes = [
        JobOutcome("job_0", ResultKind.SUCCEEDED, result=b'{"ok": 1}', tokens_in=10,
                   tokens_out=5, cost_usd=0.5, savings_usd=0.5, finished_at=NOW + 5),
        JobOutcome("job_2", ResultKind.SUCCEEDED, result=b"{}", tokens_in=7, tokens_out=3,
                   cost_usd=0.25, savings_usd=0.25),
    ]
    done, remaining = await jobs.record_outcomes(batch.pk, outcomes, ended=False, now=NOW + 6)
    assert done == ["job_0"] and remaining == 1
    assert await jobs.record_outcomes(batch.pk, outcomes, ended=False, now=NOW + 7) == ([], 1)
    assert [w.custom_id for w in await jobs.waiting_jobs(batch.pk)] == ["job_1"]
    lost = [JobOutcome("job_1", ResultKind.EXPIRED, error="no result")]
    assert await jobs.record_outcomes(batch.pk, lost, ended=True, now=NOW + 8) == (["job_1"], 0)
    assert (await jobs.queue_batch("bat_x", tenant_id="ten_a")).status == "ended"  # type: ignore[union-attr]
    assert await jobs.open_queue_batches(limit=10) == []

    j0 = await jobs.get_job("job_0", tenant_id="ten_a", full=True)
    j2 = await jobs.get_job("job_2", tenant_id="ten_a", full=True)
    j1 = await jobs.get_job("job_1", tenant_id="ten_a")
    assert j0 and j0.status == "completed" and j0.result == b'{"ok": 1}'
    assert j0.completed_at == NOW + 5 and j0.tokens_used == 15
    assert j2 and j2.status == "cancelled" and j2.result is None and j2.tokens_used == 10
    assert j1 and j1.status == "failed" and j1.error_message == "no result"
    totals = await jobs.job_totals(tenant_id="ten_a", owner=None)
    assert totals.counts == {"completed": 1, "cancelled": 1, "failed": 1}
    assert totals.tokens == 25 and totals.cost_usd == pytest.approx(0.75)
    assert totals.avg_processing_hours == pytest.approx(5 / 3600)


async def test_jobqueue_release_puts_jobs_back(jobs: Database) -> None:
    for n in range(2):
        await jobs.enqueue_job(new_job(n), now=NOW)
    taken = await jobs.take_jobs(tenant_id="ten_a", pick=JobPick(max_jobs=10), provider="local",
                                 model=None, now=NOW)
    assert taken is not None
    assert await jobs.stale_submissions(created_before=NOW) == []
    assert await jobs.stale_submissions(created_before=NOW + 1) == [taken[0].pk]
    assert await jobs.release_batch(taken[0].pk, now=NOW + 2) == 2
    assert await jobs.job_counts(tenant_id="ten_a", owner=None) == {"pending": 2}
    assert await jobs.ready_tenants(now=NOW, min_count=2, oldest_before=None) == ["ten_a"]
    assert await jobs.ready_tenants(now=NOW, min_count=3, oldest_before=None) == []
    assert await jobs.ready_tenants(now=NOW, min_count=0, oldest_before=NOW + 1) == ["ten_a"]
