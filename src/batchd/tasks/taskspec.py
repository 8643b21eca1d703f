"""The built-in task ``task_spec_run``: a run that carries only a task spec (Parallel's Task
API), answered by a model upstream (``BATCHD_UPSTREAMS``) with the output schema as
structured output.

A record is the run as submitted: ``{"input": text or object, "processor", "task_spec"?:
{"output_schema", "input_schema"?}, "metadata"?, …}``. The processor names the model and
the price per run (``BATCHD_PARALLEL_PROCESSORS``). A JSON output schema is sent as
``response_format: json_schema`` and the answer is checked against it (jsonschema): an
answer that does not parse or conform is an error of the attempt, so the engine retries
it (up to ``BATCHD_PARALLEL_MAX_ATTEMPTS``) and then fails the run saying what did not
conform. A text (or auto, or no) output schema asks for text. The output is ``{"type":
"json" | "text", "content"}``. What the upstream refuses (an unknown model, a 4xx) fails
the run at once; 429s, 5xx and lost connections are retried as for ``model_request``.

A run whose processor is not one of those but names a registered task (Python, or defined
over the API: HTTP, LLM) runs that task with its ``input``; an object it returns is a
JSON output, anything else text.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
import orjson

from batchd.domain import errors
from batchd.domain.cost import CostModel
from batchd.domain.processors import Processor, parse
from batchd.tasks import dispatch
from batchd.tasks.context import RecordError, TaskContext
from batchd.tasks.kinds import runtime
from batchd.tasks.registry import TaskDef, TaskRegistry
from batchd.tasks.upstream import calls

NAME = "task_spec_run"
VERSION = "1.0.0"
KIND = "upstream"
SYSTEM = ("You are a research assistant. Do the task described below for the input the "
          "user gives, and answer only with the output asked for.")
TEXT_SCHEMA = {"type": "object", "properties": {"output": {"type": "string"}}}


class NonConformingOutput(Exception):
    """The model's answer is not what the output schema asks for (the engine retries)."""


def processors() -> dict[str, Processor]:
    """The processors of ``BATCHD_PARALLEL_PROCESSORS``."""
    return _processors(orjson.dumps(runtime.settings().parallel_processors))


@functools.lru_cache(maxsize=4)
def _processors(raw: bytes) -> dict[str, Processor]:
    return parse(orjson.loads(raw))


def unknown_processor(name: Any, registry: TaskRegistry) -> str | None:
    """Why ``name`` cannot be a run's processor (one of ``BATCHD_PARALLEL_PROCESSORS``, or
    a task of ``registry``), or None when it can."""
    known = processors()
    if isinstance(name, str) and name in known:
        return None
    if isinstance(name, str):
        try:
            dispatch.target(registry, name, dispatcher=NAME)
            return None
        except errors.UnknownTask:
            pass
    return (f"unknown processor {name!r}: neither a processor ({', '.join(sorted(known))}) "
            "nor a registered task")


def model_of(processor: str) -> str | None:
    found = processors().get(processor)
    if found is not None and found.model:
        return found.model
    served = calls.routes().upstreams
    first = next(iter(served.values()), None)
    return first.models[0].name if first is not None else None


def json_schema_of(spec: Any) -> dict[str, Any] | None:
    """The JSON schema of a task spec's output, or None for text, auto or no schema."""
    out = spec.get("output_schema") if isinstance(spec, dict) else None
    if isinstance(out, dict) and out.get("type", "json") == "json" and isinstance(
            out.get("json_schema"), dict):
        return out["json_schema"]  # type: ignore[no-any-return]
    return None


def _described(schema: Any) -> str | None:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, dict):
        if isinstance(schema.get("json_schema"), dict):
            return orjson.dumps(schema["json_schema"]).decode()
        if isinstance(schema.get("description"), str):
            return str(schema["description"])
    return None


