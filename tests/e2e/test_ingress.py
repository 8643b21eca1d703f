"""The ingress: the key before the body, every route's body limit, compressed bodies.

Every route of every dialect is taken from the server's own table (the app the server
builds), so a route added later is covered without touching this file. Requests go
over raw sockets where the point is what the server does before the body has come.
"""

from __future__ import annotations

import gzip
import re
import socket
import tempfile
import zlib
from collections.abc import Callable, Iterator

import orjson
import psutil
import pytest

from batchd.api.app import create_app
from batchd.api.ingress import BodyKind, api_routes
from batchd.settings import Settings
from tests.conftest import Server, scaled

GiB = 1 << 30
LIMITS = {BodyKind.STREAM: 1 << 20, BodyKind.JSON: 256 << 10, BodyKind.CONTROL: 4 << 10}
SETTINGS = {"max_body_bytes": LIMITS[BodyKind.STREAM],
            "max_json_body_bytes": LIMITS[BodyKind.JSON],
            "max_control_body_bytes": LIMITS[BodyKind.CONTROL]}
# Where the server streams a body (NDJSON/CSV) or holds a JSON document whole; every
# other route takes a small control body at most. A change here is a decision.
STREAMED = {"POST /api/batches", "POST /api/batches/{batch_id}/items", "POST /v1/files",
            "POST /v1/messages/batches"}
HELD_WHOLE = {"POST /api/v1/batch/enqueue", "POST /api/tasks",
              "POST /{tenant}/api/v4/batch/{batch_id}/chunks", "POST /simulations/batch",
              "POST /v0/tasks/{task_id}/batches", "POST /api/services/{folder}/{name}/versions",
              "POST /v1/tasks/runs", "POST /v1/tasks/groups/{group_id}/runs"}


def routes() -> list[tuple[str, str, BodyKind, bool]]:
    """(method, path, body kind, public) of every route of the app."""
    # Built, never started: the database is not opened.
    app = create_app(Settings(database_url=f"sqlite:///{tempfile.gettempdir()}/never.db"))
    found = []
    for r in api_routes(app):
        for method in sorted(r.methods):
            found.append((method, r.path, getattr(r.endpoint, "__batchd_body__",
                                                   BodyKind.CONTROL),
                          getattr(r.endpoint, "__batchd_public__", False)))
    return found


ROUTES = routes()
PRIVATE = [(m, p, kind) for m, p, kind, public in ROUTES if not public]


def concrete(path: str) -> str:
    """A path with made-up ids (the key is checked before any id is looked up)."""
    return re.sub(r"\{tenant\}", "default", re.sub(r"\{(?!tenant)[^}]+\}", "x1", path))


