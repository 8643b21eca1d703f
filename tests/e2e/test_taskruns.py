"""The task batch runs dialect (seeds 001/002) against a real server, plus task kinds."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import Server, scaled, wait_until
from tests.support.receiver import http_server

pytestmark = pytest.mark.timeout(scaled(120))

TASKS = "tests.support.tasks,tests.support.taskrun_tasks"
TASK = "company_profile"
CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")  # 2025-01-08T11:30:20.258784
SAMPLE = {  # the document's request (its first run's arguments filled in)
    "task_run_requests": [
        {"arguments": {"company": "Anthropic"}},
        {"arguments": {"company": "OpenAI"}},
    ],
    "runner": "neon",
}


def start(make_server: Callable[..., Server], **settings: Any) -> Server:
    return make_server(tasks=TASKS, outbound_allow="loopback", **settings)


def client(srv: Server, key: str | None = None) -> httpx.Client:
    """The document's auth: ``x-api-key``."""
    return httpx.Client(base_url=srv.url, timeout=60,
                        headers={"x-api-key": key or srv.admin_key})


def submit(c: httpx.Client, body: dict[str, Any], task: str = TASK) -> dict[str, Any]:
    r = c.post(f"/v0/tasks/{task}/batches", json=body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def status_map(c: httpx.Client, batch: dict[str, Any], task: str = TASK) -> dict[str, Any]:
    r = c.get(f"/v0/tasks/{task}/batches/{batch['batch_run_id']}")
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["status_map"]
    return r.json()["status_map"]  # type: ignore[no-any-return]


def wait_done(c: httpx.Client, batch: dict[str, Any], task: str = TASK) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        groups = status_map(c, batch, task)
        ended = groups.get("complete", []) + groups.get("failed", [])
        return groups if sorted(ended) == sorted(batch["run_ids"]) else None

    wait_until(done, what="every run ended")
    return status_map(c, batch, task)  # read again: with every run ended, it is exact


def export(c: httpx.Client, batch: dict[str, Any], fmt: str | None = None,
           task: str = TASK) -> httpx.Response:
    params = {"format": fmt} if fmt else {}
    r = c.get(f"/v0/tasks/{task}/batches/{batch['batch_run_id']}/export", params=params)
    assert r.status_code == 200, r.text
    return r


def test_taskruns_create_answers_the_documented_shape(make_server: Callable[..., Server]) -> None:
    srv = start(make_server)
    with client(srv) as c:
        r = c.post(f"/v0/tasks/{TASK}/batches", json=SAMPLE)

        assert r.status_code == 200
        body = r.json()
        assert list(body) == ["task_id", "batch_run_id", "run_ids", "created_at"]
        assert body["task_id"] == TASK
        assert isinstance(body["batch_run_id"], str) and body["batch_run_id"]
        assert len(body["run_ids"]) == 2 and len(set(body["run_ids"])) == 2
        assert CREATED_AT.match(body["created_at"]), body["created_at"]


def test_taskruns_status_map_groups_run_ids(make_server: Callable[..., Server]) -> None:
    srv = start(make_server)
    with client(srv) as c:
        slow = submit(c, {"task_run_requests": [
            {"arguments": {"company": "Slow", "seconds": 30}} for _ in range(3)
        ], "runner": "neon"})
        queued = status_map(c, slow)
        # Only groups that have runs appear, as in the document's example.
        assert set(queued) <= {"queued", "running"} and all(queued.values())
        assert sorted(queued.get("queued", []) + queued.get("running", [])) == sorted(
            slow["run_ids"])
        # The worker takes far more than three at once: all three end up running.
        def all_running() -> dict[str, Any] | None:
            groups = status_map(c, slow)
            return groups if len(groups.get("running", [])) == 3 else None

        groups = wait_until(all_running, what="three runs running")
        assert list(groups) == ["running"]
        assert sorted(groups["running"]) == sorted(slow["run_ids"])

        mixed = submit(c, {"task_run_requests": [
            {"arguments": {"company": "Good"}}, {"arguments": {"company": "Bad", "fail": True}},
        ]})
        groups = wait_done(c, mixed)
        assert groups == {"complete": [mixed["run_ids"][0]], "failed": [mixed["run_ids"][1]]}


def test_taskruns_schema_rejection_names_the_run(make_server: Callable[..., Server]) -> None:
    srv = start(make_server)
    with client(srv) as c:
        before = c.get("/api/batches").json()["data"]
        r = c.post(f"/v0/tasks/{TASK}/batches", json={"task_run_requests": [
            {"arguments": {"company": "OpenAI"}},
            {"arguments": {"country": "FR"}},  # no company
            {"arguments": {"company": ""}},
        ]})

        assert r.status_code == 422
        assert r.json() == {"detail": [{
            "loc": ["body", "task_run_requests", 1, "arguments"],
            "msg": "'company' is a required property", "type": "schema_error",
        }]}
        assert c.get("/api/batches").json()["data"] == before  # one bad run: nothing stored

        r = c.post(f"/v0/tasks/{TASK}/batches", json={"task_run_requests": [
            {"arguments": {"company": "OpenAI"}}, {"arguments": {"company": 7}},
        ]})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "task_run_requests", 1, "arguments"]
        assert "company: 7 is not of type 'string'" in r.json()["detail"][0]["msg"]


