"""A task definition as data: what ``POST /api/tasks`` takes and the database keeps."""

from __future__ import annotations

from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, field_validator

from batchd.domain.cost import CostModel
from batchd.tasks.registry import Runner

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$"


class CostSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    per_record_usd: float = Field(default=0.0, ge=0)
    per_item_usd: float = Field(default=0.0, ge=0)

    def model(self) -> CostModel:
        return CostModel(per_record_usd=self.per_record_usd, per_item_usd=self.per_item_usd)


class RunnerSpec(BaseModel):
    """A named execution profile: the model an ``llm`` task asks for, a timeout, a price."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    model: str | None = Field(default=None, max_length=200)
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 86400)
    cost: CostSpec | None = None
    description: str = Field(default="", max_length=2000)

    def runner(self) -> Runner:
        return Runner(
            name=self.name, model=self.model, timeout_s=self.timeout_s,
            cost=self.cost.model() if self.cost else None, description=self.description,
        )


class TaskSpec(BaseModel):
    """A task of kind ``python``, ``http``, ``llm`` or ``workbook``; ``config`` is the kind's
    own."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    version: str = Field(default="1.0.0", min_length=1, max_length=50,
                         pattern=r"^[0-9A-Za-z.+\-]+$")
    kind: Literal["python", "http", "llm", "workbook"]
    description: str = Field(default="", max_length=10_000)
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    runners: list[RunnerSpec] = Field(default_factory=list, max_length=100)
    cost: CostSpec = Field(default_factory=CostSpec)
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 86400)
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("input_schema", "output_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                jsonschema.validators.validator_for(value).check_schema(value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return value

    @field_validator("runners")
    @classmethod
    def _unique_runners(cls, value: list[RunnerSpec]) -> list[RunnerSpec]:
        names = [r.name for r in value]
        if len(set(names)) != len(names):
            raise ValueError("runner names must be unique")
        return value
