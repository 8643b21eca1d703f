"""The sample calculation service of the Spark batch document."""

from __future__ import annotations

from typing import Any

from batchd.tasks.context import RecordError
from batchd.tasks.registry import task

INPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "price": {"type": "number"},
        "quantity": {"type": "number"},
        "tax": {"type": "number"},
    },
    "required": ["price", "quantity", "tax"],
}
OUTPUT_SCHEMA = {"type": "object", "properties": {"total": {"type": "number"}}}


@task(
    "sales",
    version="1.0.0",
    input_schema=INPUT_SCHEMA,
    output_schema=OUTPUT_SCHEMA,
    vectorised=True,
    mode="inline",
    cost=0.000001,
    # Rows are checked by the handler and bad ones reported per record, as the
    # Spark service does, so a million-row upload is not held up by schema checks.
    validate_input=False,
)
def sales(records: list[Any]) -> list[Any]:
    """total = round(price * quantity * (1 + tax), 2) for every record."""
    out: list[Any] = []
    append = out.append
    for r in records:
        try:
            append({"total": round(r["price"] * r["quantity"] * (1 + r["tax"]), 2)})
        except (KeyError, TypeError) as exc:
            append(RecordError(f"bad record: {exc!r}", code="invalid_record"))
    return out
