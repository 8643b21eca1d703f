"""Request bodies of the Spark batch API."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

MB = 1_000_000  # the document's 70 MB buffer is 70,000,000 bytes
DEFAULT_MAX_INPUT_MB = 70.0
DEFAULT_MAX_OUTPUT_MB = 80.0


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it here, with the field's name.
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


class BatchCreate(BaseModel):
    """``POST /{tenant}/api/v4/batch``. Other Execute API fields are accepted and ignored.

    The published Spark SDK (``cspark``'s ``batches.create``) names some fields otherwise
    than the document: ``max_input_size_in_mb``, ``max_output_size_in_mb`` and
    ``chunks_per_request`` (the names the batch information reports), ``output`` as one
    comma-separated string, and ``version_id`` instead of ``service`` for a service
    given by version id. Both spellings are accepted.
    """

    model_config = ConfigDict(extra="ignore")

    service: Text = Field(min_length=1, max_length=500)
    output: list[Text] | None = Field(default=None, max_length=1000)
    unique_record_key: Text | None = Field(default=None, min_length=1, max_length=500)
    source_system: Text | None = Field(default=None, max_length=1000)
    correlation_id: Text | None = Field(default=None, max_length=1000)
    call_purpose: Text | None = Field(default=None, max_length=1000)
    initial_workers: int | None = Field(default=None, ge=1, le=10_000)
    max_workers: int | None = Field(default=None, ge=1, le=10_000)
    runner_thread_count: int = Field(default=1, ge=1, le=64)
    chunks_per_thread: int = Field(
        default=1, ge=1, le=64,
        validation_alias=AliasChoices("chunks_per_thread", "chunks_per_request"),
    )
    max_input_in_mb: float = Field(
        default=DEFAULT_MAX_INPUT_MB, gt=0, le=1_000_000,
        validation_alias=AliasChoices("max_input_in_mb", "max_input_size_in_mb"),
    )
    max_output_in_mb: float = Field(
        default=DEFAULT_MAX_OUTPUT_MB, gt=0, le=1_000_000,
        validation_alias=AliasChoices("max_output_in_mb", "max_output_size_in_mb"),
    )
    acceptable_error_percentage: float = Field(default=0, ge=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _service_by_version_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("service") is None and data.get("version_id"):
            return {**data, "service": data["version_id"]}
        return data

    @field_validator("output", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("output")
    @classmethod
    def _patterns_compile(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or ():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return value


class Aggregation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output_name: str = Field(min_length=1, max_length=500)
    operator: Literal["SUM"]

    @field_validator("operator", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Summary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ignore_error: bool = False
    aggregation: list[Aggregation] = Field(default_factory=list, max_length=1000)


class ChunkData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputs: list[Any]
    parameters: dict[str, Any] | None = None
    summary: Summary | None = None


class Chunk(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Text = Field(min_length=1, max_length=255)
    data: ChunkData
    size: Any = None  # a hint the document allows; the server counts the records itself


class ChunksBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    chunks: list[Chunk] = Field(min_length=1)


class PatchBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    batch_status: Literal["closed", "cancelled"]
