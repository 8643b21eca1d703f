"""The OpenAI Batch and Files API, driven by the official ``openai`` SDK (only ``base_url``
and ``api_key`` differ), against batchd and a stand-in model server in a subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.conftest import Server, wait_until
from tests.support.model_server import StandIn

pytestmark = pytest.mark.timeout(180)
MODEL = "tiny-chat"


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[StandIn]:
    s = StandIn(log_path=str(tmp_path / "stand-in.log"), latency_s=0.005)
    yield s
    s.stop()


def upstreams(stand_in: StandIn, **limits: int) -> str:
    return json.dumps([{"name": "stand-in", "base_url": stand_in.base_url, "style": "openai",
                        "models": [{"name": MODEL, "aliases": ["tiny"]}, "tiny-embed"],
                        "limits": limits}])


def sdk(server: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def chat_line(i: int, *, model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": f"q{i}"}]},
            **extra}


def jsonl(lines: list[Any]) -> bytes:
    return b"".join((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n"
                    for line in lines)


def upload(client: openai.OpenAI, lines: list[Any]) -> str:
    return client.files.create(file=("input.jsonl", io.BytesIO(jsonl(lines))),
                               purpose="batch").id


def wait_status(client: openai.OpenAI, batch_id: str, statuses: set[str],
                timeout_s: float = 90) -> Any:
    def done() -> Any:
        b = client.batches.retrieve(batch_id)
        return b if b.status in statuses else None

    return wait_until(done, timeout_s=timeout_s, what=f"batch in {statuses}")


def lines_of(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [orjson.loads(x) for x in client.files.content(file_id).content.splitlines() if x]


@pytest.fixture
def v1(make_server: Callable[..., Server], stand_in: StandIn) -> Callable[..., Server]:
    def make(**settings: Any) -> Server:
        limits = settings.pop("limits", {})
        return make_server(upstreams=upstreams(stand_in, **limits), **settings)
    return make


def test_openai_batch_guide_flow_answers_every_request_once(v1: Callable[..., Server],
                                                            stand_in: StandIn) -> None:
    server = v1()
    key = server.new_key("acme")
    client = sdk(server, key)
    file_id = upload(client, [chat_line(i, model="tiny" if i % 2 else MODEL)
                              for i in range(60)])
    assert client.files.retrieve(file_id).purpose == "batch"
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"run": "guide"})
    assert batch.status in ("validating", "in_progress")
    assert batch.metadata == {"run": "guide"}
    done = wait_status(client, batch.id, {"completed", "failed", "expired", "cancelled"})
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (60, 60, 0)
    assert done.error_file_id is None
    assert done.usage is not None and done.usage.total_tokens > 0
    out = lines_of(client, done.output_file_id)
    assert sorted(x["custom_id"] for x in out) == sorted(f"req-{i}" for i in range(60))
    for x in out:
        assert x["error"] is None and x["response"]["status_code"] == 200
        content = x["response"]["body"]["choices"][0]["message"]["content"]
        assert content == f"answer to: q{x['custom_id'][4:]}"
        # the body is the SDK's own type
        openai.types.chat.ChatCompletion.model_validate(x["response"]["body"])
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    # the engine batch is visible natively, with its tokens
    with server.client(key) as c:
        engine = [b for b in c.get("/api/batches").json()["data"]
                  if b["task"] == "model_request"]
    assert engine and engine[0]["cost"]["tokens_in"] > 0


def test_openai_embeddings_and_completions_endpoints(v1: Callable[..., Server]) -> None:
    server = v1()
    client = sdk(server, server.new_key("acme"))
    emb = [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
            "body": {"model": "tiny-embed", "input": f"text {i}"}} for i in range(5)]
    b1 = client.batches.create(input_file_id=upload(client, emb), endpoint="/v1/embeddings",
                               completion_window="24h")
    comp = [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/completions",
             "body": {"model": MODEL, "prompt": f"p{i}"}} for i in range(5)]
    b2 = client.batches.create(input_file_id=upload(client, comp), endpoint="/v1/completions",
                               completion_window="24h")
    d1 = wait_status(client, b1.id, {"completed"})
    d2 = wait_status(client, b2.id, {"completed"})
    e = lines_of(client, d1.output_file_id)
    assert len(e) == 5
    openai.types.CreateEmbeddingResponse.model_validate(e[0]["response"]["body"])
    c = {x["custom_id"]: x for x in lines_of(client, d2.output_file_id)}
    assert c["c3"]["response"]["body"]["choices"][0]["text"] == "answer to: p3"


def test_openai_input_file_problems_fail_the_batch_with_line_numbers(
        v1: Callable[..., Server]) -> None:
    server = v1()
    key = server.new_key("acme")
    client = sdk(server, key)
    lines: list[Any] = [
        chat_line(0),
        b"{not json",
        chat_line(0),  # duplicate custom_id
        {**chat_line(3), "method": "GET"},
        {**chat_line(4), "url": "/v1/embeddings"},
        {"custom_id": "req-5", "method": "POST", "url": "/v1/chat/completions",
         "body": {"messages": []}},
    ]
    batch = client.batches.create(input_file_id=upload(client, lines),
                                  endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.status == "failed"
    assert batch.failed_at is not None and batch.errors is not None
    found = [(e.line, e.code, e.param) for e in batch.errors.data or []]
    assert found == [(2, "invalid_json_line", None),
                     (3, "duplicate_custom_id", "custom_id"),
                     (4, "invalid_method", "method"),
                     (5, "invalid_url", "url"),
                     (6, "missing_required_parameter", "body.model")]
    # nothing ran
    assert stand_in_requests(server, key) == 0
    # request-level errors are OpenAI's error objects
    with pytest.raises(openai.NotFoundError) as nf:
        client.batches.create(input_file_id="file-missing", endpoint="/v1/chat/completions",
                              completion_window="24h")
    assert nf.value.body["message"].startswith("No such File object")  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        client.batches.create(input_file_id=upload(client, [chat_line(1)]),
                              endpoint="/v1/chat/completions",
                              completion_window="48h")  # type: ignore[arg-type]
    assert bad.value.body["param"] == "completion_window"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        sdk(server, "wrong-key").batches.list()


def stand_in_requests(server: Server, key: str) -> int:
    with server.client(key) as c:
        rows = c.get("/api/batches").json()["data"]
    return sum(b["counts"]["total"] for b in rows if b["task"] == "model_request")


def test_openai_unknown_model_and_upstream_4xx_are_per_request_errors(
        v1: Callable[..., Server]) -> None:
    server = v1()
    client = sdk(server, server.new_key("acme"))
    lines = [chat_line(0), chat_line(1, model="no-such-model"),
             {"custom_id": "req-2", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": MODEL, "messages": "not a list"}}]
    batch = client.batches.create(input_file_id=upload(client, lines),
                                  endpoint="/v1/chat/completions", completion_window="24h")
    done = wait_status(client, batch.id, {"completed"})
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 2)
    assert [x["custom_id"] for x in lines_of(client, done.output_file_id)] == ["req-0"]
    errs = {x["custom_id"]: x for x in lines_of(client, done.error_file_id)}
    assert errs["req-1"]["response"]["status_code"] == 404
    assert errs["req-1"]["response"]["body"]["error"]["code"] == "model_not_found"
    assert errs["req-2"]["response"]["status_code"] == 400


def test_openai_cancel_mid_batch_keeps_what_finished(make_server: Callable[..., Server],
                                                     tmp_path: Path) -> None:
    slow = StandIn(log_path=str(tmp_path / "slow.log"), latency_s=0.2)
    try:
        server = make_server(upstreams=upstreams(slow, concurrency=4))
        client = sdk(server, server.new_key("acme"))
        batch = client.batches.create(input_file_id=upload(client, [chat_line(i)
                                                                    for i in range(200)]),
                                      endpoint="/v1/chat/completions", completion_window="24h")
        wait_until(lambda: client.batches.retrieve(batch.id).request_counts.completed >= 8,
                   what="some requests done")
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "finalizing", "cancelled")
        done = wait_status(client, batch.id, {"cancelled"})
        assert done.cancelled_at is not None and done.cancelling_at is not None
        out = lines_of(client, done.output_file_id)
        errs = lines_of(client, done.error_file_id)
        ids = [x["custom_id"] for x in out + errs]
        assert sorted(ids) == sorted(f"req-{i}" for i in range(200))
        assert 8 <= len(out) < 200
        assert {x["error"]["code"] for x in errs} == {"batch_cancelled"}
        assert slow.stats()["requests"] < 200
    finally:
        slow.stop()


def test_openai_expiry_reports_unfinished_requests_expired(
        make_server: Callable[..., Server], tmp_path: Path) -> None:
    slow = StandIn(log_path=str(tmp_path / "slow.log"), latency_s=0.3)
    try:
        server = make_server(upstreams=upstreams(slow, concurrency=2),
                             v1_completion_window_s=2)
        client = sdk(server, server.new_key("acme"))
        batch = client.batches.create(input_file_id=upload(client, [chat_line(i)
                                                                    for i in range(100)]),
                                      endpoint="/v1/chat/completions", completion_window="24h")
        assert batch.expires_at is not None and batch.expires_at - batch.created_at <= 3
        done = wait_status(client, batch.id, {"expired"})
        assert done.expired_at is not None
        out = lines_of(client, done.output_file_id)
        errs = lines_of(client, done.error_file_id)
        assert sorted(x["custom_id"] for x in out + errs) == sorted(f"req-{i}"
                                                                   for i in range(100))
        expired = [x for x in errs if x["error"] and x["error"]["code"] == "batch_expired"]
        assert expired and len(out) < 100
    finally:
        slow.stop()


def test_openai_limits_hold_and_429_retry_after_is_honoured(
        make_server: Callable[..., Server], tmp_path: Path) -> None:
    stand = StandIn(log_path=str(tmp_path / "limited.log"), latency_s=0.05,
                    fail_status=429, fail_times=1, retry_after_s=0.5)
    try:
        server = make_server(upstreams=upstreams(stand, concurrency=3, rpm=1200))
        client = sdk(server, server.new_key("acme"))
        batch = client.batches.create(input_file_id=upload(client, [chat_line(i)
                                                                    for i in range(40)]),
                                      endpoint="/v1/chat/completions", completion_window="24h")
        done = wait_status(client, batch.id, {"completed"}, timeout_s=120)
        assert done.request_counts is not None and done.request_counts.completed == 40
        stats = stand.stats()
        assert stats["by_status"]["429"] == 40 and stats["by_status"]["200"] == 40
        assert stats["peak_concurrency"] <= 3
        assert stats["peak_rate"] <= 1200 // 60  # in any second
        assert stats["retry_gap_min_s"] >= 0.5
    finally:
        stand.stop()


def test_openai_500s_are_retried(make_server: Callable[..., Server], tmp_path: Path) -> None:
    stand = StandIn(log_path=str(tmp_path / "flaky.log"), fail_status=500, fail_times=2)
    try:
        server = make_server(upstreams=upstreams(stand))
        client = sdk(server, server.new_key("acme"))
        batch = client.batches.create(input_file_id=upload(client, [chat_line(i)
                                                                    for i in range(20)]),
                                      endpoint="/v1/chat/completions", completion_window="24h")
        done = wait_status(client, batch.id, {"completed"})
        assert done.request_counts is not None and done.request_counts.completed == 20
        assert stand.stats()["by_status"] == {"500": 40, "200": 20}
    finally:
        stand.stop()


def test_openai_list_pagination_and_files(v1: Callable[..., Server]) -> None:
    server = v1()
    client = sdk(server, server.new_key("acme"))
    file_ids = [upload(client, [chat_line(i)]) for i in range(5)]
    ids = [client.batches.create(input_file_id=f, endpoint="/v1/chat/completions",
                                 completion_window="24h").id for f in file_ids]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
    assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # auto-paginates
    listed = [f.id for f in client.files.list(purpose="batch", limit=2, order="asc")]
    assert listed == file_ids
    raw = client.files.list(limit=2, order="desc", purpose="batch")  # outputs come too
    assert raw.has_more and raw.data[0].id == file_ids[-1]
    # Every purpose the SDK uploads with, those its FileObject does not list (evals) too.
    evals = client.files.create(file=("e.jsonl", b"{}\n"), purpose="evals")
    assert client.files.retrieve(evals.id).purpose == "evals"
    assert [f.id for f in client.files.list(purpose="evals")] == [evals.id]
    deleted = client.files.delete(file_ids[0])
    assert deleted.deleted and deleted.id == file_ids[0]
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(file_ids[0])


def test_openai_tenant_isolation(v1: Callable[..., Server]) -> None:
    server = v1()
    mine = sdk(server, server.new_key("acme"))
    theirs = sdk(server, server.new_key("globex"))
    file_id = upload(mine, [chat_line(1)])
    batch = mine.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                completion_window="24h")
    for call in (lambda: theirs.files.retrieve(file_id),
                 lambda: theirs.files.content(file_id),
                 lambda: theirs.files.delete(file_id),
                 lambda: theirs.batches.retrieve(batch.id),
                 lambda: theirs.batches.cancel(batch.id),
                 lambda: theirs.batches.create(input_file_id=file_id,
                                               endpoint="/v1/chat/completions",
                                               completion_window="24h")):
        with pytest.raises(openai.NotFoundError):
            call()
    assert list(theirs.batches.list()) == [] and list(theirs.files.list()) == []
    assert mine.files.retrieve(file_id).id == file_id


def test_openai_upload_limit_is_an_openai_error(v1: Callable[..., Server]) -> None:
    server = v1(v1_file_max_bytes=1000)
    key = server.new_key("acme")
    r = httpx.post(server.url + "/v1/files", headers={"Authorization": f"Bearer {key}"},
                   files={"file": ("big.jsonl", b"x" * 5000)}, data={"purpose": "batch"})
    assert r.status_code == 413
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert list(sdk(server, key).files.list()) == []


def test_openai_limits_hold_across_worker_processes(make_server: Callable[..., Server],
                                                     tmp_path: Path) -> None:
    stand = StandIn(log_path=str(tmp_path / "shared.log"), latency_s=0.05)
    try:
        ups = upstreams(stand, concurrency=4)
        # The API alone, and two workers that each hold 8 requests: the 4 slots are shared.
        server = make_server(upstreams=ups, run_worker="false")
        for _ in range(2):
            w = make_server(command="worker", upstreams=ups, worker_concurrency=8)
            wait_until(lambda w=w: "running" in w.log_path.read_text(), what="worker start")
        client = sdk(server, server.new_key("acme"))
        batch = client.batches.create(input_file_id=upload(client, [chat_line(i)
                                                                    for i in range(120)]),
                                      endpoint="/v1/chat/completions", completion_window="24h")
        done = wait_status(client, batch.id, {"completed"}, timeout_s=120)
        assert done.request_counts is not None and done.request_counts.completed == 120
        stats = stand.stats()
        assert stats["requests"] == 120 and stats["peak_concurrency"] <= 4
    finally:
        stand.stop()


def test_openai_reserved_metadata_sets_batchd_settings(v1: Callable[..., Server]) -> None:
    server = v1()
    key = server.new_key("acme")
    client = sdk(server, key)
    batch = client.batches.create(
        input_file_id=upload(client, [chat_line(1)]), endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"batchd_priority": "90", "batchd_parallelism": "3",
                  "batchd_budget_usd": "5"})
    wait_status(client, batch.id, {"completed"})
    with server.client(key) as c:
        engine = next(b for b in c.get("/api/batches").json()["data"]
                      if b["metadata"].get("v1", {}).get("id") == batch.id)
    assert (engine["priority"], engine["parallelism"], engine["budget_usd"]) == (90, 3, 5.0)
    with pytest.raises(openai.BadRequestError) as bad:
        client.batches.create(input_file_id=upload(client, [chat_line(1)]),
                              endpoint="/v1/chat/completions", completion_window="24h",
                              metadata={"batchd_priority": "high"})
    assert bad.value.body["param"] == "metadata.batchd_priority"  # type: ignore[index]


def file_parts_stored(database_url: str) -> int:
    """Parts of file content left in the server's database."""
    if database_url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(database_url[len("sqlite:///"):])) as db:
            return int(db.execute("SELECT count(*) FROM v1_file_parts").fetchone()[0])
    import psycopg

    with psycopg.connect(database_url) as pg:
        row = pg.execute("SELECT count(*) FROM v1_file_parts").fetchone()
        return int(row[0]) if row else 0


