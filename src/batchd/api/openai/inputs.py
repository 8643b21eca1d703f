"""A batch's input file, read line by line into the engine's records, checked as OpenAI
checks it: every problem with its line number (``errors`` of the failed batch)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from batchd.core.v1batches import MAX_LISTED_ERRORS, InvalidRequests

GROUP = 2000  # records handed to the engine at a time

DUPLICATE = ("The custom_id for this request is a duplicate of another request. The custom_id "
             "parameter must be unique for each request in a batch.")


def _problem(code: str, message: str, line: int | None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def check_line(number: int, raw: bytes, *, endpoint: str, seen: set[str]
               ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the record, None) or (None, the problem) of one line."""
    try:
        req = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, _problem("invalid_json_line", "This line is not parseable as valid JSON.",
                              number)
    if not isinstance(req, dict):
        return None, _problem("invalid_json_line", "This line is not a JSON object.", number)
    custom_id = req.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return None, _problem("missing_required_parameter",
                              "Missing required parameter: 'custom_id'.", number, "custom_id")
    if custom_id in seen:
        return None, _problem("duplicate_custom_id", DUPLICATE, number, "custom_id")
    seen.add(custom_id)
    if req.get("method") != "POST":
        return None, _problem("invalid_method", "The method for this request must be POST.",
                              number, "method")
    if req.get("url") != endpoint:
        return None, _problem("invalid_url", f"The URL provided for this request does not "
                              f"match the batch endpoint {endpoint}.", number, "url")
    body = req.get("body")
    if not isinstance(body, dict):
        return None, _problem("missing_required_parameter",
                              "Missing required parameter: 'body'.", number, "body")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return None, _problem("missing_required_parameter",
                              "Missing required parameter: 'body.model'.", number, "body.model")
    return {"custom_id": custom_id, "url": endpoint, "body": body}, None


async def records(lines: AsyncIterator[tuple[int, bytes]], *, endpoint: str,
                  max_requests: int) -> AsyncIterator[list[Any]]:
    """The file's requests as records, in groups; raises InvalidRequests at the end if any
    line was wrong (every line is read, for the whole list of problems)."""
    seen: set[str] = set()
    problems: list[dict[str, Any]] = []
    group: list[Any] = []
    count = 0
    async for number, raw in lines:
        count += 1
        record, problem = check_line(number, raw, endpoint=endpoint, seen=seen)
        if problem is not None:
            if len(problems) < MAX_LISTED_ERRORS:
                problems.append(problem)
            continue
        if problems or count > max_requests:
            continue  # the batch fails: nothing more goes to the engine
        group.append(record)
        if len(group) >= GROUP:
            yield group
            group = []
    if count > max_requests:
        problems.insert(0, _problem("too_many_requests", f"The batch input file has {count} "
                                    f"requests, more than the limit of {max_requests}.", None))
    elif count == 0:
        problems.append(_problem("empty_file", "The batch input file is empty.", None))
    if problems:
        raise InvalidRequests(problems)
    if group:
        yield group
