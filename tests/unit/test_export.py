"""Streaming export writers: CSV header rule, JSON round trips, chunking."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from batchd.core.ingest import csv_records
from batchd.domain import errors
from batchd.export import exporter_for
from batchd.export.base import CHUNK_BYTES, Pages

ROWS: list[dict[str, Any]] = [
    {"item_id": "itm_1", "seq": 0, "status": "succeeded",
     "input": {"b": 1, "a": {"x": 2, "y": {"z": "deep"}}}, "output": {"tags": ["p", "q"]},
     "error": None},
    {"item_id": "itm_2", "seq": 1, "status": "failed",
     "input": {"c": "new", "b": 5}, "output": None,
     "error": {"code": "handler_error", "message": "boom"}},
    {"item_id": "itm_3", "seq": 2, "status": "succeeded",
     "input": {"a": {"x": 7}}, "output": {"score": 0.5, "tags": []}, "error": None},
]


def pages_of(rows: list[dict[str, Any]], *, per_page: int = 2) -> Pages:
    async def pages() -> AsyncIterator[list[dict[str, Any]]]:
        for start in range(0, len(rows), per_page):
            yield rows[start : start + per_page]

    return pages


async def export(fmt: str, rows: list[dict[str, Any]], **kw: Any) -> list[bytes]:
    return [chunk async for chunk in exporter_for(fmt).stream(pages_of(rows, **kw))]


def big_rows(n: int) -> list[dict[str, Any]]:
    return [
        {"item_id": f"itm_{i}", "seq": i, "status": "succeeded",
         "input": {"text": "x" * 200, "i": i}, "output": {"len": 200}, "error": None}
        for i in range(n)
    ]


async def test_export_csv_header_is_columns_then_input_then_output() -> None:
    body = b"".join(await export("csv", ROWS))

    header = body.decode().splitlines()[0].split(",")
    assert header == [
        "item_id", "seq", "status",
        "input.b", "input.a.x", "input.a.y.z", "input.c",
        "output.tags", "output.score",
        "error",
    ]


async def test_export_csv_cells_flatten_values() -> None:
    body = b"".join(await export("csv", ROWS))

    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert rows[0]["input.a.y.z"] == "deep"
    assert rows[0]["output.tags"] == '["p","q"]'
    assert rows[0]["input.c"] == "" and rows[0]["error"] == ""
    assert orjson.loads(rows[1]["error"]) == {"code": "handler_error", "message": "boom"}
    assert rows[1]["output.tags"] == "" and rows[1]["output.score"] == ""
    assert (rows[2]["output.tags"], rows[2]["output.score"]) == ("[]", "0.5")
    assert [r["seq"] for r in rows] == ["0", "1", "2"]


async def test_export_csv_input_round_trips_through_ingest() -> None:
    body = b"".join(await export("csv", ROWS))

    async def chunks() -> AsyncIterator[bytes]:
        yield body

    parsed = [r async for part in csv_records(chunks(), max_record_bytes=1 << 20) for r in part]
    assert [p["input"] for p in parsed] == [
        {"b": 1, "a": {"x": 2, "y": {"z": "deep"}}, "c": None},
        {"b": 5, "a": {"x": None, "y": {"z": None}}, "c": "new"},
        {"b": None, "a": {"x": 7, "y": {"z": None}}, "c": None},
    ]


async def test_export_csv_without_rows_has_fixed_header() -> None:
    assert b"".join(await export("csv", [])) == b"item_id,seq,status,error\n"


@pytest.mark.parametrize("per_page", [1, 2, 10])
async def test_export_jsonl_round_trips(per_page: int) -> None:
    body = b"".join(await export("jsonl", ROWS, per_page=per_page))

    assert body.endswith(b"\n")
    assert [orjson.loads(line) for line in body.splitlines()] == ROWS


@pytest.mark.parametrize("per_page", [1, 2, 10])
async def test_export_json_round_trips(per_page: int) -> None:
    assert orjson.loads(b"".join(await export("json", ROWS, per_page=per_page))) == ROWS


async def test_export_json_of_nothing_is_an_empty_array() -> None:
    assert orjson.loads(b"".join(await export("json", []))) == []
    assert b"".join(await export("jsonl", [])) == b""


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
async def test_export_large_stream_comes_in_several_chunks(fmt: str) -> None:
    rows = big_rows(6000)  # about 1.5 MB in each format

    chunks = await export(fmt, rows, per_page=500)

    assert len(chunks) >= 4
    assert max(len(c) for c in chunks[:-1]) < 2 * CHUNK_BYTES
    body = b"".join(chunks)
    if fmt == "jsonl":
        assert [orjson.loads(line) for line in body.splitlines()] == rows
    elif fmt == "json":
        assert orjson.loads(body) == rows
    else:
        assert len(body.decode().splitlines()) == len(rows) + 1


def test_export_unknown_format() -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        exporter_for("xml")

    assert caught.value.details[0]["loc"] == ["query", "format"]


def test_export_media_types() -> None:
    assert exporter_for("csv").media_type == "text/csv"
    assert exporter_for("jsonl").media_type == "application/x-ndjson"
    assert exporter_for("json").media_type == "application/json"
