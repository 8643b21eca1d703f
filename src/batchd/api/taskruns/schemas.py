"""The create request: ``{task_run_requests: [{arguments, runner?, callback_webhook?}], runner?}``.

Checked by hand rather than through pydantic: a request may carry a million runs,
and each is only a few checks. Unknown fields are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchd.api import jsonbody
from batchd.api.taskruns.errors import RUNS, invalid_run
from batchd.core.manager import Run
from batchd.domain import errors


@dataclass(slots=True)
class BatchRequest:
    runs: list[Run]
    runner: str | None


def _invalid(loc: list[Any], message: str, kind: str = "value_error") -> errors.InvalidInput:
    return errors.InvalidInput(message, details=[{"loc": loc, "msg": message, "type": kind}])


def _runner(value: Any, loc: list[Any]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 100 or "\x00" in value:
        raise _invalid(loc, "must be a runner name (a non-empty string of at most 100 "
                            "characters)", "string_type")
    return value


def parse(body: bytes, *, max_runs: int) -> BatchRequest:
    data = jsonbody.parse(body)
    if not isinstance(data, dict):
        raise _invalid(["body"], "expected an object", "dict_type")
    requests = data.get(RUNS)
    if not isinstance(requests, list) or not requests:
        raise _invalid(["body", RUNS], "a non-empty list of runs is required", "list_type")
    if len(requests) > max_runs:
        raise errors.LimitExceeded(f"a request may carry at most {max_runs} runs")
    runner = _runner(data.get("runner"), ["body", "runner"])
    runs = []
    for i, req in enumerate(requests):
        if not isinstance(req, dict) or "arguments" not in req:
            raise invalid_run(i, "arguments", "each run needs its arguments", kind="missing")
        hook = req.get("callback_webhook")
        url = None
        if hook is not None:
            url = hook.get("url") if isinstance(hook, dict) else None
            if not isinstance(url, str) or not url:
                raise invalid_run(i, "callback_webhook", "must be an object with a url",
                                  path=["url"])
        runs.append(Run(input=req["arguments"], webhook_url=url,
                        runner=_runner(req.get("runner"), ["body", RUNS, i, "runner"])))
    return BatchRequest(runs=runs, runner=runner)
