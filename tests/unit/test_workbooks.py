"""Workbooks compiled and evaluated: LibreOffice's values, both paths, refusals.

``tests/fixtures/workbooks/reference.json`` holds the outputs LibreOffice computed for
each case (``tests/fixtures/workbooks/build.py`` made it with headless ``soffice``).
Numbers are equal when they agree to 15 significant digits, the precision Excel and
LibreOffice keep.
"""

from __future__ import annotations

import io
import math
import random
import threading
from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("formulas")

from openpyxl import Workbook  # noqa: E402
from openpyxl.workbook.defined_name import DefinedName  # noqa: E402

from batchd.tasks.context import RecordError  # noqa: E402
from batchd.tasks.examples.sales_workbook import build_workbook  # noqa: E402
from batchd.tasks.workbook import aggregates, excel, fast, graph  # noqa: E402
from batchd.tasks.workbook.compiler import WorkbookError, compile_workbook  # noqa: E402
from batchd.tasks.workbook.evaluate import evaluate  # noqa: E402
from tests.support.workbooks import FIXTURES, REFERENCE, same  # noqa: E402

EXAMPLES = Path(__file__).parents[2] / "examples"


def workbook(cells: dict[str, Any], names: dict[str, str], sheet: str = "S",
             more: dict[str, dict[str, Any]] | None = None) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    for ref, value in cells.items():
        ws[ref] = value
    for title, extra in (more or {}).items():
        other = wb.create_sheet(title)
        for ref, value in extra.items():
            other[ref] = value
    for name, ref in names.items():
        wb.defined_names[name] = DefinedName(name, attr_text=ref)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_workbook_outputs_equal_libreoffice_on_both_paths(name: str) -> None:
    plan = compile_workbook((FIXTURES / f"{name}.xlsx").read_bytes())
    cases = REFERENCE[name]
    records = [c["inputs"] for c in cases]
    columnwise = evaluate(plan, records)
    per_record = evaluate(plan, records, vectorised=False)
    assert columnwise == per_record
    for case, got in zip(cases, columnwise, strict=True):
        assert set(got) == set(case["outputs"])
        wrong = {k: (got[k], want) for k, want in case["outputs"].items()
                 if not same(got[k], want)}
        assert not wrong, f"{name} {case['inputs']}: (batchd, LibreOffice) {wrong}"


def test_workbook_fixtures_take_both_paths() -> None:
    """The fixtures exercise column-wise steps, column-wise steps whose aggregates take
    each record's values (SUM/SUMPRODUCT/MAX… over input ranges, EDATE, AND/OR,
    CONCATENATE) and per-record ones (a lookup into the record's own table)."""
    plans = {n: compile_workbook((FIXTURES / f"{n}.xlsx").read_bytes()) for n in REFERENCE}
    shares = {n: p.vectorised_share for n, p in plans.items()}
    assert set(shares.values()) - {1.0} == {shares["ranges"]} and 0 < shares["ranges"] < 1
    by_record = {n for n, p in plans.items() if any(s.pipe is not None for s in p.steps)}
    assert by_record == {"sumproduct", "conditions", "dates", "text", "crosssheet", "ranges",
                         "isodates"}
    # Light (evaluated on the worker's loop): few formulas, all element-wise.
    assert compile_workbook(build_workbook()).light
    assert not plans["sumproduct"].light


