"""One JSON policy for every body batchd reads, in every dialect.

JSON text is parsed with orjson (fast, strict) and then held to rules no parser
enforces by itself, so that a value is either stored exactly as sent or refused,
naming where:

- ``NaN``, ``Infinity``, ``-Infinity`` and numbers that overflow a double (``1e400``)
  are refused: JSON has no such numbers and they cannot be kept.
- Integers outside the signed 64-bit range (-2**63 … 2**63-1) are refused: orjson
  would silently turn them into floats, and SQLite, PostgreSQL's ``bigint``, Parquet
  and most clients cannot hold them. Send larger numbers as strings.
- A lone UTF-16 surrogate escape (``"\\ud800"``) is refused: it is no character and
  cannot be written as UTF-8.
- Bytes that are not UTF-8 are refused, naming the byte offset.
- Nesting deeper than :data:`MAX_DEPTH` arrays and objects is refused, naming the
  byte offset and the path to it.

Every refusal is an :class:`~batchd.domain.errors.InvalidInput` whose details hold
``problem``, ``kind`` (``json_invalid``), ``path`` (keys and indexes from the root of
the document) and, where it is known, ``offset`` (a byte offset into the document);
callers add ``at`` (an NDJSON line, a CSV row). Only the refusals pay for the slow,
precise diagnosis; a good document costs orjson plus two byte scans.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import re
from collections.abc import Iterator
from typing import Any

import orjson

from batchd.domain import errors

MAX_DEPTH = 64
# A document shorter than this cannot open more than MAX_DEPTH arrays and objects.
SHORTEST_TOO_DEEP = 2 * MAX_DEPTH + 2
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
KIND = "json_invalid"

_ORJSON_DEPTH = 1024  # orjson refuses documents nested deeper
# A run of 19 digits may be an integer orjson cannot hold exactly (or silently floats).
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_ZEROS = b"0" * 19
_LONG_RUN = re.compile(rb"[0-9]{19,}")
_INT_MAX_DIGITS = str(INT_MAX).encode()
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.DOTALL)


class _Bad:
    """A value the policy refuses, left in place by the diagnostic parse to find its path."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


def render_path(path: list[str | int]) -> str:
    """``["items", 3, "x"]`` as ``items[3].x``; the empty path as ``""``."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def violation(problem: str, *, path: list[str | int] | None = None, offset: int | None = None,
              where: str = "") -> errors.InvalidInput:
    """The error for a document that breaks the policy; the message names the place."""
    path = path or []
    place = ", ".join(p for p in (where, render_path(path)) if p)
    if offset is not None:
        problem = f"{problem} at byte {offset}"
    details: dict[str, Any] = {"problem": problem, "kind": KIND, "path": path}
    if offset is not None:
        details["offset"] = offset
    return errors.InvalidInput(f"{place}: {problem}" if place else problem, details=details)


def loads(data: bytes | str, *, where: str = "", max_depth: int = MAX_DEPTH) -> Any:
    """Parse one JSON document under the policy; raises InvalidInput naming the place.

    ``where`` names the document in messages (``"line 3"``); paths are relative to it.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    try:
        value = _parse_bounded(raw, max_depth)
    except orjson.JSONDecodeError as exc:
        raise _diagnose(raw, where=where, max_depth=max_depth, fallback=str(exc)) from None
    if may_hold_wide_ints(raw):
        # orjson keeps 64-bit integers exactly but floats larger ones silently.
        found = _first_bad(_strict_parse(raw.decode("utf-8")), max_depth=max_depth)
        if found is not None:
            path, problem = found
            raise violation(problem, path=path, where=where)
    return value


def may_hold_wide_ints(raw: bytes) -> bool:
    """``raw`` (one document or many) has a run of digits that, read as an integer, is
    beyond the signed 64-bit range: only then is the slow, exact check needed.

    An integer outside the range has at least 19 digits, all in one run (JSON integers
    have no leading zeros) of a value above INT_MAX, so a text without such a run holds
    none; runs in strings, fractions and exponents only cost the check."""
    if _ZEROS not in raw.translate(_DIGITS_AS_ZERO):
        return False  # the common case, at the speed of two byte scans
    return any(len(run) > len(_INT_MAX_DIGITS) or run > _INT_MAX_DIGITS
               for run in _LONG_RUN.findall(raw))


def may_be_too_deep(raw: bytes, max_depth: int = MAX_DEPTH) -> bool:
    """``raw`` opens more arrays and objects than ``max_depth``: it may nest too deep."""
    return raw.count(b"[") + raw.count(b"{") > max_depth


def any_may_be_too_deep(docs: list[bytes], max_depth: int = MAX_DEPTH) -> bool:
    """Some document of ``docs`` may nest too deep (:func:`may_be_too_deep`), found by
    byte counts with no Python step per document."""
    if max(map(len, docs), default=0) < 2 * max_depth + 2:
        return False  # too short to open that many (see SHORTEST_TOO_DEEP)
    brackets = map(bytes.count, docs, itertools.repeat(b"["))
    braces = map(bytes.count, docs, itertools.repeat(b"{"))
    return max(map(operator.add, brackets, braces), default=0) > max_depth


def _parse_bounded(raw: bytes, max_depth: int) -> Any:
    """orjson's parse with its depth limit (fixed at 1024) lowered to ``max_depth``: the
    document is parsed inside 1024 - max_depth single-element arrays."""
    if not may_be_too_deep(raw, max_depth):
        return orjson.loads(raw)
    pad = _ORJSON_DEPTH - max_depth
    value = orjson.loads(b"[" * pad + raw + b"]" * pad)
    for _ in range(pad):
        # A body like ``1], [2`` parses once wrapped: it is not one document.
        if not isinstance(value, list) or len(value) != 1:
            raise orjson.JSONDecodeError("not a single JSON document", raw.decode("utf-8",
                                         "replace"), 0)
        value = value[0]
    return value


