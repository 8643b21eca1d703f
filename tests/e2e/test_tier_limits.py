"""A key's tier binds every dialect: native and Spark batches past the tier's batch size
or the month's item quota are refused, each in its own error shape, and nothing of them
is stored or counted; one just under is accepted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, scaled
from tests.e2e.test_simulations import Clock, in_process
from tests.e2e.test_spark import TASKS, base, sales_chunk

pytestmark = pytest.mark.timeout(scaled(120))


def new_key(server: Server, tenant: str, **limits: float) -> str:
    with server.client() as admin:
        r = admin.post("/api/keys", json={"tenant": tenant, "tier": "free", "limits": limits})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])


def items(n: int) -> list[dict[str, int]]:
    return [{"n": i} for i in range(n)]


def usage(c: httpx.Client) -> dict[str, Any]:
    r = c.get("/api/usage")
    assert r.status_code == 200, r.text
    return dict(r.json()["usage"])


def native_refused(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and all(w in detail for w in words), detail


def spark_refused(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert (err["status"], err["code"]) == (status, code) and err["message"], err
    return dict(err)


def test_native_batch_over_the_tier_batch_size_is_refused(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    with server.client(new_key(server, "acme", max_batch_size=3)) as c:
        native_refused(c.post("/api/batches", json={"task": "square", "items": items(4)}),
                       400, "at most 3 items", "free tier")
        ndjson = b"".join(b'{"n": %d}\n' % i for i in range(4))
        native_refused(c.post("/api/batches", params={"task": "square"}, content=ndjson,
                              headers={"Content-Type": "application/x-ndjson"}), 400,
                       "at most 3 items")
        assert c.get("/api/batches").json()["data"] == []  # nothing was created

        opened = c.post("/api/batches", json={"task": "square", "items": items(2),
                                              "close": False})
        assert opened.status_code == 201, opened.text
        bid = opened.json()["id"]
        native_refused(c.post(f"/api/batches/{bid}/items", json=items(2)), 400,
                       "would hold 4")
        assert c.get(f"/api/batches/{bid}").json()["counts"]["total"] == 2
        just_fits = c.post(f"/api/batches/{bid}/items", json=items(1))
        assert just_fits.status_code == 200, just_fits.text
        assert just_fits.json()["counts"]["total"] == 3
        assert usage(c)["items_submitted"] == 3


def test_native_batch_over_the_monthly_item_quota_is_refused(
    make_server: Callable[..., Server],
) -> None:
    server = make_server()
    with server.client(new_key(server, "acme", items=5, max_batch_size=10)) as c:
        first = c.post("/api/batches", json={"task": "square", "items": items(4),
                                             "close": False})
        assert first.status_code == 201, first.text
        bid = first.json()["id"]
        native_refused(c.post("/api/batches", json={"task": "square", "items": items(2)}),
                       429, "monthly items quota", "6 of 5")
        native_refused(c.post(f"/api/batches/{bid}/items", json=items(2)), 429,
                       "monthly items quota")
        # refused in the transaction that would have metered them: nothing counted
        assert usage(c)["items_submitted"] == 4
        assert [b["id"] for b in c.get("/api/batches").json()["data"]] == [bid]
        last = c.post("/api/batches", json={"task": "square", "items": items(1)})
        assert last.status_code == 201, last.text  # just under: 5 of 5
        assert usage(c)["items_submitted"] == 5


def test_spark_chunks_over_the_tier_batch_size_are_refused(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(tasks=TASKS)
    with server.client(new_key(server, "acme", max_batch_size=3)) as c:
        created = c.post(base("acme"), json={"service": "myfolder/SalesExample"})
        assert created.status_code == 200, created.text
        bid = created.json()["id"]
        chunks = f"{base('acme')}/{bid}/chunks"
        err = spark_refused(c.post(chunks, json={"chunks": [
            sales_chunk(f"c{i}", i * 10, 2) for i in range(4)]}), 400, "batch_too_large")
        assert err["details"] == {"limit": 3, "size": 4, "tier": "free"}
        status = c.get(f"{base('acme')}/{bid}/status").json()
        assert status["chunks_submitted"] == 0  # nothing of the push was stored
        ok = c.post(chunks, json={"chunks": [sales_chunk(f"c{i}", i * 10, 2)
                                             for i in range(3)]})
        assert ok.status_code == 200, ok.text
        assert ok.json()["chunks_submitted"] == 3  # just fits
        spark_refused(c.post(chunks, json={"chunks": [sales_chunk("late", 99, 1)]}), 400,
                      "batch_too_large")


def test_spark_chunks_over_the_monthly_item_quota_are_refused(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(tasks=TASKS)
    with server.client(new_key(server, "acme", items=3)) as c:
        bid = c.post(base("acme"), json={"service": "myfolder/SalesExample"}).json()["id"]
        chunks = f"{base('acme')}/{bid}/chunks"
        ok = c.post(chunks, json={"chunks": [sales_chunk("a", 0, 2), sales_chunk("b", 2, 2)]})
        assert ok.status_code == 200, ok.text
        err = spark_refused(c.post(chunks, json={"chunks": [
            sales_chunk("c", 4, 1), sales_chunk("d", 5, 1)]}), 429, "quota_exceeded")
        assert err["details"] == {"quota": "items", "limit": 3, "value": 4}
        assert c.get(f"{base('acme')}/{bid}/status").json()["chunks_submitted"] == 2
        assert usage(c)["items_submitted"] == 2
        last = c.post(chunks, json={"chunks": [sales_chunk("c", 4, 1)]})
        assert last.status_code == 200, last.text  # just under: 3 of 3
        assert usage(c)["items_submitted"] == 3


async def test_native_item_quota_is_monthly(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 1, 30, 12, tzinfo=UTC))
    async with in_process(tmp_path, clock) as c:
        r = await c.post("/api/keys", json={"tenant": "acme", "tier": "free",
                                            "limits": {"items": 2}})
        h = {"X-API-Key": r.json()["key"]}
        body = {"task": "square", "items": items(2)}
        assert (await c.post("/api/batches", json=body, headers=h)).status_code == 201
        refused = await c.post("/api/batches", json=body, headers=h)
        assert refused.status_code == 429, refused.text
        clock.move_to(datetime(2026, 2, 1, tzinfo=UTC))  # a new month, a fresh quota
        assert (await c.post("/api/batches", json=body, headers=h)).status_code == 201
        u = (await c.get("/api/usage", params={"period": "2026-01"}, headers=h)).json()
        assert u["usage"]["items_submitted"] == 2
