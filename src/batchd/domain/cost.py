"""Cost models: an estimate per record before a task runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CostModel:
    """Estimated price of running a task.

    Args:
        per_record_usd: flat price per record.
        per_item_usd: flat price per item (one handler call).
        per_record: optional function of the record giving its price, added to the flat one.
    """

    per_record_usd: float = 0.0
    per_item_usd: float = 0.0
    per_record: Callable[[Any], float] | None = None

    def estimate_record(self, record: Any) -> float:
        extra = self.per_record(record) if self.per_record is not None else 0.0
        return self.per_record_usd + extra

    def estimate_item(self, records: list[Any]) -> float:
        if self.per_record is None:
            return self.per_item_usd + self.per_record_usd * len(records)
        return self.per_item_usd + sum(self.estimate_record(r) for r in records)

    @property
    def is_flat(self) -> bool:
        return self.per_record is None

    def describe(self) -> dict[str, Any]:
        return {
            "per_record_usd": self.per_record_usd,
            "per_item_usd": self.per_item_usd,
            "depends_on_input": self.per_record is not None,
        }


def as_cost_model(value: CostModel | float | dict[str, Any] | None) -> CostModel:
    if value is None:
        return CostModel()
    if isinstance(value, CostModel):
        return value
    if isinstance(value, int | float):
        return CostModel(per_record_usd=float(value))
    return CostModel(**value)
