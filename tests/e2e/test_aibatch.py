"""The AI batch job queue dialect (seed 003) end to end: real servers, real HTTP."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Server, scaled, wait_until
from tests.support import fake_providers
from tests.support.fake_providers import FAIL_MARK, FakeProviders

pytestmark = pytest.mark.timeout(120)
API = "/api/v1/batch"
PROVIDER_KEY = "sk-test-aibatch"


def enqueue(c: httpx.Client, job_type: str = "sentiment_analysis", **fields: Any) -> dict[str, Any]:
    r = c.post(f"{API}/enqueue", json={"job_type": job_type, **fields})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    return body["job"]  # type: ignore[no-any-return]


def flush(c: httpx.Client, **body: Any) -> dict[str, Any]:
    r = c.post(f"{API}/internal/flush", json=body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def poll(c: httpx.Client, batch_id: str) -> dict[str, Any]:
    r = c.post(f"{API}/internal/poll", json={"batch_id": batch_id})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def poll_until_ended(c: httpx.Client, batch_id: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []

    def ended() -> bool:
        body = poll(c, batch_id)
        results.extend(body["results"])
        return body["status"] == "ended"

    wait_until(ended, timeout_s=60, interval_s=0.1, what=f"batch {batch_id} to end")
    return results


def job(c: httpx.Client, job_id: str) -> dict[str, Any]:
    r = c.get(f"{API}/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def assert_detail(r: httpx.Response, status: int, loc: list[Any] | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail
    for entry in detail:
        assert {"loc", "msg", "type"} <= set(entry)
    if loc is not None:
        assert detail[0]["loc"] == loc, detail
    return detail[0]  # type: ignore[no-any-return]


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    return make_server()


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with fake_providers.running(api_key=PROVIDER_KEY, polls_before_end=1) as srv:
        yield srv


def remote_server(make_server: Callable[..., Server], fake: FakeProviders, provider: str,
                  **settings: Any) -> Server:
    base = fake.url if provider == "anthropic" else f"{fake.url}/v1"
    return make_server(**{"aibatch_provider": provider,
                          f"aibatch_{provider}_api_key": PROVIDER_KEY,
                          f"aibatch_{provider}_base_url": base, **settings})


def test_aibatch_enqueue_returns_a_pending_job(server: Server) -> None:
    with server.client() as c:
        r = c.post(f"{API}/enqueue", json={"job_type": "portfolio_summary", "payload": {}})
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"success", "job", "message", "estimated_completion"}
        j = body["job"]
        assert set(j) == {"id", "job_type", "status", "priority", "custom_id", "batch_id",
                          "created_at", "updated_at", "run_after", "completed_at",
                          "tokens_used", "cost_usd", "error_message"}
        assert j["status"] == "pending" and j["priority"] == 50
        assert j["job_type"] == "portfolio_summary"
        assert j["custom_id"] == j["id"] and j["batch_id"] is None and j["run_after"] is None
        assert j["tokens_used"] == 0 and j["completed_at"] is None
        assert job(c, j["id"]) == j


def test_aibatch_validation_errors_take_the_fastapi_detail_shape(server: Server) -> None:
    with server.client() as c:
        d = assert_detail(c.post(f"{API}/enqueue", json={"job_type": "risk_report",
                                                        "priority": 101}),
                          422, ["body", "priority"])
        assert d["type"] == "less_than_equal" and d["input"] == 101 and d["ctx"] == {"le": 100}
        assert_detail(c.post(f"{API}/enqueue", json={"job_type": "risk_report", "priority": -1}),
                      422, ["body", "priority"])
        assert_detail(c.post(f"{API}/enqueue", json={"payload": {}}), 422, ["body", "job_type"])
        d = assert_detail(c.post(f"{API}/enqueue", json={"job_type": "no_such_job"}), 422,
                          ["body", "job_type"])
        assert d["type"] == "enum" and "'risk_report'" in d["msg"] and d["input"] == "no_such_job"
        d = assert_detail(c.post(f"{API}/enqueue", json={"job_type": "risk_report",
                                                        "payload": {"returns": "high"}}),
                          422, ["body", "payload"])
        assert "returns" in d["msg"]
        assert_detail(c.post(f"{API}/enqueue", json={"job_type": "risk_report",
                                                     "run_after": "tomorrow"}),
                      422, ["body", "run_after"])
        assert_detail(c.get(f"{API}/jobs", params={"limit": 0}), 422, ["query", "limit"])
        assert_detail(c.post(f"{API}/internal/flush", json={"max_jobs": 10001}), 422,
                      ["body", "max_jobs"])
        assert_detail(c.post(f"{API}/internal/flush", json={"max_jobs": 0}), 422,
                      ["body", "max_jobs"])
        assert_detail(c.post(f"{API}/internal/flush", json={"min_priority": 101}), 422,
                      ["body", "min_priority"])
        assert_detail(c.post(f"{API}/internal/flush", json={"job_types": ["risk_report", "x"]}),
                      422, ["body", "job_types", 1])
        assert_detail(c.post(f"{API}/internal/poll", json={}), 422, ["body", "batch_id"])
        assert_detail(c.post(f"{API}/internal/poll", json={"batch_id": "bat_nope"}), 404,
                      ["body", "batch_id"])


def test_aibatch_needs_a_bearer_key_and_internal_routes_a_supervisor(server: Server) -> None:
    routes = [("POST", f"{API}/enqueue"), ("GET", f"{API}/jobs"), ("GET", f"{API}/jobs/job_x"),
              ("POST", f"{API}/jobs/job_x/cancel"), ("GET", f"{API}/stats"),
              ("GET", f"{API}/jobs/job_x/result"), ("POST", f"{API}/internal/flush"),
              ("POST", f"{API}/internal/poll")]
    with httpx.Client(base_url=server.url) as anon:
        for method, path in routes:
            r = anon.request(method, path, json={})
            assert_detail(r, 401, ["header", "Authorization"])
            assert r.headers["www-authenticate"] == "Bearer"
        r = anon.get(f"{API}/jobs", headers={"Authorization": "Bearer bd_not_a_key"})
        assert_detail(r, 401)
    user = server.new_key("acme", role="user")
    with server.client(user) as c:
        enqueue(c)
        for path in ("internal/flush", "internal/poll"):
            d = assert_detail(c.post(f"{API}/{path}", json={"batch_id": "b"}), 403)
            assert d["type"] == "forbidden"
    with server.client(server.new_key("acme", role="supervisor")) as c:
        assert flush(c)["jobs_count"] == 1


def test_aibatch_idempotent_replay_returns_the_existing_job(server: Server) -> None:
    with server.client(server.new_key("acme")) as c:
        first = c.post(f"{API}/enqueue", json={"job_type": "risk_report", "priority": 70,
                                               "idempotency_key": "order-42"}).json()
        again = c.post(f"{API}/enqueue", json={"job_type": "risk_report", "priority": 70,
                                               "idempotency_key": "order-42"}).json()
        other_body = c.post(f"{API}/enqueue", json={"job_type": "trading_analytics",
                                                    "idempotency_key": "order-42"}).json()
        assert again["job"] == first["job"] == other_body["job"]
        assert "already exists" in again["message"]
        assert c.get(f"{API}/jobs").json()["total_count"] == 1
        fresh = enqueue(c, "risk_report", idempotency_key="order-43")
        assert fresh["id"] != first["job"]["id"]
    # Keys are scoped to their owner: another user's identical key is another job.
    with server.client(server.new_key("acme")) as other:
        assert enqueue(other, "risk_report", idempotency_key="order-42")["id"] != first["job"]["id"]


def test_aibatch_jobs_list_counts_limit_and_visibility(server: Server) -> None:
    alice, bob = server.new_key("acme"), server.new_key("acme")
    boss = server.new_key("acme", role="supervisor")
    with server.client(alice) as a, server.client(bob) as b, server.client(boss) as s:
        ids = [enqueue(a, priority=90 if i == 0 else 10)["id"] for i in range(4)]
        enqueue(b)
        assert flush(s, max_jobs=1)["jobs_count"] == 1  # alice's priority-90 job
        body = a.get(f"{API}/jobs").json()
        assert set(body) == {"jobs", "total_count", "pending_count", "processing_count"}
        assert [j["id"] for j in body["jobs"]] == ids[::-1]  # newest first
        assert (body["total_count"], body["pending_count"], body["processing_count"]) == (4, 3, 1)
        limited = a.get(f"{API}/jobs", params={"limit": 2}).json()
        assert [j["id"] for j in limited["jobs"]] == ids[:1:-1] and limited["total_count"] == 4
        everyone = s.get(f"{API}/jobs").json()
        assert everyone["total_count"] == 5 and everyone["pending_count"] == 4
        # Another user's job in the tenant, and any job of another tenant, is missing.
        assert_detail(b.get(f"{API}/jobs/{ids[0]}"), 404, ["path", "job_id"])
        assert s.get(f"{API}/jobs/{ids[0]}").status_code == 200
    with server.client(server.new_key("globex", role="supervisor")) as g:
        assert_detail(g.get(f"{API}/jobs/{ids[1]}"), 404)
        assert_detail(g.post(f"{API}/jobs/{ids[1]}/cancel"), 404)
        assert g.get(f"{API}/jobs").json()["total_count"] == 0
        assert flush(g)["jobs_count"] == 0


def test_aibatch_flush_takes_highest_priority_first_and_honours_its_filters(
    server: Server,
) -> None:
    with server.client() as c:
        made = {}
        for name, job_type, priority in [("low", "risk_report", 10), ("mid", "risk_report", 50),
                                         ("top", "risk_report", 95), ("mid2", "risk_report", 50),
                                         ("senti", "sentiment_analysis", 99),
                                         ("eval", "model_evaluation", 70)]:
            made[name] = enqueue(c, job_type, priority=priority)["id"]
        empty = flush(c, job_types=["trading_analytics"])
        assert empty["jobs_count"] == 0 and empty["batch_id"] is None and empty["success"]

        first = flush(c, max_jobs=3, job_types=["risk_report", "model_evaluation"])
        assert first["jobs_count"] == 3 and first["batch_id"].startswith("bat_")
        assert first["estimated_tokens"] > 0
        taken = {n for n, i in made.items() if job(c, i)["status"] == "processing"}
        assert taken == {"top", "eval", "mid"}  # 95, 70, then the older of the two 50s
        assert all(job(c, made[n])["batch_id"] == first["batch_id"] for n in taken)

        second = flush(c, min_priority=50)
        assert second["jobs_count"] == 2  # senti (99) and mid2 (50); low (10) stays
        assert job(c, made["low"])["status"] == "pending"
        assert job(c, made["senti"])["batch_id"] == second["batch_id"] != first["batch_id"]
        assert flush(c)["jobs_count"] == 1 and flush(c)["jobs_count"] == 0


def test_aibatch_run_after_is_honoured(server: Server) -> None:
    # The delay must outlast the steps between enqueue and the first flush on a busy
    # machine, or the delayed job would be ready in time for that flush.
    delay_s = scaled(4)
    with server.client() as c:
        now = datetime.now(UTC)
        later = enqueue(c, run_after=(now + timedelta(seconds=delay_s)).isoformat(),
                        priority=100)
        past = enqueue(c, run_after=(now - timedelta(hours=1)).isoformat(), priority=1)
        naive = enqueue(c, run_after=(now + timedelta(days=1)).replace(tzinfo=None).isoformat())
        assert abs(ts(later["run_after"]) - (now + timedelta(seconds=delay_s)).timestamp()) < 0.01
        assert ts(naive["run_after"]) > now.timestamp() + 86000  # a naive time is UTC
        assert flush(c)["jobs_count"] == 1
        assert job(c, past["id"])["status"] == "processing"
        assert job(c, later["id"])["status"] == "pending"
        wait_until(lambda: flush(c)["jobs_count"] == 1, timeout_s=delay_s + 10, interval_s=0.2,
                   what="the delayed job to become ready")
        assert job(c, later["id"])["status"] == "processing"
        assert ts(job(c, later["id"])["updated_at"]) >= ts(later["run_after"])
        assert job(c, naive["id"])["status"] == "pending"


def test_aibatch_poll_records_outcomes_and_results_on_the_local_provider(server: Server) -> None:
    with server.client() as c:
        ok = enqueue(c, "sentiment_analysis", payload={"text": "record profit, strong growth"})
        bad = enqueue(c, "fail", payload={"fail": True})
        flushed = flush(c)
        assert flushed["jobs_count"] == 2
        assert_detail(c.get(f"{API}/jobs/{ok['id']}/result"), 409, ["path", "job_id"])
        results = poll_until_ended(c, flushed["batch_id"])
        by_job = {r["job_id"]: r for r in results}
        assert set(by_job) == {ok["id"], bad["id"]}
        for r in results:
            assert set(r) == {"job_id", "job_type", "status", "result", "error", "tokens_used",
                              "cost_usd", "processing_time_ms"}
        good = by_job[ok["id"]]
        assert good["status"] == "succeeded" and good["job_type"] == "sentiment_analysis"
        assert good["result"]["analysis"]["label"] == "positive" and good["tokens_used"] > 0
        assert by_job[bad["id"]]["status"] == "errored"
        assert "failed on demand" in by_job[bad["id"]]["error"]

        done = job(c, ok["id"])
        assert done["status"] == "completed" and done["tokens_used"] == good["tokens_used"]
        assert done["completed_at"] is not None and done["error_message"] is None
        assert c.get(f"{API}/jobs/{ok['id']}/result").json() == good["result"]
        failed = job(c, bad["id"])
        assert failed["status"] == "failed" and "failed on demand" in failed["error_message"]
        d = assert_detail(c.get(f"{API}/jobs/{bad['id']}/result"), 409)
        assert "failed on demand" in d["msg"]
        again = poll(c, flushed["batch_id"])
        assert again["status"] == "ended" and again["results"] == []
        assert again["jobs_processed"] == 0 and again["jobs_remaining"] == 0
        # The local model has no standard price: its jobs cost what their handlers
        # reported (the example handlers report tokens only) and save nothing.
        assert good["cost_usd"] == 0.0 and done["cost_usd"] == 0.0
        stats = c.get(f"{API}/stats").json()
        assert stats["total_cost_usd"] == 0.0 and stats["total_savings_usd"] == 0.0
        assert stats["total_tokens_used"] > 0
        # The engine batch behind the local provider is visible in the native API.
        native = c.get(f"/api/batches/{flushed['batch_id']}").json()
        assert native["task"] == "aibatch" and native["counts"]["total"] == 2


def test_aibatch_cancel_a_pending_job(server: Server) -> None:
    with server.client() as c:
        pending = enqueue(c, priority=100)
        other = enqueue(c, priority=1)
        r = c.post(f"{API}/jobs/{pending['id']}/cancel")
        assert r.status_code == 200 and r.json() == {"success": True, "cancelled": True}
        assert job(c, pending["id"])["status"] == "cancelled"
        assert c.post(f"{API}/jobs/{pending['id']}/cancel").status_code == 200  # twice is fine
        flushed = flush(c)
        assert flushed["jobs_count"] == 1 and job(c, other["id"])["status"] == "processing"
        poll_until_ended(c, flushed["batch_id"])
        d = assert_detail(c.post(f"{API}/jobs/{other['id']}/cancel"), 409, ["path", "job_id"])
        assert "completed" in d["msg"]
        assert_detail(c.post(f"{API}/jobs/job_missing/cancel"), 404)


def test_aibatch_cancel_a_flushed_job(server: Server) -> None:
    with server.client() as c:
        slow = enqueue(c, "sleep", payload={"seconds": 60}, priority=90)
        quick = enqueue(c, "sentiment_analysis", payload={"text": "weak decline"}, priority=10)
        flushed = flush(c)
        assert flushed["jobs_count"] == 2
        # The quick one: cancelled while its batch runs; its result is dropped, but the
        # tokens it used are still counted once the batch reports them.
        assert c.post(f"{API}/jobs/{quick['id']}/cancel").json()["success"] is True
        assert job(c, quick["id"])["status"] == "cancelled"
        wait_until(lambda: poll(c, flushed["batch_id"])["jobs_remaining"] == 1 and
                   job(c, quick["id"])["tokens_used"] > 0, timeout_s=30, interval_s=0.1,
                   what="the cancelled job's tokens")
        assert job(c, quick["id"])["status"] == "cancelled"
        assert_detail(c.get(f"{API}/jobs/{quick['id']}/result"), 409)
        # The slow one was the batch's last job: cancelling it cancels the engine batch.
        assert c.post(f"{API}/jobs/{slow['id']}/cancel").status_code == 200
        wait_until(lambda: c.get(f"/api/batches/{flushed['batch_id']}").json()["status"]
                   == "cancelled", timeout_s=30, what="the engine batch to be cancelled")
        results = poll_until_ended(c, flushed["batch_id"])
        assert results == []  # nothing was processing any more
        assert job(c, slow["id"])["status"] == "cancelled"
        stats = c.get(f"{API}/stats").json()
        assert stats["completed_jobs"] == 0 and stats["total_jobs_queued"] == 2
        assert stats["total_tokens_used"] == job(c, quick["id"])["tokens_used"]


def test_aibatch_stats_arithmetic(make_server: Callable[..., Server]) -> None:
    prices = {"local": {"input": 3.0, "output": 15.0, "batch_input": 1.0, "batch_output": 5.0}}
    server = make_server(aibatch_prices=orjson.dumps(prices).decode())
    payloads = [{"text": "strong growth " * n} for n in (1, 5, 20)]
    with server.client() as c:
        assert c.get(f"{API}/stats").json() == {
            "total_jobs_queued": 0, "pending_jobs": 0, "processing_jobs": 0,
            "completed_jobs": 0, "failed_jobs": 0, "total_tokens_used": 0,
            "total_cost_usd": 0.0, "total_savings_usd": 0.0, "avg_processing_time_hours": 0.0,
        }
        done = [enqueue(c, "sentiment_analysis", payload=p) for p in payloads]
        failing = enqueue(c, "fail", payload={"fail": True})
        waiting = enqueue(c, "risk_report", priority=0)
        cancelled = enqueue(c, "risk_report")
        c.post(f"{API}/jobs/{cancelled['id']}/cancel")
        flushed = flush(c, min_priority=1)
        assert flushed["jobs_count"] == 4
        poll_until_ended(c, flushed["batch_id"])

        tokens_in = tokens_out = 0
        hours = []
        for made, payload in zip(done, payloads, strict=True):
            result = c.get(f"{API}/jobs/{made['id']}/result").json()
            # The example job types count 4 bytes of JSON a token, plus 120 for instructions.
            t_in = 120 + math.ceil(len(orjson.dumps(payload)) / 4)
            t_out = math.ceil(len(orjson.dumps(result)) / 4)
            final = job(c, made["id"])
            assert final["tokens_used"] == t_in + t_out
            assert final["cost_usd"] == pytest.approx((t_in * 1.0 + t_out * 5.0) / 1e6)
            tokens_in, tokens_out = tokens_in + t_in, tokens_out + t_out
            hours.append((ts(final["completed_at"]) - ts(final["created_at"])) / 3600)
        stats = c.get(f"{API}/stats").json()
        assert stats["total_jobs_queued"] == 6
        assert (stats["pending_jobs"], stats["processing_jobs"], stats["completed_jobs"],
                stats["failed_jobs"]) == (1, 0, 3, 1)
        assert stats["total_tokens_used"] == tokens_in + tokens_out + job(
            c, failing["id"])["tokens_used"]
        cost = (tokens_in * 1.0 + tokens_out * 5.0) / 1e6
        standard = (tokens_in * 3.0 + tokens_out * 15.0) / 1e6
        assert stats["total_cost_usd"] == pytest.approx(cost)
        assert stats["total_savings_usd"] == pytest.approx(standard - cost)
        assert stats["avg_processing_time_hours"] == pytest.approx(sum(hours) / 3, abs=1e-6)
        assert job(c, waiting["id"])["status"] == "pending"
    # A user's stats cover their own jobs only.
    with server.client(server.new_key("default")) as mine:
        assert mine.get(f"{API}/stats").json()["total_jobs_queued"] == 0


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_aibatch_remote_provider_round_trip(
    provider: str, make_server: Callable[..., Server], fake: FakeProviders
) -> None:
    server = remote_server(make_server, fake, provider)
    with server.client() as c:
        ok = enqueue(c, "sentiment_analysis", payload={"text": "great quarter"})
        bad = enqueue(c, "sentiment_analysis", payload={"text": FAIL_MARK})
        assert c.post(f"{API}/enqueue", json={"job_type": "risk_report"}).json()[
            "estimated_completion"].startswith("within 24 hours")
        flushed = flush(c, job_types=["sentiment_analysis"])
        prefix = "msgbatch_" if provider == "anthropic" else "batch_"
        assert flushed["batch_id"].startswith(prefix) and flushed["jobs_count"] == 2
        first = poll(c, flushed["batch_id"])
        assert first["status"] == "in_progress" and first["jobs_remaining"] == 2
        results = {r["job_id"]: r for r in poll_until_ended(c, flushed["batch_id"])}
        assert results[ok["id"]]["status"] == "succeeded"
        assert results[bad["id"]]["status"] == "errored"
        answer = c.get(f"{API}/jobs/{ok['id']}/result").json()
        assert answer["data"] == {"custom_id": ok["custom_id"], "chars": len(
            orjson.dumps({"text": "great quarter"}))}
        t_in, t_out = fake.usage[ok["custom_id"]]
        assert job(c, ok["id"])["tokens_used"] == t_in + t_out
        stats = c.get(f"{API}/stats").json()
        # Default prices: claude-haiku-4-5 $1/$5, gpt-4o-mini $0.15/$0.60 per million;
        # batches at half, so the savings equal the cost.
        rate_in, rate_out = (1.0, 5.0) if provider == "anthropic" else (0.15, 0.6)
        cost = (t_in * rate_in + t_out * rate_out) / 2 / 1e6
        assert stats["total_cost_usd"] == pytest.approx(cost)
        assert stats["total_savings_usd"] == pytest.approx(cost)
        assert (stats["completed_jobs"], stats["failed_jobs"], stats["pending_jobs"]) == (1, 1, 1)
    sent = [r["custom_id"] for r in fake.batches[flushed["batch_id"]].requests]
    assert sorted(sent) == sorted([ok["custom_id"], bad["custom_id"]])


CREATE_CALLS = {"anthropic": ["anthropic.create"],
                "openai": ["openai.files.create", "openai.batches.create"]}


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_aibatch_provider_refusal_puts_the_jobs_back(
    provider: str, make_server: Callable[..., Server], fake: FakeProviders
) -> None:
    server = remote_server(make_server, fake, provider)
    with server.client() as c:
        made = enqueue(c)
        fake.refuse_next = True
        d = assert_detail(c.post(f"{API}/internal/flush", json={}), 502)
        assert d["type"] == "provider_error" and "the fake refuses this batch" in d["msg"]
        # The provider saw one valid request and refused it as intended; nothing retried.
        assert fake.refused == CREATE_CALLS[provider][-1:]
        assert fake.calls == CREATE_CALLS[provider] and not fake.batches
        assert job(c, made["id"])["status"] == "pending"
        again = flush(c)
        assert again["jobs_count"] == 1 and again["batch_id"] in fake.batches
        assert fake.calls == CREATE_CALLS[provider] * 2
        assert job(c, made["id"])["status"] == "processing"


def test_aibatch_auto_flush_and_auto_poll(make_server: Callable[..., Server]) -> None:
    server = make_server(aibatch_auto_flush_count=3, aibatch_loop_interval_s=0.1,
                         aibatch_auto_poll_interval_s=0.1)
    with server.client() as c:
        first = [enqueue(c)["id"] for _ in range(2)]
        assert [job(c, i)["status"] for i in first] == ["pending"] * 2  # below the count
        first.append(enqueue(c)["id"])
        wait_until(lambda: [job(c, i)["status"] for i in first] == ["completed"] * 3,
                   timeout_s=30, interval_s=0.1, what="auto-flush and auto-poll")
        assert c.get(f"{API}/stats").json()["completed_jobs"] == 3


def test_aibatch_auto_flush_by_age(make_server: Callable[..., Server]) -> None:
    server = make_server(aibatch_auto_flush_age_s=0.5, aibatch_loop_interval_s=0.1)
    with server.client() as c:
        made = enqueue(c)
        # Taken by the flush first, then given its batch id once the provider answered
        # (batch_id is null in between, as the README says).
        flushed = wait_until(lambda: (j := job(c, made["id"]))["batch_id"] and j, timeout_s=30,
                             interval_s=0.1, what="auto-flush by age")
        assert flushed["status"] == "processing", flushed
        assert flushed["batch_id"].startswith("bat_"), flushed