ELEMENTWISE_FORMULAS = {
    "ABS": "=ABS(B1)", "ROUND": "=ROUND(B1,1)", "ROUNDUP": "=ROUNDUP(B1,1)",
    "ROUNDDOWN": "=ROUNDDOWN(B1,-1)", "INT": "=INT(B1)", "TRUNC": "=TRUNC(B1,1)",
    "MOD": "=MOD(B1,B2)", "POWER": "=POWER(B1,2)", "SQRT": "=SQRT(B1)", "EXP": "=EXP(B2)",
    "LN": "=LN(B1)", "LOG10": "=LOG10(B1)", "SIGN": "=SIGN(B1)",
    "IF": '=IF(B1>B2,"gt",B2)', "IFS": "=_xlfn.IFS(B1>5,1,B1>0,2,TRUE,3)",
    "IFERROR": "=IFERROR(B1/B2,-1)", "IFNA": '=_xlfn.IFNA(VLOOKUP(B1,T!A1:B3,2,FALSE),"none")',
    "NOT": "=NOT(B1>1)", "ISNUMBER": "=ISNUMBER(B3)", "ISTEXT": "=ISTEXT(B3)",
    "ISBLANK": "=ISBLANK(B3)", "ISERROR": "=ISERROR(B1/B2)", "ISNA": "=ISNA(MATCH(B1,T!A1:A3,0))",
    "LEFT": "=LEFT(B3,2)", "RIGHT": "=RIGHT(B3,2)", "MID": "=MID(B3,2,2)", "LEN": "=LEN(B3)",
    "UPPER": "=UPPER(B3)", "LOWER": "=LOWER(B3)", "PROPER": "=PROPER(B3)",
    "TRIM": '=TRIM(" "&B3&"  x")', "TEXT": '=TEXT(B1,"0.00")', "VALUE": "=VALUE(B3)",
    "EXACT": '=EXACT(B3,"abc")', "FIND": '=FIND("b",B3)', "SEARCH": '=SEARCH("B",B3)',
    "SUBSTITUTE": '=SUBSTITUTE(B3,"a","x")', "REPT": "=REPT(B3,2)",
    "DATE": "=DATE(2024,B2,1)", "YEAR": "=YEAR(B1)", "MONTH": "=MONTH(B1)", "DAY": "=DAY(B1)",
    "WEEKDAY": "=WEEKDAY(B1)", "VLOOKUP": "=VLOOKUP(B2,T!A1:B3,2,FALSE)",
    "HLOOKUP": "=HLOOKUP(B2,T!D1:F2,2,FALSE)", "XLOOKUP": '=_xlfn.XLOOKUP(B2,T!A1:A3,T!B1:B3,"?")',
    "MATCH": "=MATCH(B2,T!A1:A3,0)", "XMATCH": "=_xlfn.XMATCH(B2,T!A1:A3)",
    "INDEX": "=INDEX(T!B1:B3,B2)",
    "operators": '=B1+B2*2-B1/4&"|"&(B1>=B2)&(-B1)&B1%',
}


def test_elementwise_functions_agree_with_per_record_evaluation() -> None:
    assert set(ELEMENTWISE_FORMULAS) - {"operators"} == set(graph.ELEMENTWISE)
    cells: dict[str, Any] = {"B1": 2.5, "B2": 2, "B3": "abc"}
    names = {"Xinput_x": "S!$B$1", "Xinput_y": "S!$B$2", "Xinput_t": "S!$B$3"}
    for row, (fn, formula) in enumerate(sorted(ELEMENTWISE_FORMULAS.items()), start=5):
        cells[f"B{row}"] = formula
        names[f"Xoutput_{fn}"] = f"S!$B${row}"
    table = {"A1": 1, "B1": "one", "A2": 2, "B2": "two", "A3": 3, "B3": "three",
             "D1": 1, "E1": 2, "F1": 3, "D2": "a", "E2": "b", "F2": "c"}
    plan = compile_workbook(workbook(cells, names, more={"T": table}))
    assert plan.vectorised_share == 1.0
    rng = random.Random(7)
    values: list[Any] = [0, 1, 2, 3, -1.5, 2.675, 1e-9, 45306, 1e15, "abc", " a b ", "12",
                         "", None, True, False]
    records = [{"x": rng.choice(values), "y": rng.choice(values), "t": rng.choice(values)}
               for _ in range(400)]
    records += [{}, {"x": None, "y": None, "t": None}]
    assert evaluate(plan, records) == evaluate(plan, records, vectorised=False)


