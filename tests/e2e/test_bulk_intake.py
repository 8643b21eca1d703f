"""Bulk intake through the native API: whatever the body (a JSON array, NDJSON, CSV) and
however its items are held on the way in (packed into one array, or one by one), every
item reads back as sent, in order, and the batch's estimate counts each of them."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Server, scaled
from tests.unit.test_bulk_intake import TRICKY

pytestmark = pytest.mark.timeout(scaled(120))
NDJSON = {"Content-Type": "application/x-ndjson"}
CSV = {"Content-Type": "text/csv"}


def inputs(c: httpx.Client, batch_id: str) -> list[Any]:
    got: list[Any] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = c.get(f"/api/batches/{batch_id}/items", params=params).json()
        got += [(i["seq"], i["input"]) for i in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            return [value for _, value in sorted(got, key=lambda s: s[0])]


def test_items_read_back_as_sent_whatever_the_body(make_server: Any) -> None:
    server: Server = make_server(run_worker="false")
    first = [*TRICKY * 700, {"last": True}]
    scalars = ["a string", 42, 1.5, None, True, {"mixed": [1]}]
    lines = [{"line": i, "t": "caf\u00e9"} for i in range(3000)]
    with server.client() as c:
        r = c.post("/api/batches", json={"task": "echo", "items": first, "close": False})
        assert r.status_code == 201, r.text
        batch_id = r.json()["id"]

        assert c.post(f"/api/batches/{batch_id}/items", json=scalars).status_code == 200
        body = b"".join(orjson.dumps(x) + b"\n" for x in lines)
        assert c.post(f"/api/batches/{batch_id}/items", content=body,
                      headers=NDJSON).status_code == 200
        r = c.post(f"/api/batches/{batch_id}/items", content=b"a.b,c\n1,x\n2.5,\n",
                   headers=CSV)
        assert r.status_code == 200, r.text

        sent = [*first, *scalars, *lines, {"a": {"b": 1}, "c": "x"}, {"a": {"b": 2.5}, "c": None}]
        batch = r.json()
        assert batch["counts"]["total"] == len(sent)
        assert batch["cost"]["estimated_usd"] == pytest.approx(0.0)
        assert inputs(c, batch_id) == sent


def test_a_priced_batch_estimates_every_packed_item(make_server: Any) -> None:
    server: Server = make_server(run_worker="false")
    records = [{"seconds": 0, "i": i} for i in range(12_345)]
    with server.client() as c:
        r = c.post("/api/batches", json={"task": "tracked", "items": records})
        assert r.status_code == 201, r.text
        batch = r.json()

        assert batch["counts"]["total"] == len(records)
        assert batch["cost"]["estimated_usd"] == pytest.approx(0.01 * len(records))
        assert inputs(c, batch["id"]) == records
