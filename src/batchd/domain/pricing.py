"""Token prices: what a provider batch costs, and what the same tokens cost one by one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PER = 1_000_000  # prices are USD per million tokens


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens at the standard (one call at a time) and the batch rate."""

    input: float
    output: float
    batch_input: float
    batch_output: float

    def standard_usd(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input + tokens_out * self.output) / PER

    def batch_usd(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.batch_input + tokens_out * self.batch_output) / PER


def _half(input_usd: float, output_usd: float) -> dict[str, float]:
    return {"input": input_usd, "output": output_usd}


# Batch rates default to half the standard ones, as both providers price batches.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "claude-opus-4-1": _half(15.0, 75.0),
    "claude-sonnet-4-5": _half(3.0, 15.0),
    "claude-haiku-4-5": _half(1.0, 5.0),
    "claude-3-5-haiku": _half(0.8, 4.0),
    "gpt-4.1": _half(2.0, 8.0),
    "gpt-4.1-mini": _half(0.4, 1.6),
    "gpt-4o": _half(2.5, 10.0),
    "gpt-4o-mini": _half(0.15, 0.6),
    # No ``local`` row: a model the operator runs has no standard price, so its jobs cost
    # what their handlers report and save nothing, unless the operator prices it.
}
FIELDS = ("input", "output", "batch_input", "batch_output")


def price_table(overrides: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, Price]:
    """The default prices with ``overrides`` ({model: {input, output, batch_input?,
    batch_output?}}) merged over them; raises ValueError on an unknown field."""
    rows = {m: dict(p) for m, p in DEFAULT_PRICES.items()}
    for model, fields in (overrides or {}).items():
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"price of {model!r}: unknown fields {sorted(unknown)}; "
                             f"known: {list(FIELDS)}")
        rows[model] = {**rows.get(model, {}), **fields}
    table = {}
    for model, f in rows.items():
        if "input" not in f or "output" not in f:
            raise ValueError(f"price of {model!r} needs input and output")
        table[model] = Price(
            input=float(f["input"]), output=float(f["output"]),
            batch_input=float(f.get("batch_input", f["input"] / 2)),
            batch_output=float(f.get("batch_output", f["output"] / 2)),
        )
    return table


def price_of(table: Mapping[str, Price], model: str | None) -> Price | None:
    """The model's row, or the longest name its id starts with
    (``claude-sonnet-4-5-20250929`` → ``claude-sonnet-4-5``)."""
    if not model:
        return None
    if model in table:
        return table[model]
    prefixes = [name for name in table if model.startswith(name)]
    return table[max(prefixes, key=len)] if prefixes else None


def charge(
    price: Price | None, *, tokens_in: int, tokens_out: int, reported_usd: float = 0.0
) -> tuple[float, float]:
    """(cost, savings) of one job: its tokens at the batch rate, and the standard rate
    minus that. Without a price the cost is what the job reported and saves nothing."""
    if price is None:
        return reported_usd, 0.0
    cost = price.batch_usd(tokens_in, tokens_out)
    return cost, price.standard_usd(tokens_in, tokens_out) - cost