def test_round_fast_path_equals_excel_rounding_value_by_value() -> None:
    rng = random.Random(11)
    xs = [rng.uniform(-1e6, 1e6) for _ in range(3000)]
    xs += [round(rng.uniform(-100, 100), 3) + 0.0005 for _ in range(2000)]  # near ties
    xs += [2.675, 1.005, -2.5, 0.5, 1.5, 2.5, -0.005, 1e15 + 0.5, 4.35, 2.0000000000000004]
    arr = np.array(xs).reshape(-1, 1)
    for name, mode in fast.MODES.items():
        for digits in (-2, 0, 1, 2, 3):
            got = fast.rounding(mode, None)(arr, np.array([[digits]]))  # type: ignore[arg-type]
            want = [excel.excel_round(x, digits, mode) for x in xs]
            assert [float(v) for v in np.ravel(got)] == want, (name, digits)
    assert excel.excel_round(1.005, 2, ROUND_HALF_UP) == 1.01
    assert excel.excel_round(-2.5, 0, ROUND_HALF_UP) == -3
    assert excel.excel_round(2.0000000000000004, 0, ROUND_UP) == 2
    assert excel.excel_round(1.9999999999999998, 0, ROUND_DOWN) == 2


def test_numeric_fast_paths_fall_back_to_the_engine_for_what_is_not_a_number() -> None:
    plan = compile_workbook(workbook(
        {"B1": 1, "B2": 2, "B4": "=B1/B2", "B5": "=B1*B2+B1-B2"},
        {"Xinput_a": "S!$B$1", "Xinput_b": "S!$B$2", "Xoutput_q": "S!$B$4",
         "Xoutput_e": "S!$B$5"}))
    records = [{"a": 1, "b": 0}, {"a": "x", "b": 1}, {"a": None, "b": 4}, {"a": "3", "b": 2},
               {"a": 1e308, "b": 1e-308}, {"a": True, "b": 2}, {"a": 7, "b": 2}]
    got = evaluate(plan, records)
    assert got == evaluate(plan, records, vectorised=False)
    assert [g["q"] for g in got] == ["#DIV/0!", "#VALUE!", 0, 1.5, "#NUM!", 0.5, 3.5]
    assert got[-1]["e"] == 19


def test_unsupported_function_is_refused_naming_the_cell_and_function() -> None:
    with pytest.raises(WorkbookError) as caught:
        compile_workbook((FIXTURES / "unsupported.xlsx").read_bytes())
    assert (caught.value.cell, caught.value.function) == ("CALC!B2", "WEBSERVICE")
    assert "CALC!B2" in caught.value.message and "WEBSERVICE" in caught.value.message
    with pytest.raises(WorkbookError) as caught:
        compile_workbook(workbook({"B1": 1, "C7": "=FOOBAR(B1)+1"},
                                  {"x": "S!$B$1", "y": "S!$C$7"}))
    assert (caught.value.cell, caught.value.function) == ("S!C7", "FOOBAR")


@pytest.mark.parametrize(("cells", "names", "why"), [
    ({"B1": 1, "B2": "=B3+B1", "B3": "=B2*2"}, {"x": "S!$B$1", "y": "S!$B$2"}, "circular"),
    ({"B1": 1, "B2": "=Nowhere!A1+B1"}, {"x": "S!$B$1", "y": "S!$B$2"}, "does not exist"),
    ({"B1": 1, "B2": "=rate*B1"}, {"x": "S!$B$1", "y": "S!$B$2"}, "name RATE is not defined"),
    ({"B1": 1, "B2": 2}, {"x": "S!$B$1"}, "names no output"),
    ({"B1": "=1+1", "B2": "=B1"}, {"Xinput_x": "S!$B$1", "Xoutput_y": "S!$B$2"},
     "holding a formula"),
    ({"B1": 1, "B2": "=B1*2", "B3": "=B1"}, {"Xinput_t": "S!$B$1:$B$2", "Xoutput_y": "S!$B$3"},
     "holding a formula"),
])
def test_workbooks_the_engine_cannot_run_are_refused(
    cells: dict[str, Any], names: dict[str, str], why: str
) -> None:
    with pytest.raises(WorkbookError, match=why):
        compile_workbook(workbook(cells, names))


def test_not_a_workbook_is_refused() -> None:
    with pytest.raises(WorkbookError, match="not an .xlsx workbook"):
        compile_workbook(b"price,quantity\n1,2\n")


