"""Tenants, roles and keys: who may see and touch what."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, scaled, wait_batch

pytestmark = pytest.mark.timeout(scaled(60))


MISSING_BATCH = "bat_000000000000000000000000"
MISSING_ITEM = "itm_999999999"


def probe(
    c: httpx.Client, batch_id: str, item_id: str, own_batch_id: str
) -> list[tuple[str, httpx.Response]]:
    """Every endpoint that takes a batch or item id, called on ``batch_id``/``item_id``."""
    base = f"/api/batches/{batch_id}"
    ndjson = {"Content-Type": "application/x-ndjson"}
    return [
        ("get batch", c.get(base)),
        ("list items", c.get(f"{base}/items")),
        ("list failed items", c.get(f"{base}/items", params={"status": "failed"})),
        ("get item", c.get(f"{base}/items/{item_id}")),
        ("get item via own batch", c.get(f"/api/batches/{own_batch_id}/items/{item_id}")),
        ("results", c.get(f"{base}/results")),
        ("results csv", c.get(f"{base}/results", params={"format": "csv"})),
        ("events", c.get(f"{base}/events")),
        ("add items", c.post(f"{base}/items", json=[{"n": 9}])),
        ("add items ndjson", c.post(f"{base}/items", content=b'{"n": 9}\n', headers=ndjson)),
        ("close", c.post(f"{base}/close")),
        ("cancel", c.post(f"{base}/cancel", json={"reason": "mine now"})),
    ]


def test_tenant_isolation_hides_other_tenants_batches_everywhere(server: Server) -> None:
    with server.client(server.new_key("tenant-a")) as a, \
            server.client(server.new_key("tenant-b")) as b:
        r = a.post("/api/batches", json={"task": "square", "close": False,
                                         "items": [{"n": 1}, {"n": 2}]})
        assert r.status_code == 201, r.text
        bid = r.json()["id"]
        item_id = a.get(f"/api/batches/{bid}/items").json()["data"][0]["id"]
        own = b.post("/api/batches", json={"task": "square", "items": [{"n": 3}]}).json()["id"]

        seen = probe(b, bid, item_id, own)
        missing = probe(b, MISSING_BATCH, MISSING_ITEM, own)
        for (what, got), (_, absent) in zip(seen, missing, strict=True):
            assert got.status_code == 404, (what, got.text)
            # Indistinguishable from an id that does not exist at all.
            assert got.text.replace(bid, "B").replace(item_id, "I") == \
                absent.text.replace(MISSING_BATCH, "B").replace(MISSING_ITEM, "I"), what
        assert bid not in {x["id"] for x in b.get("/api/batches").json()["data"]}

        # Nothing B tried changed A's batch: still open, two items, then runs normally.
        still = a.get(f"/api/batches/{bid}").json()
        assert still["status"] == "open"
        assert still["counts"]["total"] == 2 and still["error"] is None
        assert a.post(f"/api/batches/{bid}/close").status_code == 200
        done = wait_batch(a, bid)
        assert done["status"] == "completed" and done["counts"]["succeeded"] == 2


def test_role_user_sees_own_batches_and_supervisor_sees_the_tenants(server: Server) -> None:
    with server.client(server.new_key("acme", role="user")) as alice, \
            server.client(server.new_key("acme", role="user")) as bob, \
            server.client(server.new_key("acme", role="supervisor")) as boss:
        r = alice.post("/api/batches", json={"task": "square", "items": [{"n": 4}]})
        assert r.status_code == 201, r.text
        bid = r.json()["id"]
        mine = bob.post("/api/batches", json={"task": "square", "items": [{"n": 5}]}).json()["id"]

        assert bob.get(f"/api/batches/{bid}").status_code == 404
        assert bob.get(f"/api/batches/{bid}/items").status_code == 404
        assert bob.post(f"/api/batches/{bid}/cancel").status_code == 404
        assert [x["id"] for x in bob.get("/api/batches").json()["data"]] == [mine]
        assert [x["id"] for x in alice.get("/api/batches").json()["data"]] == [bid]

        assert boss.get(f"/api/batches/{bid}").status_code == 200
        assert {x["id"] for x in boss.get("/api/batches").json()["data"]} == {bid, mine}
        assert wait_batch(boss, bid)["status"] == "completed"
        assert boss.get(f"/api/batches/{bid}/results").json()["output"] == {
            "n": 4, "square": 16, "attempt": 1}


def stored_bytes(database_url: str) -> bytes:
    """Everything the database holds: the SQLite files, or a PostgreSQL dump."""
    if database_url.startswith("postgresql:"):
        dump = subprocess.run(["pg_dump", "--data-only", database_url], capture_output=True,
                              check=True)
        assert b"api_keys" in dump.stdout
        return dump.stdout
    db = Path(database_url.removeprefix("sqlite:///"))
    assert db.exists()
    files = [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()]
    return b"".join(p.read_bytes() for p in files)


def test_keys_are_stored_only_as_hashes(server: Server, tmp_path: Path) -> None:
    raw = [server.new_key("t1"), server.new_key("t2", role="supervisor"),
           server.new_key("t1", role="admin"), server.admin_key]
    # Use every key once, so nothing is only in memory.
    for key in raw:
        with server.client(key) as c:
            assert c.get("/api/batches").status_code == 200
    stored = stored_bytes(server.database_url)
    for key in raw:
        assert key.encode() not in stored
    # The shown prefix of a key is stored; the rest of it is not.
    for key in raw:
        assert key[12:].encode() not in stored


def test_auth_rejects_missing_and_bad_keys(server: Server) -> None:
    with httpx.Client(base_url=server.url) as anon:
        r = anon.get("/api/batches")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert anon.get("/api/batches", headers={"Authorization": "Bearer bd_nope"}).status_code \
            == 401
        assert anon.get("/api/batches", headers={"X-API-Key": "bd_nope"}).status_code == 401
        assert anon.post("/api/batches", json={"task": "square", "items": [{"n": 1}]}) \
            .status_code == 401
    key = server.new_key("t1")
    with httpx.Client(base_url=server.url, headers={"X-API-Key": key}) as c:
        assert c.get("/api/batches").status_code == 200


def test_only_admins_manage_keys(server: Server) -> None:
    user = server.new_key("t1", role="user")
    supervisor = server.new_key("t1", role="supervisor")
    for key in (user, supervisor):
        with server.client(key) as c:
            assert c.post("/api/keys", json={"tenant": "t1", "role": "admin"}).status_code == 403
            assert c.post("/api/tenants", json={"name": "t9"}).status_code == 403
            assert c.get("/api/keys").status_code == 403
    with server.client() as admin:
        listed = admin.get("/api/keys").json()["data"]
        assert sorted(k["role"] for k in listed) == ["operator", "supervisor", "user"]
        assert all("key" not in k for k in listed)
        victim = next(k for k in listed if k["role"] == "user")
        assert admin.delete(f"/api/keys/{victim['id']}").status_code == 204
    with server.client(user) as c:
        assert c.get("/api/batches").status_code == 401
