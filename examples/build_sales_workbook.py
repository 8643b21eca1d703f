"""Write examples/SalesExample.xlsx: the Spark document's SalesExample as a workbook.

    python examples/build_sales_workbook.py

The workbook is the one batchd serves as ``myfolder/SalesExampleWorkbook`` (built by
:func:`batchd.tasks.examples.sales_workbook.build_workbook`, with openpyxl); publish
it as a service of your own with::

    batchd services publish examples/SalesExample.xlsx --service myfolder/Sales --version 1.0.0
"""

from __future__ import annotations

from pathlib import Path

from batchd.tasks.examples.sales_workbook import build_workbook

if __name__ == "__main__":
    target = Path(__file__).with_name("SalesExample.xlsx")
    target.write_bytes(build_workbook())
    print(f"wrote {target}")
