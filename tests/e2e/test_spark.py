"""The Spark batch pipeline dialect (seed 004) against a real server."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

import bson
import httpx
import pytest

from tests.conftest import Server, scaled, wait_until

pytestmark = pytest.mark.timeout(scaled(120))

TASKS = "tests.support.tasks,tests.support.spark_services"
JSON = "application/json"

SAMPLE_CREATE = {
    "service": "myfolder/SalesExample",
    "unique_record_key": "sales_id",
    "source_system": "Analysis server",
    "correlation_id": "89f4befd-91fe-4414-a33f-ea0911586fe2",
    "call_purpose": "Quarterly reporting",
}
SAMPLE_CHUNKS = {
    "chunks": [
        {
            "id": "f7b52961-ad34-40ce-874f-93c67df11d65",
            "data": {
                "inputs": [["sale_id", "price", "quantity"], [1, 20, 65], [2, 74, 73]],
                "parameters": {"tax": 0.1},
            },
        },
        {
            "id": "ec2eec02-c005-4af6-a2af-50cfd7616d64",
            "data": {
                "inputs": [
                    ["sale_id", "price", "quantity"],
                    [3, 20, 65], [4, 34, 73], [5, 62, 62], [6, 43, 87], [7, 23, 35],
                ],
                "parameters": {"tax": 0.1},
            },
        },
    ]
}
SAMPLE_SUMMARY = {
    "ignore_error": False,
    "aggregation": [{"output_name": "total", "operator": "SUM"}],
}

STATUS_KEYS = [
    "response_timestamp", "request_timestamp", "batch_status", "pipeline_status",
    "chunks_available", "chunks_submitted", "record_submitted", "chunks_completed",
    "records_completed", "compute_time_ms", "input_buffer_used_bytes",
    "input_buffer_remaining_bytes", "output_buffer_used_bytes", "output_buffer_remaining_bytes",
    "workers_in_use", "records_available",
]
BATCH_KEYS = [
    "service_id", "version_id", "compiler_version", "correlation_id", "source_system",
    "unique_record_key", "response_timestamp", "batch_status", "created_by",
    "created_timestamp", "updated_timestamp", "service_uri",
]
INFO_SUMMARY_KEYS = [
    "chunks_submitted", "chunks_retried", "chunks_completed", "chunks_failed", "records_retried",
    "input_size_bytes", "output_size_bytes", "avg_compute_time_ms", "records_submitted",
    "records_failed", "records_completed", "compute_time_ms", "batch_time_ms",
]
INFO_CONFIGURATION_KEYS = [
    "initial_workers", "chunks_per_request", "runner_thread_count",
    "acceptable_error_percentage", "input_buffer_allocated_bytes",
    "output_buffer_allocated_bytes", "max_workers",
]
CHUNK_RESULT_KEYS = ["id", "summary_output", "outputs", "warnings", "errors", "process_time"]
SAMPLE_TOTALS = [[1, 1430], [2, 5942.2], [3, 1430], [4, 2730.2], [5, 4228.4], [6, 4115.1],
                 [7, 885.5]]


def start(make_server: Callable[..., Server], **settings: Any) -> Server:
    return make_server(tasks=TASKS, **settings)


def base(tenant: str) -> str:
    return f"/{tenant}/api/v4/batch"


def ok(r: httpx.Response) -> Any:
    """The JSON body of a 200, checking the document's content type."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == JSON
    return r.json()


