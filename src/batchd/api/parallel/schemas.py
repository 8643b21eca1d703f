"""Request bodies: a run (``TaskRunCreateParams`` / ``RunInputParam``), a group, runs to
add. Checked with pydantic; a run is kept as the SDK's ``RunInput`` (its ``task_spec``
normalised: a bare string is a text schema, a JSON schema has ``type: json``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from batchd.api import jsonbody

MAX_RUNS = 1000  # runs per add_runs call, as the SDK documents
Key = Annotated[str, StringConstraints(min_length=1, max_length=16)]
Value = Annotated[str, StringConstraints(max_length=512)] | float | bool
Metadata = dict[Key, Value]


class JsonSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    json_schema: dict[str, Any]
    type: Literal["json"] = "json"


class TextSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    type: Literal["text"] = "text"


class AutoSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["auto"] = "auto"


Schema = JsonSchema | TextSchema | AutoSchema | str


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    output_schema: Schema
    input_schema: JsonSchema | TextSchema | str | None = None


class Webhook(BaseModel):
    url: str = Field(min_length=1)
    event_types: list[Literal["task_run.status"]] | None = None


class RunIn(BaseModel):
    """A run; fields the engine has no use for (source policies, MCP servers, …) are kept
    with the run and shown with its input."""

    model_config = ConfigDict(extra="allow")
    input: str | dict[str, Any]
    processor: str = Field(min_length=1, max_length=100)
    metadata: Metadata | None = None
    task_spec: TaskSpec | None = None
    webhook: Webhook | None = None


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metadata: Metadata | None = None


class RunsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[RunIn] = Field(min_length=1, max_length=MAX_RUNS)
    default_task_spec: TaskSpec | None = None


def _spec(spec: TaskSpec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    out = spec.model_dump(exclude_none=True)
    for key in ("output_schema", "input_schema"):
        if isinstance(out.get(key), str):
            out[key] = {"type": "text", "description": out[key]}
    return out


def record(run: RunIn, default_spec: TaskSpec | None = None) -> dict[str, Any]:
    """The run as stored (and shown as its ``RunInput``)."""
    record = run.model_dump(exclude_none=True, exclude={"task_spec"})
    spec = _spec(run.task_spec or default_spec)
    if spec is not None:
        record["task_spec"] = spec
    return record


def parse(model: type[BaseModel], body: bytes) -> Any:
    """``body`` as ``model``; a bad field is a 422 naming each (as FastAPI's own)."""
    data = jsonbody.parse(body) if body.strip() else {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:  # answered by errors.validation_error
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                      for e in exc.errors(include_url=False)]) from None
