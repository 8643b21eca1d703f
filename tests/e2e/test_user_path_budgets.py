"""Budgets on the user's path (issue 14, point 7): one admission rule in every dialect,
LLM tasks priced before they run, and the reason a batch stopped shown with its counts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Server, scaled, wait_batch
from tests.support.receiver import http_server

pytestmark = pytest.mark.timeout(scaled(180))

NDJSON = {"Content-Type": "application/x-ndjson"}


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BATCHD_URL": server.url, "BATCHD_API_KEY": server.admin_key,
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "batchd.cli.main", *args], env=env,
                          cwd=server.log_path.parent, capture_output=True, text=True,
                          timeout=scaled(120))


def batches(c: httpx.Client) -> list[dict[str, Any]]:
    return c.get("/api/batches").json()["data"]  # type: ignore[no-any-return]


def test_native_batch_estimated_above_its_budget_is_refused_up_front(server: Server) -> None:
    # `tracked` is estimated at $0.01 a record: 200 records are $2, against a $1 cap.
    items = [{"n": i} for i in range(200)]
    with server.client() as c:
        r = c.post("/api/batches", json={"task": "tracked", "budget_usd": 1, "items": items})
        assert r.status_code == 400, r.text
        detail = r.json()["detail"]
        assert "$2" in detail and "$1" in detail and "budget" in detail, detail
        # Streamed, the same: refused, and nothing kept.
        body = b"".join(orjson.dumps(i) + b"\n" for i in items)
        r = c.post("/api/batches", params={"task": "tracked", "budget_usd": "1"},
                   content=body, headers=NDJSON)
        assert r.status_code == 400, r.text
        assert "$2" in r.json()["detail"]
        assert batches(c) == []
        # At the cap exactly, it is taken, with its estimate shown.
        ok = c.post("/api/batches", json={"task": "tracked", "budget_usd": 2, "items": items})
        assert ok.status_code == 201, ok.text
        assert ok.json()["cost"]["estimated_usd"] == pytest.approx(2.0)


def test_append_that_takes_an_open_batch_over_its_budget_is_refused(server: Server) -> None:
    with server.client() as c:
        r = c.post("/api/batches", json={"task": "tracked", "budget_usd": 0.05, "close": False,
                                         "run_after": "2100-01-01T00:00:00Z",
                                         "items": [{"n": i} for i in range(3)]})
        assert r.status_code == 201, r.text
        batch_id = r.json()["id"]
        more = c.post(f"/api/batches/{batch_id}/items", json=[{"n": i} for i in range(3)])
        assert more.status_code == 400, more.text
        assert "$0.06" in more.json()["detail"] and "$0.05" in more.json()["detail"]
        b = c.get(f"/api/batches/{batch_id}").json()
        assert (b["counts"]["total"], b["status"]) == (3, "open")
        assert c.post(f"/api/batches/{batch_id}/items", json=[{"n": 9}] * 2).status_code == 200


def test_cli_submit_over_budget_fails_naming_estimate_and_budget(
    server: Server, tmp_path: Path,
) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_bytes(b"".join(orjson.dumps({"n": i}) + b"\n" for i in range(200)))
    done = cli(server, "submit", "tracked", str(data), "--budget-usd", "1")
    assert done.returncode != 0
    assert "400" in done.stderr and "$2" in done.stderr and "$1" in done.stderr, done.stderr
    with server.client() as c:
        assert batches(c) == []


def test_simulations_refuse_by_the_same_rule(server: Server) -> None:
    sim = {"template_id": "board_meeting", "entity_count": 5, "timepoint_count": 10}  # $0.05
    with httpx.Client(base_url=server.url, timeout=30,
                      headers={"X-API-Key": server.admin_key}) as c:
        r = c.post("/simulations/batch", json={"simulations": [sim], "budget_cap_usd": 0.01})
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["error"] == "BudgetExceeded"
        assert "$0.05" in body["message"] and "budget_cap_usd" in body["message"]


def test_budget_stop_shows_cancelled_count_and_reason(server: Server) -> None:
    # Within the estimate at admission; each item then costs twice its estimate, so the
    # cap stops dispatch: the batch says how many were cancelled, and why.
    with server.client() as c:
        b = c.post("/api/batches", json={
            "task": "tracked", "budget_usd": 0.06, "parallelism": 1,
            "items": [{"n": i, "cost_usd": 0.02} for i in range(6)]}).json()
        assert b["cancel_reason"] is None
        done = wait_batch(c, b["id"])
        assert done["status"] == "partial"
        assert done["cancel_reason"] == "budget_exceeded"
        assert (done["counts"]["succeeded"], done["counts"]["cancelled"]) == (3, 3)
        assert done["records"]["cancelled"] == 3
        assert done["cost"]["actual_usd"] == pytest.approx(0.06)
        # A cancel says so too.
        waiting = c.post("/api/batches", json={"task": "tracked", "items": [{"n": 1}],
                                               "run_after": "2100-01-01T00:00:00Z"}).json()
        cancelled = c.post(f"/api/batches/{waiting['id']}/cancel", json={"reason": "no"}).json()
        assert (cancelled["cancel_reason"], cancelled["counts"]["cancelled"]) == ("cancelled", 1)


def chat_answer(path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes,
                                                                        dict[str, str]]:
    req = orjson.loads(body)
    answer = {"id": "c1", "object": "chat.completion", "model": req["model"],
              "choices": [{"index": 0, "finish_reason": "length",
                           "message": {"role": "assistant", "content": "fine"}}],
              # the whole answer allowed, and a short prompt
              "usage": {"prompt_tokens": 5, "completion_tokens": req["max_tokens"]}}
    return 200, orjson.dumps(answer), {}


def test_llm_task_is_estimated_from_prices_and_max_tokens(
    make_server: Callable[..., Server],
) -> None:
    # $0.001 a token: a record's estimate is its prompt ("Sum abc": 8 + 3 tokens) and
    # max_tokens (20): $0.031; it costs $0.025 (5 + 20 tokens).
    prices = orjson.dumps({"small-1": {"input": 1000, "output": 1000}}).decode()
    with http_server(chat_answer) as base:
        srv = make_server(llm_base_url=f"{base}/v1", llm_model="small-1", llm_prices=prices,
                          outbound_allow="loopback")
        with srv.client() as c:
            r = c.post("/api/tasks", json={"name": "summary", "kind": "llm",
                                           "config": {"prompt": "Sum {t}", "max_tokens": 20}})
            assert r.status_code == 201, r.text
            over = c.post("/api/batches", json={"task": "summary", "budget_usd": 0.07,
                                                "items": [{"t": "abc"}] * 3})
            assert over.status_code == 400, over.text  # $0.093 > $0.07, not $0
            assert "$0.093" in over.json()["detail"]
            b = c.post("/api/batches", json={"task": "summary", "budget_usd": 0.07,
                                             "items": [{"t": "abc"}] * 2})
            assert b.status_code == 201, b.text
            assert b.json()["cost"]["estimated_usd"] == pytest.approx(0.062)
            done = wait_batch(c, b.json()["id"])
    assert done["status"] == "completed"
    assert done["cost"]["actual_usd"] == pytest.approx(0.05)
    assert done["cost"]["actual_usd"] <= 0.07
