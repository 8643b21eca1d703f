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
from batchd.tasks.workbook import excel, fast, graph  # noqa: E402
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
    """The fixtures exercise column-wise steps and per-record ones (aggregates over
    input ranges, EDATE/EOMONTH, AND/OR, CONCATENATE, MIN)."""
    shares = {n: compile_workbook((FIXTURES / f"{n}.xlsx").read_bytes()).vectorised_share
              for n in REFERENCE}
    assert shares["arithmetic"] == shares["lookups"] == shares["rounding"] == 1.0
    assert shares["sumproduct"] == 0.0
    assert 0 < shares["conditions"] < 1 and 0 < shares["dates"] < 1
    # Light (evaluated on the worker's loop): few formulas, all column-wise.
    assert compile_workbook(build_workbook()).light
    assert not compile_workbook((FIXTURES / "sumproduct.xlsx").read_bytes()).light


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
    ({"B1": 1, "B2": 2, "B3": "=B1"}, {"Xinput_t": "S!$B$1:$B$2", "Xoutput_y": "S!$B$3"},
     "an input is one cell"),
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