def test_taskruns_bad_requests(make_server: Callable[..., Server]) -> None:
    srv = start(make_server)
    with client(srv) as c:
        def post(body: Any, task: str = TASK) -> httpx.Response:
            return c.post(f"/v0/tasks/{task}/batches", content=orjson.dumps(body),
                          headers={"Content-Type": "application/json"})

        r = post({"task_run_requests": [{"arguments": {"company": "A"}, "runner": "turbo"}]})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "task_run_requests", 0, "runner"]
        assert "no runner 'turbo'" in r.json()["detail"][0]["msg"]
        assert post({"task_run_requests": []}).status_code == 422
        assert post({"task_run_requests": [{"args": {}}]}).json()["detail"][0]["loc"] == [
            "body", "task_run_requests", 0, "arguments"]
        r = post({"task_run_requests": [{"arguments": {"company": "A"}}], "runner": "turbo"})
        assert r.status_code == 422 and "detail" in r.json()
        r = post({"task_run_requests": [{"arguments": {"company": "A"}}]}, task="no_such_task")
        assert r.status_code == 404
        assert r.json() == {"detail": "task 'no_such_task' not found"}
        r = post({"task_run_requests": [{"arguments": {"company": "A"},
                                         "callback_webhook": {"url": "ftp://x/y"}}]})
        assert r.json()["detail"][0]["loc"] == [
            "body", "task_run_requests", 0, "callback_webhook", "url"]


def test_taskruns_need_a_key_and_keep_tenants_apart(make_server: Callable[..., Server]) -> None:
    srv = start(make_server)
    with client(srv, srv.new_key("acme")) as acme, client(srv, srv.new_key("globex")) as globex:
        batch = submit(acme, SAMPLE)
        wait_done(acme, batch)
        bare = httpx.post(f"{srv.url}/v0/tasks/{TASK}/batches", json=SAMPLE)
        assert bare.status_code == 401 and "detail" in bare.json()
        path = f"/v0/tasks/{TASK}/batches/{batch['batch_run_id']}"
        assert globex.get(path).status_code == 404
        assert globex.get(f"{path}/export").status_code == 404
        assert globex.get(f"/v0/task/{TASK}/run/{batch['run_ids'][0]}").status_code == 404
        assert acme.get(f"/v0/tasks/echo/batches/{batch['batch_run_id']}").status_code == 404


def test_taskruns_runner_per_batch_and_per_run(make_server: Callable[..., Server]) -> None:
    srv = start(make_server)
    with client(srv) as c:
        batch = submit(c, {"task_run_requests": [
            {"arguments": {"company": "A"}},
            {"arguments": {"company": "B"}, "runner": "pro"},
        ], "runner": "lite"})
        wait_done(c, batch)
        runs = [c.get(f"/v0/task/{TASK}/run/{rid}").json() for rid in batch["run_ids"]]

        assert [r["runner"] for r in runs] == ["lite", "pro"]
        assert [r["output"]["runner"] for r in runs] == ["lite", "pro"]  # what the handler saw
        assert [r["usage"]["cost_usd"] for r in runs] == [0.001, 0.01]  # each runner's price