def exchange(srv: Server, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send a request head (and the start of a body) on a raw socket; the response.

    The declared body is far longer than what is sent: an answer proves the server
    answered without waiting for the rest.
    """
    port = int(srv.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(10)) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            part = s.recv(65536)
            assert part, f"connection closed without a response: {data!r}"
            data += part
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in lines[1:])}
        want = int(headers.get("content-length", "0"))
        while len(rest) < want:
            part = s.recv(65536)
            if not part:
                break
            rest += part
        return status, headers, rest


def request_head(method: str, path: str, *, length: int | None, key: str | None = None,
                 extra: dict[str, str] | None = None) -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1",
             "Content-Type: application/json"]
    if length is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {length}")
    if key:
        lines.append(f"Authorization: Bearer {key}")
    lines.extend(f"{k}: {v}" for k, v in (extra or {}).items())
    return "\r\n".join(lines) + "\r\n"


def test_the_route_table_knows_every_body() -> None:
    kinds = {f"{m} {p}": kind for m, p, kind, _ in ROUTES}
    assert {r for r, k in kinds.items() if k is BodyKind.STREAM} == STREAMED
    assert {r for r, k in kinds.items() if k is BodyKind.JSON} == HELD_WHOLE
    public = {f"{m} {p}" for m, p, _, pub in ROUTES if pub}
    # The dashboard's pages check their session cookie themselves (test_dashboard.py).
    dashboard = {r for r in public if r.split(" ")[1] == "/" or r.split(" ")[1][:3] == "/ui"}
    assert public - dashboard == {"GET /healthz", "GET /metrics", "GET /health"}
    assert len(PRIVATE) >= 50


def test_no_key_is_401_before_a_gigabyte_body_is_read(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server()
    proc = psutil.Process(srv.proc.pid)  # type: ignore[union-attr]
    before = proc.memory_info().rss
    for method, path, _ in PRIVATE:
        for length in (GiB, None):  # declared, and chunked (no length at all)
            first = b"[" + b" " * 1000 if length else b"400\r\n" + b" " * 1024 + b"\r\n"
            status, headers, body = exchange(srv, request_head(method, concrete(path),
                                                               length=length), first)
            assert status == 401, (method, path, length, status, body[:300])
            assert body, (method, path)
            assert "key" in body.decode().lower(), (method, path, body[:300])
        # and a wrong key the same
        status, _, body = exchange(
            srv, request_head(method, concrete(path), length=GiB, key="not-a-key"), b"[")
        assert status == 401, (method, path, status, body[:300])
    assert proc.memory_info().rss - before < 64 << 20


def test_each_dialect_answers_a_missing_key_in_its_own_shape(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server()
    cases = {
        "/api/batches": lambda d: d["detail"].startswith("an API key is required"),
        "/api/v1/batch/enqueue": lambda d: d["detail"][0]["type"] == "unauthorized",
        "/default/api/v4/batch": lambda d: d["error"]["code"] == "unauthorized",
        "/simulations/batch": lambda d: "error" in d or "detail" in d,
        "/v0/tasks/t/batches": lambda d: d["detail"].startswith("an API key is required"),
    }
    for path, shaped in cases.items():
        status, _, body = exchange(srv, request_head("POST", path, length=GiB), b"{")
        assert status == 401, (path, body)
        assert shaped(orjson.loads(body)), (path, body)


def test_over_limit_bodies_are_413_on_every_route(make_server: Callable[..., Server]) -> None:
    srv = make_server(**SETTINGS)
    for method, path, kind in PRIVATE:
        limit = LIMITS[kind]
        status, _, body = exchange(srv, request_head(method, concrete(path), length=limit + 1,
                                                     key=srv.admin_key), b"{")
        assert status == 413, (method, path, status, body[:300])
        assert str(limit) in body.decode(), (method, path, body[:300])


def test_streamed_bodies_are_cut_off_at_the_limit(make_server: Callable[..., Server]) -> None:
    """No length declared: the bytes are counted as they come; 413 once past the limit."""
    srv = make_server(**SETTINGS)
    with srv.client() as c:
        def lines(n: int) -> Iterator[bytes]:
            for i in range(n):
                yield orjson.dumps({"n": i, "pad": "x" * 100}) + b"\n"

        r = c.post("/api/batches", params={"task": "square"}, content=lines(20_000),
                   headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 413, r.text
        assert str(LIMITS[BodyKind.STREAM]) in r.text
        # A JSON document is held whole: its own, smaller limit, and a pointer to NDJSON.
        big = b'{"task": "square", "items": [' + b",".join(
            orjson.dumps({"n": i, "pad": "x" * 100}) for i in range(5000)) + b"]}"
        r = c.post("/api/batches", content=iter([big]),
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        assert str(LIMITS[BodyKind.JSON]) in r.text and "NDJSON" in r.text
        assert c.get("/api/batches").json()["data"] == []  # nothing was created


def gzip_bomb(inflated: int) -> bytes:
    """A gzip body of ``inflated`` bytes of newlines (blank lines, JSON whitespace),
    about a thousand times smaller."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\n" * (1 << 20)
    out = [deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
           for _ in range(inflated >> 20)]
    out.append(deflate.flush())
    return b"".join(out)


@pytest.mark.parametrize("path,ctype", [
    ("/api/batches?task=square", "application/x-ndjson"),
    ("/api/v1/batch/enqueue", "application/json"),
    ("/simulations/batch", "application/json"),
])
def test_a_gzip_bomb_is_refused_in_bounded_memory(
    make_server: Callable[..., Server], path: str, ctype: str,
) -> None:
    srv = make_server()  # the default limits: 512 MiB streamed, 32 MiB held whole
    bomb = gzip_bomb(GiB)
    assert len(bomb) < 2 << 20
    proc = psutil.Process(srv.proc.pid)  # type: ignore[union-attr]
    before = proc.memory_info().rss
    with srv.client() as c:
        r = c.post(path, content=bomb, headers={"Content-Type": ctype,
                                                "Content-Encoding": "gzip"})
        assert r.status_code == 413, r.text
        # The ratio cap, or the route's limit if that comes first: never the whole GiB.
        assert "inflates more than 200 times" in r.text or "limit of" in r.text, r.text
        if ctype == "application/x-ndjson":  # 512 MiB allowed: the ratio stops it
            assert "inflates more than 200 times" in r.text, r.text
    assert proc.memory_info().rss - before < 64 << 20


def test_compressed_bodies_work_and_bad_ones_are_named(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server()
    with srv.client() as c:
        ndjson = b"".join(orjson.dumps({"n": i}) + b"\n" for i in range(1000))
        half = ndjson.index(b"\n", len(ndjson) // 2) + 1
        two_members = gzip.compress(ndjson[:half]) + gzip.compress(ndjson[half:])
        for encoding, body in (("gzip", gzip.compress(ndjson)), ("gzip", two_members),
                               ("deflate", zlib.compress(ndjson))):
            r = c.post("/api/batches", params={"task": "square"}, content=body,
                       headers={"Content-Type": "application/x-ndjson",
                                "Content-Encoding": encoding})
            assert r.status_code == 201, r.text
            assert r.json()["counts"]["total"] == 1000
        r = c.post("/api/batches", params={"task": "square"}, content=b"not gzip",
                   headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
        assert r.status_code == 422 and "not valid gzip" in r.text, r.text
        r = c.post("/api/batches", params={"task": "square"}, content=gzip.compress(ndjson)[:-20],
                   headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
        assert r.status_code == 422 and "truncated" in r.text, r.text
        r = c.post("/api/batches", params={"task": "square"}, content=ndjson,
                   headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "br"})
        assert r.status_code == 415 and "br" in r.text, r.text
        assert len(c.get("/api/batches").json()["data"]) == 3  # only the good ones
