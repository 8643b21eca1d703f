"""The results export (``GET /api/batches/{id}/results``) writes, byte for byte, what
the general path writes: the export writers fed the row dicts of every finished item
(``core.paging.records_of`` of its stored values, read here through the items API),
while the server's fast path splices the stored JSON as it is. On the suite's backend
(BATCHD_TEST_BACKEND=postgres: PostgreSQL)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from batchd.core import paging
from batchd.domain.models import item_rowid
from batchd.domain.records import ExportRow
from batchd.export import exporter_for
from tests.conftest import Server, scaled, wait_batch, wait_until

pytestmark = pytest.mark.timeout(scaled(180))

FORMATS = ("jsonl", "json", "csv", "parquet")
FINISHED = {"succeeded", "failed", "cancelled"}
NDJSON = {"Content-Type": "application/x-ndjson"}

# Values whose JSON or CSV text is easy to get wrong: unicode, nesting, nulls, numbers at
# the edges of what orjson writes, CSV's separators and quotes, '%' (the JSON writer's
# template), a '{' in a string (a shape's count of braces), keys needing quotes.
TRICKY: list[Any] = [
    {"i": 1, "name": "plain"},
    {"name": "swapped", "i": 2},
    {"i": 3, "name": "comma, inside"},
    {"i": 4, "name": 'a "quoted" word'},
    {"i": 5, "name": "line\nbreak and\r\ncarriage return"},
    {"i": 6, "name": "tab\tand \u0001 control"},
    {"i": 7, "name": "日本語 ünïcödé 😀 \u2028"},
    {"i": 8, "name": ""},
    {"i": 9, "name": None},
    {"i": 10, "name": "100% %s %%"},
    {"i": 11, "name": "{"},
    {"i": {"nested": {"deep": [1, {"x": None}], "n": 2**63 - 1}}, "name": "obj"},
    {"i": {}, "name": []},
    {"big": -(2**63), "max": 2**63 - 1, "f": 1.7976931348623157e308, "tiny": 5e-324,
     "neg0": -0.0, "e": 1e16, "third": 1 / 3},
    {"k,ey": 1, 'q"k': 2, "dot.ted": 3},
    {"a": "[1],[2]", "b": "null", "c": True, "d": False},
    [1, "two", None, [3]],
    "just a string, with a comma",
    12345,
    2.5,
    True,
    None,
]


def finished_rows(c: httpx.Client, batch_id: str, *, multi: bool) -> list[dict[str, Any]]:
    """The general path's rows: records_of each finished item, read through the items API."""
    rows: list[dict[str, Any]] = []
    rec0, cursor = 0, None
    while True:
        r = c.get(f"/api/batches/{batch_id}/items",
                  params={"limit": 1000, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = orjson.loads(r.content)
        for it in body["data"]:
            n = len(it["input"]) if multi else 1
            if it["status"] in FINISHED:
                rowid = item_rowid(it["id"])
                assert rowid is not None
                row = ExportRow(
                    rowid=rowid, seq=it["seq"], rec0=rec0, n_records=n, status=it["status"],
                    input=orjson.dumps(it["input"]),
                    output=None if it["output"] is None else orjson.dumps(it["output"]),
                    error=it["error"], usage=it["usage"],
                )
                rows.extend(paging.records_of(row, multi))
            rec0 += n
        cursor = body["next_cursor"]
        if not cursor:
            return rows


def general(fmt: str, rows: list[dict[str, Any]]) -> bytes:
    """What the writers' dict path makes of ``rows``."""

    async def pages() -> AsyncIterator[list[dict[str, Any]]]:
        for start in range(0, len(rows), 700):
            yield rows[start : start + 700]

    async def run() -> bytes:
        return b"".join([chunk async for chunk in exporter_for(fmt).stream(pages)])

    return asyncio.run(run())


def assert_exports_as_general_path(c: httpx.Client, batch_id: str, *, multi: bool) -> None:
    rows = finished_rows(c, batch_id, multi=multi)
    assert rows
    for fmt in FORMATS:
        r = c.get(f"/api/batches/{batch_id}/results", params={"format": fmt})
        assert r.status_code == 200, r.text
        want = general(fmt, rows)
        if r.content != want:  # the first line that differs, rather than megabytes
            pairs = zip(r.content.split(b"\n"), want.split(b"\n"), strict=False)
            line, got, wanted = next((n, a, b) for n, (a, b) in enumerate(pairs) if a != b)
            pytest.fail(f"{fmt} line {line}:\n  got  {got[:400]!r}\n  want {wanted[:400]!r}")


def create(c: httpx.Client, **body: Any) -> str:
    r = c.post("/api/batches", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_export_results_tricky_values_match_the_general_path(server: Server) -> None:
    with server.client() as c:
        batch = create(c, task="echo", items=TRICKY * 3)
        assert wait_batch(c, batch)["status"] == "completed"
        assert_exports_as_general_path(c, batch, multi=False)


def test_export_results_failed_and_cancelled_items_match_the_general_path(
    server: Server,
) -> None:
    with server.client() as c:
        failing = create(c, task="fail", max_attempts=1, items=[
            {"value": v, "fail": n % 3 == 1} for n, v in enumerate(TRICKY)])
        # Slow items one at a time, cancelled: the queued ones end cancelled, unrun.
        cancelled = create(c, task="tracked", parallelism=1,
                           items=[{"n": n, "seconds": 0.3} for n in range(6)])
        r = c.post(f"/api/batches/{cancelled}/cancel", json={"reason": "enough, thanks"})
        assert r.status_code == 200, r.text
        assert wait_batch(c, failing)["status"] == "partial"
        assert wait_batch(c, cancelled)["status"] == "cancelled"
        # The batch ends before the item it was running has stopped: wait for that too.
        wait_until(lambda: c.get(f"/api/batches/{cancelled}").json()["counts"]["running"] == 0,
                   what="the running item to stop")
        assert_exports_as_general_path(c, failing, multi=False)
        assert_exports_as_general_path(c, cancelled, multi=False)


def test_export_results_of_several_records_per_item_match_the_general_path(
    server: Server,
) -> None:
    with server.client() as c:
        echoed = create(c, task="echo", records_per_item=4, items=TRICKY * 2)
        failing = create(c, task="fail", records_per_item=3, max_attempts=1, items=[
            {"value": v, "fail": n == 4} for n, v in enumerate(TRICKY)])
        assert wait_batch(c, echoed)["status"] == "completed"
        assert wait_batch(c, failing)["status"] == "partial"
        assert_exports_as_general_path(c, echoed, multi=True)
        assert_exports_as_general_path(c, failing, multi=True)


def test_export_results_over_many_pages_match_the_general_path(server: Server) -> None:
    n = 20_000  # past two pages of the export (EXPORT_PAGE_RECORDS)
    body = b"".join(orjson.dumps({"i": i, "name": f"item {i}", "even": i % 2 == 0}) + b"\n"
                    for i in range(n))
    with server.client() as c:
        r = c.post("/api/batches", params={"task": "echo", "parallelism": 10_000},
                   content=body, headers=NDJSON)
        assert r.status_code == 201, r.text
        batch = r.json()["id"]
        assert wait_batch(c, batch, timeout_s=120)["status"] == "completed"
        assert_exports_as_general_path(c, batch, multi=False)
        table = list(csv.reader(io.StringIO(
            c.get(f"/api/batches/{batch}/results", params={"format": "csv"}).text)))
    assert table[0] == ["item_id", "seq", "status", "input.i", "input.name", "input.even",
                        "output.i", "output.name", "output.even", "usage.tokens_in",
                        "usage.tokens_out", "usage.cost_usd", "error"]
    assert [row[1] for row in table[1:]] == [str(i) for i in range(n)]


def test_export_results_of_a_batch_fed_around_another_match_the_general_path(
    server: Server,
) -> None:
    # The items appended after another batch's have ids past that batch's: the id range
    # of the first one's page holds the other's items too (the page goes the general way).
    with server.client() as c:
        fed = create(c, task="echo", close=False, items=TRICKY)
        other = create(c, task="echo", items=TRICKY)
        r = c.post(f"/api/batches/{fed}/items", json=TRICKY)
        assert r.status_code in (200, 201), r.text
        assert c.post(f"/api/batches/{fed}/close").status_code == 200
        assert wait_batch(c, fed)["status"] == "completed"
        assert wait_batch(c, other)["status"] == "completed"
        assert_exports_as_general_path(c, fed, multi=False)
        assert_exports_as_general_path(c, other, multi=False)


def usage_sums(rows: list[dict[str, Any]]) -> tuple[int, int, float]:
    return (sum(int(r["usage.tokens_in"]) for r in rows),
            sum(int(r["usage.tokens_out"]) for r in rows),
            sum(float(r["usage.cost_usd"]) for r in rows))


def test_export_results_carry_each_records_usage_in_every_format(server: Server) -> None:
    # One record per item: each its item's usage. Several: the item's usage shared by its
    # records. Either way a column's sum is the batch's.
    with server.client() as c:
        single = create(c, task="overrun", items=[{"cost_usd": n / 100} for n in range(1, 6)])
        multi = create(c, task="cpu_sum", records_per_item=3,
                       items=[{"n": n} for n in range(7)])
        assert wait_batch(c, single)["status"] == "completed"
        done = wait_batch(c, multi)
        assert done["status"] == "completed"
        assert_exports_as_general_path(c, single, multi=False)
        assert_exports_as_general_path(c, multi, multi=True)

        lines = [orjson.loads(x) for x in
                 c.get(f"/api/batches/{single}/results").content.splitlines()]
        assert [r["usage"] for r in lines] == [
            {"tokens_in": 0, "tokens_out": 100, "cost_usd": n / 100} for n in range(1, 6)]
        table = list(csv.DictReader(io.StringIO(
            c.get(f"/api/batches/{multi}/results", params={"format": "csv"}).text)))
        # 7 records in items of 3, 3, 1: each item 0.5 USD and a token per record
        assert [r["usage.tokens_in"] for r in table] == ["1"] * 7
        assert [float(r["usage.cost_usd"]) for r in table] == pytest.approx(
            [0.5 / 3] * 6 + [0.5])
        assert usage_sums(table) == (7, 0, pytest.approx(1.5))
        assert (done["cost"]["tokens_in"], done["cost"]["actual_usd"]) == (7, pytest.approx(1.5))

