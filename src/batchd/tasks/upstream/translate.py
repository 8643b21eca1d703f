"""Anthropic Messages requests for OpenAI-compatible servers, and their answers back.

Translated: ``system`` (text, or text blocks), ``messages`` whose content is text (or
text blocks), ``max_tokens``, ``stop_sequences``, ``temperature``, ``top_p``; back: the
text, ``usage`` and the stop reason. Anything else (images, tools, thinking, …) is a
per-request error naming the field, never silently dropped: the models below forbid
what they do not know.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Untranslatable(Exception):
    """The request uses something an OpenAI-compatible server cannot be asked for."""


class TextBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: str | list[TextBlock]


class MessagesRequest(BaseModel):
    """The part of Anthropic's Messages request that translates."""

    model_config = ConfigDict(extra="forbid")
    model: str
    max_tokens: int = Field(ge=1)
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    metadata: dict[str, Any] | None = None  # only the caller's own bookkeeping


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    model: str
    messages: list[ChatMessage]
    max_tokens: int
    stop: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None


def _text(content: str | list[TextBlock]) -> str:
    return content if isinstance(content, str) else "".join(b.text for b in content)


def _problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return (f"{where} cannot be sent to an OpenAI-compatible upstream (batchd translates "
                "system, text messages, max_tokens, stop_sequences, temperature and top_p)")
    return f"{where}: {first['msg']}"


def chat_request(params: dict[str, Any], model: str) -> dict[str, Any]:
    """The chat-completions body for an Anthropic Messages request; raises Untranslatable."""
    try:
        req = MessagesRequest.model_validate(params)
    except ValidationError as exc:
        raise Untranslatable(_problem(exc)) from None
    messages = [ChatMessage(role="system", content=_text(req.system))] if req.system else []
    messages += [ChatMessage(role=m.role, content=_text(m.content)) for m in req.messages]
    chat = ChatRequest(model=model, messages=messages, max_tokens=req.max_tokens,
                       stop=req.stop_sequences, temperature=req.temperature, top_p=req.top_p)
    return chat.model_dump(exclude_none=True)


STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal",
                "tool_calls": "tool_use"}


class ChatChoiceMessage(BaseModel):
    content: str | None = None


class ChatChoice(BaseModel):
    message: ChatChoiceMessage
    finish_reason: str | None = None


class ChatUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatAnswer(BaseModel):
    id: str | None = None
    choices: list[ChatChoice] = Field(min_length=1)
    usage: ChatUsage = Field(default_factory=ChatUsage)


def message_answer(chat: dict[str, Any], *, model: str, stop_sequences: list[str] | None
                   ) -> dict[str, Any]:
    """An Anthropic ``Message`` from a chat completion; raises Untranslatable."""
    try:
        answer = ChatAnswer.model_validate(chat)
    except ValidationError as exc:
        raise Untranslatable(f"the upstream's answer is not a chat completion: "
                             f"{_problem(exc)}") from None
    choice = answer.choices[0]
    text = choice.message.content or ""
    reason = STOP_REASONS.get(choice.finish_reason or "stop", "end_turn")
    stop_sequence = None
    if reason == "end_turn" and stop_sequences:
        stop_sequence = None  # the server does not say which sequence stopped it
    return {
        "id": f"msg_{(answer.id or '').removeprefix('chatcmpl-') or 'upstream'}",
        "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": reason, "stop_sequence": stop_sequence,
        "usage": {"input_tokens": answer.usage.prompt_tokens,
                  "output_tokens": answer.usage.completion_tokens},
    }
