"""Bad input gets a clear 4xx naming what was wrong, never a 500, on every backend.

CI runs this file on SQLite and on PostgreSQL (BATCHD_TEST_BACKEND=postgres), where
NUL characters, huge numbers and over-long text are the classic ways to a 500.
"""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.conftest import Server, scaled, wait_batch

pytestmark = pytest.mark.timeout(scaled(60))


def detail_locs(r: httpx.Response) -> list[list[object]]:
    return [e["loc"] for e in r.json()["detail"]]


def test_bad_input_nul_characters(server: Server) -> None:
    with server.client() as c:
        r = c.post("/api/keys", json={"tenant": "acme", "owner": "a\u0000b"})
        assert r.status_code == 422 and ["body", "owner"] in detail_locs(r)
        r = c.post("/api/batches", json={"task": "ec\u0000ho", "items": [1]})
        assert r.status_code == 422 and ["body", "task"] in detail_locs(r)
        r = c.post("/api/batches", params={"task": "echo", "runner": "x\u0000"},
                   content=b"{}\n", headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 422 and ["query", "runner"] in detail_locs(r)
        # Inside JSON data a NUL is just a character: stored and returned intact.
        r = c.post("/api/batches", json={"task": "echo", "metadata": {"k": "a\u0000b"},
                                         "items": [{"s": "x\u0000y"}]})
        assert r.status_code == 201, r.text
        b = wait_batch(c, r.json()["id"])
        assert b["metadata"] == {"k": "a\u0000b"}
        rows = [orjson.loads(x) for x in c.get(f"/api/batches/{b['id']}/results").text.split()]
        assert rows[0]["output"] == {"s": "x\u0000y"}
        slow = c.post("/api/batches", json={"task": "sleep", "items": [{"seconds": 30}]}).json()
        r = c.post(f"/api/batches/{slow['id']}/cancel", json={"reason": "st\u0000op"})
        assert r.status_code == 422 and ["body", "reason"] in detail_locs(r)


def test_bad_input_huge_numbers(server: Server) -> None:
    with server.client() as c:
        r = c.post("/api/batches", content=b'{"task": "echo", "priority": 1e400}',
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
        for field, value in [("priority", 10**30), ("parallelism", 10**30),
                             ("budget_usd", 1e300), ("max_attempts", 2**63),
                             ("records_per_item", 2**64), ("expires_after_s", 1e308)]:
            r = c.post("/api/batches", json={"task": "echo", field: value})
            assert r.status_code == 422, (field, r.text)
            assert ["body", field] in detail_locs(r)
        r = c.post("/api/batches", json={"task": "echo", "items": [{"n": 1}]})
        bid = r.json()["id"]
        # Cursors of both lists, on a batch that exists: the cursor itself is refused.
        for cursor in ["b" + "9" * 40, "s" + "9" * 40, "b\u00b2", "b-1", "s-1", "s\u00b2"]:
            for path in ("/api/batches", f"/api/batches/{bid}/items"):
                r = c.get(path, params={"cursor": cursor})
                assert r.status_code == 422, (cursor, path, r.text)
                assert detail_locs(r) == [["query", "cursor"]]
        for item_id in ["itm_" + "9" * 40, "itm_\u00b2", "itm_-5", "nope"]:
            assert c.get(f"/api/batches/{bid}/items/{item_id}").status_code == 404
        # Big numbers inside the data are data, handed to the task as they are.
        r = c.post("/api/batches", json={"task": "echo", "items": [{"n": 2**62}, {"x": 1e300}]})
        assert r.status_code == 201
        assert wait_batch(c, r.json()["id"])["status"] == "completed"


def test_bad_input_overlong_text(server: Server) -> None:
    with server.client() as c:
        long = "a" * 100_000
        for field in ("task", "version", "runner"):
            body = {"task": "echo", field: long}
            r = c.post("/api/batches", json=body)
            assert r.status_code == 422 and ["body", field] in detail_locs(r)
        r = c.post("/api/batches", json={"task": "echo", "metadata": {"k": long}})
        assert r.status_code == 422 and ["body", "metadata"] in detail_locs(r)
        r = c.post("/api/batches", json={"task": "echo", "items": [1]},
                   headers={"Idempotency-Key": "k" * 1000})
        assert r.status_code == 422
        r = c.post("/api/keys", json={"tenant": "t" * 1000})
        assert r.status_code == 422 and ["body", "tenant"] in detail_locs(r)
        # A long string inside an item is fine: items are data.
        r = c.post("/api/batches", json={"task": "echo", "items": [{"text": long * 10}]})
        assert r.status_code == 201
        b = wait_batch(c, r.json()["id"])
        assert b["status"] == "completed"
        got = c.get(f"/api/batches/{b['id']}/results").json()
        assert len(got["output"]["text"]) == 1_000_000