def test_taskruns_get_a_single_run(make_server: Callable[..., Server]) -> None:
    srv = start(make_server)
    with client(srv) as c:
        batch = submit(c, SAMPLE)
        wait_done(c, batch)
        run_id = batch["run_ids"][1]
        r = c.get(f"/v0/task/{TASK}/run/{run_id}")

        assert r.status_code == 200
        run = r.json()
        assert run["run_id"] == run_id and run["batch_run_id"] == batch["batch_run_id"]
        assert (run["task_id"], run["status"], run["is_active"]) == (TASK, "complete", False)
        assert run["input"] == {"arguments": {"company": "OpenAI"}}
        assert run["output"]["name"] == "OpenAI Inc"
        assert CREATED_AT.match(run["created_at"]) and CREATED_AT.match(run["modified_at"])
        assert c.get(f"/v0/task/echo/run/{run_id}").status_code == 404
        assert c.get(f"/v0/task/{TASK}/run/itm_999999").status_code == 404
        assert c.get(f"/v0/task/{TASK}/run/nonsense").status_code == 404


NESTED_RUNS = [  # outputs of varied shape: the CSV header is the union, first seen first
    {"arguments": {"company": "Acme", "country": "FR"}},
    {"arguments": {"company": "Initech"}},
    {"arguments": {"company": "Hooli", "country": "US"}, "runner": "pro"},
    {"arguments": {"company": "Broken", "fail": True}},  # failed: not exported
]
EXPECTED_HEADER = [
    "task_id", "batch_run_id", "run_id", "status", "runner",
    "input.arguments.company", "input.arguments.country",
    "output.name", "output.runner", "output.hq.city", "output.hq.country", "output.tags",
]


def test_taskruns_export_csv_header_rule_over_nested_outputs(
    make_server: Callable[..., Server],
) -> None:
    srv = start(make_server)
    with client(srv) as c:
        batch = submit(c, {"task_run_requests": NESTED_RUNS, "runner": "neon"})
        wait_done(c, batch)
        r = export(c, batch, "csv")

        assert r.headers["content-type"].startswith("text/csv")
        lines = r.text.splitlines()
        assert lines[0].split(",") == EXPECTED_HEADER
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [row["run_id"] for row in rows] == batch["run_ids"][:3]
        first, second, third = rows
        assert first == {
            "task_id": TASK, "batch_run_id": batch["batch_run_id"],
            "run_id": batch["run_ids"][0], "status": "complete", "runner": "neon",
            "input.arguments.company": "Acme", "input.arguments.country": "FR",
            "output.name": "Acme Inc", "output.runner": "neon",
            "output.hq.city": "San Francisco", "output.hq.country": "FR",
            "output.tags": '["ai","acme"]',
        }
        assert second["input.arguments.country"] == ""  # absent key: empty cell
        assert (third["runner"], third["output.hq.country"]) == ("pro", "US")


def test_taskruns_export_json_is_every_completed_run(make_server: Callable[..., Server]) -> None:
    srv = start(make_server)
    with client(srv) as c:
        batch = submit(c, {"task_run_requests": NESTED_RUNS, "runner": "neon"})
        wait_done(c, batch)
        default = export(c, batch)  # json is the default
        explicit = export(c, batch, "json")

        assert default.headers["content-type"].startswith("application/json")
        assert default.content == explicit.content
        runs = default.json()
        assert [r["run_id"] for r in runs] == batch["run_ids"][:3]
        assert runs[0] == {
            "task_id": TASK, "batch_run_id": batch["batch_run_id"], "run_id": batch["run_ids"][0],
            "status": "complete", "runner": "neon",
            "input": {"arguments": {"company": "Acme", "country": "FR"}},
            "output": {"name": "Acme Inc", "runner": "neon",
                       "hq": {"city": "San Francisco", "country": "FR"}, "tags": ["ai", "acme"]},
        }
        assert c.get(f"/v0/tasks/{TASK}/batches/{batch['batch_run_id']}/export",
                     params={"format": "xml"}).status_code == 422


