"""One JSON policy for every dialect: each bad body is a 4xx in the dialect's own error
shape naming the place (a path, a line, a row or a byte offset); never a 5xx, never a
value stored changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from batchd.domain import jsonpolicy
from tests.conftest import Server, scaled

pytestmark = pytest.mark.timeout(scaled(120))

TASKS = "tests.support.tasks,tests.support.taskrun_tasks"
JSON = {"Content-Type": "application/json"}
DEEP = b"[" * 10_000 + b"]" * 10_000
# (name, the bad JSON value, what the message must say besides the place)
BAD_VALUES: list[tuple[str, bytes, str]] = [
    ("nan", b"NaN", "NaN"),
    ("infinity", b"Infinity", "Infinity"),
    ("minus-infinity", b"-Infinity", "Infinity"),
    ("overflow", b"1e400", "1e400"),
    ("bigint", b"123456789012345678901234567890", "64-bit"),
    ("surrogate", b'"\\ud800"', "surrogate"),
    ("utf8", b'"ok\xff"', "UTF-8"),
    ("deep", DEEP, "limit of 64 levels"),
]


def body_with(template: bytes, value: bytes) -> bytes:
    return template.replace(b"@", value)


def assert_refused(r: httpx.Response, place: str, says: str) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    text = r.text
    detail = r.json().get("detail")
    if isinstance(detail, list):  # the place is the loc, after "body" (and an NDJSON line)
        text += " ".join(jsonpolicy.render_path(d["loc"][1:]) for d in detail)
    assert place in text, (place, text[:500])
    assert says in text, (says, text[:500])


def native_shape(r: httpx.Response) -> list[dict[str, Any]]:
    detail = r.json()["detail"]
    assert isinstance(detail, list) and {"loc", "msg", "type"} <= set(detail[0])
    return detail  # type: ignore[no-any-return]


def place_of(name: str, path: str) -> str:
    """Where the message points: the path, or the byte offset for invalid UTF-8."""
    return "byte" if name == "utf8" else path




@pytest.fixture
def server_with_tasks(make_server: Callable[..., Server]) -> Server:
    return make_server(tasks=TASKS)


@pytest.mark.parametrize(("name", "value", "says"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_json_policy_every_dialect_refuses_naming_the_place(
    server_with_tasks: Server, name: str, value: bytes, says: str
) -> None:
    s = server_with_tasks
    key = s.new_key("acme", role="admin")
    with s.client(key) as c:
        # native, JSON body read by the route
        r = c.post("/api/batches", headers=JSON,
                   content=body_with(b'{"task": "echo", "items": [{"x": @}]}', value))
        assert_refused(r, place_of(name, "items[0].x"), says)
        loc = native_shape(r)[0]["loc"]
        assert name == "utf8" or loc[:4] == ["body", "items", 0, "x"]
        # native, body parsed by FastAPI into a model
        r = c.post("/api/keys", headers=JSON,
                   content=body_with(b'{"tenant": "acme", "owner": @}', value))
        assert_refused(r, place_of(name, "owner"), says)
        native_shape(r)
        # native NDJSON and CSV uploads name the line or row
        r = c.post("/api/batches", params={"task": "echo"},
                   headers={"Content-Type": "application/x-ndjson"},
                   content=b'{"x": 1}\n' + body_with(b'{"x": @}\n', value))
        assert_refused(r, place_of(name, "[1]"), says)  # loc ["body", 1, …]: the 2nd line
        assert native_shape(r)[0]["loc"][:2] == ["body", 1]
    # the AI queue: FastAPI's detail list
    with s.client(key) as c:
        r = c.post("/api/v1/batch/enqueue", headers=JSON,
                   content=body_with(b'{"job_type": "risk_report", "payload": {"x": @}}', value))
        assert_refused(r, place_of(name, "payload.x"), says)
        assert name == "utf8" or native_shape(r)[0]["loc"][:3] == ["body", "payload", "x"]
    # Simulations: {"error", "message", "request_id"}
    with httpx.Client(base_url=s.url, timeout=60, headers={"X-API-Key": key, **JSON}) as c:
        r = c.post("/simulations/batch",
                   content=body_with(b'{"simulations": [{"template_id": @}]}', value))
        assert_refused(r, place_of(name, "simulations[0].template_id"), says)
        assert r.json()["error"] == "ValidationError" and r.json()["request_id"]
    # task runs: {"detail": …}
    with httpx.Client(base_url=s.url, timeout=60, headers={"x-api-key": key, **JSON}) as c:
        r = c.post("/v0/tasks/company_profile/batches", content=body_with(
            b'{"task_run_requests": [{"arguments": {"company": @}}]}', value))
        assert_refused(r, place_of(name, "task_run_requests[0].arguments.company"), says)
        native_shape(r)
    # Spark: {"error": {status, code, message, details}}
    with s.client(key) as c:
        r = c.post("/acme/api/v4/batch", headers=JSON, content=body_with(
            b'{"service": "myfolder/SalesExample", "correlation_id": @}', value))
        assert_refused(r, place_of(name, "correlation_id"), says)
        err = r.json()["error"]
        assert err["status"] == r.status_code and err["code"] == "malformed_body"


def test_json_policy_csv_upload_names_row_and_column(server_with_tasks: Server) -> None:
    csv = {"Content-Type": "text/csv"}
    with server_with_tasks.client() as c:
        for cell, says in [("123456789012345678901234567890", "64-bit"), ("1e400", "1e400")]:
            r = c.post("/api/batches", params={"task": "echo"}, headers=csv,
                       content=f"a,b.c\n1,2\n3,{cell}\n".encode())
            assert_refused(r, "[2].b.c", says)
            assert native_shape(r)[0]["loc"] == ["body", 2, "b", "c"]
        r = c.post("/api/batches", params={"task": "echo"}, headers=csv,
                   content=b"a,b\n1,2\n3,\xff\n")
        assert_refused(r, "at byte 10", "UTF-8")


def test_json_policy_keeps_64_bit_integers_exactly(server_with_tasks: Server) -> None:
    with server_with_tasks.client() as c:
        items = [{"max": 2**63 - 1, "min": -(2**63), "id": "9" * 30}]
        r = c.post("/api/batches", json={"task": "echo", "items": items})
        assert r.status_code == 201, r.text
        got = c.get(f"/api/batches/{r.json()['id']}/items").json()["data"][0]["input"]
        assert got == items[0]


def test_json_policy_huge_limit_key_and_simulations_usage(server_with_tasks: Server) -> None:
    with server_with_tasks.client() as c:
        for huge in (b"1e300", b"123456789012345678901234567890", b"1e400"):
            r = c.post("/api/keys", headers=JSON,
                       content=b'{"tenant": "acme", "limits": {"api_calls": ' + huge + b"}}")
            assert r.status_code == 422, r.text
            assert native_shape(r)[0]["loc"][:2] == ["body", "limits"]
        r = c.post("/api/keys", json={"tenant": "acme", "limits": {"api_calls": 1e15}})
        assert r.status_code == 201, r.text
        key = r.json()["key"]
    with httpx.Client(base_url=server_with_tasks.url, timeout=60,
                      headers={"X-API-Key": key}) as c:
        r = c.get("/simulations/batch/usage")
        assert r.status_code == 200, r.text
        assert r.json()["api_calls_limit"] == 10**15
