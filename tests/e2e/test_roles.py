"""Roles across tenants: a tenant's admin manages its own tenant only; the operator (the
bootstrap key) manages tenants and every tenant's keys."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Server, scaled

pytestmark = pytest.mark.timeout(scaled(60))


def key_of(c: httpx.Client, body: dict[str, object]) -> dict[str, object]:
    r = c.post("/api/keys", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_bootstrap_key_is_the_operator(server: Server) -> None:
    with server.client() as op:
        listed = op.get("/api/keys").json()["data"]
    [me] = [k for k in listed if k["tenant"] == "default"]
    assert me["role"] == "operator" and me["owner"] == "admin"
    assert me["limits"] == {"max_batch_size": -1, "api_calls": -1, "items": -1, "cost_usd": -1}


def test_tenant_admin_cannot_touch_another_tenants_keys(server: Server) -> None:
    a_user = server.new_key("tenant-a", role="user")
    server.new_key("tenant-a", role="admin")
    with server.client() as op:
        a_keys = {k["id"]: k for k in op.get("/api/keys").json()["data"]
                  if k["tenant"] == "tenant-a"}
    victim = next(k for k in a_keys.values() if k["role"] == "user")
    with server.client(server.new_key("tenant-b", role="admin")) as b_admin:
        listed = b_admin.get("/api/keys").json()["data"]
        assert {k["tenant"] for k in listed} == {"tenant-b"}
        assert not set(a_keys) & {k["id"] for k in listed}

        # Another tenant's key is as missing as a key that never existed.
        gone = b_admin.delete(f"/api/keys/{victim['id']}")
        missing = b_admin.delete("/api/keys/key_000000000000000000000000")
        assert gone.status_code == missing.status_code == 404
        assert gone.json() == missing.json()

        for tenant in ("tenant-a", "no-such-tenant", "default"):
            r = b_admin.post("/api/keys", json={"tenant": tenant, "role": "supervisor"})
            assert r.status_code == 403, (tenant, r.text)
        assert b_admin.post("/api/tenants", json={"name": "tenant-c"}).status_code == 403

    with server.client() as op:
        after = {k["id"]: k for k in op.get("/api/keys").json()["data"]}
    assert after[victim["id"]]["revoked_at"] is None
    assert {k["tenant"] for k in after.values()} == {"default", "tenant-a", "tenant-b"}
    with server.client(a_user) as a:
        assert a.get("/api/batches").status_code == 200


def test_tenant_admin_gives_no_more_than_it_has(server: Server) -> None:
    admin = server.new_key("acme", role="admin", tier="pro")
    with server.client(admin) as c:
        for body in ({"tenant": "acme", "role": "operator"},
                     {"tenant": "acme", "role": "user", "tier": "enterprise"},
                     {"tenant": "acme", "role": "user", "limits": {"items": -1}},
                     {"tenant": "acme", "role": "user", "limits": {"api_calls": 100_001}}):
            r = c.post("/api/keys", json=body)
            assert r.status_code == 403, (body, r.text)
        made = key_of(c, {"tenant": "acme", "role": "admin", "limits": {"items": 10}})
        assert (made["tenant"], made["role"], made["tier"]) == ("acme", "admin", "pro")
        assert key_of(c, {"tenant": "acme", "role": "supervisor", "tier": "free"})["tier"] \
            == "free"
        # The operator's key lives in tenant "default": an admin there cannot revoke it.
    default_admin = server.new_key("default", role="admin")
    with server.client() as op:
        op_id = next(k["id"] for k in op.get("/api/keys").json()["data"]
                     if k["role"] == "operator")
    with server.client(default_admin) as c:
        assert c.delete(f"/api/keys/{op_id}").status_code == 403
    with server.client() as op:
        assert op.get("/api/keys").status_code == 200


def test_tenant_admin_manages_its_own_tenants_keys(server: Server) -> None:
    with server.client(server.new_key("acme", role="admin")) as admin:
        made = key_of(admin, {"tenant": "acme", "role": "supervisor"})
        assert made["tenant"] == "acme"
        assert made["id"] in {k["id"] for k in admin.get("/api/keys").json()["data"]}
        with server.client(str(made["key"])) as sup:
            assert sup.get("/api/batches").status_code == 200
        assert admin.delete(f"/api/keys/{made['id']}").status_code == 204
        assert admin.delete(f"/api/keys/{made['id']}").status_code == 404
        with server.client(str(made["key"])) as sup:
            assert sup.get("/api/batches").status_code == 401


def test_key_minted_by_tenant_admin_cannot_read_another_tenants_batches(server: Server) -> None:
    with server.client(server.new_key("tenant-a")) as a:
        r = a.post("/api/batches", json={"task": "square", "items": [{"n": 2}]})
        assert r.status_code == 201, r.text
        bid = r.json()["id"]
    with server.client(server.new_key("tenant-b", role="admin")) as b_admin:
        assert b_admin.post("/api/keys", json={"tenant": "tenant-a", "role": "supervisor"}) \
            .status_code == 403
        minted = key_of(b_admin, {"tenant": "tenant-b", "role": "supervisor"})
        assert b_admin.get(f"/api/batches/{bid}").status_code == 404
    with server.client(str(minted["key"])) as sup:
        assert sup.get(f"/api/batches/{bid}").status_code == 404
        assert bid not in {x["id"] for x in sup.get("/api/batches").json()["data"]}


def test_operator_manages_every_tenant(server: Server) -> None:
    with server.client() as op:
        r = op.post("/api/tenants", json={"name": "globex", "tier": "basic"})
        assert r.status_code == 201, r.text
        made = key_of(op, {"tenant": "globex", "role": "admin"})
        other_op = key_of(op, {"tenant": "default", "role": "operator"})
        assert other_op["role"] == "operator"
        assert {"globex", "default"} <= {k["tenant"] for k in op.get("/api/keys").json()["data"]}
        assert op.delete(f"/api/keys/{made['id']}").status_code == 204
    with server.client(str(other_op["key"])) as op2:
        # An operator made by the operator can do the same, tenants included.
        assert op2.post("/api/tenants", json={"name": "initech"}).status_code == 201
        assert key_of(op2, {"tenant": "initech", "role": "user"})["tenant"] == "initech"


def test_tenant_admin_cannot_define_tasks_the_operator_can(server: Server) -> None:
    body = {"name": "echo_http", "version": "1.0.0", "kind": "http",
            "input_schema": {"type": "object"},
            "config": {"url": "https://example.com/echo"}}
    with server.client(server.new_key("acme", role="admin")) as admin:
        r = admin.post("/api/tasks", json=body)
        assert r.status_code == 403, r.text
