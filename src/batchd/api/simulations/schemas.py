"""Request bodies of the Simulations dialect, parsed into checked models."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from batchd.api import jsonbody
from batchd.domain import errors

MAX_METADATA_BYTES = 16 * 1024
PRIORITY_NAMES = {"low": 25, "normal": 50, "high": 75}
Model = TypeVar("Model", bound=BaseModel)


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it here, with the field's name.
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


def _priority(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in PRIORITY_NAMES:
        return PRIORITY_NAMES[value.strip().lower()]
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
Priority = Annotated[int, BeforeValidator(_priority), Field(ge=0, le=100)]


class SimulationRequest(BaseModel):
    """One simulation: a template and its parameters (any further keys go to the template)."""

    model_config = ConfigDict(extra="allow")

    template_id: Text = Field(min_length=1, max_length=200)
    entity_count: int | None = Field(default=None, ge=1)
    timepoint_count: int | None = Field(default=None, ge=1)

    def params(self) -> dict[str, Any]:
        """The template's input: everything given but ``template_id``."""
        return self.model_dump(exclude={"template_id"}, exclude_unset=True)


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    simulations: list[SimulationRequest] = Field(min_length=1)
    parallel_jobs: int = Field(default=3, ge=1, le=1000)
    fail_fast: bool = False
    budget_cap_usd: float | None = Field(default=None, ge=0, le=1e9)
    priority: Priority = 50
    metadata: dict[str, Any] | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        size = len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"is {size} bytes as JSON; at most {MAX_METADATA_BYTES} allowed")
        return value


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reason: Text | None = Field(default=None, max_length=1000)
    cancel_running: bool = True


def parse(model: type[Model], body: bytes, *, empty_ok: bool = False) -> Model:
    """``body`` (JSON) as ``model``; raises InvalidInput naming each bad field."""
    if not body.strip():
        if empty_ok:
            return model()
        raise errors.InvalidInput("the request needs a JSON body")
    data = jsonbody.parse(body)
    if not isinstance(data, dict):
        raise errors.InvalidInput("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise errors.InvalidInput(
            "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
        ) from None
