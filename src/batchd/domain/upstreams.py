"""Model upstreams (``BATCHD_UPSTREAMS``): the servers, the models each serves, their limits;
routing a request's ``model``; and the plan that shares an upstream's limits between the
processes that call it.

An upstream's limits hold across every process sharing the database. Each process holds a
*share* of each limit in the table ``upstream_shares`` (a lease it renews), and enforces
only its share locally. :func:`plan` decides a process's next share from what the others
hold, in one transaction (serialised per upstream): a share grows only from what nobody
else holds, and never drops below what the process is using right now (requests in
flight; requests and tokens sent in the current rate window). So the sum of the shares,
and with it the sum of what is in flight and sent, never passes the limit. Shares follow
demand by max-min fairness (water-filling): an idle process gives its share away.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

RATE_WINDOW_S = 1.0  # requests per minute are enforced as rpm/60 in any second (rpm >= 60)
LONG_WINDOW_S = 60.0  # tokens per minute, and rpm below 60, over any minute
UNLIMITED = 2**31 - 1


class ModelSpec(BaseModel):
    """A model an upstream serves: its name there, and the names clients may use."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    aliases: list[str] = Field(default_factory=list)


class UpstreamLimits(BaseModel):
    """0 = no limit."""

    model_config = ConfigDict(extra="forbid")
    concurrency: int = Field(default=0, ge=0, le=UNLIMITED)
    rpm: int = Field(default=0, ge=0, le=UNLIMITED)
    tpm: int = Field(default=0, ge=0, le=UNLIMITED)


class UpstreamSpec(BaseModel):
    """One model server of ``BATCHD_UPSTREAMS``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    base_url: str = Field(min_length=1, description="Ends in /v1 (OpenAI style) or is the "
                          "API root (Anthropic style).")
    api_key: str | None = None
    style: Literal["openai", "anthropic"] = "openai"
    models: list[ModelSpec] = Field(min_length=1)
    limits: UpstreamLimits = Field(default_factory=UpstreamLimits)
    timeout_s: float = Field(default=600.0, gt=0)

    @field_validator("models", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        return value.rstrip("/")


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request for a model goes: the upstream, and the model's name there."""

    upstream: UpstreamSpec
    model: str


class Routes:
    """Every model name (and alias) of the configured upstreams."""

    def __init__(self, upstreams: Sequence[UpstreamSpec]) -> None:
        self.upstreams = {u.name: u for u in upstreams}
        self._by_model: dict[str, Route] = {}
        for u in upstreams:
            for m in u.models:
                for name in (m.name, *m.aliases):
                    self._by_model.setdefault(name, Route(u, m.name))

    def route(self, model: str) -> Route | None:
        return self._by_model.get(model)

    def models(self) -> list[str]:
        return sorted(self._by_model)


def parse(raw: Iterable[Any]) -> list[UpstreamSpec]:
    """Checked upstreams; raises ValueError naming the problem (pydantic's, or a name or
    model given twice)."""
    specs = [UpstreamSpec.model_validate(u) for u in raw]
    names = [u.name for u in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"upstream names must be unique: {', '.join(twice)}")
    seen: dict[str, str] = {}
    for u in specs:
        for m in u.models:
            for name in (m.name, *m.aliases):
                if seen.get(name, u.name) != u.name:
                    raise ValueError(f"model {name!r} is served by both {seen[name]} and "
                                     f"{u.name}; give one of them an alias")
                seen[name] = u.name
    return specs


# sharing limits between processes


@dataclass(frozen=True, slots=True)
class Held:
    """One process's row of ``upstream_shares``: the share it holds of each limit and what
    it wants (its requests in flight and waiting)."""

    process_id: str
    concurrency: int
    rpm: int
    tpm: int
    demand: int
    lease_until: float
    paused_until: float = 0.0


@dataclass(frozen=True, slots=True)
class Want:
    """What a process asks for: ``demand`` (requests in flight and waiting) and the floor
    of each limit it is using now (in flight; sent in the current window, per minute)."""

    demand: int
    in_flight: int = 0
    rpm_used: int = 0
    tpm_used: int = 0


@dataclass(frozen=True, slots=True)
class Share:
    """A process's allowance (what it may use from now on) and what it records as held
    (never below what it is using)."""

    concurrency: int
    rpm: int
    tpm: int
    held: Held
    paused_until: float = 0.0  # no request starts before (the latest 429's Retry-After)


def water_fill(capacity: int, demands: dict[str, int]) -> dict[str, int]:
    """Max-min fair integer shares of ``capacity`` (ties, the remainder: by id order)."""
    shares = dict.fromkeys(demands, 0)
    left = capacity
    pending = sorted(demands, key=lambda k: (demands[k], k))
    while pending and left > 0:
        even, extra = divmod(left, len(pending))
        d = demands[pending[0]]
        if d <= even:  # the smallest demand is met in full
            shares[pending[0]] = d
            left -= d
            pending.pop(0)
            continue
        for i, key in enumerate(sorted(pending)):
            shares[key] = even + (1 if i < extra else 0)
        left = 0
    return shares


def paused_of(others: Sequence[Held], now: float) -> float:
    """The latest pause (a 429's Retry-After) any live process recorded."""
    return max([0.0, *(h.paused_until for h in others if h.lease_until >= now)])


def _dimension(limit: int, me: str, demand: dict[str, int], others_held: int, floor: int
               ) -> tuple[int, int]:
    """(allowance, held) of one limit; a limit of 0 is no limit."""
    if limit <= 0:
        return UNLIMITED, 0
    fair = water_fill(limit, demand)[me]
    allowance = max(0, min(fair, limit - others_held))
    return allowance, max(allowance, floor)


def plan(limits: UpstreamLimits, *, me: str, want: Want, others: Sequence[Held], now: float,
         lease_until: float, paused_until: float = 0.0) -> Share:
    """This process's next share of ``limits``, given the live rows of the others."""
    live = [h for h in others if h.process_id != me and h.lease_until >= now]
    conc_demand = {h.process_id: h.demand for h in live}
    conc_demand[me] = want.demand
    # Rates are split evenly between the processes that have work.
    def rate_demand(limit: int) -> dict[str, int]:
        found = {h.process_id: limit if h.demand else 0 for h in live}
        found[me] = limit if want.demand else 0
        return found

    c, c_held = _dimension(limits.concurrency, me, conc_demand,
                           sum(h.concurrency for h in live), want.in_flight)
    r, r_held = _dimension(limits.rpm, me, rate_demand(limits.rpm),
                           sum(h.rpm for h in live), want.rpm_used)
    t, t_held = _dimension(limits.tpm, me, rate_demand(limits.tpm),
                           sum(h.tpm for h in live), want.tpm_used)
    held = Held(process_id=me, concurrency=c_held, rpm=r_held, tpm=t_held, demand=want.demand,
                lease_until=lease_until, paused_until=paused_until)
    return Share(concurrency=c, rpm=r, tpm=t, held=held,
                 paused_until=max(paused_until, paused_of(live, now)))


def rpm_window(rpm: int) -> tuple[float, int]:
    """(window in seconds, requests allowed in any such window) for a share of ``rpm``."""
    if rpm >= UNLIMITED:
        return RATE_WINDOW_S, UNLIMITED
    if rpm >= 60:
        return RATE_WINDOW_S, rpm // 60
    return LONG_WINDOW_S, rpm
