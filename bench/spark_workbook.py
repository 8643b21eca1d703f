"""Excel workbook services: records/s through the Spark pipeline, and both evaluation paths.

1. ``myfolder/SalesExampleWorkbook`` (the Spark document's SalesExample as an ``.xlsx``)
   end to end through the Spark dialect: 1,000,000 records in 1,000-record chunks, as
   ``bench/spark_pipeline.py`` pushes and pulls them (``--python`` runs the Python
   ``myfolder/SalesExample`` the same way, for comparison).
2. A 200-formula workbook (arithmetic, ``ROUND``, ``IF``, ``VLOOKUP`` into a table, text,
   and aggregates: ``SUM`` over the input range, ``MAX``/``MIN`` over cells) evaluated in
   this process: records/s column-wise (the chunk as columns, the aggregates reduced
   across each record's values) and per record (every formula once per record).

    python bench/spark_workbook.py [--records 1000000] [--python] [--skip-pipeline]
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import spark_pipeline  # noqa: E402
from common import mb  # noqa: E402

N_FORMULAS = 200


def formula_workbook(n: int = N_FORMULAS) -> bytes:
    """``n`` formulas over five inputs (x1..x5) and a rate table; every tenth formula an
    aggregate over the input range, the last one the output ``score``."""
    from openpyxl import Workbook
    from openpyxl.workbook.defined_name import DefinedName

    wb = Workbook()
    ws = wb.active
    ws.title = "Model"
    for i in range(1, 6):
        ws[f"B{i}"] = float(i)
        wb.defined_names[f"Xinput_x{i}"] = DefinedName(f"Xinput_x{i}", attr_text=f"Model!$B${i}")
    rates = wb.create_sheet("Rates")
    for r in range(1, 11):
        rates[f"A{r}"] = r
        rates[f"B{r}"] = round(0.01 * r, 4)
    kinds = [
        "=ROUND({p}*1.0001+B1,4)", "={p}+B2*0.5-B3/7", '=IF({p}>B4,{p}-B4,{p}+B5)',
        "=ROUND({p}*VLOOKUP(MOD(INT(B1),10)+1,Rates!A1:B10,2,FALSE)+{p},3)",
        "=ABS({p})-B5*0.01", '=IF(LEN(TEXT({p},"0"))>3,{p}/10,{p}*1.01)',
        "={p}*{p}/(1+ABS({p}))", "=ROUNDDOWN({p}+B3,2)", "=MAX({p},B1)-MIN(B2,B3)*0.01",
    ]
    prev = "B1"
    for k in range(n):
        row = 10 + k
        formula = "=SUM(B1:B5)*0.001+{p}" if k % 10 == 9 else kinds[k % len(kinds)]
        ws[f"C{row}"] = formula.format(p=prev)
        prev = f"C{row}"
    wb.defined_names["Xoutput_score"] = DefinedName("Xoutput_score",
                                                    attr_text=f"Model!${prev[0]}${prev[1:]}")
    wb.defined_names["Xoutput_first"] = DefinedName("Xoutput_first", attr_text="Model!$C$10")
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def paths(records: int, per_record: int) -> dict[str, Any]:
    from batchd.tasks.workbook.compiler import compile_workbook
    from batchd.tasks.workbook.evaluate import evaluate

    t0 = time.perf_counter()
    plan = compile_workbook(formula_workbook())
    compile_s = time.perf_counter() - t0
    rnd = random.Random(3)
    recs = [{f"x{i}": rnd.uniform(-100, 100) for i in range(1, 6)} for _ in range(records)]
    evaluate(plan, recs[:100])
    chunk = 1000
    t0 = time.perf_counter()
    columnwise = []
    for start in range(0, records, chunk):
        columnwise += evaluate(plan, recs[start:start + chunk])
    col_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    one_by_one = evaluate(plan, recs[:per_record], vectorised=False)
    rec_s = time.perf_counter() - t0
    assert one_by_one == columnwise[:per_record], "the two paths differ"
    return {"compile_s": compile_s, "steps": len(plan.steps),
            "elementwise": sum(s.elementwise for s in plan.steps),
            "aggregates": sum(s.pipe is not None for s in plan.steps),
            "columnwise": records / col_s, "per_record": per_record / rec_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--python", action="store_true",
                    help="also run the Python SalesExample the same way")
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--formula-records", type=int, default=20_000)
    ap.add_argument("--formula-per-record", type=int, default=1_000)
    args = ap.parse_args()
    services = ["myfolder/SalesExampleWorkbook"] + (["myfolder/SalesExample"] if args.python
                                                    else [])
    for service in [] if args.skip_pipeline else services:
        r = spark_pipeline.run(args.records, size=1000, threads=4, per_request=10,
                               service=service, key="sale_id")
        print(f"spark {service}: {args.records:,} records in 1,000-record chunks: "
              f"{r['rate']:,.0f} records/s end to end ({r['wall_s']:.1f} s, "
              f"{r['rejected']:.0f} pushes retried on a full input buffer), "
              f"server peak RSS {mb(int(r['peak_rss']))}")
    f = paths(args.formula_records, args.formula_per_record)
    print(f"{N_FORMULAS}-formula workbook: compiled in {f['compile_s']:.2f} s, "
          f"{f['elementwise']} of {f['steps']} formulas column-wise ({f['aggregates']} "
          "with aggregates over each record's values); "
          f"{f['columnwise']:,.0f} records/s column-wise (1,000-record chunks, "
          f"{args.formula_records:,} records), {f['per_record']:,.0f} records/s per record "
          f"({args.formula_per_record:,} records); same results")


if __name__ == "__main__":
    main()
