"""Results export fast paths: a table handed over as row dicts (:class:`TableRows`, the
native results) is written byte for byte as the writers write the dicts themselves."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from batchd.core import paging
from batchd.core.browse import (
    RESULT_COLUMNS,
    RESULT_DOCUMENTS,
    RESULT_TRAILING,
    _elements,
    items_records_page,
    records_table_page,
    results_table_page,
)
from batchd.core.txn.reads import ResultsPage
from batchd.domain.models import item_public_id
from batchd.domain.records import NO_USAGE, ExportRow, record_usages
from batchd.export import exporter_for
from batchd.export.base import Exporter, Pages
from batchd.export.table import Constant, Documents, Table, TablePage, TableRows

Row = dict[str, Any]

TRICKY: list[Any] = [
    {"i": 1, "name": "plain"}, {"name": "swapped", "i": 2}, {"i": 3, "name": "comma, inside"},
    {"i": 4, "name": 'a "quoted" word'}, {"i": 5, "name": "line\nbreak\r\n"},
    {"i": 6, "name": "tab\t\u0001"}, {"i": 7, "name": "日本語 😀 \u2028"}, {"i": 8, "name": ""},
    {"i": 9, "name": None}, {"i": 10, "name": "100% %s"}, {"i": 11, "name": "{"},
    {"i": {"nested": {"deep": [1, {"x": None}]}}, "name": "obj"}, {"i": {}, "name": []},
    {"big": -(2**63), "ubig": 2**64 - 1, "f": 1.7976931348623157e308, "tiny": 5e-324,
     "neg0": -0.0, "e": 1e16},
    {"k,ey": 1, 'q"k': 2}, {"a": "[1],[2]", "b": "null", "c": True}, [1, "two", None, [3]],
    "a string, with a comma", 12345, 2.5, True, None, {},
]

# Pages whose rows share a shape take the writers' fastest paths: each here has a twist.
UNIFORM: dict[str, list[Any]] = {
    "flat": [{"i": i, "name": f"item {i}"} for i in range(40)],
    "commas": [{"i": i, "name": f"a,{i}"} for i in range(40)],
    "some commas": [{"i": i, "name": f"a,{i}" if i % 7 == 0 else f"b{i}"} for i in range(40)],
    "empty strings": [{"i": i, "name": ""} for i in range(40)],
    "nulls": [{"i": i, "name": None} for i in range(40)],
    "nested": [{"a": {"x": i, "y": "z"}, "b": i / 7} for i in range(40)],
    "nested key order": [{"a": {"x": i, "y": 1}} if i % 2 else {"a": {"y": 1, "x": i}}
                         for i in range(40)],
    "key order": [{"x": i, "y": 1} if i % 2 else {"y": 1, "x": i} for i in range(40)],
    "shape change": [{"x": i} for i in range(20)] + [{"y": i, "x": 1} for i in range(20)],
    "brace in a string first": [{"a": "{"}, {"a": {"b": 1}}] * 20,
    "brace in a string second": [{"a": {"b": 1}}, {"a": "{"}] * 20,
    "lists": [{"t": ["a", "b"], "u": []} for _ in range(40)],
    "mixed depth": [{"a": 1}, 5, {"a": {"a": 2}}] * 10,
    "mixed keys": [{"a": 1, "b": 2, "c": 3}, {"a": 1, "c": 3, "b": 2}] * 10,
    "extra key": [{"a": 1, "b": 2}, {"a": 1, "b": 2, "z": 3}, {"a": 1}] * 10,
    "scalars": list(range(40)),
    "floats": [{"f": i / 7, "g": 1e300, "h": -1e-300} for i in range(40)],
    "unicode": [{"u": "日本語", "e": "😀"} for _ in range(40)],
    "percent": [{"p": "100%", "q": "%s"} for _ in range(40)],
}


def rows_of(inputs: list[Any], status: Callable[[int], str]) -> list[Row]:
    rows = []
    for n, value in enumerate(inputs):
        st = status(n)
        rows.append({
            "item_id": item_public_id(n + 1), "seq": n, "status": st, "input": value,
            "output": value if st == "succeeded" else None,
            # None stored (read as NO_USAGE), or what the item's outcome recorded
            "usage": NO_USAGE if n % 3 == 0 else {"tokens_in": n, "tokens_out": 2 * n,
                                                  "cost_usd": n / 1000},
            "error": None if st == "succeeded" else {"code": "handler_error",
                                                      "message": f'boom, "{n}"\nagain'},
        })
    return rows


def sources(rows: list[Row], per_page: int) -> tuple[Pages, Pages]:
    """The rows as dict pages, and as a results table read through TableRows."""
    parts = [rows[i : i + per_page] for i in range(0, len(rows), per_page)]

    async def dicts() -> AsyncIterator[list[Row]]:
        for part in parts:
            yield [dict(r) for r in part]

    async def pages() -> AsyncIterator[TablePage]:
        for part in parts:
            yield records_table_page(part)

    table = Table(RESULT_COLUMNS, RESULT_DOCUMENTS, pages, RESULT_TRAILING)
    return dicts, lambda: TableRows(table)


async def written(fmt: str, pages: Pages) -> bytes:
    return b"".join([chunk async for chunk in exporter_for(fmt).stream(pages)])


def all_succeed(_: int) -> str:
    return "succeeded"


def some_fail(n: int) -> str:
    return ("succeeded", "succeeded", "failed", "cancelled")[n % 4]


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
@pytest.mark.parametrize("per_page", [1, 5, 1000])
@pytest.mark.parametrize("status", [all_succeed, some_fail])
async def test_results_table_of_tricky_values_is_written_as_its_row_dicts(
    fmt: str, per_page: int, status: Callable[[int], str]
) -> None:
    dicts, table = sources(rows_of(TRICKY * 3, status), per_page)

    assert await written(fmt, table) == await written(fmt, dicts)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
@pytest.mark.parametrize("name", list(UNIFORM))
async def test_results_table_of_one_shape_is_written_as_its_row_dicts(
    fmt: str, name: str
) -> None:
    for per_page in (3, 1000):
        dicts, table = sources(rows_of(UNIFORM[name], some_fail), per_page)
        assert await written(fmt, table) == await written(fmt, dicts), per_page
        dicts, table = sources(rows_of(UNIFORM[name], all_succeed), per_page)
        assert await written(fmt, table) == await written(fmt, dicts), per_page


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
async def test_results_table_without_rows_is_written_as_no_dicts(fmt: str) -> None:
    dicts, table = sources([], 10)

    assert await written(fmt, table) == await written(fmt, dicts)


def database_page(rows: list[Row]) -> ResultsPage:
    """The page the database would assemble of ``rows`` (each one item, ids ascending)."""
    ids = [r["item_id"][4:].encode() for r in rows]
    outputs = [(i, orjson.dumps(r["output"])) for i, r in zip(ids, rows, strict=True)
               if r["output"] is not None]
    # As the query: None for a column no item has a value in.
    return ResultsPage(
        items=b",".join(b"%s,%d,%s" % (i, r["seq"], r["status"].encode())
                        for i, r in zip(ids, rows, strict=True)),
        errors=(b"\n".join(orjson.dumps(r["error"]) for r in rows)
                if any(r["error"] is not None for r in rows) else None),
        inputs=b"\n".join(orjson.dumps(r["input"]) for r in rows),
        outputs=b"\n".join(b"%s\n%s" % pair for pair in outputs),
        usages=(b"\n".join(b"null" if r["usage"] is NO_USAGE else orjson.dumps(r["usage"])
                           for r in rows)
                if any(r["usage"] is not NO_USAGE for r in rows) else None),
    )


async def test_results_page_of_the_database_is_written_as_its_row_dicts() -> None:
    rows = rows_of(TRICKY, some_fail)
    page = results_table_page(database_page(rows))
    assert page is not None

    async def pages() -> AsyncIterator[TablePage]:
        assert page is not None
        yield page

    table = Table(RESULT_COLUMNS, RESULT_DOCUMENTS, pages, RESULT_TRAILING)
    for fmt in ("jsonl", "json", "csv"):
        assert await written(fmt, lambda: TableRows(table)) == \
            await written(fmt, sources(rows, 100)[0])


def test_results_page_of_one_status_has_a_constant_status_column() -> None:
    page = results_table_page(database_page(rows_of(TRICKY, all_succeed)))

    assert page is not None
    assert page.values(0)[:2] == [item_public_id(1), item_public_id(2)]
    assert page.values(1)[:2] == [0, 1]
    assert page.columns[2] == Constant("succeeded")


def test_results_page_with_a_line_end_in_a_document_is_refused() -> None:
    # Compact JSON holds none; a document that does cannot be cut at line ends.
    page = database_page(rows_of([{"a": 1}, {"a": 2}], all_succeed))
    page.inputs = page.inputs.replace(b'{"a":1}', b'{"a":\n1}', 1)
    assert results_table_page(page) is None

    page = database_page(rows_of([{"a": 1}, {"a": 2}], all_succeed))
    page.outputs = page.outputs.replace(b'{"a":1}', b'{"a":\n1}', 1)
    assert results_table_page(page) is None


def test_results_page_whose_id_range_holds_other_items_is_refused() -> None:
    rows = rows_of([{"a": 1}, {"a": 2}, {"a": 3}], all_succeed)
    page = database_page(rows)
    page.inputs += b'\n{"another":"item"}'  # an item of the range not in the page
    assert results_table_page(page) is None

    rows[0]["item_id"], rows[1]["item_id"] = rows[1]["item_id"], rows[0]["item_id"]
    # ids out of seq order: the inputs (in id order) are not the items' (in seq order)
    assert results_table_page(database_page(rows)) is None


def test_results_page_places_the_outputs_of_the_items_that_have_one() -> None:
    rows = rows_of([{"a": n} for n in range(6)], some_fail)  # 2, 3 failed, cancelled
    page = results_table_page(database_page(rows))

    assert page is not None
    assert page.documents[1].texts() == [orjson.dumps(r["output"]) for r in rows]
    assert page.documents[1].texts()[2:4] == [b"null", b"null"]


def test_results_page_reads_an_item_without_usage_as_zero_usage() -> None:
    rows = rows_of([{"a": n} for n in range(4)], all_succeed)  # 0 and 3 stored none
    page = results_table_page(database_page(rows))

    assert page is not None
    assert [orjson.loads(t) for t in page.documents[2].texts()] == [
        {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0},
        {"tokens_in": 1, "tokens_out": 2, "cost_usd": 0.001},
        {"tokens_in": 2, "tokens_out": 4, "cost_usd": 0.002},
        {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0},
    ]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 1000])
def test_an_items_usage_is_shared_by_its_records_to_the_same_sums(n: int) -> None:
    usage = {"tokens_in": 1001, "tokens_out": 5, "cost_usd": 0.7}
    shares = record_usages(usage, n)

    assert len(shares) == n
    assert sum(s["tokens_in"] for s in shares) == 1001
    assert sum(s["tokens_out"] for s in shares) == 5
    assert sum(s["cost_usd"] for s in shares) == pytest.approx(0.7)
    assert max(s["tokens_in"] for s in shares) - min(s["tokens_in"] for s in shares) <= 1
    assert record_usages(None, n) == [NO_USAGE] * n


async def test_results_table_rows_read_as_dicts_are_the_records() -> None:
    rows = rows_of(TRICKY, some_fail)
    _, table = sources(rows, 4)

    assert [r async for page in table() for r in page] == rows


# Tables given as tables (the task runs' export): the JSON writer's template, and the
# CSV writer telling an object from a "{" in a string.


def runs_table(outputs: list[Any]) -> Table:
    async def pages() -> AsyncIterator[TablePage]:
        for start in range(0, len(outputs), 3):
            part = outputs[start : start + 3]
            yield TablePage(size=len(part),
                            columns=[Constant("t%"), [f"r{start + i}" for i in range(len(part))]],
                            documents=[Documents.of([orjson.dumps(o) for o in part])])

    return Table(columns=("task_id", "run_id"), documents=("output",), pages=pages)


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
async def test_table_json_is_the_row_dicts_json(fmt: str) -> None:
    table = runs_table(TRICKY)
    writer = exporter_for(fmt)

    got = b"".join([c async for c in writer.stream_table(table)])
    # The base class's way: the rows as dicts, through the dict path.
    dicts = b"".join([c async for c in Exporter.stream_table(writer, table)])
    assert got == dicts


async def test_table_csv_flattens_an_object_after_a_brace_in_a_string() -> None:
    table = runs_table([{"a": "{"}, {"a": {"b": 1}}, {"a": "{"}])

    text = b"".join([c async for c in exporter_for("csv").stream_table(table)]).decode()

    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["task_id", "run_id", "output.a", "output.a.b"]
    assert [(r["output.a"], r["output.a.b"]) for r in rows] == [("{", ""), ("", "1"), ("{", "")]


async def test_table_csv_rows_of_an_early_shape_have_every_column() -> None:
    # Pages of one shape each, the later ones with more columns: the early rows end with
    # the empty cells of the columns found after them.
    table = runs_table([{"x": n} for n in range(3)] + [{"y": n, "x": n} for n in range(3)])

    text = b"".join([c async for c in exporter_for("csv").stream_table(table)]).decode()

    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["task_id", "run_id", "output.x", "output.y"]
    assert [len(r) for r in rows] == [4] * 7
    assert (rows[1][2:], rows[6][2:]) == (["0", ""], ["2", "2"])


def test_a_csv_cell_holding_a_line_end_is_quoted() -> None:
    # The whole-row writer once ran with an empty line terminator, which left "a\nb"
    # unquoted and broke the row in two.
    import csv as csv_module
    import io

    from batchd.export import csv as csv_export

    rows = [("a\nb", "c"), ("x,y", ""), ("",)]
    got = csv_export._csv_texts(rows, within=False)
    assert got == [b'"a\nb",c', b'"x,y",', b'""']
    for row, line in zip(rows, got, strict=True):
        assert next(csv_module.reader(io.StringIO(line.decode()))) == list(row)


# Items of several records: cut apart in C calls where their records are plain objects.


@pytest.mark.parametrize("records", [
    [{"a": 1}], [{"a": 1}, {"b": "x"}, {}], [{"a": "},"}, {"b": "}"}],
    [{"a": "[x]", "b": None}, {"c": [1, 2]}],
])
def test_an_array_of_plain_objects_is_cut_into_their_texts(records: list[Any]) -> None:
    assert _elements(orjson.dumps(records), len(records)) == [orjson.dumps(r) for r in records]


@pytest.mark.parametrize("records", [
    [{"a": "},{"}, {"b": 1}],  # a "{" in a string
    [{"a": {"b": 1}}, {"c": 2}],  # a nested object
    [{"a": "},{"}, 5, {"b": 1}],  # a run broken by an element that is no object
    [{"a": 1}, 5], [5, {"a": 1}], ["},{", "},{"], [{"l": [{"a": 1}, {"b": 2}]}],
])
def test_an_array_not_of_plain_objects_is_not_cut(records: list[Any]) -> None:
    assert _elements(orjson.dumps(records), len(records)) is None


def test_a_miscounted_array_is_not_cut() -> None:
    assert _elements(b'[{"a":1},{"b":2}]', 3) is None
    assert _elements(b'[{"a":1},\n{"b":2}]', 2) is None  # not compact


def export_row(rowid: int, records: list[Any], outputs: list[Any] | None, *, rec0: int,
               status: str = "succeeded", error: dict[str, Any] | None = None,
               usage: dict[str, Any] | None = None) -> ExportRow:
    return ExportRow(rowid=rowid, seq=rowid, rec0=rec0, n_records=len(records), status=status,
                     input=orjson.dumps(records),
                     output=None if outputs is None else orjson.dumps(outputs),
                     error=error, usage=usage)


async def test_items_of_several_records_are_written_as_their_records() -> None:
    flat = [{"price": 1.5, "q": i, "note": "a, b"} for i in range(4)]
    outputs = [{"total": i / 3} for i in range(4)]
    rows = [
        export_row(7, flat, outputs, rec0=0),  # cut apart
        export_row(8, flat, outputs, rec0=4,  # cut apart: the usage in three runs
                   usage={"tokens_in": 1001, "tokens_out": 6, "cost_usd": 0.7}),
        export_row(9, [{"a": {"b": 1}}, {"a": 2}], [{"x": 1}, {"x": 2}], rec0=8),  # nested
        export_row(10, flat[:2], [{"x": 1}, {"x": "},{"}], rec0=10),  # "{" in a string
        export_row(11, flat[:2], None, rec0=12, status="failed",
                   error={"code": "handler_error", "message": "boom"}),
        export_row(12, flat[:2], [{"x": 1}, None], rec0=14,  # one record failed
                   error={"records": [None, {"code": "invalid_record", "message": "bad"}]}),
        export_row(13, flat[:3], [{"x": 1}], rec0=16),  # fewer outputs than records
    ]
    records = [r for row in rows for r in paging.records_of(row, True)]
    fast, slow = items_records_page(rows), records_table_page(records)

    def table(page: TablePage) -> Table:
        async def pages() -> AsyncIterator[TablePage]:
            yield page

        return Table(RESULT_COLUMNS, RESULT_DOCUMENTS, pages, RESULT_TRAILING)

    for fmt in ("jsonl", "json", "csv"):
        want = await written(fmt, lambda: TableRows(table(slow)))
        assert await written(fmt, lambda: TableRows(table(fast))) == want, fmt
    assert fast.size == len(records) == 17
    assert [d.texts() for d in fast.documents] == [d.texts() for d in slow.documents]