def test_taskruns_export_parquet(make_server: Callable[..., Server]) -> None:
    srv = start(make_server)
    with client(srv) as c:
        batch = submit(c, {"task_run_requests": NESTED_RUNS, "runner": "neon"})
        wait_done(c, batch)
        table = pq.read_table(pa.BufferReader(export(c, batch, "parquet").content))

        assert table.column_names == EXPECTED_HEADER
        assert table.column("output.hq.country").to_pylist() == ["FR", "US", "US"]


def test_taskruns_large_batch_exports_in_order(make_server: Callable[..., Server]) -> None:
    srv = start(make_server)
    n = 5000
    with client(srv) as c:
        batch = submit(c, {"task_run_requests": [
            {"arguments": {"company": f"C{i}", **({"country": "DE"} if i % 7 == 0 else {})}}
            for i in range(n)
        ]})
        assert len(batch["run_ids"]) == n
        wait_done(c, batch)
        rows = list(csv.DictReader(io.StringIO(export(c, batch, "csv").text)))
        assert [r["run_id"] for r in rows] == batch["run_ids"]
        assert rows[7]["input.arguments.country"] == "DE" and rows[8]["output.hq.country"] == "US"
        assert len(export(c, batch, "json").json()) == n


# tasks defined over the API --------------------------------------------------------