def check(value: Any, *, where: str = "", max_depth: int = MAX_DEPTH) -> Any:
    """Hold an already decoded document (BSON, a CSV row) to the same rules."""
    found = _first_bad(value, max_depth=max_depth)
    if found is not None:
        path, problem = found
        raise violation(problem, path=path, where=where)
    return value


def _diagnose(raw: bytes, *, where: str, max_depth: int, fallback: str) -> errors.InvalidInput:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return violation("not valid UTF-8", offset=exc.start, where=where)
    if "depth limit exceeded" in fallback:
        deep = _deep_at(text, max_depth)
        if deep is not None:
            return _deep_error(deep, where=where, max_depth=max_depth)
    try:
        value = _strict_parse(text)
    except json.JSONDecodeError as exc:
        offset = len(text[: exc.pos].encode("utf-8"))
        return violation(f"not valid JSON: {exc.msg}", offset=offset, where=where)
    except RecursionError:
        deep = _deep_at(text, max_depth)
        if deep is not None:
            return _deep_error(deep, where=where, max_depth=max_depth)
        return violation(f"not valid JSON: {fallback}", where=where)
    found = _first_bad(value, max_depth=max_depth)
    if found is not None:
        path, problem = found
        return violation(problem, path=path, where=where)
    return violation(f"not valid JSON: {fallback}", where=where)


def _strict_parse(text: str) -> Any:
    return json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)


def _constant(name: str) -> _Bad:
    return _Bad(f"{name} is not a JSON number; JSON has no NaN or Infinity")


def float_value(literal: str) -> float:
    """The number ``literal`` as a double; ValueError if it overflows one."""
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"{literal[:30]} is too large for a double-precision number")
    return value


def int_value(literal: str) -> int:
    """The integer ``literal``; ValueError if it is outside the signed 64-bit range."""
    value = int(literal)
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"the integer {literal[:30]}{'…' if len(literal) > 30 else ''} is "
                         "outside the signed 64-bit range; send it as a string")
    return value


def _float(literal: str) -> float | _Bad:
    try:
        return float_value(literal)
    except ValueError as exc:
        return _Bad(str(exc))


def _int(literal: str) -> int | _Bad:
    try:
        return int_value(literal)
    except ValueError as exc:
        return _Bad(str(exc))


def _string_problem(s: str) -> str | None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone UTF-16 surrogate (\\ud800-\\udfff) is not a character"
    return None


def _scalar_problem(node: Any) -> str | None:
    """What is wrong with one JSON scalar (a string, number, boolean or null), if anything."""
    if isinstance(node, str):
        return _string_problem(node)
    if isinstance(node, bool) or node is None:
        return None
    if isinstance(node, int) and not INT_MIN <= node <= INT_MAX:
        return f"the integer {node} is outside the signed 64-bit range"
    if isinstance(node, float) and not math.isfinite(node):
        return f"{node} is not a JSON number"
    return None


def _bad_key(node: dict[Any, Any], path: list[str | int]) -> tuple[list[str | int], str] | None:
    for k in node:
        problem = _string_problem(k) if isinstance(k, str) else None
        if problem:
            shown = k.encode("utf-8", "backslashreplace").decode("utf-8")
            return [*path, shown], f"in the key: {problem}"
    return None


def _first_bad(value: Any, *, max_depth: int = MAX_DEPTH) -> tuple[list[str | int], str] | None:
    """The path to the first refused value and the problem, depth first; None if none."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Bad):
            return path, node.problem
        if not isinstance(node, dict | list):
            problem = _scalar_problem(node)
            if problem:
                return path, problem
            continue
        if len(path) >= max_depth:
            return path, f"nesting is deeper than the limit of {max_depth} levels"
        children: Iterator[tuple[Any, str | int]]
        if isinstance(node, dict):
            bad = _bad_key(node, path)
            if bad:
                return bad
            children = ((v, k) for k, v in node.items())
        else:
            children = ((v, i) for i, v in enumerate(node))
        stack.extend(reversed([(v, [*path, k]) for v, k in children]))
    return None


def _deep_error(found: tuple[int, list[str | int]], *, where: str,
                max_depth: int) -> errors.InvalidInput:
    offset, path = found
    problem = f"nesting is deeper than the limit of {max_depth} levels"
    if len(path) > 8:
        problem += " (the path shown is its first 8 steps)"
        path = path[:8]
    return violation(problem, path=path, offset=offset, where=where)


def _json_key(tok: str) -> str:
    try:
        return str(json.loads(tok))
    except ValueError:
        return tok


def _deep_at(text: str, max_depth: int) -> tuple[int, list[str | int]] | None:
    """Where the text first opens more than ``max_depth`` levels: byte offset and path."""
    stack: list[list[Any]] = []  # [kind, key or index]
    pending_key: str | None = None
    for m in _TOKENS.finditer(text):
        tok = m.group()
        if tok in "[{":
            if len(stack) >= max_depth:
                path = [k for _, k in stack if k is not None]
                return len(text[: m.start()].encode("utf-8")), path
            if stack and stack[-1][0] == "{":
                stack[-1][1] = pending_key
            stack.append([tok, 0 if tok == "[" else None])
        elif tok in "]}":
            if stack:
                stack.pop()
        elif tok == ",":
            if stack and stack[-1][0] == "[":
                stack[-1][1] += 1
        elif tok != ":":
            pending_key = _json_key(tok)
    return None
