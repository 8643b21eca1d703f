"""A rejected upload costs no lasting disk, and a bad first line is answered at once.

CI runs this file on SQLite (the file and its -wal are measured) and on PostgreSQL
(BATCHD_TEST_BACKEND=postgres: ``pg_database_size``). Bodies of tens of MB stream from a
generator, large enough that what a rejected upload leaves behind would show.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import httpx
import pytest
from bench.common import db_bytes

from tests.conftest import Server, scaled, wait_batch

pytestmark = pytest.mark.timeout(scaled(120))

NDJSON = {"Content-Type": "application/x-ndjson"}
MB = 1_000_000
LINE = (b'{"price": 12.5, "quantity": 3, "tax": 0.1, "sku": "SKU-0000000", "note": "'
        + b"x" * 100 + b'"}\n')
BLOCK = LINE * 512
BAD = b'{"price": oops}\n'


def lines_in(size: int) -> int:
    return size // len(BLOCK) * 512


def ndjson(size: int, *, bad: str) -> Iterator[bytes]:
    """About ``size`` bytes of valid lines, with one invalid line ``first`` or ``last``."""
    if bad == "first":
        yield BAD
    for _ in range(size // len(BLOCK)):
        yield BLOCK
    if bad == "last":
        yield BAD


def assert_within_5pct(before: int, after: int) -> None:
    assert after <= before * 1.05, f"{before:,} bytes before, {after:,} after"


def assert_names_line(r: httpx.Response, line: int) -> None:
    assert r.status_code == 422, r.text[:500]
    detail = r.json()["detail"]
    assert [d["loc"] for d in detail] == [["body", line - 1]], detail
    assert f"line {line}" in detail[0]["msg"]


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    # No worker: the database changes only through the uploads under test.
    return make_server(run_worker="false", max_body_bytes=256 << 20)


def test_rejected_upload_leaves_no_disk_cost(server: Server) -> None:
    with server.client() as c:
        r = c.post("/api/batches", params={"task": "sales", "close": "false"},
                   content=LINE * 2000, headers=NDJSON)
        assert r.status_code == 201, r.text
        live = r.json()["id"]
        before = db_bytes(server.database_url)

        size = 200 * MB  # the size the issue names
        r = c.post("/api/batches", params={"task": "sales", "close": "true"},
                   content=ndjson(size, bad="last"), headers=NDJSON)
        assert_names_line(r, lines_in(size) + 1)
        assert_within_5pct(before, db_bytes(server.database_url))

        # An append to a live batch, refused: the batch keeps what it had, and no more.
        size = 32 * MB
        r = c.post(f"/api/batches/{live}/items", content=ndjson(size, bad="last"),
                   headers=NDJSON)
        assert_names_line(r, lines_in(size) + 1)
        assert_within_5pct(before, db_bytes(server.database_url))
        assert c.get(f"/api/batches/{live}").json()["records"]["total"] == 2000

        # The stage is ready for the next uploads, which are whole.
        r = c.post(f"/api/batches/{live}/items", content=LINE * 3000, headers=NDJSON)
        assert r.status_code == 200, r.text
        r = c.post("/api/batches", params={"task": "sales", "close": "true"},
                   content=LINE * 4000, headers=NDJSON)
        assert r.status_code == 201, r.text
        assert r.json()["records"]["total"] == 4000
        assert c.get(f"/api/batches/{live}").json()["records"]["total"] == 5000


def test_rejected_upload_first_line_answered_before_the_rest(server: Server) -> None:
    """The 4xx comes while most of the declared body has not even been sent: the server
    needs none of it. Nothing is written either."""
    before = db_bytes(server.database_url)
    declared = 64 * MB
    head = (f"POST /api/batches?task=sales HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {server.admin_key}\r\n"
            f"Content-Type: application/x-ndjson\r\nContent-Length: {declared}\r\n\r\n")
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(20)) as s:
        s.sendall(head.encode() + BAD + BLOCK * 8)  # ~1 MB of the 64 MB
        data = b""
        while b"\r\n\r\n" not in data or b"line 1" not in data:
            part = s.recv(65536)
            assert part, f"connection closed without a response: {data!r}"
            data += part
    assert data.startswith(b"HTTP/1.1 422 "), data[:300]
    assert b'"loc":["body",0]' in data, data
    assert_within_5pct(before, db_bytes(server.database_url))
    with server.client() as c:
        assert c.get("/api/batches").json()["data"] == []


def test_rejected_upload_then_a_good_one_runs(make_server: Callable[..., Server]) -> None:
    """After a refused upload, the engine takes the next one whole and runs it."""
    srv = make_server()
    with srv.client() as c:
        r = c.post("/api/batches", params={"task": "sales"},
                   content=ndjson(4 * MB, bad="last"), headers=NDJSON)
        assert_names_line(r, lines_in(4 * MB) + 1)
        r = c.post("/api/batches", params={"task": "sales", "close": "true"},
                   content=LINE * 500, headers=NDJSON)
        assert r.status_code == 201, r.text
        done = wait_batch(c, r.json()["id"])
        assert (done["status"], done["records"]["succeeded"]) == ("completed", 500)
