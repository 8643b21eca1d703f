"""Contract tests, on every backend, for which tasks a claim takes: a worker claims only
batches of a task and version it has registered (or of a task defined over the API that
any process builds), so mixed fleets work; and the processes' announcements that say
which tasks are claimed by whom."""

from __future__ import annotations

import orjson
import pytest

from batchd.core import fleet, scheduling
from batchd.core.db import Database
from batchd.domain.models import Batch, BatchSpec, new_id
from batchd.domain.records import StagedItem
from batchd.domain.taskdefs import TaskRecord
from batchd.settings import Settings
from batchd.tasks.registry import TaskRegistry, task
from tests.conftest import scaled
from tests.integration import test_store_contract as contract
from tests.integration.test_store_contract import LEASE_S, NOW, fetch, stage_token

store = contract.store

pytestmark = pytest.mark.timeout(scaled(30))


def registry_of(*tasks: tuple[str, str]) -> TaskRegistry:
    reg = TaskRegistry()
    for name, version in tasks:
        task(name, version, registry=reg)(lambda record: record)
    return reg


async def batch_of(store: Database, name: str, version: str = "1.0.0", *,
                   items: int = 3) -> Batch:
    t = await store.ensure_tenant("acme", tier="free", now=NOW)
    batch_id = new_id("bat")
    await store.create_batch(batch_id=batch_id, tenant_id=t.id, owner="alice",
                             spec=BatchSpec(task=name, version=version), now=NOW)
    stage = stage_token(NOW)
    await store.stage_items(batch_id, stage,
                            [StagedItem(1, orjson.dumps({"n": i}), 0.0) for i in range(items)])
    assert await store.commit_stage(batch_id, stage, close=True, now=NOW) == batch_id
    return await fetch(store, batch_id)


async def claimed_batches(store: Database, tasks: TaskRegistry | None, *,
                          owner: str = "w1") -> list[str]:
    got = await store.claim_items(owner=owner, limit=100, now=NOW + 1, lease_s=LEASE_S,
                                  tenant_cap=0, tasks=tasks)
    return sorted({c.batch_id for c in got})


async def test_a_worker_claims_only_batches_of_tasks_it_has(store: Database) -> None:
    mine = await batch_of(store, "enrich")
    other = await batch_of(store, "geocode")
    assert await claimed_batches(store, registry_of(("enrich", "1.0.0"))) == [mine.id]
    # The other task's items stay queued for a process that has it: none failed.
    left = await fetch(store, other.id)
    assert (left.n_queued, left.n_running, left.n_failed) == (3, 0, 0)
    assert await claimed_batches(store, registry_of(("geocode", "1.0.0")),
                                 owner="w2") == [other.id]


async def test_a_claim_tells_versions_apart(store: Database) -> None:
    newer = await batch_of(store, "enrich", "2.0.0")
    assert await claimed_batches(store, registry_of(("enrich", "1.0.0"))) == []
    assert await claimed_batches(
        store, registry_of(("enrich", "1.0.0"), ("enrich", "2.0.0"))) == [newer.id]


async def test_a_claim_without_a_registry_takes_any_task(store: Database) -> None:
    a = await batch_of(store, "enrich")
    b = await batch_of(store, "geocode")
    assert await claimed_batches(store, None) == sorted([a.id, b.id])
    assert await claimed_batches(store, TaskRegistry(), owner="w2") == []


async def test_a_task_defined_over_the_api_is_claimed_by_every_process_that_can_build_it(
    store: Database,
) -> None:
    for name, kind in (("remote", "http"), ("local_fn", "python")):
        await store.save_task_def(TaskRecord(name=name, version="1.0.0", kind=kind,
                                             spec={"name": name}, tenant_id=None,
                                             created_at=NOW))
    remote = await batch_of(store, "remote")
    local_fn = await batch_of(store, "local_fn")
    # An http definition is built from the database alone; a python one only where its
    # function imports (where it is in the registry).
    assert await claimed_batches(store, registry_of(("echo", "1.0.0"))) == [remote.id]
    assert await claimed_batches(store, registry_of(("local_fn", "1.0.0")),
                                 owner="w2") == [local_fn.id]


async def test_announcements_say_who_claims_what_and_expire(store: Database) -> None:
    settings = Settings(announce_interval_s=5.0, tasks="myproj.tasks")
    reg = registry_of(("enrich", "1.0.0"))
    clock = [NOW]
    worker = fleet.Membership(store=store, registry=reg, settings=settings, role=fleet.WORKER,
                              process_id="wrk_a", clock=lambda: clock[0])
    server = fleet.Membership(store=store, registry=reg, settings=Settings(),
                              role=fleet.SERVER, process_id="srv_b", clock=lambda: clock[0])
    assert await worker.join() == []
    lines = await server.join()
    # The server lacks the worker's task module: one line naming the setting and who has it.
    assert len(lines) == 1 and lines[0].startswith("BATCHD_TASKS: worker wrk_a on ")
    assert "'myproj.tasks'" in lines[0]
    view = fleet.FleetView(store=store, clock=lambda: clock[0])
    batch = await batch_of(store, "enrich")
    assert await view.batch_warnings(batch) == []
    unserved = await batch_of(store, "geocode")
    [warning] = await view.batch_warnings(unserved)
    assert warning["code"] == "task_not_served" and warning["workers"] == 1
    # Three intervals without a refresh: the worker counts as gone.
    clock[0] = NOW + 3 * 5.0 + 1
    gone = fleet.FleetView(store=store, clock=lambda: clock[0])
    [warning] = await gone.batch_warnings(batch)
    assert warning["workers"] == 0 and "no worker is running" in warning["message"]
    await worker.leave()
    await server.leave()
    assert await store.processes() == []


async def test_an_announcement_gone_an_hour_is_deleted(store: Database) -> None:
    clock = [NOW]
    old = fleet.Membership(store=store, registry=TaskRegistry(), settings=Settings(),
                           role=fleet.WORKER, process_id="wrk_old", clock=lambda: clock[0])
    await old.join()
    await old.leave()
    await store.announce_process("wrk_crashed", info=old.announcement().dump(), now=NOW,
                                 forget_before=0)
    clock[0] = NOW + fleet.FORGET_AFTER_S + 1
    new = fleet.Membership(store=store, registry=TaskRegistry(), settings=Settings(),
                           role=fleet.WORKER, process_id="wrk_new", clock=lambda: clock[0])
    await new.join()
    assert [r[0] for r in await store.processes()] == ["wrk_new"]
    await new.leave()


def test_claimable_is_what_the_registry_has() -> None:
    reg = registry_of(("b", "1.0.0"), ("a", "2.0.0"), ("a", "1.0.0"))
    c = scheduling.claimable(reg)
    assert list(zip(c.names, c.versions, strict=True)) == [
        ("a", "1.0.0"), ("a", "2.0.0"), ("b", "1.0.0")]
    assert scheduling.claimable(reg) is c  # the hot path: the same object until a change
    task("c", registry=reg)(lambda r: r)
    assert scheduling.claimable(reg).covers("c", "1.0.0")
    assert not c.covers("c", "1.0.0")
    assert c.covers("zzz", "9", defined_kind="http")
    assert not c.covers("zzz", "9", defined_kind="python")