def failed(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The Spark error body of a ``status`` answer."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == JSON
    err = r.json()["error"]
    assert err["status"] == status and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err  # type: ignore[no-any-return]


def sales_chunk(chunk_id: str, first: int, n: int, *, tax: float = 0.1) -> dict[str, Any]:
    rows: list[list[Any]] = [["sale_id", "price", "quantity"]]
    rows += [[first + i, 20 + i, 5] for i in range(n)]
    return {"id": chunk_id, "data": {"inputs": rows, "parameters": {"tax": tax}}}


def create(c: httpx.Client, tenant: str, **body: Any) -> str:
    data = ok(c.post(base(tenant), json={"service": "myfolder/SalesExample", **body}))
    return str(data["id"])


def wait_status(
    c: httpx.Client, tenant: str, batch_id: str, pred: Callable[[dict[str, Any]], bool],
    what: str,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        s = ok(c.get(f"{base(tenant)}/{batch_id}/status"))
        return s if pred(s) else None

    return wait_until(check, timeout_s=30, what=what)  # type: ignore[no-any-return]


def pull_all(c: httpx.Client, tenant: str, batch_id: str, chunks: int) -> list[dict[str, Any]]:
    """Pull chunkresults until ``chunks`` chunks came back."""
    got: list[dict[str, Any]] = []

    def more() -> bool:
        body = ok(c.get(f"{base(tenant)}/{batch_id}/chunkresults", params={"max": 100},
                        headers={"Accept": JSON}))
        got.extend(body.get("data", []))
        return len(got) >= chunks

    wait_until(more, timeout_s=30, what=f"{chunks} chunk results")
    assert len(got) == chunks, f"{len(got)} chunk results, not {chunks}"
    return got


# the document's samples

def test_spark_document_samples_replay(make_server: Callable[..., Server]) -> None:
    server = start(make_server)
    tenant = "mytenant"
    with server.client(server.new_key(tenant, owner="myuser@mydomain.com")) as c:
        created = ok(c.post(base(tenant), json=SAMPLE_CREATE,
                            headers={"Accept-Encoding": "gzip"}))
        assert list(created) == ["object", "id", "data"] and created["object"] == "batch"
        data = created["data"]
        assert list(data) == BATCH_KEYS
        assert data["batch_status"] == "created"
        assert data["service_uri"] == "myfolder/SalesExample[0.2.0]"
        assert data["created_by"] == "myuser@mydomain.com"
        assert data["correlation_id"] == SAMPLE_CREATE["correlation_id"]
        assert data["source_system"] == "Analysis server"
        assert data["created_timestamp"].endswith("Z")
        bid = created["id"]

        status = ok(c.post(f"{base(tenant)}/{bid}/chunks", json=SAMPLE_CHUNKS))
        assert list(status) == STATUS_KEYS
        assert (status["chunks_submitted"], status["record_submitted"]) == (2, 7)

        status = wait_status(c, tenant, bid, lambda s: s["records_available"] == 7, "results")
        assert list(status) == STATUS_KEYS
        assert status["batch_status"] == "in_progress" and status["pipeline_status"] == "idle"
        assert (status["chunks_available"], status["chunks_completed"],
                status["records_completed"]) == (2, 2, 7)
        assert status["input_buffer_used_bytes"] == 0
        assert status["input_buffer_remaining_bytes"] == 70_000_000
        assert status["output_buffer_used_bytes"] > 0
        assert status["output_buffer_used_bytes"] + status["output_buffer_remaining_bytes"] \
            == 80_000_000
        assert status["workers_in_use"] == 0

        # the document's request has a trailing slash before ?max=100
        results = ok(c.get(f"{base(tenant)}/{bid}/chunkresults/?max=100"))
        assert list(results) == ["data", "status"]
        assert [list(ch) for ch in results["data"]] == [CHUNK_RESULT_KEYS] * 2
        first, second = results["data"]
        assert first["id"] == SAMPLE_CHUNKS["chunks"][0]["id"]
        assert second["id"] == SAMPLE_CHUNKS["chunks"][1]["id"]
        assert first["summary_output"] == [[]] and second["summary_output"] == [[]]
        assert first["outputs"] == [["sale_id", "total"], *SAMPLE_TOTALS[:2]]
        assert second["outputs"] == [["sale_id", "total"], *SAMPLE_TOTALS[2:]]
        assert first["warnings"] == [None, None] and first["errors"] == [None, None]
        assert second["warnings"] == [None] * 5 and second["errors"] == [None] * 5
        assert len(first["process_time"]) == 2 and len(second["process_time"]) == 5
        assert all(isinstance(t, int) and t >= 0 for t in first["process_time"])
        after = results["status"]
        assert list(after) == STATUS_KEYS
        assert (after["chunks_available"], after["records_available"],
                after["output_buffer_used_bytes"]) == (0, 0, 0)
        assert after["output_buffer_remaining_bytes"] == 80_000_000
        assert (after["chunks_submitted"], after["record_submitted"],
                after["chunks_completed"], after["records_completed"]) == (2, 7, 2, 7)
        assert after["compute_time_ms"] >= 0

        # the summary sample: a third chunk with data.summary
        summary_chunk = {"id": "b49be0c0-9e7a-439f-98ed-4eab3054b34c",
                         "data": {**SAMPLE_CHUNKS["chunks"][0]["data"],
                                  "summary": SAMPLE_SUMMARY}}
        ok(c.post(f"{base(tenant)}/{bid}/chunks", json={"chunks": [summary_chunk]}))
        [summed] = pull_all(c, tenant, bid, 1)
        assert summed["summary_output"] == [[["total_SUM"], [7372.2]]]
        # this batch has a unique_record_key, so the records still come back
        assert summed["outputs"] == [["sale_id", "total"], *SAMPLE_TOTALS[:2]]

        info = ok(c.get(f"{base(tenant)}/{bid}"))
        assert list(info) == ["object", "id", "data"]
        assert list(info["data"]) == [*BATCH_KEYS[:6], "summary", "configuration",
                                      *BATCH_KEYS[6:]]
        assert list(info["data"]["summary"]) == INFO_SUMMARY_KEYS
        assert list(info["data"]["configuration"]) == INFO_CONFIGURATION_KEYS
        summary = info["data"]["summary"]
        assert (summary["chunks_submitted"], summary["chunks_completed"],
                summary["chunks_failed"], summary["records_submitted"],
                summary["records_failed"], summary["records_completed"]) == (3, 3, 0, 9, 0, 9)
        assert summary["batch_time_ms"] > 0
        config = info["data"]["configuration"]
        assert config["input_buffer_allocated_bytes"] == 70_000_000
        assert config["output_buffer_allocated_bytes"] == 80_000_000
        assert (config["acceptable_error_percentage"], config["runner_thread_count"]) == (0, 1)
        assert info["data"]["batch_status"] == "in_progress"

        closed = ok(c.patch(f"{base(tenant)}/{bid}", json={"batch_status": "closed"}))
        assert list(closed["data"]) == BATCH_KEYS
        # every chunk ran and was pulled already, so the close completes the batch at once
        assert closed["data"]["batch_status"] == "completed"

        tenant_status = ok(c.get(f"{base(tenant)}/status"))
        assert list(tenant_status) == ["in_progress_batches", "recent_batches", "tenant",
                                       "environment"]
        assert tenant_status["in_progress_batches"] == []
        [recent] = tenant_status["recent_batches"]
        assert recent["id"] == bid and recent["object"] == "batch"
        assert list(recent["data"]) == ["pipeline_status", "summary", *BATCH_KEYS[6:]]
        assert recent["data"]["batch_status"] == "completed"
        assert recent["data"]["pipeline_status"] == "closed"
        assert list(recent["data"]["summary"]) == INFO_SUMMARY_KEYS[-5:]
        assert recent["data"]["summary"]["records_completed"] == 9
        assert list(tenant_status["tenant"]) == ["configuration", "status"]
        assert list(tenant_status["tenant"]["configuration"]) == [
            "input_buffer_allocated_bytes", "output_buffer_allocated_bytes", "max_workers"]
        assert list(tenant_status["tenant"]["status"]) == [
            "input_buffer_used_bytes", "input_buffer_remaining_bytes",
            "output_buffer_used_bytes", "output_buffer_remaining_bytes", "workers_in_use"]


def test_spark_summary_without_key_or_output_returns_empty_records(
    make_server: Callable[..., Server],
) -> None:
    server = start(make_server)
    with server.client() as c:
        bid = create(c, "default")
        chunk = {"id": "b49be0c0-9e7a-439f-98ed-4eab3054b34c",
                 "data": {**SAMPLE_CHUNKS["chunks"][0]["data"], "summary": SAMPLE_SUMMARY}}
        bad_rows = [["sale_id", "price", "quantity"], [1, 20, 65], [2, "x", 73], [3, 74, 73]]
        strict = {"id": "strict", "data": {"inputs": bad_rows, "parameters": {"tax": 0.1},
                                           "summary": SAMPLE_SUMMARY}}
        lenient = {"id": "lenient", "data": {"inputs": bad_rows, "parameters": {"tax": 0.1},
                                             "summary": {**SAMPLE_SUMMARY, "ignore_error": True}}}
        ok(c.post(f"{base('default')}/{bid}/chunks", json={"chunks": [chunk, strict, lenient]}))
        got = pull_all(c, "default", bid, 3)

    assert got[0]["summary_output"] == [[["total_SUM"], [7372.2]]]
    assert got[0]["outputs"] == [[], [], []]
    assert got[0]["warnings"] == [None, None] and got[0]["errors"] == [None, None]
    # SUM(…, #N/A) is #N/A (null) unless ignore_error leaves the failed record out
    assert got[1]["summary_output"] == [[["total_SUM"], [None]]]
    assert got[2]["summary_output"] == [[["total_SUM"], [7372.2]]]
    assert got[1]["errors"][0] is None and got[1]["errors"][2] is None
    assert got[1]["errors"][1]["code"] == "invalid_record"


# services

def test_spark_service_references_resolve_to_versions(
    make_server: Callable[..., Server],
) -> None:
    server = start(make_server)
    with server.client() as c:
        def uri(ref: str) -> str:
            return str(ok(c.post(base("default"), json={"service": ref}))["data"]["service_uri"])

        assert uri("stocks/NVDA") == "stocks/NVDA[1.10.0]"
        assert uri("stocks/NVDA[1.4.3]") == "stocks/NVDA[1.4.3]"
        assert uri("stocks/NVDA[1.4]") == "stocks/NVDA[1.4.3]"
        assert uri("stocks/NVDA[1]") == "stocks/NVDA[1.10.0]"
        assert uri("stocks/NVDA[2]") == "stocks/NVDA[2.0.0-rc.1]"
        assert uri("/folders/stocks/services/NVDA") == "stocks/NVDA[1.10.0]"
        assert uri("/folders/stocks/services/NVDA[1.3]") == "stocks/NVDA[1.3.9]"

        created = ok(c.post(base("default"), json={"service": "stocks/NVDA[1.4.0]"}))["data"]
        by_version = ok(c.post(base("default"), json={"service": created["version_id"]}))
        assert by_version["data"]["service_uri"] == "stocks/NVDA[1.4.0]"
        by_service = ok(c.post(base("default"), json={"service": created["service_id"]}))
        assert by_service["data"]["service_uri"] == "stocks/NVDA[1.10.0]"
        assert by_service["data"]["service_id"] == created["service_id"]
        assert by_service["data"]["version_id"] != created["version_id"]

        failed(c.post(base("default"), json={"service": "stocks/NOPE"}), 404,
               "service_not_found")
        failed(c.post(base("default"), json={"service": "stocks/NVDA[1.5]"}), 404,
               "service_not_found")
        failed(c.post(base("default"), json={"service": "stocks/NVDA[latest]"}), 422,
               "invalid_service")
        failed(c.post(base("default"), json={"service": "stocks/NVDA[1.4"}), 422)
        failed(c.post(base("default"),
                      json={"service": "a5e3f03a-57ca-4889-adae-0630be54bd87"}), 404,
               "service_not_found")
        failed(c.post(base("default"), json={}), 422, "invalid_input")


def test_spark_output_filter_and_unique_key_in_the_shape_of_the_inputs(
    make_server: Callable[..., Server],
) -> None:
    server = start(make_server)
    with server.client() as c:
        bid = create(c, "default", service="stocks/NVDA[1.4]", unique_record_key="row",
                     output=["value_*", "version"])
        table = {"id": "t", "data": {"inputs": [["row", "x"], ["a", 1], ["b", 2]]}}
        objects = {"id": "o", "data": {"inputs": [{"row": "c", "x": 3}, {"x": 4}],
                                       "parameters": {"x": 100}}}
        ok(c.post(f"{base('default')}/{bid}/chunks", json={"chunks": [table, objects]}))
        got = pull_all(c, "default", bid, 2)

    assert got[0]["outputs"] == [
        ["row", "version", "value_1", "value_2"],
        ["a", "1.4.3", 1.0, 2.0],
        ["b", "1.4.3", 2.0, 4.0],
    ]
    # objects stay objects; a record's own value wins over data.parameters
    assert got[1]["outputs"] == [
        {"row": "c", "version": "1.4.3", "value_1": 3.0, "value_2": 6.0},
        {"version": "1.4.3", "value_1": 4.0, "value_2": 8.0},
    ]
    assert got[1]["summary_output"] == [[]]


# buffers and backpressure

PAUSING = {"max_workers": 1, "max_output_in_mb": 0.0001}  # 100 bytes: one chunk fills it


def test_spark_input_buffer_full_rejects_then_drains(make_server: Callable[..., Server]) -> None:
    server = start(make_server)
    t = "default"
    with server.client() as c:
        bid = create(c, t, max_input_in_mb=0.002, **PAUSING)  # 2,000 bytes of input
        ok(c.post(f"{base(t)}/{bid}/chunks", json={"chunks": [sales_chunk("c0", 0, 10)]}))
        wait_status(c, t, bid, lambda s: s["pipeline_status"] == "idle"
                    and s["chunks_available"] == 1, "the first chunk's result")
        pushed = 1
        while True:
            r = c.post(f"{base(t)}/{bid}/chunks",
                       json={"chunks": [sales_chunk(f"c{pushed}", pushed * 10, 10)]})
            if r.status_code != 200:
                break
            pushed += 1
            assert pushed < 50, "the input buffer never filled"
        err = failed(r, 429, "input_buffer_full")
        assert "input buffer full" in err["message"]
        assert r.headers["retry-after"] == "1"
        full = ok(c.get(f"{base(t)}/{bid}/status"))
        assert full["chunks_submitted"] == pushed  # nothing of the rejected push was stored
        assert full["pipeline_status"] == "paused"
        assert full["input_buffer_used_bytes"] > 0
        assert full["input_buffer_used_bytes"] + full["input_buffer_remaining_bytes"] == 2000

        # a push of several chunks that does not fit stores none of them
        two = [sales_chunk("x1", 900, 10), sales_chunk("x2", 910, 10)]
        failed(c.post(f"{base(t)}/{bid}/chunks", json={"chunks": two}), 429,
               "input_buffer_full")
        assert ok(c.get(f"{base(t)}/{bid}/status"))["chunks_submitted"] == pushed

        # drain: every pull lets one more chunk run and leave the input buffer
        pulled: list[dict[str, Any]] = []

        def room() -> bool:
            pulled.extend(ok(c.get(f"{base(t)}/{bid}/chunkresults",
                                   params={"max": 1})).get("data", []))
            r = c.post(f"{base(t)}/{bid}/chunks",
                       json={"chunks": [sales_chunk("late", 5000, 10)]})
            return r.status_code == 200

        wait_until(room, timeout_s=30, what="room in the input buffer")
        pushed += 1
        ok(c.patch(f"{base(t)}/{bid}", json={"batch_status": "closed"}))
        pulled += pull_all(c, t, bid, pushed - len(pulled))
        assert [ch["id"] for ch in pulled] == [f"c{i}" for i in range(pushed - 1)] + ["late"]
        done = ok(c.get(f"{base(t)}/{bid}/status"))
        assert done["batch_status"] == "completed"
        assert done["chunks_completed"] == pushed and done["record_submitted"] == pushed * 10


def test_spark_full_output_buffer_pauses_until_pulled(make_server: Callable[..., Server]) -> None:
    server = start(make_server)
    t = "default"
    with server.client() as c:
        bid = create(c, t, **PAUSING)
        chunks = [sales_chunk(f"c{i}", i * 10, 10) for i in range(3)]
        ok(c.post(f"{base(t)}/{bid}/chunks", json={"chunks": chunks}))
        paused = wait_status(c, t, bid, lambda s: s["pipeline_status"] == "paused",
                             "the pipeline to pause")
        assert paused["chunks_available"] == 1 and paused["chunks_completed"] == 1
        assert paused["output_buffer_remaining_bytes"] == 0
        assert paused["output_buffer_used_bytes"] >= 100
        assert paused["workers_in_use"] == 0

        got = ok(c.get(f"{base(t)}/{bid}/chunkresults"))["data"]
        assert [ch["id"] for ch in got] == ["c0"]
        # the pull made room: the next chunk runs, then the buffer is full again
        again = wait_status(c, t, bid, lambda s: s["chunks_completed"] == 2, "the second chunk")
        assert again["pipeline_status"] == "paused" and again["chunks_available"] == 1
        got += pull_all(c, t, bid, 2)
        assert [ch["id"] for ch in got] == ["c0", "c1", "c2"]
        idle = ok(c.get(f"{base(t)}/{bid}/status"))
        assert idle["pipeline_status"] == "idle" and idle["chunks_completed"] == 3


def test_spark_tenant_buffer_totals(make_server: Callable[..., Server]) -> None:
    server = start(make_server, spark_tenant_max_input_mb=0.001,
                   spark_tenant_max_output_mb=0.0001)
    t = "default"
    with server.client() as c:
        bid = create(c, t, max_workers=1)
        # more than the tenant's 1,000 bytes of input in one push
        failed(c.post(f"{base(t)}/{bid}/chunks", json={"chunks": [sales_chunk("big", 0, 40)]}),
               429, "input_buffer_full")
        ok(c.post(f"{base(t)}/{bid}/chunks", json={"chunks": [sales_chunk("small", 0, 10)]}))
        wait_status(c, t, bid, lambda s: s["chunks_available"] == 1, "a result")
        # the tenant's output buffer holds 100 bytes: full until the result is pulled
        err = failed(c.post(f"{base(t)}/{bid}/chunks",
                            json={"chunks": [sales_chunk("next", 10, 10)]}),
                     429, "output_buffer_full")
        assert "tenant output buffer full" in err["message"]
        tenant = ok(c.get(f"{base(t)}/status"))["tenant"]
        assert tenant["configuration"]["input_buffer_allocated_bytes"] == 1000
        assert tenant["configuration"]["output_buffer_allocated_bytes"] == 100
        assert tenant["status"]["output_buffer_used_bytes"] >= 100
        assert tenant["status"]["output_buffer_remaining_bytes"] == 0
        pull_all(c, t, bid, 1)
        ok(c.post(f"{base(t)}/{bid}/chunks", json={"chunks": [sales_chunk("next", 10, 10)]}))


# formats

def test_spark_bson_round_trip(make_server: Callable[..., Server]) -> None:
    server = start(make_server)
    t = "default"
    with server.client() as c:
        created = c.post(base(t), content=bson.encode({"service": "myfolder/SalesExample",
                                                        "unique_record_key": "sale_id"}),
                         headers={"Content-Type": "application/bson"})
        assert created.status_code == 200 and created.headers["content-type"] == \
            "application/bson"
        bid = bson.decode(created.content)["id"]

        r = c.post(f"{base(t)}/{bid}/chunks", content=bson.encode(SAMPLE_CHUNKS),
                   headers={"Content-Type": "application/bson"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/bson"
        assert bson.decode(r.content)["record_submitted"] == 7
        wait_status(c, t, bid, lambda s: s["chunks_available"] == 2, "results")

        # chunks sent as BSON come back as BSON
        r = c.get(f"{base(t)}/{bid}/chunkresults", params={"max": 1})
        assert r.status_code == 200 and r.headers["content-type"] == "application/bson"
        body = bson.decode(r.content)
        assert body["data"][0]["outputs"] == [["sale_id", "total"], *SAMPLE_TOTALS[:2]]
        assert body["status"]["chunks_available"] == 1
        # unless the client asks for JSON
        r = c.get(f"{base(t)}/{bid}/chunkresults", headers={"Accept": JSON})
        assert ok(r)["data"][0]["outputs"] == [["sale_id", "total"], *SAMPLE_TOTALS[2:]]

        bad = c.post(f"{base(t)}/{bid}/chunks", content=b"\x05\x00\x00",
                     headers={"Content-Type": "application/bson"})
        assert bad.status_code == 400 and bad.headers["content-type"] == "application/bson"
        assert bson.decode(bad.content)["error"]["code"] == "malformed_body"


def test_spark_gzip_request_body(make_server: Callable[..., Server]) -> None:
    import orjson

    server = start(make_server)
    t = "default"
    with server.client() as c:
        bid = create(c, t, unique_record_key="sale_id")
        r = c.post(f"{base(t)}/{bid}/chunks", content=gzip.compress(orjson.dumps(SAMPLE_CHUNKS)),
                   headers={"Content-Type": JSON, "Content-Encoding": "gzip"})
        assert ok(r)["record_submitted"] == 7
        r = c.post(f"{base(t)}/{bid}/chunks",
                   content=gzip.compress(bson.encode({"chunks": [sales_chunk("b", 8, 2)]})),
                   headers={"Content-Type": "application/bson", "Content-Encoding": "gzip"})
        assert bson.decode(r.content)["record_submitted"] == 9
        got = pull_all(c, t, bid, 3)
        assert [row for ch in got for row in ch["outputs"][1:]] == [
            *SAMPLE_TOTALS, [8, 110.0], [9, 115.5]]

        failed(c.post(f"{base(t)}/{bid}/chunks", content=b"not gzip at all",
                      headers={"Content-Type": JSON, "Content-Encoding": "gzip"}),
               400, "malformed_body")
        failed(c.post(f"{base(t)}/{bid}/chunks", content=orjson.dumps(SAMPLE_CHUNKS),
                      headers={"Content-Type": JSON, "Content-Encoding": "br"}),
               415, "unsupported_media_type")


# correlation and lifecycle

def test_spark_repeated_chunk_id_keeps_each_chunks_results(
    make_server: Callable[..., Server],
) -> None:
    server = start(make_server)
    t = "default"
    with server.client() as c:
        bid = create(c, t)
        ok(c.post(f"{base(t)}/{bid}/chunks",
                  json={"chunks": [sales_chunk("same", 100, 2), sales_chunk("same", 200, 3)]}))
        ok(c.post(f"{base(t)}/{bid}/chunks", json={"chunks": [sales_chunk("same", 300, 1)]}))
        got = pull_all(c, t, bid, 3)

    assert [ch["id"] for ch in got] == ["same", "same", "same"]
    assert [[row[0] for row in ch["outputs"][1:]] for ch in got] == [
        [100, 101], [200, 201, 202], [300]]


def test_spark_close_then_pull(make_server: Callable[..., Server]) -> None:
    server = start(make_server)
    t = "default"
    with server.client() as c:
        bid = create(c, t, **PAUSING)
        ok(c.post(f"{base(t)}/{bid}/chunks",
                  json={"chunks": [sales_chunk(f"c{i}", i * 10, 10) for i in range(3)]}))
        closed = ok(c.patch(f"{base(t)}/{bid}", json={"batch_status": "closed"}))
        assert closed["data"]["batch_status"] == "closed"
        failed(c.post(f"{base(t)}/{bid}/chunks", json={"chunks": [sales_chunk("late", 0, 1)]}),
               409, "conflict")
        got = pull_all(c, t, bid, 3)
        assert [ch["id"] for ch in got] == ["c0", "c1", "c2"]
        done = wait_status(c, t, bid, lambda s: s["batch_status"] == "completed", "completed")
        assert done["pipeline_status"] == "closed" and done["records_completed"] == 30
        # closing again is harmless; nothing more to pull
        ok(c.patch(f"{base(t)}/{bid}", json={"batch_status": "closed"}))
        assert ok(c.get(f"{base(t)}/{bid}/chunkresults")).get("data", []) == []


def test_spark_results_wait_in_closed_until_pulled(make_server: Callable[..., Server]) -> None:
    server = start(make_server)
    t = "default"
    with server.client() as c:
        bid = create(c, t)
        ok(c.post(f"{base(t)}/{bid}/chunks", json={"chunks": [sales_chunk("c", 0, 5)]}))
        wait_status(c, t, bid, lambda s: s["chunks_available"] == 1, "the result")
        ok(c.patch(f"{base(t)}/{bid}", json={"batch_status": "closed"}))
        waiting = ok(c.get(f"{base(t)}/{bid}/status"))
        assert waiting["batch_status"] == "closed" and waiting["records_available"] == 5
        pull_all(c, t, bid, 1)
        assert ok(c.get(f"{base(t)}/{bid}/status"))["batch_status"] == "completed"


def test_spark_cancel_then_pull_nothing(make_server: Callable[..., Server]) -> None:
    server = start(make_server)
    t = "default"
    with server.client() as c:
        bid = create(c, t, **PAUSING)
        ok(c.post(f"{base(t)}/{bid}/chunks",
                  json={"chunks": [sales_chunk(f"c{i}", i * 10, 10) for i in range(3)]}))
        wait_status(c, t, bid, lambda s: s["pipeline_status"] == "paused", "a paused pipeline")
        cancelled = ok(c.patch(f"{base(t)}/{bid}", json={"batch_status": "cancelled"}))
        assert cancelled["data"]["batch_status"] == "cancelled"
        after = ok(c.get(f"{base(t)}/{bid}/chunkresults"))
        # no results: the status object (whether or not an empty "data" comes with it)
        assert set(STATUS_KEYS) <= set(after) and after.get("data", []) == []
        assert after["batch_status"] == "cancelled" and after["pipeline_status"] == "closed"
        assert (after["chunks_available"], after["records_available"],
                after["output_buffer_used_bytes"]) == (0, 0, 0)
        failed(c.post(f"{base(t)}/{bid}/chunks", json={"chunks": [sales_chunk("x", 0, 1)]}),
               409)


def test_spark_idle_timeout_closes_the_batch(make_server: Callable[..., Server]) -> None:
    # Long enough that the push right after the create comes before the timeout, even on
    # a busy machine: a quiet batch would be closed before its first chunk.
    server = start(make_server, spark_idle_timeout_s=scaled(3), reap_interval_s=0.2)
    t = "default"
    with server.client() as c:
        bid = create(c, t)
        ok(c.post(f"{base(t)}/{bid}/chunks", json={"chunks": [sales_chunk("c", 0, 3)]}))
        s = wait_status(c, t, bid, lambda s: s["batch_status"] == "closed_by_timeout",
                        "the idle timeout")
        assert s["records_available"] == 3  # results stay pullable after the timeout
        failed(c.post(f"{base(t)}/{bid}/chunks", json={"chunks": [sales_chunk("x", 0, 1)]}),
               409)
        pull_all(c, t, bid, 1)
        s = ok(c.get(f"{base(t)}/{bid}/status"))
        assert s["batch_status"] == "completed_by_timeout" and s["pipeline_status"] == "closed"


def test_spark_acceptable_error_percentage_decides_completed_or_failed(
    make_server: Callable[..., Server],
) -> None:
    server = start(make_server)
    t = "default"
    rows = [["sale_id", "price", "quantity"], [1, 20, 65], [2, None, 1], [3, 1, 1], [4, 2, 2]]
    chunk = {"id": "c", "data": {"inputs": rows, "parameters": {"tax": 0.1}}}
    outcomes = {}
    with server.client() as c:
        for pct in (0, 30):
            bid = create(c, t, acceptable_error_percentage=pct, unique_record_key="sale_id")
            ok(c.post(f"{base(t)}/{bid}/chunks", json={"chunks": [chunk]}))
            ok(c.patch(f"{base(t)}/{bid}", json={"batch_status": "closed"}))
            [res] = pull_all(c, t, bid, 1)
            assert res["errors"][1]["code"] == "invalid_record" and res["outputs"][2] == [2, None]
            outcomes[pct] = wait_status(c, t, bid, lambda s: s["batch_status"] in (
                "completed", "failed"), "finished")["batch_status"]

        boom = ok(c.post(base(t), json={"service": "tests/Boom"}))["id"]
        ok(c.post(f"{base(t)}/{boom}/chunks", json={"chunks": [sales_chunk("b", 0, 2)]}))
        ok(c.patch(f"{base(t)}/{boom}", json={"batch_status": "closed"}))
        [res] = pull_all(c, t, boom, 1)
        assert res["errors"][0]["code"] == "handler_error" and res["errors"][0] == res["errors"][1]
        assert res["outputs"] == [[], [], []]  # a failed chunk has no outputs
        info = ok(c.get(f"{base(t)}/{boom}"))["data"]
        assert info["batch_status"] == "failed" and info["summary"]["chunks_failed"] == 1

    # one record of four failed: 25 % is over 0 % but within 30 %
    assert outcomes == {0: "failed", 30: "completed"}


# who may call

def test_spark_auth_header_styles_and_tenants(make_server: Callable[..., Server]) -> None:
    server = start(make_server)
    key = server.new_key("acme")
    with httpx.Client(base_url=server.url, timeout=30) as c:
        bearer = {"Authorization": f"Bearer {key}"}
        synthetic = {"x-synthetic-key": key, "x-tenant-name": "acme"}
        bid = ok(c.post(base("acme"), json={"service": "myfolder/SalesExample"},
                        headers=bearer))["id"]
        assert ok(c.get(f"{base('acme')}/{bid}", headers=synthetic))["id"] == bid
        assert ok(c.get(f"{base('acme')}/{bid}/status", headers=synthetic))

        failed(c.get(f"{base('acme')}/{bid}"), 401, "unauthorized")
        failed(c.get(f"{base('acme')}/{bid}", headers={"Authorization": "Bearer nope"}), 401)
        failed(c.get(f"{base('acme')}/{bid}", headers={"x-synthetic-key": key}), 401)
        failed(c.get(f"{base('acme')}/{bid}",
                     headers={"x-synthetic-key": key, "x-tenant-name": "other"}),
               403, "wrong_tenant")
        failed(c.get(f"{base('other')}/{bid}", headers=bearer), 403, "wrong_tenant")
        failed(c.get(f"{base('other')}/status", headers=synthetic | {"x-tenant-name": "other"}),
               403, "wrong_tenant")
        failed(c.post(base("other"), json={"service": "myfolder/SalesExample"}, headers=bearer),
               403, "wrong_tenant")

        # another tenant's batch, through its own tenant path, is not found
        other = server.new_key("globex")
        failed(c.get(f"{base('globex')}/{bid}", headers={"Authorization": f"Bearer {other}"}),
               404, "not_found")


def test_spark_tenant_status_user_sees_own_supervisor_sees_all(
    make_server: Callable[..., Server],
) -> None:
    server = start(make_server)
    with server.client(server.new_key("acme", owner="alice")) as alice, \
            server.client(server.new_key("acme", owner="bob")) as bob, \
            server.client(server.new_key("acme", role="supervisor", owner="boss")) as boss:
        a_open = create(alice, "acme")
        ok(alice.post(f"{base('acme')}/{a_open}/chunks",
                      json={"chunks": [sales_chunk("a", 0, 3)]}))
        a_done = create(alice, "acme")
        ok(alice.patch(f"{base('acme')}/{a_done}", json={"batch_status": "closed"}))
        b_open = create(bob, "acme")

        def listed(c: httpx.Client) -> tuple[set[str], set[str]]:
            body = ok(c.get(f"{base('acme')}/status"))
            return ({b["id"] for b in body["in_progress_batches"]},
                    {b["id"] for b in body["recent_batches"]})

        assert listed(alice) == ({a_open}, {a_done})
        assert listed(bob) == ({b_open}, set())
        assert listed(boss) == ({a_open, b_open}, {a_done})
        failed(bob.get(f"{base('acme')}/{a_open}"), 404)
        assert ok(boss.get(f"{base('acme')}/{a_open}"))["data"]["created_by"] == "alice"
        # At rest (alice's chunk done), no worker is in use.
        wait_until(lambda: ok(alice.get(f"{base('acme')}/{a_open}/status"))
                   ["records_completed"] == 3, timeout_s=10, what="alice's chunk")
        body = ok(boss.get(f"{base('acme')}/status"))
        entry = next(b for b in body["in_progress_batches"] if b["id"] == a_open)
        assert entry["data"]["batch_status"] == "in_progress"
        assert body["tenant"]["status"]["workers_in_use"] == 0


# bad input

def test_spark_bad_requests_get_clear_4xx(make_server: Callable[..., Server]) -> None:
    server = start(make_server)
    t = "default"
    with server.client() as c:
        bid = create(c, t)
        chunks = f"{base(t)}/{bid}/chunks"

        failed(c.post(chunks, content=b"{not json", headers={"Content-Type": JSON}), 400,
               "malformed_body")
        failed(c.post(chunks, content=b"[1, 2]", headers={"Content-Type": JSON}), 400,
               "malformed_body")
        failed(c.post(chunks, content=b"a,b", headers={"Content-Type": "text/csv"}), 415)
        failed(c.post(chunks, json={}), 422, "invalid_input")
        failed(c.post(chunks, json={"chunks": []}), 422)
        failed(c.post(chunks, json={"chunks": [{"data": {"inputs": []}}]}), 422)
        failed(c.post(chunks, json={"chunks": [{"id": "x"}]}), 422)
        err = failed(c.post(chunks, json={"chunks": [
            {"id": "x", "data": {"inputs": [["a", "b"], [1, 2], [3]]}}]}), 422, "invalid_input")
        assert err["details"][0]["loc"] == ["body", "chunks", 0, "data", "inputs", 2]
        failed(c.post(chunks, json={"chunks": [
            {"id": "x", "data": {"inputs": [["a", 1], [1, 2]]}}]}), 422)
        failed(c.post(chunks, json={"chunks": [
            {"id": "x", "data": {"inputs": [["a", "a"], [1, 2]]}}]}), 422)
        failed(c.post(chunks, json={"chunks": [
            {"id": "x", "data": {"inputs": [{"a": 1}, [1]]}}]}), 422)
        failed(c.post(chunks, json={"chunks": [
            {"id": "x", "data": {"inputs": "a,b"}}]}), 422)
        failed(c.post(chunks, json={"chunks": [{"id": "x", "data": {"inputs": [{"a": 1}],
               "summary": {"aggregation": [{"output_name": "a", "operator": "AVG"}]}}}]}), 422)
        failed(c.post(chunks, json={"chunks": [{"id": "x\u0000", "data": {"inputs": []}}]}),
               422)
        # nothing of the rejected pushes was stored
        assert ok(c.get(f"{base(t)}/{bid}/status"))["chunks_submitted"] == 0

        failed(c.patch(f"{base(t)}/{bid}", json={"batch_status": "completed"}), 422)
        failed(c.get(f"{base(t)}/{bid}/chunkresults", params={"max": 0}), 422)
        failed(c.post(base(t), json={"service": "myfolder/SalesExample", "output": ["("]}), 422)
        failed(c.post(base(t), json={"service": "myfolder/SalesExample",
                                     "max_input_in_mb": 0}), 422)
        failed(c.get(f"{base(t)}/bat_000000000000000000000000"), 404, "not_found")
        failed(c.get(f"{base(t)}/bat_000000000000000000000000/status"), 404)

        native = c.post("/api/batches", json={"task": "echo", "items": [{"a": 1}]})
        assert native.status_code == 201
        failed(c.get(f"{base(t)}/{native.json()['id']}"), 404, "not_found")

        # max_chunks is accepted too; max above 100 is capped: with more than 100 results
        # waiting, asking for 1,000 hands out exactly 100, in order, and the rest stay
        n = 103
        ok(c.post(chunks, json={"chunks": [sales_chunk(f"c{i}", i, 1) for i in range(n)]}))
        wait_status(c, t, bid, lambda s: s["chunks_available"] == n, "results")

        def pull(**params: int) -> list[str]:
            return [ch["id"] for ch in ok(c.get(f"{base(t)}/{bid}/chunkresults",
                                                params=params)).get("data", [])]

        assert pull(max_chunks=2) == ["c0", "c1"]
        assert pull(max=1000) == [f"c{i}" for i in range(2, 102)]
        assert ok(c.get(f"{base(t)}/{bid}/status"))["chunks_available"] == 1
        assert pull(max=1000) == ["c102"]
