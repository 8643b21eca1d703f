"""Anthropic's Message Batches API, driven by the official ``anthropic`` SDK (only
``base_url`` and ``api_key`` differ), against batchd and a stand-in model server; requests
go to an Anthropic-style upstream as they are, and to an OpenAI-compatible one translated."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from bench.common import RssSampler

from tests.conftest import Server, wait_until
from tests.support.model_server import StandIn

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[StandIn]:
    s = StandIn(log_path=str(tmp_path / "stand-in.log"), latency_s=0.005)
    yield s
    s.stop()


def upstreams(stand_in: StandIn, **limits: int) -> str:
    return json.dumps([
        {"name": "vllm", "base_url": stand_in.base_url, "style": "openai",
         "models": ["open-model"], "limits": limits},
        {"name": "claude-like", "base_url": stand_in.url, "style": "anthropic",
         "models": [{"name": "claude-x", "aliases": ["claude"]}]}])


@pytest.fixture
def server(make_server: Callable[..., Server], stand_in: StandIn) -> Server:
    return make_server(upstreams=upstreams(stand_in))


def sdk(server: Server, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0)


def request(i: int, model: str, **params: Any) -> dict[str, Any]:
    return {"custom_id": f"r{i}", "params": {
        "model": model, "max_tokens": 64,
        "messages": [{"role": "user", "content": f"q{i}"}], **params}}


def wait_ended(client: anthropic.Anthropic, batch_id: str) -> Any:
    def ended() -> Any:
        b = client.messages.batches.retrieve(batch_id)
        return b if b.processing_status == "ended" else None

    return wait_until(ended, timeout_s=90, what="message batch ended")


def test_anthropic_flow_with_translation_and_native_upstream(server: Server) -> None:
    client = sdk(server, server.new_key("acme"))
    reqs = [request(i, "open-model", system="be brief", stop_sequences=["END"],
                    temperature=0.2) for i in range(10)]
    reqs += [request(i, "claude") for i in range(10, 15)]
    reqs.append(request(15, "open-model", tools=[{"name": "t", "input_schema": {}}]))
    reqs.append(request(16, "nobody-serves-this"))
    batch = client.messages.batches.create(requests=reqs)  # type: ignore[arg-type]
    assert batch.id.startswith("msgbatch_") and batch.processing_status == "in_progress"
    assert batch.expires_at > batch.created_at and batch.results_url is None
    done = wait_ended(client, batch.id)
    counts = done.request_counts
    assert (counts.succeeded, counts.errored, counts.processing) == (15, 2, 0)
    assert done.ended_at is not None and done.results_url
    results = {r.custom_id: r for r in client.messages.batches.results(batch.id)}
    assert len(results) == 17
    for i in range(15):
        r = results[f"r{i}"].result
        assert r.type == "succeeded"
        assert r.message.content[0].text == f"answer to: q{i}"  # type: ignore[union-attr]
        assert r.message.usage.output_tokens > 0
    assert results["r0"].result.message.stop_reason == "end_turn"  # type: ignore[union-attr]
    tools = results["r15"].result
    assert tools.type == "errored"
    assert "tools" in tools.error.error.message  # never silently dropped
    assert results["r16"].result.type == "errored"
    assert results["r16"].result.error.error.type == "not_found_error"


def test_anthropic_list_cancel_delete(make_server: Callable[..., Server],
                                      stand_in: StandIn) -> None:
    server = make_server(upstreams=upstreams(stand_in, concurrency=2))
    client = sdk(server, server.new_key("acme"))
    stand_in.control(latency_s=0.2)
    ids = [client.messages.batches.create(requests=[request(i, "open-model")
                                                    for i in range(30)]).id  # type: ignore
           for _ in range(3)]
    page = client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
    assert [b.id for b in client.messages.batches.list(limit=2)] == ids[::-1]
    after = client.messages.batches.list(limit=2, after_id=ids[2])
    assert [b.id for b in after.data] == [ids[1], ids[0]]
    before = client.messages.batches.list(limit=5, before_id=ids[0])
    assert [b.id for b in before.data] == [ids[2], ids[1]]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(ids[0])  # still processing
    cancelled = client.messages.batches.cancel(ids[0])
    assert cancelled.processing_status in ("canceling", "ended")
    assert cancelled.cancel_initiated_at is not None
    done = wait_ended(client, ids[0])
    assert done.request_counts.canceled > 0
    kinds = {r.result.type for r in client.messages.batches.results(ids[0])}
    assert "canceled" in kinds
    assert client.messages.batches.delete(ids[0]).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(ids[0])
    for other in ids[1:]:
        client.messages.batches.cancel(other)
    assert stand_in.stats()["peak_concurrency"] <= 2


def test_anthropic_errors_and_tenant_isolation(server: Server) -> None:
    client = sdk(server, server.new_key("acme"))
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.batches.create(requests=[request(1, "claude"), request(1, "claude")])
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.create(requests=[{"custom_id": "no params"}])  # type: ignore
    with pytest.raises(anthropic.AuthenticationError):
        sdk(server, "wrong").messages.batches.list()
    batch = client.messages.batches.create(requests=[request(1, "claude")])
    other = sdk(server, server.new_key("globex"))
    with pytest.raises(anthropic.NotFoundError):
        other.messages.batches.retrieve(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        other.messages.batches.cancel(batch.id)
    assert list(other.messages.batches.list()) == []


def test_anthropic_create_names_where_the_body_is_wrong(server: Server) -> None:
    """The body is read as it arrives: a bad request far into it, or JSON broken there,
    is still a 400 in Anthropic's shape naming the request, and nothing is kept."""
    key = server.new_key("acme")
    client = sdk(server, key)
    reqs = [request(i, "claude") for i in range(3000)]
    reqs[2500] = {"custom_id": "r2500", "params": {"model": "claude", "max_tokens": 8}}
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.batches.create(requests=reqs)  # type: ignore[arg-type]
    message = "requests.2500.params.messages: Field required"
    assert bad.value.body == {"type": "error", "error": {  # type: ignore[comparison-overlap]
        "type": "invalid_request_error", "message": message}}
    good = b",".join(orjson.dumps(request(i, "claude")) for i in range(3))
    for body, message in (
            (b'{"requests": [' + good + b', {"custom_id": "x", params}]}',
             f"requests.3: Expecting property name enclosed in double quotes at byte "
             f"{len(good) + 35}"),
            (b'{"requests": [' + good, "requests.2: expected ',' or ']', found the end of the "
             f"body at byte {len(good) + 14}"),
            (b'{"requests": 7}', "requests: expected a list, found '7' at byte 13")):
        r = httpx.post(f"{server.url}/v1/messages/batches", content=body, timeout=30,
                       headers={"x-api-key": key, "anthropic-version": "2023-06-01",
                                "content-type": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                       "message": message}}
    assert list(client.messages.batches.list()) == []


def test_anthropic_create_streams_a_large_body_in_bounded_memory(server: Server) -> None:
    """64 MB of requests are read a request at a time: the server grows by less than the
    body (its database caches fill, 32 MB on SQLite); it grew by four times the body when
    it read it whole."""
    client = sdk(server, server.new_key("acme"))
    client.messages.batches.create(requests=[request(0, "claude")])  # the route warmed up
    filler = "x" * 2000
    body = orjson.dumps({"requests": [request(i, "nobody-serves-this", system=filler)
                                      for i in range(30_000)]})
    assert server.proc is not None
    with RssSampler(server.proc.pid) as rss:
        r = httpx.post(f"{server.url}/v1/messages/batches", content=body, timeout=120,
                       headers={"x-api-key": client.api_key,
                                "anthropic-version": "2023-06-01",
                                "content-type": "application/json"})
    assert r.status_code == 200, r.text
    batch_id = r.json()["id"]
    counts = client.messages.batches.cancel(batch_id).request_counts
    assert sum(counts.model_dump().values()) == 30_000  # every request, once
    assert rss.most - rss.base < len(body), (rss.most - rss.base, len(body))
