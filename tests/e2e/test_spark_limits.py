"""The Spark dialect's README promises on bodies: 413 after gunzip with bounded server
memory, and BSON replies when ``Accept`` asks for them."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bson
import httpx
import orjson
import psutil
import pytest
from bench.common import RssSampler

from tests.conftest import Server, wait_until

pytestmark = pytest.mark.timeout(180)

JSON = "application/json"
BSON = "application/bson"
MiB = 1 << 20

SAMPLE_CHUNKS = {"chunks": [
    {"id": "f7b52961-ad34-40ce-874f-93c67df11d65",
     "data": {"inputs": [["sale_id", "price", "quantity"], [1, 20, 65], [2, 74, 73]],
              "parameters": {"tax": 0.1}}},
    {"id": "ec2eec02-c005-4af6-a2af-50cfd7616d64",
     "data": {"inputs": [["sale_id", "price", "quantity"], [3, 20, 65], [4, 34, 73],
                         [5, 62, 62], [6, 43, 87], [7, 23, 35]],
              "parameters": {"tax": 0.1}}},
]}
SAMPLE_OUTPUTS = [  # the document's chunkresults sample
    [["sale_id", "total"], [1, 1430], [2, 5942.2]],
    [["sale_id", "total"], [3, 1430], [4, 2730.2], [5, 4228.4], [6, 4115.1], [7, 885.5]],
]
STATUS_KEYS = {
    "response_timestamp", "request_timestamp", "batch_status", "pipeline_status",
    "chunks_available", "chunks_submitted", "record_submitted", "chunks_completed",
    "records_completed", "compute_time_ms", "input_buffer_used_bytes",
    "input_buffer_remaining_bytes", "output_buffer_used_bytes", "output_buffer_remaining_bytes",
    "workers_in_use", "records_available",
}


def base(tenant: str = "default") -> str:
    return f"/{tenant}/api/v4/batch"


def json_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == JSON
    err: dict[str, Any] = r.json()["error"]
    assert err["status"] == status and err["code"] == code and err["message"], err
    return err


def as_bson(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.content[:300]
    assert r.headers["content-type"] == BSON
    doc: dict[str, Any] = bson.decode(r.content)
    return doc


# 413 after gunzip


def gzip_of_spaces(inflated: int) -> bytes:
    """A valid gzip member of ``inflated`` bytes of JSON whitespace then ``{}``, about
    1,000 times smaller: after a full flush every MiB of spaces compresses to the same
    bytes, so the body is built by repetition rather than by compressing it all."""
    block = b" " * MiB
    n = inflated // MiB
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    piece = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    assert piece == deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.compress(b"{}") + deflate.flush()
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(b"{}", crc)
    return head + piece * (n - 1) + end[:-8] + struct.pack("<II", crc,
                                                           (n * MiB + 2) & 0xFFFFFFFF)


INFLATED = 1024 * MiB
LIMIT = 4 * MiB


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    body = gzip_of_spaces(INFLATED)
    assert len(body) < LIMIT / 3  # small on the wire, under the limit before gunzip
    return body


def peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory (Linux ``VmHWM``), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_spark_gzip_body_inflating_past_the_limit_is_413_in_bounded_memory(
    make_server: Callable[..., Server], gzip_bomb: bytes,
) -> None:
    srv = make_server(max_body_bytes=LIMIT)
    assert srv.proc is not None
    pid = srv.proc.pid
    with srv.client() as c:
        bid = bson.decode(c.post(base(), json={"service": "myfolder/SalesExample"},
                                 headers={"Accept": BSON}).content)["id"]
        c.post(f"{base()}/{bid}/chunks", json=SAMPLE_CHUNKS)  # warm the route up
        before_rss = psutil.Process(pid).memory_info().rss
        before_peak = peak_rss(pid)
        for ctype in (JSON, BSON):
            with RssSampler(pid) as rss:
                r = c.post(f"{base()}/{bid}/chunks", content=gzip_bomb,
                           headers={"Content-Type": ctype, "Content-Encoding": "gzip"})
            if ctype == JSON:
                err = json_error(r, 413, "limit_exceeded")
            else:  # a BSON request gets its error in BSON
                err = as_bson(r, 413)["error"]
                assert (err["status"], err["code"]) == (413, "limit_exceeded")
            assert str(LIMIT) in err["message"] and err["details"] == {"limit": LIMIT}
            # Nothing near the inflated GiB was ever held: a few limits' worth at most.
            assert rss.most - before_rss < 32 * LIMIT, (ctype, rss.most - before_rss)
        assert peak_rss(pid) - max(before_peak, before_rss) < 32 * LIMIT

        # compressed bodies are held to the limit before gunzip too
        too_big = zlib.compress(b"x", 1) + bytes(LIMIT)
        json_error(c.post(f"{base()}/{bid}/chunks", content=too_big,
                          headers={"Content-Type": JSON, "Content-Encoding": "gzip"}),
                   413, "limit_exceeded")

        # nothing of the refused pushes was stored, and the batch goes on
        status = c.get(f"{base()}/{bid}/status").json()
        assert (status["chunks_submitted"], status["record_submitted"]) == (2, 7)
        pushed = c.post(f"{base()}/{bid}/chunks",
                        content=zlib.compress(orjson.dumps({"chunks": SAMPLE_CHUNKS["chunks"][:1]}),
                                              wbits=31),
                        headers={"Content-Type": JSON, "Content-Encoding": "gzip"})
        assert pushed.status_code == 200, pushed.text
        assert pushed.json()["record_submitted"] == 9


# BSON replies


def test_spark_accept_bson_answers_bson_on_every_route(make_server: Callable[..., Server]) -> None:
    srv = make_server()
    wants = {"Accept": BSON}
    with srv.client() as c:
        created = as_bson(c.post(base(), json={"service": "myfolder/SalesExample",
                                                 "unique_record_key": "sale_id"}, headers=wants))
        assert created["object"] == "batch" and created["data"]["batch_status"] == "created"
        assert created["data"]["service_uri"] == "myfolder/SalesExample[0.2.0]"
        bid = created["id"]

        pushed = as_bson(c.post(f"{base()}/{bid}/chunks", json=SAMPLE_CHUNKS, headers=wants))
        assert set(pushed) == STATUS_KEYS and pushed["record_submitted"] == 7

        def both_done() -> bool:
            s = as_bson(c.get(f"{base()}/{bid}/status", headers=wants))
            assert set(s) == STATUS_KEYS
            return bool(s["chunks_available"] == 2)

        wait_until(both_done, timeout_s=30, what="both chunks' results")
        # chunks pushed as JSON, pulled as BSON because Accept asks for it
        first = as_bson(c.get(f"{base()}/{bid}/chunkresults", params={"max": 1},
                              headers=wants))
        assert [ch["outputs"] for ch in first["data"]] == SAMPLE_OUTPUTS[:1]
        assert first["data"][0]["id"] == SAMPLE_CHUNKS["chunks"][0]["id"]
        assert first["data"][0]["errors"] == [None, None]
        assert first["status"]["chunks_available"] == 1
        # without Accept the same route answers JSON again
        second = c.get(f"{base()}/{bid}/chunkresults")
        assert second.headers["content-type"] == JSON
        assert [ch["outputs"] for ch in second.json()["data"]] == SAMPLE_OUTPUTS[1:]
        # nothing left: the status object (no results), in BSON
        empty = as_bson(c.get(f"{base()}/{bid}/chunkresults", headers=wants))
        assert set(empty) >= STATUS_KEYS and not empty.get("data")
        assert empty["chunks_available"] == 0

        info = as_bson(c.get(f"{base()}/{bid}", headers=wants))
        assert info["data"]["summary"]["records_completed"] == 7
        tenant = as_bson(c.get(f"{base()}/status", headers=wants))
        assert bid in [b["id"] for b in tenant["in_progress_batches"] + tenant["recent_batches"]]
        closed = as_bson(c.patch(f"{base()}/{bid}", json={"batch_status": "closed"},
                                 headers={"Accept": f"{JSON};q=0.5, {BSON}"}))
        assert closed["data"]["batch_status"] in {"closed", "completed"}

        # errors too take the shape of the document's errors, in BSON
        missing = as_bson(c.get(f"{base()}/bat_missing/status", headers=wants), 404)
        assert (missing["error"]["status"], missing["error"]["code"]) == (404, "not_found")
        bad = as_bson(c.post(f"{base()}/{bid}/chunks", content=b"{not json",
                             headers={"Content-Type": JSON, **wants}), 400)
        assert bad["error"]["code"] == "malformed_body"
    unauthorised = httpx.get(f"{srv.url}{base()}/status", headers=wants)
    assert as_bson(unauthorised, 401)["error"]["code"] == "unauthorized"
    plain = httpx.get(f"{srv.url}{base()}/status", headers={"Accept": "*/*"})
    json_error(plain, 401, "unauthorized")
