"""``myfolder/SalesExampleWorkbook`` 0.2.0: the Spark document's SalesExample as an Excel
workbook, beside the Python version (``myfolder/SalesExample``).

One sheet, ``Sales``: the inputs ``price`` (B1), ``quantity`` (B2) and ``tax`` (B3), and
``total`` (B5) ``=ROUND(B1*B2*(1+B3),2)``, named with Spark's convention
(``Xinput_price`` … ``Xoutput_total``). :func:`build_workbook` makes the file;
``examples/build_sales_workbook.py`` writes it to ``examples/SalesExample.xlsx``.
Registered when the ``workbooks`` extra is installed.
"""

from __future__ import annotations

import importlib.util
import io

from batchd.tasks.registry import default_registry

NAME = "myfolder/SalesExampleWorkbook"
VERSION = "0.2.0"
INPUTS = {"price": ("B1", 20), "quantity": ("B2", 65), "tax": ("B3", 0.1)}
OUTPUTS = {"total": ("B5", "=ROUND(B1*B2*(1+B3),2)")}


def build_workbook() -> bytes:
    """The SalesExample workbook as ``.xlsx`` bytes."""
    from openpyxl import Workbook
    from openpyxl.workbook.defined_name import DefinedName

    wb = Workbook()
    ws = wb.active
    ws.title = "Sales"
    for name, (ref, value) in {**INPUTS, **OUTPUTS}.items():
        ws[f"A{ref[1:]}"] = name
        ws[ref] = value
        defined = ("Xinput_" if name in INPUTS else "Xoutput_") + name
        wb.defined_names[defined] = DefinedName(defined, attr_text=f"Sales!${ref[0]}${ref[1:]}")
    ws["B1"].number_format = ws["B5"].number_format = "#,##0.00"
    ws["B3"].number_format = "0%"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("formulas", "openpyxl"))


if _installed():
    from batchd.tasks.kinds import workbook

    default_registry.add(workbook.in_code(
        name=NAME, version=VERSION, content=build_workbook, inputs=list(INPUTS),
        outputs=list(OUTPUTS),
        description="The Spark document's SalesExample as an Excel workbook: "
                    "total = ROUND(price * quantity * (1 + tax), 2)",
    ))
