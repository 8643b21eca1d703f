"""``myfolder/SalesExample`` 0.2.0: the Spark document's sample service, as a batchd service.

A Spark service is a task named ``folder/name`` with a semantic version. This one
computes ``total = round(price * quantity * (1 + tax), 2)`` and passes ``sale_id``
through, as the document's sample results show.
"""

from __future__ import annotations

from typing import Any

from batchd.tasks.context import RecordError
from batchd.tasks.examples.sales import INPUT_SCHEMA
from batchd.tasks.registry import task


@task(
    "myfolder/SalesExample",
    version="0.2.0",
    input_schema=INPUT_SCHEMA,
    output_schema={
        "type": "object",
        "properties": {"sale_id": {}, "total": {"type": "number"}},
    },
    vectorised=True,
    mode="inline",
    cost=0.000001,
    validate_input=False,  # bad rows are reported per record, as the Spark service does
)
def sales_example(records: list[Any]) -> list[Any]:
    """total = round(price * quantity * (1 + tax), 2) per record, with its sale_id."""
    out: list[Any] = []
    append = out.append
    for r in records:
        try:
            total = round(r["price"] * r["quantity"] * (1 + r["tax"]), 2)
        except (KeyError, TypeError) as exc:
            append(RecordError(f"bad record: {exc!r}", code="invalid_record"))
            continue
        # Excel-style numbers: a whole total is written 1430, not 1430.0.
        value = int(total) if isinstance(total, float) and total.is_integer() else total
        append({"sale_id": r["sale_id"], "total": value} if "sale_id" in r else {"total": value})
    return out
