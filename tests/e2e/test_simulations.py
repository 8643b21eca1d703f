"""The Simulations batch dialect (seed 000) as its clients see it.

Most tests talk to a real server over HTTP; the ones that move across billing
periods run the app in-process with an injected clock.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from batchd.api.app import create_app
from batchd.settings import Settings
from tests.conftest import Server, drop_database, fresh_database_url, scaled, wait_until

pytestmark = pytest.mark.timeout(scaled(180))

BATCH_KEYS = {
    "batch_id", "status", "created_at", "started_at", "completed_at", "priority", "fail_fast",
    "parallel_jobs", "progress", "cost", "job_ids", "error_message", "owner_id", "metadata",
}
PROGRESS_KEYS = {
    "total_jobs", "pending_jobs", "running_jobs", "completed_jobs", "failed_jobs",
    "cancelled_jobs", "progress_percent",
}
COST_KEYS = {
    "estimated_cost_usd", "actual_cost_usd", "budget_cap_usd", "budget_remaining_usd",
    "tokens_used",
}
JOB_KEYS = {
    "job_id", "status", "template_id", "cost_usd", "progress_percent", "created_at",
    "started_at", "completed_at", "error_message",
}
STATS_KEYS = {
    "total_batches", "pending", "running", "completed", "failed", "cancelled", "total_jobs",
    "total_cost_usd", "total_tokens",
}
USAGE_KEYS = {
    "user_id", "tier", "period", "days_remaining", "api_calls_used", "simulations_used",
    "cost_used_usd", "tokens_used", "api_calls_limit", "simulations_limit", "cost_limit_usd",
    "max_batch_size", "api_calls_remaining", "simulations_remaining", "cost_remaining_usd",
    "is_quota_exceeded", "quota_exceeded_reason",
}
PERIOD_KEYS = {
    "period", "api_calls", "simulations_run", "simulations_completed", "simulations_failed",
    "cost_usd", "tokens_used",
}
FINISHED = {"COMPLETED", "PARTIAL", "FAILED", "CANCELLED"}
TIERS = {  # tier: (max batch size, API calls, simulations, cost) a month
    "free": (5, 1_000, 100, 5.0),
    "basic": (20, 10_000, 500, 25.0),
    "pro": (50, 100_000, 1_000, 100.0),
    "enterprise": (100, -1, -1, -1.0),
}


# helpers

def board(entities: int = 2, timepoints: int = 3, **params: Any) -> dict[str, Any]:
    return {"template_id": "board_meeting", "entity_count": entities,
            "timepoint_count": timepoints, **params}


def crisis(entities: int = 2, timepoints: int = 3, **params: Any) -> dict[str, Any]:
    return {"template_id": "crisis_response", "entity_count": entities,
            "timepoint_count": timepoints, **params}


def tracked(**params: Any) -> dict[str, Any]:
    """The test suite's ``tracked`` task as a template: sleeps ``seconds``, fails on demand."""
    return {"template_id": "tracked", "entity_count": 1, "timepoint_count": 1, **params}


def gated(gate: Path) -> dict[str, Any]:
    """The ``gated`` task as a template: runs until the file ``<gate>.<attempt>`` exists."""
    return {"template_id": "gated", "entity_count": 1, "timepoint_count": 1,
            "gate": str(gate)}