def test_inputs_default_to_the_workbook_and_bad_values_fail_their_record_only() -> None:
    plan = compile_workbook(build_workbook())
    assert list(plan.inputs) == ["price", "quantity", "tax"] and list(plan.outputs) == ["total"]
    got = evaluate(plan, [{}, {"price": 1}, {"price": [1]}, "x", {"price": None},
                          {"price": 2, "other": {"ignored": True}}])
    assert got[0] == {"total": 1430} and got[1] == {"total": 71.5}
    assert isinstance(got[2], RecordError) and "price" in got[2].message
    assert isinstance(got[3], RecordError)
    assert got[4] == {"total": 0} and got[5] == {"total": 143}


def test_range_outputs_come_back_as_rows() -> None:
    plan = compile_workbook(workbook(
        {"B1": 2, "C1": "=B1*2", "D1": "=B1*3", "C2": '=B1&"x"', "D2": "=B1>1"},
        {"n": "S!$B$1", "grid": "S!$C$1:$D$2"}))
    assert evaluate(plan, [{"n": 5}]) == [{"grid": [[10, 15], ["5x", True]]}]


def test_sales_example_workbook_gives_the_documents_totals() -> None:
    """examples/SalesExample.xlsx (examples/build_sales_workbook.py) and the one batchd
    serves give the seed document's sample results."""
    rows = [[1, 20, 65], [2, 74, 73], [3, 20, 65], [4, 34, 73], [5, 62, 62], [6, 43, 87],
            [7, 23, 35]]
    want = [1430, 5942.2, 1430, 2730.2, 4228.4, 4115.1, 885.5]
    for content in (build_workbook(), (EXAMPLES / "SalesExample.xlsx").read_bytes()):
        plan = compile_workbook(content)
        assert plan.vectorised_share == 1.0
        records = [{"sale_id": s, "price": p, "quantity": q, "tax": 0.1} for s, p, q in rows]
        assert [o["total"] for o in evaluate(plan, records)] == want
        assert math.isclose(sum(want[:2]), 7372.2)  # the document's total_SUM sample


