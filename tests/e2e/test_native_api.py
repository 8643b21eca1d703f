"""The native REST API (``/api/…``) as a client sees it over real HTTP."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Server, scaled, wait_batch
from tests.support.paging import pages

pytestmark = pytest.mark.timeout(scaled(60))

NDJSON = {"Content-Type": "application/x-ndjson"}
CSV = {"Content-Type": "text/csv"}


def create(c: httpx.Client, **body: Any) -> dict[str, Any]:
    r = c.post("/api/batches", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def inputs(c: httpx.Client, batch_id: str) -> list[Any]:
    return [i["input"] for page in pages(c, f"/api/batches/{batch_id}/items") for i in page]


def assert_invalid(r: httpx.Response, loc: list[Any]) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail
    assert all({"loc", "msg", "type"} <= set(d) for d in detail)
    matching = [d for d in detail if d["loc"] == loc]
    assert matching, f"no error at {loc}: {detail}"
    return dict(matching[0])


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str | None, str, Any]]:
    """``(id, event, data)`` of each server-sent event, parsed as the standard says."""
    event_id: str | None = None
    event = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event_id, event, orjson.loads("\n".join(data))
            event_id, event, data = None, "message", []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


# creating batches


def test_create_batch_with_inline_items(server: Server) -> None:
    with server.client() as c:
        b = create(c, task="sales", priority=70, metadata={"run": "nightly"}, items=[
            {"price": 10, "quantity": 3, "tax": 0.1}, {"price": 2.5, "quantity": 4, "tax": 0}])
        assert b["id"].startswith("bat_")
        assert (b["task"], b["version"], b["priority"]) == ("sales", "1.0.0", 70)
        assert b["metadata"] == {"run": "nightly"}
        assert b["counts"]["total"] == 2 and b["records"]["total"] == 2
        assert b["created_at"].endswith("Z")
        done = wait_batch(c, b["id"])
        assert done["status"] == "completed"
        assert done["counts"]["succeeded"] == 2 and done["records"]["succeeded"] == 2
        rows = [orjson.loads(line) for line in c.get(f"/api/batches/{b['id']}/results").text
                .splitlines()]
    assert [r["output"] for r in rows] == [{"total": 33.0}, {"total": 10.0}]


def test_create_batch_from_ndjson_body(server: Server) -> None:
    body = b'{"a": 1}\n\n{"a": {"b": [1, 2]}}\n"just a string"\n{"a": 3}'
    with server.client() as c:
        r = c.post("/api/batches", params={"task": "echo", "priority": 80, "parallelism": 2},
                   content=body, headers=NDJSON)
        assert r.status_code == 201, r.text
        b = r.json()
        assert (b["priority"], b["parallelism"], b["counts"]["total"]) == (80, 2, 4)
        assert wait_batch(c, b["id"])["status"] == "completed"
        assert inputs(c, b["id"]) == [{"a": 1}, {"a": {"b": [1, 2]}}, "just a string", {"a": 3}]


def test_create_batch_from_csv_body_converts_numbers_and_nests_dotted_headers(
    server: Server,
) -> None:
    body = (
        b"sku,name,price.net,price.tax,qty,note\r\n"
        b'A1,"apple, green",2.5,0.1,-3,\r\n'
        b'B2,"pear ""xl""\nbig",10,0,7,fresh\r\n'
    )
    with server.client() as c:
        r = c.post("/api/batches", params={"task": "echo"}, content=body, headers=CSV)
        assert r.status_code == 201, r.text
        assert r.json()["counts"]["total"] == 2
        assert wait_batch(c, r.json()["id"])["status"] == "completed"
        got = inputs(c, r.json()["id"])
    assert got == [
        {"sku": "A1", "name": "apple, green", "price": {"net": 2.5, "tax": 0.1}, "qty": -3,
         "note": None},
        {"sku": "B2", "name": 'pear "xl"\nbig', "price": {"net": 10, "tax": 0}, "qty": 7,
         "note": "fresh"},
    ]


def test_append_items_to_open_batch_then_close(server: Server) -> None:
    with server.client() as c:
        b = create(c, task="square", close=False, items=[{"n": 1}])
        assert b["status"] == "open"
        bid = b["id"]
        r = c.post(f"/api/batches/{bid}/items", json=[{"n": 2}, {"n": 3}])
        assert r.status_code == 200, r.text
        assert r.json()["counts"]["total"] == 3
        r = c.post(f"/api/batches/{bid}/items", content=b'{"n": 4}\n', headers=NDJSON)
        assert r.status_code == 200, r.text
        r = c.post(f"/api/batches/{bid}/items", content=b"n\n5\n6\n", headers=CSV)
        assert r.status_code == 200, r.text
        assert r.json()["counts"]["total"] == 6
        # An open batch never finishes, even with every item done.
        assert c.get(f"/api/batches/{bid}").json()["status"] == "open"
        closed = c.post(f"/api/batches/{bid}/close")
        assert closed.status_code == 200, closed.text
        assert closed.json()["closed_at"] is not None
        done = wait_batch(c, bid)
        late = c.post(f"/api/batches/{bid}/items", json=[{"n": 7}])
        items = [i for page in pages(c, f"/api/batches/{bid}/items") for i in page]
    assert done["status"] == "completed" and done["counts"]["succeeded"] == 6
    assert late.status_code == 409
    assert [i["seq"] for i in items] == list(range(6))
    assert [i["output"]["square"] for i in items] == [1, 4, 9, 16, 25, 36]


# reading batches and items


def test_list_batches_filters_by_status_and_pages(server: Server) -> None:
    with server.client() as c:
        done_ids = [create(c, task="square", items=[{"n": n}])["id"] for n in range(5)]
        open_ids = [create(c, task="square", close=False)["id"] for _ in range(2)]
        for bid in done_ids:
            wait_batch(c, bid)
        everything = pages(c, "/api/batches", limit=2)
        opened = pages(c, "/api/batches", status="open", limit=1)
        completed = pages(c, "/api/batches", status="completed", limit=2)
        bad = c.get("/api/batches", params={"status": "sleepy"})
        bad_cursor = c.get("/api/batches", params={"cursor": "garbage"})
    assert [len(p) for p in everything] == [2, 2, 2, 1]
    listed = [b["id"] for p in everything for b in p]
    assert len(listed) == len(set(listed))
    assert listed == list(reversed(done_ids + open_ids))  # newest first
    assert [b["id"] for p in opened for b in p] == list(reversed(open_ids))
    assert all(b["status"] == "open" for p in opened for b in p)
    assert [b["id"] for p in completed for b in p] == list(reversed(done_ids))
    assert_invalid(bad, ["query", "status"])
    assert_invalid(bad_cursor, ["query", "cursor"])


def test_list_items_filters_by_status_and_pages(server: Server) -> None:
    with server.client() as c:
        b = create(c, task="fail", max_attempts=1,
                   items=[{"value": n, "fail": n % 3 == 0} for n in range(10)])
        done = wait_batch(c, b["id"])
        url = f"/api/batches/{b['id']}/items"
        failed = pages(c, url, status="failed", limit=3)
        succeeded = pages(c, url, status="succeeded", limit=4)
        every = pages(c, url, limit=4)
        bad_cursor = c.get(url, params={"cursor": "garbage"})
    assert done["status"] == "partial"
    assert [len(p) for p in failed] == [3, 1]
    assert [i["input"]["value"] for p in failed for i in p] == [0, 3, 6, 9]
    assert all(i["status"] == "failed" and i["error"]["code"] == "handler_error"
               for p in failed for i in p)
    assert [i["input"]["value"] for p in succeeded for i in p] == [1, 2, 4, 5, 7, 8]
    assert [len(p) for p in every] == [4, 4, 2]
    assert [i["seq"] for p in every for i in p] == list(range(10))
    assert_invalid(bad_cursor, ["query", "cursor"])


def test_get_one_item(server: Server) -> None:
    with server.client() as c:
        b = create(c, task="square", items=[{"n": 3}, {"n": 4}])
        wait_batch(c, b["id"])
        second = c.get(f"/api/batches/{b['id']}/items").json()["data"][1]
        r = c.get(f"/api/batches/{b['id']}/items/{second['id']}")
        missing = c.get(f"/api/batches/{b['id']}/items/itm_999999999")
        malformed = c.get(f"/api/batches/{b['id']}/items/nope")
    assert r.status_code == 200, r.text
    item = r.json()
    assert item == second
    assert item["id"].startswith("itm_") and item["seq"] == 1
    assert (item["status"], item["attempts"]) == ("succeeded", 1)
    assert item["input"] == {"n": 4} and item["output"] == {"n": 4, "square": 16, "attempt": 1}
    assert item["error"] is None and item["started_at"] and item["finished_at"]
    assert missing.status_code == 404 and malformed.status_code == 404


# results and events


ECHOED = [
    {"user": {"name": "ann", "age": 30}, "tags": ["a", "b"]},
    {"user": {"name": "bob", "age": 41}, "tags": []},
]


def test_results_export_as_jsonl_json_and_csv(server: Server) -> None:
    with server.client() as c:
        b = create(c, task="echo", items=ECHOED)
        wait_batch(c, b["id"])
        url = f"/api/batches/{b['id']}/results"
        jsonl = c.get(url)
        as_json = c.get(url, params={"format": "json"})
        as_csv = c.get(url, params={"format": "csv"})
        bad = c.get(url, params={"format": "xml"})
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    rows = [orjson.loads(line) for line in jsonl.text.splitlines()]
    assert [(r["seq"], r["status"], r["input"], r["output"], r["error"]) for r in rows] == [
        (n, "succeeded", rec, rec, None) for n, rec in enumerate(ECHOED)]
    assert all(r["item_id"].startswith("itm_") for r in rows)

    assert as_json.headers["content-type"].startswith("application/json")
    assert as_json.json() == rows

    assert as_csv.headers["content-type"].startswith("text/csv")
    assert f'filename="{b["id"]}.csv"' in as_csv.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(as_csv.text)))
    assert table[0] == ["item_id", "seq", "status", "input.user.name", "input.user.age",
                        "input.tags", "output.user.name", "output.user.age", "output.tags",
                        "usage.tokens_in", "usage.tokens_out", "usage.cost_usd", "error"]
    assert table[1:] == [
        [rows[0]["item_id"], "0", "succeeded", "ann", "30", '["a","b"]', "ann", "30",
         '["a","b"]', "0", "0", "0.0", ""],
        [rows[1]["item_id"], "1", "succeeded", "bob", "41", "[]", "bob", "41", "[]",
         "0", "0", "0.0", ""],
    ]
    assert_invalid(bad, ["query", "format"])


def test_results_csv_carries_errors_of_failed_items(server: Server) -> None:
    with server.client() as c:
        b = create(c, task="fail", max_attempts=1,
                   items=[{"value": {"k": 1}}, {"value": {"k": 2}, "fail": True}])
        wait_batch(c, b["id"])
        r = c.get(f"/api/batches/{b['id']}/results", params={"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["status"], x["input.value.k"], x["output.value.k"]) for x in rows] == [
        ("succeeded", "1", "1"), ("failed", "2", "")]
    assert rows[0]["error"] == ""
    assert orjson.loads(rows[1]["error"])["code"] == "handler_error"


def test_events_stream_progress_and_end_with_done(server: Server) -> None:
    with server.client() as c:
        # Open, the batch cannot end before the test closes it: the stream is sure to see
        # it open with every item done, then its end.
        b = create(c, task="tracked", parallelism=1, close=False,
                   items=[{"n": n, "seconds": 0.2} for n in range(3)])
        events = []
        with c.stream("GET", f"/api/batches/{b['id']}/events", timeout=scaled(30)) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            for event in sse_events(r.iter_lines()):
                events.append(event)
                _, name, data = event
                if name == "progress" and data["status"] == "open" \
                        and data["counts"]["succeeded"] == 3:
                    assert c.post(f"/api/batches/{b['id']}/close").status_code == 200
        final = c.get(f"/api/batches/{b['id']}").json()

    assert [event_id for event_id, _, _ in events] == [str(n) for n in range(1, len(events) + 1)]
    assert [name for _, name, _ in events] == ["progress"] * (len(events) - 1) + ["done"]
    snapshots = [data for _, _, data in events]
    for s in snapshots:  # each one a whole batch, as GET shows it, and consistent
        assert set(s) == set(final) and s["id"] == b["id"]
        counts = s["counts"]
        assert counts["total"] == 3 == sum(counts[k] for k in (
            "queued", "running", "succeeded", "failed", "cancelled"))
    progress, done = snapshots[:-1], snapshots[-1]
    # A progress event per change: never the same state twice, never going back.
    states = [(p["status"], sorted(p["counts"].items())) for p in progress]
    assert all(a != b for a, b in zip(states, states[1:], strict=False))
    succeeded = [p["counts"]["succeeded"] for p in progress]
    assert succeeded == sorted(succeeded)
    statuses = [p["status"] for p in progress]
    assert statuses == ["open"] * (len(progress) - 1) + ["completed"]
    assert progress[-2]["counts"]["succeeded"] == 3  # the state that made the test close it
    # done repeats the final state, which is what GET answers from then on
    assert done == progress[-1] == final
    assert done["counts"] == {"total": 3, "queued": 0, "running": 0, "succeeded": 3,
                              "failed": 0, "cancelled": 0}
    assert done["finished_at"] is not None


# errors


def test_validation_errors_name_the_field(server: Server) -> None:
    with server.client() as c:
        post = c.post
        e = assert_invalid(post("/api/batches", json={"task": "echo", "priority": 500}),
                           ["body", "priority"])
        assert e["type"] == "less_than_equal"
        assert_invalid(post("/api/batches", json={"task": "echo", "bogus": 1}),
                       ["body", "bogus"])
        assert_invalid(post("/api/batches", json={"items": [1]}), ["body", "task"])
        e = assert_invalid(post("/api/batches", content=b'{"task": "echo", ',
                                headers={"Content-Type": "application/json"}), ["body"])
        assert e["type"] == "json_invalid"
        assert_invalid(post("/api/batches", json=["echo"]), ["body"])
        e = assert_invalid(post("/api/batches", json={"task": "no-such-task", "items": [1]}),
                           ["body", "task"])
        assert "no-such-task" in e["msg"]
        assert_invalid(post("/api/batches", json={"task": "echo", "items": {"a": 1}}),
                       ["body", "items"])
        e = assert_invalid(post("/api/batches", json={"task": "sleep", "items": [
            {"seconds": 1}, {"seconds": -1}]}), ["body", "items", 1])
        assert "seconds" in e["msg"]
        e = assert_invalid(post("/api/batches", params={"task": "echo"},
                                content=b'{"a": 1}\n{oops}\n{"a": 3}\n', headers=NDJSON),
                           ["body", 1])
        assert "line 2" in e["msg"]
        assert_invalid(post("/api/batches", params={"task": "echo", "priority": "high"},
                            content=b'{"a": 1}\n', headers=NDJSON), ["query", "priority"])
        assert_invalid(post("/api/batches", params={"task": "echo", "bogus": "1"},
                            content=b'{"a": 1}\n', headers=NDJSON), ["query", "bogus"])
        assert_invalid(post("/api/batches", content=b"<xml/>",
                            headers={"Content-Type": "application/xml"}),
                       ["header", "content-type"])
        # None of the rejected requests left a batch behind.
        assert c.get("/api/batches").json()["data"] == []


def test_body_over_size_limit_is_rejected_and_creates_nothing(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(max_body_bytes=1000)
    big = [{"n": n, "pad": "x" * 50} for n in range(40)]
    big_ndjson = b"".join(orjson.dumps(r) + b"\n" for r in big)

    def chunks() -> Iterator[bytes]:
        for r in big:
            yield orjson.dumps(r) + b"\n"

    with server.client() as c:
        assert c.post("/api/batches", json={"task": "echo", "items": big}).status_code == 413
        r = c.post("/api/batches", params={"task": "echo"}, content=big_ndjson, headers=NDJSON)
        assert r.status_code == 413
        assert "1000" in r.json()["detail"]
        # No Content-Length: the limit holds on the stream itself.
        r = c.post("/api/batches", params={"task": "echo"}, content=chunks(), headers=NDJSON)
        assert r.status_code == 413
        assert c.get("/api/batches").json()["data"] == []

        small = create(c, task="echo", close=False, items=[{"n": 1}])
        r = c.post(f"/api/batches/{small['id']}/items", content=big_ndjson, headers=NDJSON)
        assert r.status_code == 413
        assert c.post(f"/api/batches/{small['id']}/items", json=big).status_code == 413
        after = c.get(f"/api/batches/{small['id']}").json()
        assert after["counts"]["total"] == 1
        assert [b["id"] for b in c.get("/api/batches").json()["data"]] == [small["id"]]


# operations endpoints


def test_ops_endpoints_respond(server: Server) -> None:
    with server.client() as c:
        b = create(c, task="square", items=[{"n": 2}])
        wait_batch(c, b["id"])
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        health = anon.get("/healthz")
        metrics = anon.get("/metrics")
        docs = anon.get("/docs")
        spec = anon.get("/openapi.json")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE batchd_items_claimed_total counter" in metrics.text
    assert 'batchd_items_finished_total{status="succeeded"} 1.0' in metrics.text
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert {"/api/batches", "/api/batches/{batch_id}", "/api/batches/{batch_id}/results"} <= \
        set(paths)
    assert {"/v1/files", "/v1/batches", "/v1/messages/batches"} <= set(paths)  # the /v1 dialects