def new_key(
    admin: httpx.Client, tenant: str, *, tier: str = "pro", owner: str | None = None,
    role: str = "user", limits: dict[str, float] | None = None,
) -> str:
    body: dict[str, Any] = {"tenant": tenant, "tier": tier, "role": role}
    if owner:
        body["owner"] = owner
    if limits:
        body["limits"] = limits
    r = admin.post("/api/keys", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def client(server: Server, key: str | None) -> httpx.Client:
    headers = {"X-API-Key": key} if key else {}
    return httpx.Client(base_url=server.url, timeout=60, headers=headers)


def create(c: httpx.Client, *sims: dict[str, Any], **settings: Any) -> dict[str, Any]:
    r = c.post("/simulations/batch", json={"simulations": list(sims), **settings})
    assert r.status_code == 202, r.text
    assert r.headers["X-Request-ID"]
    return dict(r.json())


def get(c: httpx.Client, batch_id: str) -> dict[str, Any]:
    r = c.get(f"/simulations/batch/{batch_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_sim(c: httpx.Client, batch_id: str, *, until: Callable[[dict[str, Any]], bool] | None
             = None, timeout_s: float = 60.0) -> dict[str, Any]:
    """Poll a batch until ``until`` holds (by default: until it has finished)."""
    def poll() -> dict[str, Any] | None:
        b = get(c, batch_id)
        if until is not None:
            return b if until(b) else None
        return b if b["status"] in FINISHED and not b["progress"]["running_jobs"] else None

    return dict(wait_until(poll, timeout_s=timeout_s, what=f"batch {batch_id}"))


def assert_error(r: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["error"] == error, body
    assert body["message"] and body["request_id"] == r.headers["X-Request-ID"]
    return dict(body)


def assert_iso(value: str | None) -> None:
    assert value is not None and value.endswith("Z")
    datetime.fromisoformat(value.replace("Z", "+00:00"))


def usage(c: httpx.Client) -> dict[str, Any]:
    r = c.get("/simulations/batch/usage")
    assert r.status_code == 200, r.text
    assert set(r.json()) == USAGE_KEYS
    return dict(r.json())


# the batch and its jobs

def test_simulations_batch_runs_templates_with_documented_fields(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(run_worker="false")  # a worker comes once the batch is seen waiting
    with server.client() as admin:
        key = new_key(admin, "acme", owner="user-123")
    with client(server, key) as c:
        created = create(
            c, board(5, 10), crisis(4, 8), parallel_jobs=2, fail_fast=False,
            budget_cap_usd=1.00, priority=50, metadata={"team": "ops"},
        )
        assert set(created) == BATCH_KEYS
        assert set(created["progress"]) == PROGRESS_KEYS
        assert set(created["cost"]) == COST_KEYS
        assert created["status"] == "PENDING"
        assert created["progress"] == {
            "total_jobs": 2, "pending_jobs": 2, "running_jobs": 0, "completed_jobs": 0,
            "failed_jobs": 0, "cancelled_jobs": 0, "progress_percent": 0,
        }
        assert (created["started_at"], created["completed_at"]) == (None, None)
        assert created["cost"]["actual_cost_usd"] == 0
        assert (created["priority"], created["fail_fast"], created["parallel_jobs"]) == (
            50, False, 2)
        assert created["progress"]["total_jobs"] == 2
        # Estimates from each template's cost model: $0.001 per member-round, $0.0012 per
        # agency-hour.
        assert created["cost"]["estimated_cost_usd"] == pytest.approx(0.05 + 0.0384)
        assert created["cost"]["budget_cap_usd"] == 1.0
        assert len(created["job_ids"]) == 2
        assert (created["owner_id"], created["metadata"]) == ("user-123", {"team": "ops"})
        assert_iso(created["created_at"])

        make_server(command="worker")
        done = wait_sim(c, created["batch_id"])
        assert done["status"] == "COMPLETED"
        assert done["progress"] == {
            "total_jobs": 2, "pending_jobs": 0, "running_jobs": 0, "completed_jobs": 2,
            "failed_jobs": 0, "cancelled_jobs": 0, "progress_percent": 100,
        }
        cost = done["cost"]
        assert 0 < cost["actual_cost_usd"] < 1.0 and cost["tokens_used"] > 1000
        assert cost["budget_remaining_usd"] == pytest.approx(1.0 - cost["actual_cost_usd"])
        assert_iso(done["started_at"])
        assert_iso(done["completed_at"])
        assert done["error_message"] is None

        r = c.get(f"/simulations/batch/{created['batch_id']}/jobs")
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"batch", "jobs"}
        assert set(body["batch"]) == BATCH_KEYS and body["batch"]["status"] == "COMPLETED"
        jobs = body["jobs"]
        assert [j["job_id"] for j in jobs] == created["job_ids"]
        assert all(set(j) == JOB_KEYS for j in jobs)
        assert [j["template_id"] for j in jobs] == ["board_meeting", "crisis_response"]
        assert all(j["status"] == "COMPLETED" and j["progress_percent"] == 100 for j in jobs)
        assert all(j["cost_usd"] > 0 and j["error_message"] is None for j in jobs)
        assert sum(j["cost_usd"] for j in jobs) == pytest.approx(cost["actual_cost_usd"])
        for j in jobs:
            assert_iso(j["created_at"])
            assert_iso(j["started_at"])
            assert_iso(j["completed_at"])

        # Seeded: the same simulation costs the same again; another seed differs.
        again = wait_sim(c, create(c, board(5, 10))["batch_id"])
        assert again["cost"]["actual_cost_usd"] == jobs[0]["cost_usd"]
        other = wait_sim(c, create(c, board(5, 10, seed=7))["batch_id"])
        assert other["cost"]["actual_cost_usd"] != jobs[0]["cost_usd"]

        r = c.get("/simulations/batch/stats")
        assert r.status_code == 200, r.text
        stats = r.json()
        assert set(stats) == STATS_KEYS
        assert (stats["total_batches"], stats["completed"], stats["total_jobs"]) == (3, 3, 4)
        assert (stats["pending"], stats["running"], stats["failed"], stats["cancelled"]) == (
            0, 0, 0, 0)
        assert stats["total_cost_usd"] == pytest.approx(
            cost["actual_cost_usd"] + again["cost"]["actual_cost_usd"]
            + other["cost"]["actual_cost_usd"])
        assert stats["total_tokens"] == (cost["tokens_used"] + again["cost"]["tokens_used"]
                                         + other["cost"]["tokens_used"])
    # The batch is a native one too: its records' usage in the native results export.
    with server.client(key) as native:
        r = native.get(f"/api/batches/{created['batch_id']}/results")
        assert r.status_code == 200, r.text
        rows = [orjson.loads(line) for line in r.content.splitlines()]
    assert [row["usage"]["cost_usd"] for row in rows] == pytest.approx(
        [j["cost_usd"] for j in jobs])
    assert sum(row["usage"]["tokens_in"] + row["usage"]["tokens_out"] for row in rows) == \
        cost["tokens_used"]


def test_simulations_pending_batches_list_filter_page_and_cancel(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(run_worker="false")  # nothing runs: every batch stays PENDING
    with server.client() as admin:
        key = new_key(admin, "acme")
    with client(server, key) as c:
        ids = [create(c, board(), priority=p)["batch_id"] for p in ("low", "normal", "high")]
        assert [get(c, i)["priority"] for i in ids] == [25, 50, 75]
        assert {get(c, i)["status"] for i in ids} == {"PENDING"}

        r = c.get("/simulations/batch", params={"page_size": 2})
        assert r.status_code == 200, r.text
        first = r.json()
        assert set(first) == {"batches", "total", "page", "page_size"}
        assert (first["total"], first["page"], first["page_size"]) == (3, 1, 2)
        assert [b["batch_id"] for b in first["batches"]] == ids[::-1][:2]  # newest first
        assert all(set(b) == BATCH_KEYS for b in first["batches"])
        second = c.get("/simulations/batch", params={"page_size": 2, "page": 2}).json()
        assert [b["batch_id"] for b in second["batches"]] == ids[:1]
        assert c.get("/simulations/batch", params={"page": 3, "page_size": 2}).json()[
            "batches"] == []
        assert c.get("/simulations/batch", params={"status": "pending"}).json()["total"] == 3
        assert c.get("/simulations/batch",
                     params={"status_filter": "Running"}).json()["total"] == 0
        assert_error(c.get("/simulations/batch", params={"status": "DONE"}), 422,
                     "ValidationError")
        for bad in ({"page_size": 0}, {"page_size": 101}, {"page": 0}, {"page": "x"}):
            assert_error(c.get("/simulations/batch", params=bad), 422, "ValidationError")

        stats = c.get("/simulations/batch/stats").json()
        assert (stats["total_batches"], stats["pending"], stats["total_jobs"]) == (3, 3, 3)

        r = c.post(f"/simulations/batch/{ids[0]}/cancel", json={"reason": "No longer needed"})
        assert r.status_code == 200, r.text
        cancelled = r.json()
        assert set(cancelled) == BATCH_KEYS
        assert cancelled["status"] == "CANCELLED"
        assert cancelled["error_message"] == "No longer needed"
        assert cancelled["progress"]["cancelled_jobs"] == 1
        assert_iso(cancelled["completed_at"])
        again = c.post(f"/simulations/batch/{ids[0]}/cancel")  # no body; already cancelled
        assert again.status_code == 200 and again.json()["status"] == "CANCELLED"
        listed = c.get("/simulations/batch", params={"status": "CANCELLED"}).json()
        assert [b["batch_id"] for b in listed["batches"]] == [ids[0]]
        stats = c.get("/simulations/batch/stats").json()
        assert (stats["pending"], stats["cancelled"]) == (2, 1)


# errors, auth and ownership

def test_simulations_auth_ownership_and_errors(make_server: Callable[..., Server]) -> None:
    server = make_server()
    with server.client() as admin:
        alice = new_key(admin, "acme", owner="alice")
        bob = new_key(admin, "acme", owner="bob")
        boss = new_key(admin, "acme", owner="boss", role="supervisor")
        carol = new_key(admin, "globex", owner="carol")
        native = admin.post("/api/batches", json={"task": "echo", "items": [1]}).json()["id"]

    health = httpx.get(f"{server.url}/health")
    assert health.status_code == 200 and health.json()["status"] == "healthy"

    with client(server, None) as anon:
        assert_error(anon.get("/simulations/batch"), 401, "Unauthorized")
        assert_error(anon.post("/simulations/batch", json={"simulations": [board()]}), 401,
                     "Unauthorized")
    with client(server, "tp_not_a_key") as bad:
        assert_error(bad.get("/simulations/batch/usage"), 401, "Unauthorized")

    with client(server, alice) as c:
        batch_id = create(c, board())["batch_id"]
        traced = c.get("/simulations/batch/bat_missing", headers={"X-Request-ID": "trace-42"})
        assert assert_error(traced, 404, "NotFound")["request_id"] == "trace-42"
        assert_error(c.get(f"/simulations/batch/{native}"), 404, "NotFound")

        unknown = c.post("/simulations/batch", json={"simulations": [board(), {
            "template_id": "weather_forecast", "entity_count": 1, "timepoint_count": 1}]})
        assert "weather_forecast" in assert_error(unknown, 400, "UnknownTemplate")["message"]
        bad_params = c.post("/simulations/batch", json={"simulations": [board(0, 3)]})
        assert "entity_count" in assert_error(bad_params, 422, "ValidationError")["message"]
        missing = c.post("/simulations/batch", json={"simulations": [
            {"template_id": "board_meeting", "entity_count": 2}]})
        assert "timepoint_count" in assert_error(missing, 422, "ValidationError")["message"]
        for body in ({"simulations": []}, {"simulations": [board()], "priority": 101},
                     {"simulations": [board()], "priority": "urgent"},
                     {"simulations": [board()], "parallel_jobs": 0}, {}):
            assert_error(c.post("/simulations/batch", json=body), 422, "ValidationError")
        not_json = c.post("/simulations/batch", content=b"{", headers={
            "Content-Type": "application/json"})
        assert_error(not_json, 422, "ValidationError")
        over = c.post("/simulations/batch", json={"simulations": [board(5, 10)],
                                                  "budget_cap_usd": 0.01})
        assert "0.05" in assert_error(over, 400, "BudgetExceeded")["message"]
        assert c.get("/simulations/batch").json()["total"] == 1  # nothing else was created

    with client(server, bob) as c:
        assert_error(c.get(f"/simulations/batch/{batch_id}"), 403, "Forbidden")
        assert_error(c.get(f"/simulations/batch/{batch_id}/jobs"), 403, "Forbidden")
        assert_error(c.post(f"/simulations/batch/{batch_id}/cancel"), 403, "Forbidden")
        assert c.get("/simulations/batch").json()["total"] == 0
        assert c.get("/simulations/batch/stats").json()["total_batches"] == 0
    with client(server, carol) as c:  # another tenant: as if it did not exist
        assert_error(c.get(f"/simulations/batch/{batch_id}"), 404, "NotFound")
        assert_error(c.post(f"/simulations/batch/{batch_id}/cancel"), 404, "NotFound")
    with client(server, boss) as c:  # a supervisor sees the whole tenant's
        assert get(c, batch_id)["owner_id"] == "alice"
        assert c.get("/simulations/batch").json()["total"] == 1


# cost control and failures

def test_simulations_budget_stop_ends_partial(make_server: Callable[..., Server]) -> None:
    server = make_server()
    with server.client() as admin:
        key = new_key(admin, "acme")
    with client(server, key) as c:
        # Estimated $0.01 each ($0.05 in all, within the cap), but each costs $0.02. One at a
        # time, a job is dispatched while what was spent plus its estimate fits the cap:
        # $0 + 0.01, $0.02 + 0.01, $0.04 + 0.01 do; $0.06 + 0.01 does not.
        created = create(c, *[{"template_id": "overrun", "cost_usd": 0.02}] * 5,
                         parallel_jobs=1, budget_cap_usd=0.05)
        assert created["cost"]["estimated_cost_usd"] == pytest.approx(0.05)
        done = wait_sim(c, created["batch_id"])
        assert done["status"] == "PARTIAL"
        assert done["progress"] == {
            "total_jobs": 5, "pending_jobs": 0, "running_jobs": 0, "completed_jobs": 3,
            "failed_jobs": 0, "cancelled_jobs": 2, "progress_percent": 100,
        }
        assert done["cost"]["actual_cost_usd"] == pytest.approx(0.06)
        assert done["cost"]["budget_remaining_usd"] == 0.0
        assert done["error_message"] == "budget exceeded"
        jobs = c.get(f"/simulations/batch/{created['batch_id']}/jobs").json()["jobs"]
        assert [j["status"] for j in jobs] == ["COMPLETED"] * 3 + ["CANCELLED"] * 2
        assert [j["cost_usd"] for j in jobs] == pytest.approx([0.02] * 3 + [0.0] * 2)
        assert all("budget" in j["error_message"] for j in jobs[3:])


def test_simulations_fail_fast(make_server: Callable[..., Server]) -> None:
    # One attempt per job: a failure is final at once, so the order of events is fixed.
    server = make_server(default_max_attempts=1)
    with server.client() as admin:
        key = new_key(admin, "acme")
    jobs = [tracked(n=0), tracked(fail=True), tracked(n=2), tracked(n=3)]
    with client(server, key) as c:
        fast = wait_sim(c, create(c, *jobs, parallel_jobs=1, fail_fast=True)["batch_id"])
        assert fast["status"] == "PARTIAL"
        assert fast["error_message"] == "fail fast"
        assert {k: fast["progress"][k] for k in ("completed_jobs", "failed_jobs",
                                                  "cancelled_jobs")} == {
            "completed_jobs": 1, "failed_jobs": 1, "cancelled_jobs": 2}

        slow = wait_sim(c, create(c, *jobs, parallel_jobs=1, fail_fast=False)["batch_id"])
        assert slow["status"] == "PARTIAL"
        assert {k: slow["progress"][k] for k in ("completed_jobs", "failed_jobs",
                                                  "cancelled_jobs")} == {
            "completed_jobs": 3, "failed_jobs": 1, "cancelled_jobs": 0}
        failed = c.get(f"/simulations/batch/{slow['batch_id']}/jobs").json()["jobs"][1]
        assert failed["status"] == "FAILED" and "planned failure" in failed["error_message"]

        none_ok = wait_sim(c, create(c, tracked(fail=True), tracked(n=1), parallel_jobs=1,
                                     fail_fast=True)["batch_id"])
        assert none_ok["status"] == "FAILED"
        stats = c.get("/simulations/batch/stats").json()
        assert (stats["completed"], stats["failed"]) == (2, 1)  # PARTIAL counts as completed


def test_simulations_cancel_with_and_without_running_jobs(
    make_server: Callable[..., Server], tmp_path: Path,
) -> None:
    server = make_server()
    with server.client() as admin:
        key = new_key(admin, "acme")

    def two_running(b: dict[str, Any]) -> bool:
        return bool(b["progress"]["running_jobs"] == 2)

    with client(server, key) as c:
        # The running jobs wait for their gate, so they still run when the cancel comes,
        # however long the machine takes to get there.
        gate = tmp_path / "gate"
        spare = create(c, *[gated(gate)] * 4, parallel_jobs=2)["batch_id"]
        wait_sim(c, spare, until=two_running)
        r = c.post(f"/simulations/batch/{spare}/cancel",
                   json={"reason": "enough", "cancel_running": False})
        assert r.status_code == 200, r.text
        now = r.json()
        assert now["status"] == "CANCELLED"
        assert (now["progress"]["running_jobs"], now["progress"]["cancelled_jobs"]) == (2, 2)
        assert now["completed_at"] is None  # running jobs still finishing
        gate.with_name("gate.1").touch()  # let the first attempts finish
        done = wait_sim(c, spare)
        assert done["status"] == "CANCELLED"
        assert (done["progress"]["completed_jobs"], done["progress"]["cancelled_jobs"]) == (
            2, 2)
        assert_iso(done["completed_at"])
        statuses = [j["status"] for j in c.get(f"/simulations/batch/{spare}/jobs").json()[
            "jobs"]]
        assert sorted(statuses) == ["CANCELLED", "CANCELLED", "COMPLETED", "COMPLETED"]

        stop = create(c, *[tracked(seconds=60)] * 4, parallel_jobs=2)["batch_id"]
        wait_sim(c, stop, until=two_running)
        r = c.post(f"/simulations/batch/{stop}/cancel", json={"cancel_running": True})
        assert r.status_code == 200 and r.json()["status"] == "CANCELLED"
        done = wait_sim(c, stop, timeout_s=30)
        assert done["status"] == "CANCELLED"
        assert (done["progress"]["completed_jobs"], done["progress"]["cancelled_jobs"]) == (
            0, 4)
        assert done["error_message"] == "cancelled"


# tiers and quotas

def test_simulations_tier_limits(make_server: Callable[..., Server]) -> None:
    server = make_server()
    with server.client() as admin:
        keys = {tier: new_key(admin, f"t-{tier}", tier=tier) for tier in TIERS}
    for tier, (most, calls, sims, cost) in TIERS.items():
        with client(server, keys[tier]) as c:
            u = usage(c)
            assert u["tier"] == tier
            assert (u["max_batch_size"], u["api_calls_limit"], u["simulations_limit"],
                    u["cost_limit_usd"]) == (most, calls, sims, cost)
            assert u["api_calls_remaining"] == (calls - 1 if calls > 0 else -1)
            assert u["simulations_remaining"] == sims
            assert u["cost_remaining_usd"] == cost
            too_big = c.post("/simulations/batch",
                             json={"simulations": [board(1, 1)] * (most + 1)})
            assert str(most) in assert_error(too_big, 400, "BatchTooLarge")["message"]
            full = create(c, *[board(1, 1)] * most, parallel_jobs=10)
            assert full["progress"]["total_jobs"] == most
            assert usage(c)["simulations_used"] == most


def test_simulations_limits_from_settings_and_per_key(make_server: Callable[..., Server]) -> None:
    limits = {"free": {"max_batch_size": 2, "api_calls": 50}, "basic": {"items": -1}}
    server = make_server(tier_limits=json.dumps(limits))
    with server.client() as admin:
        free = new_key(admin, "one", tier="free")
        basic = new_key(admin, "two", tier="basic")
        own = new_key(admin, "three", tier="free", limits={"max_batch_size": 3})
        bad = admin.post("/api/keys", json={"tenant": "x", "limits": {"gold": 1}})
        assert bad.status_code == 422
    with client(server, free) as c:
        assert_error(c.post("/simulations/batch", json={"simulations": [board()] * 3}), 400,
                     "BatchTooLarge")
        u = usage(c)
        assert (u["max_batch_size"], u["api_calls_limit"], u["simulations_limit"]) == (
            2, 50, 100)
    with client(server, basic) as c:
        u = usage(c)
        assert (u["simulations_limit"], u["simulations_remaining"]) == (-1, -1)
    with client(server, own) as c:
        create(c, *[board()] * 3)
        assert usage(c)["max_batch_size"] == 3


def test_simulations_quotas_exhausted_mid_month(make_server: Callable[..., Server]) -> None:
    server = make_server()
    with server.client() as admin:
        calls = new_key(admin, "calls", tier="free", limits={"api_calls": 5})
        sims = new_key(admin, "sims", tier="free", limits={"items": 3})
        spend = new_key(admin, "spend", tier="free", limits={"cost_usd": 0.08})

    with client(server, calls) as c:
        batch_id = create(c, board())["batch_id"]  # 1
        get(c, batch_id)  # 2
        assert c.get("/simulations/batch").status_code == 200  # 3
        assert c.get("/simulations/batch/stats").status_code == 200  # 4
        assert c.get(f"/simulations/batch/{batch_id}/jobs").status_code == 200  # 5
        refused = assert_error(c.get(f"/simulations/batch/{batch_id}"), 429,
                               "ApiCallQuotaExceeded")
        assert "api_calls" in refused["message"]
        assert_error(c.post("/simulations/batch", json={"simulations": [board()]}), 429,
                     "ApiCallQuotaExceeded")
        assert_error(c.post(f"/simulations/batch/{batch_id}/cancel"), 429,
                     "ApiCallQuotaExceeded")
        u = usage(c)  # still answered, to show why, and counted
        assert (u["api_calls_used"], u["api_calls_limit"], u["api_calls_remaining"]) == (6, 5, 0)
        assert u["is_quota_exceeded"] is True
        assert "API call" in u["quota_exceeded_reason"]
        assert u["simulations_used"] == 1  # the refused create added nothing

    with client(server, sims) as c:
        create(c, board(), board())
        refused = assert_error(c.post("/simulations/batch", json={
            "simulations": [board(), board()]}), 429, "SimulationQuotaExceeded")
        assert "items" in refused["message"]
        assert usage(c)["is_quota_exceeded"] is False
        create(c, board())
        u = usage(c)
        assert (u["simulations_used"], u["simulations_remaining"]) == (3, 0)
        assert u["is_quota_exceeded"] is True and "simulation" in u["quota_exceeded_reason"]
        assert c.get("/simulations/batch").json()["total"] == 2
        assert_error(c.post("/simulations/batch", json={"simulations": [board()]}), 429,
                     "SimulationQuotaExceeded")

    with client(server, spend) as c:
        first = wait_sim(c, create(c, board(5, 10))["batch_id"])  # estimate $0.05
        spent = first["cost"]["actual_cost_usd"]
        assert usage(c)["cost_used_usd"] == pytest.approx(spent)
        # $0.05 more would pass $0.08; $0.006 more would not.
        assert_error(c.post("/simulations/batch", json={"simulations": [board(5, 10)]}), 429,
                     "CostQuotaExceeded")
        create(c, board(2, 3))


def test_simulations_every_call_is_metered(make_server: Callable[..., Server]) -> None:
    server = make_server()
    with server.client() as admin:
        key = new_key(admin, "acme")
        other = new_key(admin, "acme", owner="someone-else")
    with client(server, other) as c:
        foreign = create(c, board())["batch_id"]
    with client(server, key) as c:
        batch_id = create(c, board())["batch_id"]
        responses = [
            c.get(f"/simulations/batch/{batch_id}"),
            c.get(f"/simulations/batch/{batch_id}/jobs"),
            c.get("/simulations/batch"),
            c.get("/simulations/batch/stats"),
            c.get("/simulations/batch/usage/history"),
            c.get("/simulations/batch/bat_missing"),  # 404
            c.get(f"/simulations/batch/{foreign}"),  # 403
            c.get("/simulations/batch", params={"page_size": 500}),  # 422
            c.post("/simulations/batch", json={"simulations": [{"template_id": "x"}]}),  # 400
            c.post(f"/simulations/batch/{batch_id}/cancel", json={"cancel_running": "?"}),
        ]
        assert [r.status_code for r in responses] == [
            200, 200, 200, 200, 200, 404, 403, 422, 400, 422]
        with client(server, None) as anon:
            assert anon.get("/simulations/batch").status_code == 401  # nobody to bill
        # Both keys bill the tenant: the other key's create, this one's, the rest, and
        # this usage read itself.
        assert usage(c)["api_calls_used"] == 2 + len(responses) + 1


# billing periods, with an injected clock

class Clock:
    """Real time shifted to a chosen moment, so tests can step across months."""

    def __init__(self, when: datetime) -> None:
        self.offset = 0.0
        self.move_to(when)

    def move_to(self, when: datetime) -> None:
        self.offset = when.timestamp() - time.time()

    def __call__(self) -> float:
        return time.time() + self.offset


@asynccontextmanager
async def in_process(tmp_path: Path, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    url = fresh_database_url(tmp_path)
    settings = Settings(database_url=url, admin_key="admin-key", tasks="tests.support.tasks",
                        retry_backoff_s=0.05, load_entry_points=False)
    app = create_app(settings, clock=clock)
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://batchd",
            headers={"X-API-Key": "admin-key"},
        ) as c:
            yield c
    finally:
        drop_database(url)


async def wait_native(c: httpx.AsyncClient, batch_id: str, key: str) -> None:
    """Poll through the native API, which these tests' quotas do not count."""
    deadline = time.monotonic() + scaled(60)
    while True:
        r = await c.get(f"/api/batches/{batch_id}", headers={"X-API-Key": key})
        if r.json()["status"] not in ("open", "closed") and not r.json()["counts"]["running"]:
            return
        assert time.monotonic() < deadline, r.text
        await asyncio.sleep(0.05)


async def test_simulations_usage_history_across_periods(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 1, 20, 12, tzinfo=UTC))
    async with in_process(tmp_path, clock) as c:
        r = await c.post("/api/keys", json={"tenant": "acme", "tier": "free", "owner": "u-1",
                                            "limits": {"api_calls": 4}})
        key = r.json()["key"]
        h = {"X-API-Key": key}

        # January: 2 simulations that complete, then the call quota runs out.
        r = await c.post("/simulations/batch", headers=h,
                         json={"simulations": [board(3, 4), crisis(2, 5)]})
        assert r.status_code == 202, r.text
        january = r.json()["batch_id"]
        await wait_native(c, january, key)
        jan_cost = (await c.get(f"/simulations/batch/{january}", headers=h)).json()["cost"]
        assert (await c.get("/simulations/batch", headers=h)).status_code == 200
        assert (await c.get("/simulations/batch/stats", headers=h)).status_code == 200
        r = await c.get("/simulations/batch/stats", headers=h)
        assert_error(r, 429, "ApiCallQuotaExceeded")
        u = (await c.get("/simulations/batch/usage", headers=h)).json()
        assert (u["period"], u["days_remaining"], u["api_calls_used"]) == ("2026-01", 11, 5)
        assert u["is_quota_exceeded"] is True

        # February: a new period, a fresh quota; one simulation fails.
        clock.move_to(datetime(2026, 2, 10, tzinfo=UTC))
        r = await c.post("/simulations/batch", headers=h,
                         json={"simulations": [board(2, 2), tracked(fail=True)]})
        assert r.status_code == 202, r.text
        february = r.json()["batch_id"]
        await wait_native(c, february, key)
        feb_cost = (await c.get(f"/api/batches/{february}", headers=h)).json()["cost"]

        # March: the history of the periods before.
        clock.move_to(datetime(2026, 3, 5, 8, tzinfo=UTC))
        r = await c.get("/simulations/batch/usage/history", headers=h,
                        params={"periods": 3})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"current", "history"}
        current = body["current"]
        assert set(current) == USAGE_KEYS
        assert (current["period"], current["days_remaining"], current["api_calls_used"]) == (
            "2026-03", 26, 1)
        assert (current["simulations_used"], current["cost_used_usd"]) == (0, 0.0)
        assert current["is_quota_exceeded"] is False
        history = body["history"]
        assert [p["period"] for p in history] == ["2026-02", "2026-01", "2025-12"]
        assert all(set(p) == PERIOD_KEYS for p in history)
        feb, jan, dec = history
        assert (jan["api_calls"], jan["simulations_run"], jan["simulations_completed"],
                jan["simulations_failed"]) == (5, 2, 2, 0)
        assert jan["cost_usd"] == pytest.approx(jan_cost["actual_cost_usd"])
        assert jan["tokens_used"] == jan_cost["tokens_used"]
        assert (feb["api_calls"], feb["simulations_run"], feb["simulations_completed"],
                feb["simulations_failed"]) == (1, 2, 1, 1)
        assert feb["cost_usd"] == pytest.approx(feb_cost["actual_usd"]) and feb["cost_usd"] > 0
        assert feb["tokens_used"] == feb_cost["tokens_in"] + feb_cost["tokens_out"] > 0
        assert dec == {"period": "2025-12", "api_calls": 0, "simulations_run": 0,
                       "simulations_completed": 0, "simulations_failed": 0, "cost_usd": 0.0,
                       "tokens_used": 0}
        r = await c.get("/simulations/batch/usage/history", headers=h)
        assert len(r.json()["history"]) == 6  # the default
        r = await c.get("/simulations/batch/usage/history", headers=h, params={"periods": 0})
        assert_error(r, 422, "ValidationError")
