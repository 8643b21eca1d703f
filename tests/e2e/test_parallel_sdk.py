"""Parallel's Task Run and Task Group API, driven by the official ``parallel-web`` SDK (only
``base_url`` and ``api_key`` differ), against batchd and a stand-in model server in a
subprocess."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import parallel
import pytest
from parallel.types import TaskGroupStatusEvent, TaskRunEvent
from pydantic import BaseModel

from tests.conftest import Server, wait_until
from tests.support.model_server import StandIn
from tests.support.receiver import http_server

pytestmark = pytest.mark.timeout(180)
MODEL = "tiny-chat"
SCHEMA = {"type": "json", "json_schema": {
    "type": "object", "required": ["name", "founded"], "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "founded": {"type": "integer"}}}}


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[StandIn]:
    s = StandIn(log_path=str(tmp_path / "stand-in.log"), latency_s=0.002)
    yield s
    s.stop()


@pytest.fixture
def server(make_server: Callable[..., Server], stand_in: StandIn) -> Server:
    ups = [{"name": "stand-in", "base_url": stand_in.base_url, "models": [MODEL]}]
    procs = {"base": {"model": MODEL, "usd_per_run": 0.01}, "core": {"usd_per_run": 0.025}}
    return make_server(upstreams=json.dumps(ups), parallel_processors=json.dumps(procs),
                       worker_concurrency=64, outbound_allow="loopback")


def answer(text: str) -> dict[str, Any]:
    """What the stand-in answers for SCHEMA, asked about ``text``."""
    return {"name": f"name of {text}", "founded": len(f"founded of {text}")}


def sdk(server: Server, key: str) -> parallel.Parallel:
    return parallel.Parallel(api_key=key, base_url=server.url, max_retries=0)


def test_task_run_create_then_result_and_errors_in_parallels_shape(server: Server) -> None:
    key = server.new_key("acme")
    client = sdk(server, key)
    hooks: list[dict[str, Any]] = []

    def receive(path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict]:
        hooks.append({"headers": headers, "body": json.loads(body)})
        return 200, b"{}", {}

    with http_server(receive) as hook_url:
        run = client.task_run.create(input="Who founded Acme?", processor="base",
                                     metadata={"case": "one"}, webhook={"url": hook_url})
        assert run.status in ("queued", "running") and run.is_active
        result = client.task_run.result(run.run_id, api_timeout=60)
        wait_until(lambda: hooks, what="the run's webhook")
    hook = hooks[0]["body"]
    assert hook["type"] == "task_run.status" and "webhook-signature" in hooks[0]["headers"]
    assert parallel.types.TaskRun.model_validate(hook["data"]).status == "completed"
    assert result.run.status == "completed" and not result.run.is_active
    assert result.output.type == "text"
    assert result.output.content == "answer to: Who founded Acme?"
    assert result.run.metadata == {"case": "one"} and result.run.processor == "base"
    assert client.task_run.retrieve(run.run_id).status == "completed"
    assert client.task_run.retrieve_input(run.run_id).input == "Who founded Acme?"
    # the run's events end with its state
    events = list(client.task_run.events(run.run_id))
    assert [e.type for e in events] == ["task_run.state"]
    # errors: Parallel's shape, the SDK's exceptions
    with pytest.raises(parallel.UnprocessableEntityError) as refused:
        client.task_run.create(input="x", processor="base", webhook={"url": "ftp://x/y"})
    assert refused.value.body["error"]["detail"]["errors"][0]["loc"] == [  # type: ignore[index]
        "body", "webhook", "url"]
    with pytest.raises(parallel.UnprocessableEntityError) as bad:
        client.task_run.create(input="x", processor="turbo")
    assert bad.value.body["type"] == "error"  # type: ignore[index]
    assert "unknown processor 'turbo'" in bad.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(parallel.AuthenticationError):
        sdk(server, "wrong-key").task_run.retrieve(run.run_id)
    other = sdk(server, server.new_key("globex"))
    with pytest.raises(parallel.NotFoundError):
        other.task_run.retrieve(run.run_id)
    group = client.task_group.create()
    with pytest.raises(parallel.NotFoundError) as missing:
        other.task_group.retrieve(group.task_group_id)
    assert missing.value.body["error"]["ref_id"]  # type: ignore[index]
    # bad input is a 4xx in Parallel's shape, never a 500
    gid = group.task_group_id
    with server.client() as c:
        c.headers.pop("Authorization")
        c.headers["x-api-key"] = key
        too_many = [{"input": "x", "processor": "base"}] * 1001
        for method, path, body in (("POST", f"/v1/tasks/groups/{gid}/runs", b"{not json"),
                                   ("POST", f"/v1/tasks/groups/{gid}/runs",
                                    json.dumps({"inputs": too_many}).encode()),
                                   ("POST", "/v1/tasks/runs", b'{"input": 5}'),
                                   ("GET", f"/v1/tasks/groups/{gid}/events?last_event_id=x",
                                    b"")):
            r = c.request(method, path, content=body,
                          headers={"Content-Type": "application/json"})
            assert 400 <= r.status_code < 500 and r.json()["type"] == "error", r.text


class Company(BaseModel):
    name: str
    founded: int


def test_task_run_execute_parses_output_into_the_callers_model(server: Server) -> None:
    client = sdk(server, server.new_key("acme"))
    result = client.task_run.execute(input={"company": "Acme"}, processor="core",
                                     output=Company, timeout=60)
    assert result.run.status == "completed"
    assert isinstance(result.output.parsed, Company)
    assert result.output.parsed.name.startswith("name of ")
    # a processor that names a registered task runs it
    echo = client.task_run.create(input={"a": [1, 2]}, processor="echo")
    done = client.task_run.result(echo.run_id, api_timeout=60)
    assert done.output.type == "json" and done.output.content == {"a": [1, 2]}


def test_task_group_of_2000_runs_streams_events_resumes_and_lists_outputs(
        server: Server) -> None:
    key = server.new_key("acme")
    client = sdk(server, key)
    group = client.task_group.create(metadata={"suite": "sdk"})
    assert group.metadata == {"suite": "sdk"} and not group.status.is_active
    run_ids: list[str] = []
    for part in range(2):
        added = client.task_group.add_runs(
            group.task_group_id, default_task_spec={"output_schema": SCHEMA},
            inputs=[{"input": {"company": f"c{part * 1000 + i}"}, "processor": "base"}
                    for i in range(1000)])
        run_ids += added.run_ids
        assert added.status.num_task_runs == (part + 1) * 1000
    assert len(set(run_ids)) == 2000

    # stream, disconnect after a few hundred runs, resume after the last event seen
    seen: list[str] = []
    last = None
    stream = client.task_group.events(group.task_group_id)
    for event in stream:
        if isinstance(event, TaskRunEvent):
            seen.append(event.run.run_id)
        last = event.event_id
        if len(seen) >= 300:
            break
    stream.close()
    statuses: list[TaskGroupStatusEvent] = []
    for event in client.task_group.events(group.task_group_id, last_event_id=last):
        if isinstance(event, TaskRunEvent):
            assert event.run.status == "completed"
            seen.append(event.run.run_id)
        else:
            assert isinstance(event, TaskGroupStatusEvent)
            statuses.append(event)
    assert len(seen) == 2000 and set(seen) == set(run_ids)  # nothing missed or repeated
    final = statuses[-1].status
    assert not final.is_active and final.task_run_status_counts == {"completed": 2000}
    assert client.task_group.retrieve(group.task_group_id).status.num_task_runs == 2000

    runs = list(client.task_group.get_runs(group.task_group_id, include_output=True,
                                           include_input=True))
    assert [r.run.run_id for r in runs] == run_ids  # type: ignore[union-attr]
    first = runs[0]
    assert isinstance(first, TaskRunEvent) and first.input is not None
    assert first.output is not None and first.output.type == "json"
    assert first.output.content == answer('{"company":"c0"}')
    assert list(client.task_group.get_runs(group.task_group_id, status="failed")) == []
    one = client.task_group.retrieve_run(run_ids[5], task_group_id=group.task_group_id)
    assert one.task_group_id == group.task_group_id and one.status == "completed"
    # runs can be added at any time: the group is active again, and its stream resumed
    # from the last event seen gives exactly the new run
    later = client.task_group.add_runs(group.task_group_id, inputs=[
        {"input": "one more", "processor": "core"}]).run_ids
    assert client.task_run.result(later[0], api_timeout=60).output.content == (
        "answer to: one more")
    more = [e for e in client.task_group.events(group.task_group_id,
                                                last_event_id=statuses[-1].event_id)
            if isinstance(e, TaskRunEvent)]
    assert [e.run.run_id for e in more] == later
    # the group is an engine batch, in the native API
    with server.client(key) as c:
        batch = c.get(f"/api/batches/{group.task_group_id}").json()
    assert batch["task"] == "task_spec_run" and batch["counts"]["succeeded"] == 2001


def test_task_spec_output_violating_its_schema_is_retried_then_fails_clearly(
        server: Server, stand_in: StandIn) -> None:
    client = sdk(server, server.new_key("acme"))
    spec: Any = {"output_schema": SCHEMA}
    stand_in.control(violate_schema_times=1)
    run = client.task_run.create(input="Acme", processor="base", task_spec=spec)
    result = client.task_run.result(run.run_id, api_timeout=60)
    assert result.output.type == "json"
    assert result.output.content == answer("Acme")
    assert stand_in.stats()["requests"] == 2  # the non-conforming answer, then a good one

    stand_in.control(violate_schema_times=99)
    bad = client.task_run.create(input="Globex", processor="base", task_spec=spec)
    with pytest.raises(parallel.UnprocessableEntityError) as failed:
        client.task_run.result(bad.run_id, api_timeout=60)
    assert "does not conform to the output schema" in str(failed.value)
    run_now = client.task_run.retrieve(bad.run_id)
    assert run_now.status == "failed" and run_now.error is not None
    assert "[] is not of type 'object'" in run_now.error.message
    assert stand_in.stats()["requests"] == 2 + 3  # BATCHD_PARALLEL_MAX_ATTEMPTS