def define(c: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    r = c.post("/api/tasks", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_http_task_posts_each_runs_arguments(make_server: Callable[..., Server]) -> None:
    calls: list[Any] = []

    def upstream(path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[
            str, str]]:
        args = orjson.loads(body)
        calls.append((path, headers.get("x-token"), args))
        if args.get("flaky") and sum(1 for c in calls if c[2] == args) == 1:
            return 503, b"busy", {}
        if args.get("reject"):
            return 400, b"no", {}
        return 200, orjson.dumps({"upper": args["word"].upper(), "len": len(args["word"])}), {}

    with http_server(upstream) as base:
        srv = start(make_server)
        with client(srv) as c:
            described = define(c, {
                "name": "shout", "kind": "http",
                "input_schema": {"type": "object", "required": ["word"]},
                "config": {"url": f"{base}/shout", "headers": {"X-Token": "t0k"},
                           "timeout_s": scaled(10), "retries": 2},
            })
            assert described["kind"] == "http" and described["max_attempts"] == 3
            batch = submit(c, {"task_run_requests": [
                {"arguments": {"word": "hi"}}, {"arguments": {"word": "yo", "flaky": True}},
                {"arguments": {"word": "no", "reject": True}},
            ]}, task="shout")
            groups = wait_done(c, batch, task="shout")

            assert groups == {"complete": batch["run_ids"][:2], "failed": batch["run_ids"][2:]}
            runs = export(c, batch, task="shout").json()
            assert [r["output"] for r in runs] == [{"upper": "HI", "len": 2},
                                                  {"upper": "YO", "len": 2}]
            assert {(p, token) for p, token, _ in calls} == {("/shout", "t0k")}
            assert sum(1 for _, _, a in calls if a.get("flaky")) == 2  # retried after the 503
            failed = c.get(f"/v0/task/shout/run/{batch['run_ids'][2]}").json()
            assert failed["error"]["code"] == "http_error"


def test_llm_task_counts_tokens_and_cost_from_usage(make_server: Callable[..., Server]) -> None:
    requests: list[dict[str, Any]] = []

    def chat(path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        req = orjson.loads(body)
        requests.append({"path": path, "auth": headers.get("authorization"), **req})
        answer = {"id": "chatcmpl-1", "object": "chat.completion", "model": req["model"],
                  "choices": [{"index": 0, "finish_reason": "stop", "message": {
                      "role": "assistant",
                      "content": orjson.dumps({"summary": req["messages"][-1]["content"]}).decode(),
                  }}],
                  "usage": {"prompt_tokens": 1000, "completion_tokens": 500,
                            "total_tokens": 1500}}
        return 200, orjson.dumps(answer), {}

    with http_server(chat) as base:
        prices = orjson.dumps({"small-1": {"input": 1.0, "output": 2.0},
                               "big-1": {"input": 10.0, "output": 20.0}}).decode()
        srv = start(make_server, llm_base_url=f"{base}/v1", llm_api_key="sk-test",
                    llm_model="small-1", llm_prices=prices)
        with client(srv) as c:
            define(c, {
                "name": "summarise", "kind": "llm",
                "input_schema": {"type": "object", "required": ["company"]},
                "runners": [{"name": "fast"}, {"name": "deep", "model": "big-1"}],
                "config": {"prompt": "Describe {company} ({meta.size} staff) in {{one}} line.",
                           "system": "Be brief.", "json_output": True, "temperature": 0},
            })
            batch = submit(c, {"task_run_requests": [
                {"arguments": {"company": "Acme", "meta": {"size": 12}}},
                {"arguments": {"company": "Hooli", "meta": {"size": 3}}, "runner": "deep"},
            ], "runner": "fast"}, task="summarise")
            wait_done(c, batch, task="summarise")
            runs = [c.get(f"/v0/task/summarise/run/{rid}").json() for rid in batch["run_ids"]]

            assert runs[0]["output"] == {"summary": "Describe Acme (12 staff) in {one} line."}
            assert runs[0]["usage"] == {"tokens_in": 1000, "tokens_out": 500,
                                        "cost_usd": pytest.approx(0.002)}
            assert runs[1]["usage"]["cost_usd"] == pytest.approx(0.02)  # the runner's model
            assert {r["model"] for r in requests} == {"small-1", "big-1"}
            assert {r["path"] for r in requests} == {"/v1/chat/completions"}
            assert {r["auth"] for r in requests} == {"Bearer sk-test"}
            assert requests[0]["messages"][0] == {"role": "system", "content": "Be brief."}
            assert requests[0]["response_format"] == {"type": "json_object"}
            b = c.get(f"/api/batches/{batch['batch_run_id']}").json()
            assert (b["cost"]["tokens_in"], b["cost"]["tokens_out"]) == (2000, 1000)


def test_tasks_defined_over_the_api_reach_every_process(
    make_server: Callable[..., Server],
) -> None:
    api_only = start(make_server, run_worker="false")
    other = start(make_server)  # another server on the same database, with a worker
    with client(api_only) as a, client(other) as b:
        body = {"name": "profile2", "version": "2.0.0", "kind": "python",
                "description": "company_profile's handler under another name",
                "input_schema": {"type": "object", "required": ["company"]},
                "runners": [{"name": "neon", "model": "m"}],
                "config": {"handler": "tests.support.taskrun_tasks:company_profile",
                           "mode": "async"}}
        define(a, body)
        assert a.post("/api/tasks", json=body).status_code == 201  # the same again: fine
        changed = {**body, "description": "another"}
        assert a.post("/api/tasks", json=changed).status_code == 409
        assert a.post("/api/tasks", json={**body, "name": "echo"}).status_code == 409
        bad = a.post("/api/tasks", json={**body, "name": "x", "input_schema": {"type": 5}})
        assert bad.status_code == 422
        bad = a.post("/api/tasks", json={**body, "name": "y", "config": {"handler": "no.mod:f"}})
        assert bad.status_code == 422

        # The other server learns of the task when asked for it, and runs it.
        assert b.get("/api/tasks/profile2").json()["version"] == "2.0.0"
        batch = submit(b, {"task_run_requests": [{"arguments": {"company": "Z"}}],
                           "runner": "neon"}, task="profile2")
        assert wait_done(b, batch, task="profile2") == {"complete": batch["run_ids"]}
        user = client(api_only, api_only.new_key("acme"))
        assert user.post("/api/tasks", json={**body, "name": "z"}).status_code == 403