def chat_body(record: dict[str, Any], model: str) -> dict[str, Any]:
    """The chat-completions request of a run."""
    spec = record.get("task_spec") or {}
    system = SYSTEM
    for label, key in (("Input", "input_schema"), ("Output", "output_schema")):
        text = _described(spec.get(key))
        if text:
            system += f"\n{label}: {text}"
    value = record.get("input")
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": system},
                     {"role": "user", "content": value if isinstance(value, str)
                      else orjson.dumps(value).decode()}],
    }
    schema = json_schema_of(spec)
    if schema is not None:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "output", "schema": schema}}
    return body


@functools.lru_cache(maxsize=64)
def _validator(raw: bytes) -> Any:
    schema = orjson.loads(raw)
    return jsonschema.validators.validator_for(schema)(schema)


def conformance_error(answer: Any, schema: dict[str, Any]) -> str | None:
    """Why ``answer`` does not conform to ``schema``, or None when it does."""
    validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    err = jsonschema.exceptions.best_match(validator.iter_errors(answer))
    if err is None:
        return None
    where = "/".join(str(p) for p in err.absolute_path)
    return f"{where}: {err.message}" if where else err.message


def _content(answer: dict[str, Any]) -> str:
    body = answer.get("body") or {}
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise NonConformingOutput("the model's answer has no message content") from None
    return content if isinstance(content, str) else ""


def output_of(content: str, schema: dict[str, Any] | None, model: str) -> dict[str, Any]:
    """The run's output from the model's text; raises NonConformingOutput."""
    if schema is None:
        return {"type": "text", "content": content}
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise NonConformingOutput(f"the answer of model {model} is not JSON, as the output "
                                  f"schema asks: {content[:200]!r}") from None
    problem = conformance_error(value, schema)
    if problem is not None:
        raise NonConformingOutput(f"the answer of model {model} does not conform to the "
                                  f"output schema: {problem}")
    return {"type": "json", "content": value}


def task_output(out: Any) -> dict[str, Any]:
    """The output of a run of a registered task: JSON if an object, else text."""
    if isinstance(out, dict):
        return {"type": "json", "content": out}
    return {"type": "text", "content": out if isinstance(out, str)
            else orjson.dumps(out).decode()}


async def ask_model(record: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    processor = record.get("processor")
    model = model_of(processor)  # type: ignore[arg-type]
    if model is None:
        raise RecordError("no model upstream is configured (BATCHD_UPSTREAMS)",
                          code="no_upstream")
    answer = await calls.handle({"custom_id": ctx.item_id, "url": "/v1/chat/completions",
                                 "body": chat_body(record, model)}, ctx)
    output = output_of(_content(answer), json_schema_of(record.get("task_spec")), model)
    price = processors()[processor].usd_per_run  # type: ignore[index]
    if price:
        ctx.usage.cost_usd = price  # a run is priced by its processor, not its tokens
    return output


def task_def(registry: TaskRegistry) -> TaskDef:
    """The task every run of Parallel's Task API runs as: a processor's run asks its model;
    a run whose processor names a task of ``registry`` runs that task (its ``input`` the
    task's), through a dispatcher (:mod:`batchd.tasks.dispatch`)."""
    delegate = dispatch.dispatcher(registry, name=NAME, version=VERSION, key="processor",
                                   params_key="input")

    def is_processor(record: Any) -> bool:
        return isinstance(record, dict) and record.get("processor") in processors()

    async def handle(record: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        if is_processor(record):
            return await ask_model(record, ctx)
        return task_output(await delegate.handler(record, ctx))

    def estimate_usd(record: Any) -> float:
        if is_processor(record):
            return processors()[record["processor"]].usd_per_run
        return delegate.cost.estimate_record(record)

    return TaskDef(
        name=NAME, version=VERSION, handler=handle, mode="async", kind=KIND,
        description="A run of Parallel's Task API: a processor's run is answered by its "
        "model upstream, the output checked against the task spec's schema; a run naming "
        "a task runs it.",
        input_schema={"type": "object", "required": ["input", "processor"]},
        cost=CostModel(per_record=estimate_usd),
    )