def test_one_compiled_workbook_evaluated_from_several_threads_at_once() -> None:
    """Chunks of one version run in threads of one worker: the engine's compiled
    formulas keep state while they run, so evaluations must not interleave."""
    plan = compile_workbook((FIXTURES / "rounding.xlsx").read_bytes())
    rng = random.Random(5)
    batches = [[{"x": rng.uniform(-1e4, 1e4)} for _ in range(rng.randint(1, 3))]
               for _ in range(300)]
    want = [evaluate(plan, b) for b in batches]
    got: list[Any] = [None] * len(batches)

    def run(part: int) -> None:
        for i in range(part, len(batches), 4):
            got[i] = evaluate(plan, batches[i], vectorised=bool(i % 2))

    threads = [threading.Thread(target=run, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want


def test_an_error_saved_in_a_cell_is_an_error() -> None:
    plan = compile_workbook(workbook(
        {"B1": 1, "C1": "#N/A", "B3": '=IFERROR(C1,"err")&B1', "B4": "=ISNA(C1)"},
        {"x": "S!$B$1", "tagged": "S!$B$3", "missing": "S!$B$4"}))
    records = [{"x": 2}, {"x": "y"}]
    assert evaluate(plan, records) == evaluate(plan, records, vectorised=False) == [
        {"tagged": "err2", "missing": True}, {"tagged": "erry", "missing": True}]


RECORDWISE_FORMULAS = {
    "SUM": "=SUM(R!A1:C2)+SUM(B1,B2,2)", "SUMPRODUCT": "=SUMPRODUCT(R!A1:C1,R!A2:C2)",
    "AVERAGE": "=AVERAGE(R!A1:C2,B1)", "MIN": "=MIN(R!A1:C2)-MIN(B1,B2,7)",
    "MAX": "=MAX(R!A1:A2,B1*2,T!A1:A3)", "COUNT": "=COUNT(R!A1:C2,B1)",
    "COUNTA": "=COUNTA(R!A1:C2)", "PRODUCT": "=PRODUCT(R!A1:B1,B2)",
    "AND": "=AND(B1>0,R!A1:C1)", "OR": "=OR(B1>B2,R!A2:C2)",
    "COUNTIF": '=COUNTIF(R!A1:C2,">"&B1)', "SUMIF": '=SUMIF(R!A1:C2,">1",R!A1:C2)',
    "CONCATENATE": '=CONCATENATE(B1,"-",B2)', "EDATE": "=EDATE(B1,B2)",
    "EOMONTH": "=EOMONTH(B1,B2)", "DATEDIF": '=DATEDIF(B2,B1,"d")', "DAYS": "=_xlfn.DAYS(B1,B2)",
    "fixed table": "=SUMPRODUCT(R!A1:C1,T!D1:F1)+SUM(T!A1:A3)*B1",
    "nested": "=ROUND(SUM(R!A1:C2)/MAX(1,COUNT(R!A1:C2)),2)&IF(MIN(B1,B2)>0,\"+\",\"-\")",
    "computed range": "=SUM(C1:C3)*2+MAX(C1:C2)+VLOOKUP(B2,T!A1:A3,1,TRUE)",
}


def test_aggregates_agree_with_per_record_evaluation() -> None:
    """Aggregates over a range input (a record's list) and over cells run column-wise,
    reduced at once when every value is a number, else called per record: both equal
    the per-record path, for numbers and for text, booleans, empty cells and errors."""
    assert set(RECORDWISE_FORMULAS) - {"fixed table", "nested", "computed range"} == set(
        graph.RECORDWISE)
    cells: dict[str, Any] = {"B1": 2.5, "B2": 2, "C1": "=B1*2", "C2": "=B2-B1",
                             "C3": '=IF(B1>1,B1&"",B2)'}
    names = {"Xinput_x": "S!$B$1", "Xinput_y": "S!$B$2", "Xinput_grid": "R!$A$1:$C$2"}
    for row, (fn, formula) in enumerate(sorted(RECORDWISE_FORMULAS.items()), start=5):
        cells[f"B{row}"] = formula
        names[f"Xoutput_{fn.replace(' ', '_')}"] = f"S!$B${row}"
    more = {"R": {"A1": 1, "B1": 2, "C1": 3, "A2": 4, "B2": 5, "C2": 6},
            "T": {"A1": 1.5, "A2": -2, "A3": 0.25, "D1": 1, "E1": 0.5, "F1": 2}}
    plan = compile_workbook(workbook(cells, names, more=more))
    assert plan.vectorised_share == 1.0
    assert sum(s.pipe is not None for s in plan.steps) == len(RECORDWISE_FORMULAS)
    rng = random.Random(17)
    numbers = [0, 1, -1.5, 2.675, 1e-9, 45306, 1e15, 3]
    odd: list[Any] = ["abc", "12", "", None, True, False]
    numeric = [{"x": rng.choice(numbers), "y": rng.choice(numbers),
                "grid": [[rng.uniform(-1e3, 1e3) for _ in range(3)] for _ in range(2)]}
               for _ in range(200)]
    mixed = [{"x": rng.choice(numbers + odd), "y": rng.choice(numbers + odd),
              "grid": [[rng.choice(numbers + odd) for _ in range(3)]
                       for _ in range(rng.randint(0, 2))]} for _ in range(200)]
    for records in (numeric, mixed, numeric[:1], [{}, {"grid": None}, {"grid": []}]):
        assert evaluate(plan, records) == evaluate(plan, records, vectorised=False)


def test_aggregate_reductions_equal_the_engine_value_by_value() -> None:
    """The numeric reductions give the engine's doubles (numpy's pairwise sum row by
    row, Python's first min/max), record by record, for 1 to 300 values."""
    from formulas.functions import get_functions

    engine = get_functions()
    rng = np.random.default_rng(5)
    for k in (1, 2, 7, 8, 9, 31, 128, 129, 300):
        m = rng.uniform(-1e6, 1e6, (50, k)) * 10.0 ** rng.integers(-8, 8, (50, k))
        stack = m.astype(object).reshape(50, 1, k)
        near_one = (1 + (m - m.mean()) / (10 * np.abs(m).max() + 1)).astype(object)
        for fn in ("SUM", "AVERAGE", "MIN", "MAX", "COUNT", "PRODUCT"):
            if fn == "PRODUCT":  # values that do not overflow
                stack = near_one.reshape(50, 1, k)
            got = aggregates.reduce(fn, [(stack, True)], 50)
            want = [engine[fn](stack[i]) for i in range(50)]
            assert got is not None and [float(v) for v in got] == [
                float(np.ravel(w)[0]) for w in want], (fn, k)
        got = aggregates.reduce("SUMPRODUCT", [(stack, True), (stack[::-1].copy(), True)], 50)
        want = [engine["SUMPRODUCT"](stack[i], stack[49 - i]) for i in range(50)]
        assert got == [float(w) for w in want], k
    assert aggregates.reduce("SUM", [(np.array([["1"]], dtype=object), False)], 1) is None


def range_workbook() -> bytes:
    return workbook(
        {"A1": "item", "B1": "qty", "A2": "a", "B2": 1, "A3": "b", "B3": 2, "D1": 5, "D2": 6,
         "F1": "=SUM(B2:B3)*10+SUM(D1:D2)", "F2": "=COUNTA(A2:A3)"},
        {"Xinput_lines": "S!$A$1:$B$3", "Xinput_w": "S!$D$1:$D$2",
         "Xoutput_total": "S!$F$1", "Xoutput_n": "S!$F$2"})


def test_range_inputs_take_rows_plain_lists_and_spark_tables() -> None:
    plan = compile_workbook(range_workbook())
    records = [{}, {"w": [1, 2]}, {"w": [[1], [2]]}, {"w": [3]}, {"w": None},
               {"lines": [{"item": "x", "qty": 10}]},
               {"lines": [["item", "qty"], ["x", 4], ["y", 5]]},
               {"lines": [["h1", "h2"]]}]
    got = evaluate(plan, records)
    assert got == evaluate(plan, records, vectorised=False)
    assert [g["total"] for g in got] == [41, 33, 33, 33, 30, 111, 101, 11]
    assert [g["n"] for g in got] == [2, 2, 2, 2, 2, 1, 2, 0]


@pytest.mark.parametrize(("value", "why"), [
    ([1, 2, 3], "[1, 2, 3] is too long"),
    (5, "is not of type 'array', 'null'"),
    ([[1, 2]], "[1, 2] is too long"),
    ([{"a": 1}], "is not of type 'array'"),
    ([1, [2]], "is not of type 'number', 'string', 'boolean', 'null'"),
])
def test_a_range_input_of_the_wrong_shape_is_refused_by_the_schema(value: Any, why: str) -> None:
    """The published version's schema refuses the shape when the chunk is pushed (the
    dialect's 4xx); a record that reaches a worker all the same fails alone."""
    from batchd.tasks.registry import TaskDef

    plan = compile_workbook(range_workbook())
    task = TaskDef(name="t", version="1.0.0", handler=lambda r: r,
                   input_schema=plan.input_schema)
    problem = task.input_errors({"w": value})
    assert problem is not None and problem.startswith("w") and why in problem
    assert task.input_errors({"lines": [{"item": "x", "nope": 1}]}) is not None
    assert task.input_errors({"w": [1, 2], "lines": [{"item": "x"}], "other": 1}) is None
    (err,) = evaluate(plan, [{"w": value}])
    assert isinstance(err, RecordError) and "'w'" in err.message


def test_iso_dates_in_date_cells_and_out_of_date_formatted_outputs() -> None:
    plan = compile_workbook((FIXTURES / "isodates.xlsx").read_bytes())
    records = [{"start": "2026-12-07", "moment": "2026-12-07T13:30:00+01:00", "months": 2},
               {"start": "2026-02-30"}, {"start": 46363, "plain": "not a date"},
               {"start": "2026-12-07T18:00"}]
    got = evaluate(plan, records)
    assert got[0]["plus_months"] == "2027-02-07" and got[0]["plus_days"] == "2026-12-09"
    assert got[0]["later"] == "2026-12-08T18:30:00"  # 12:30 UTC + 1.25 days
    assert isinstance(got[1], RecordError) and "'start'" in got[1].message \
        and "2026-02-30" in got[1].message
    assert got[2]["plus_months"] == "2027-03-07" and got[2]["datedif"] == "#VALUE!"
    assert got[3]["plus_days"] == "2026-12-10T18:00:00"  # the time kept when there is one
    assert got[3]["year_month"] == 202601
