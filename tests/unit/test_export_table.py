"""Table exports: the CSV header rule, the fast and slow paths agreeing, JSON splicing."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchd.export import exporter_for
from batchd.export.table import Documents, Table, TablePage

ARGS = [{"company": "Acme", "n": 1}, {"company": "Initech"}, {"company": 'say "hi"\n', "n": 3}]


def table(rows: list[tuple[str, Any, Any]], *, per_page: int = 2) -> Table:
    async def pages() -> AsyncIterator[TablePage]:
        for start in range(0, len(rows), per_page):
            part = rows[start : start + per_page]
            yield TablePage(
                size=len(part), columns=[["t"] * len(part), [r[0] for r in part]],
                documents=[Documents.of([orjson.dumps(r[1]) for r in part]),
                           Documents.of([None if r[2] is None else orjson.dumps(r[2])
                                         for r in part])],
            )

    return Table(columns=("task_id", "run_id"), documents=("input.arguments", "output"),
                 pages=pages)


async def body(fmt: str, t: Table) -> bytes:
    return b"".join([c async for c in exporter_for(fmt).stream_table(t)])


def parsed_csv(raw: bytes) -> tuple[list[str], list[dict[str, str]]]:
    text = raw.decode()
    return next(csv.reader(io.StringIO(text))), list(csv.DictReader(io.StringIO(text)))


async def test_table_csv_header_is_the_union_first_seen() -> None:
    rows = [
        ("r1", ARGS[0], {"name": "A", "hq": {"city": "Paris", "zip": 75}, "tags": ["x"]}),
        ("r2", ARGS[1], {"name": "B", "ok": True, "hq": {"city": "Oslo"}}),
        ("r3", ARGS[2], None),
        ("r4", ARGS[0], {"name": "D", "hq": {"city": "Rome", "zip": 1}, "extra": {}, "z": None}),
    ]
    header, out = parsed_csv(await body("csv", table(rows)))

    assert header == ["task_id", "run_id", "input.arguments.company", "input.arguments.n",
                      "output.name", "output.hq.city", "output.hq.zip", "output.tags",
                      "output.ok", "output.extra", "output.z"]
    assert out[0]["output.tags"] == '["x"]' and out[0]["output.hq.zip"] == "75"
    assert (out[1]["output.ok"], out[1]["output.hq.zip"]) == ("true", "")
    assert out[2]["input.arguments.company"] == 'say "hi"\n' and out[2]["output.name"] == ""
    assert (out[3]["output.extra"], out[3]["output.z"]) == ("{}", "")


@pytest.mark.parametrize("per_page", [1, 3, 1000])
async def test_table_csv_fast_path_agrees_with_the_csv_module(per_page: int) -> None:
    # Uniform pages take the fast path; a page with a quote, a list or a null does not.
    rows = [(f"r{i}", {"company": f"C{i}", "n": i},
             {"name": f"N{i}", "score": i / 7, "big": 10**15 + i, "neg": -i, "ok": i % 2 == 0,
              "hq": {"city": "Zürich", "n": i}})
            for i in range(40)]
    rows[17] = ("r17", {"company": 'C"17', "n": 17}, {"name": None, "score": 1e300})
    header, out = parsed_csv(await body("csv", table(rows, per_page=per_page)))

    assert [r["run_id"] for r in out] == [f"r{i}" for i in range(40)]
    assert out[3] == {"task_id": "t", "run_id": "r3", "input.arguments.company": "C3",
                      "input.arguments.n": "3", "output.name": "N3",
                      "output.score": repr(3 / 7), "output.big": str(10**15 + 3),
                      "output.neg": "-3", "output.ok": "false", "output.hq.city": "Zürich",
                      "output.hq.n": "3"}
    assert out[17]["input.arguments.company"] == 'C"17' and out[17]["output.name"] == ""
    assert float(out[17]["output.score"]) == 1e300


async def test_table_csv_without_rows_is_the_fixed_header() -> None:
    assert await body("csv", table([])) == b"task_id,run_id\n"


async def test_table_json_splices_documents() -> None:
    rows = [("r1", ARGS[0], {"a": [1, {"b": None}]}), ("r2", ARGS[2], None)]
    runs = orjson.loads(await body("json", table(rows)))
    assert runs == [
        {"task_id": "t", "run_id": "r1", "input": {"arguments": ARGS[0]},
         "output": {"a": [1, {"b": None}]}},
        {"task_id": "t", "run_id": "r2", "input": {"arguments": ARGS[2]}, "output": None},
    ]
    lines = (await body("jsonl", table(rows))).splitlines()
    assert [orjson.loads(line) for line in lines] == runs
    assert orjson.loads(await body("json", table([]))) == []


async def test_table_parquet_types_columns() -> None:
    rows = [("r1", {"n": 1}, {"x": 1, "f": 1.5, "ok": True, "mixed": "a"}),
            ("r2", {"n": 2}, {"x": 2, "f": 2, "ok": False, "mixed": 3})]
    result = pq.read_table(pa.BufferReader(await body("parquet", table(rows))))
    types = {f.name: str(f.type) for f in result.schema}
    assert types == {"task_id": "string", "run_id": "string", "input.arguments.n": "int64",
                     "output.x": "int64", "output.f": "double", "output.ok": "bool",
                     "output.mixed": "string"}
    assert result.column("output.mixed").to_pylist() == ["a", "3"]