def test_openai_files_expire_as_openai_says(v1: Callable[..., Server]) -> None:
    """``expires_after`` as the SDK sends it; without it batch files (input and output)
    expire after the default and other purposes never; an expired file is a 404 and its
    content is swept away."""
    server = v1(v1_file_expiry_s=2, v1_finalize_interval_s=0.1)
    client = sdk(server, server.new_key("acme"))
    data = ("in.jsonl", io.BytesIO(jsonl([chat_line(0), chat_line(1)])))
    kept = client.files.create(file=data, purpose="batch",
                               expires_after={"anchor": "created_at", "seconds": 3600})
    assert kept.expires_at == kept.created_at + 3600
    default = client.files.create(file=("d.jsonl", io.BytesIO(b"{}\n")), purpose="batch")
    assert default.expires_at == default.created_at + 2
    mine = client.files.create(file=("notes.txt", io.BytesIO(b"x")), purpose="user_data")
    assert mine.expires_at is None
    with pytest.raises(openai.BadRequestError) as bad:
        client.files.create(file=("x.jsonl", io.BytesIO(b"{}\n")), purpose="batch",
                            expires_after={"anchor": "created_at", "seconds": 60})
    assert bad.value.body["param"] == "expires_after.seconds"  # type: ignore[index]
    batch = client.batches.create(input_file_id=kept.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    done = wait_status(client, batch.id, {"completed"})
    output = client.files.retrieve(done.output_file_id)  # type: ignore[arg-type]
    assert output.expires_at is not None and output.expires_at - output.created_at == 2
    told = client.batches.create(input_file_id=kept.id, endpoint="/v1/chat/completions",
                                 completion_window="24h", output_expires_after={
                                     "anchor": "created_at", "seconds": 7200})
    told_out = client.files.retrieve(
        wait_status(client, told.id, {"completed"}).output_file_id)  # type: ignore[arg-type]
    assert told_out.expires_at == told_out.created_at + 7200

    def gone() -> bool:
        ids = {f.id for f in client.files.list()}
        return output.id not in ids and default.id not in ids and file_parts_stored(
            server.database_url) == 3  # left: the kept input and output, the user's file

    wait_until(gone, timeout_s=30, what="expired files swept")
    for file_id in (output.id, default.id):
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(file_id)
        with pytest.raises(openai.NotFoundError):
            client.files.content(file_id)
    assert {f.id for f in client.files.list()} == {kept.id, mine.id, told_out.id}
    assert client.batches.retrieve(batch.id).output_file_id == output.id  # as OpenAI keeps it
