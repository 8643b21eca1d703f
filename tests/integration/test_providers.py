"""Anthropic and OpenAI providers through their real SDKs, against a local server that
speaks both batch wire formats (tests/support/fake_providers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from batchd.core.jobs import ResultKind
from batchd.providers.anthropic_batches import AnthropicBatches
from batchd.providers.base import BatchProgress, JobRequest, Provider, ProviderError
from batchd.providers.openai_batches import OpenAIBatches
from batchd.tasks.kinds import llm
from batchd.tasks.kinds.spec import TaskSpec
from batchd.tasks.registry import TaskRegistry, load_tasks
from tests.support import fake_providers
from tests.support.fake_providers import FAIL_MARK, FakeProviders

pytestmark = pytest.mark.timeout(60)
KEY = "sk-fake-providers-test"


@pytest.fixture(scope="module")
def registry() -> TaskRegistry:
    return load_tasks([], entry_points=False)


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    with fake_providers.running(api_key=KEY, polls_before_end=1) as server:
        yield server


def make(kind: str, fake: FakeProviders, registry: TaskRegistry, *, key: str = KEY) -> Provider:
    if kind == "anthropic":
        return AnthropicBatches(registry=registry, api_key=key, base_url=fake.url,
                                model="claude-haiku-4-5", max_tokens=256)
    return OpenAIBatches(registry=registry, api_key=key, base_url=f"{fake.url}/v1",
                         model="gpt-4o-mini", max_tokens=256)


CREATE_CALLS = {"anthropic": ["anthropic.create"],
                "openai": ["openai.files.create", "openai.batches.create"]}


def requests() -> list[JobRequest]:
    return [
        JobRequest("job_a", "sentiment_analysis", {"text": "strong growth, record profit"}, 90),
        JobRequest("job_b", "risk_report", {"returns": [0.01, -0.02]}, 50),
        JobRequest("job_c", "sentiment_analysis", {"text": f"{FAIL_MARK} now"}, 10),
    ]


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_provider_submits_a_batch_and_reads_every_result(
    kind: str, fake: FakeProviders, registry: TaskRegistry
) -> None:
    provider = make(kind, fake, registry)
    try:
        batch_id = await provider.submit(tenant_id="ten_1", requests=requests())
        assert batch_id.startswith("msgbatch_" if kind == "anthropic" else "batch_")
        sent = fake.batches[batch_id].requests
        assert [r["custom_id"] for r in sent] == ["job_a", "job_b", "job_c"]

        waiting = {"job_a", "job_b", "job_c"}
        first = await provider.fetch(batch_id, waiting=waiting)
        assert first.progress == BatchProgress.IN_PROGRESS and first.results == []

        done = await provider.fetch(batch_id, waiting=waiting)
        assert done.progress == BatchProgress.ENDED
        by_id = {r.custom_id: r for r in done.results}
        assert set(by_id) == waiting
        for custom_id in ("job_a", "job_b"):
            r = by_id[custom_id]
            assert r.kind == ResultKind.SUCCEEDED
            assert (r.tokens_in, r.tokens_out) == fake.usage[custom_id]
            assert r.output["data"]["custom_id"] == custom_id  # the answer's JSON, parsed
            assert r.model == ("claude-haiku-4-5" if kind == "anthropic" else "gpt-4o-mini")
        assert by_id["job_c"].kind == ResultKind.ERRORED
        assert "the fake refuses this one" in (by_id["job_c"].error or "")
    finally:
        await provider.close()


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_provider_renders_the_task_and_payload_as_the_prompt(
    kind: str, fake: FakeProviders, registry: TaskRegistry
) -> None:
    provider = make(kind, fake, registry)
    try:
        batch_id = await provider.submit(tenant_id="ten_1", requests=requests()[:1])
        sent = fake.batches[batch_id].requests[0]
        if kind == "anthropic":
            params = sent["params"]
            system, user = params["system"], params["messages"][0]["content"]
            assert params["model"] == "claude-haiku-4-5" and params["max_tokens"] == 256
        else:
            body = sent["body"]
            system, user = body["messages"][0]["content"], body["messages"][1]["content"]
            assert body["model"] == "gpt-4o-mini" and body["max_completion_tokens"] == 256
        assert "sentiment_analysis" in system and "Score the sentiment" in system
        assert orjson.loads(user) == {"text": "strong growth, record profit"}
    finally:
        await provider.close()


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_provider_cancel_ends_the_batch_with_canceled_requests(
    kind: str, fake: FakeProviders, registry: TaskRegistry
) -> None:
    fake.polls_before_end = 100
    provider = make(kind, fake, registry)
    try:
        batch_id = await provider.submit(tenant_id="ten_1", requests=requests()[:2])
        await provider.cancel(batch_id)
        assert fake.batches[batch_id].cancelled
        done = await provider.fetch(batch_id, waiting={"job_a", "job_b"})
        assert done.progress == BatchProgress.ENDED
        assert {r.custom_id: r.kind for r in done.results} == {
            "job_a": ResultKind.CANCELED, "job_b": ResultKind.CANCELED}
    finally:
        await provider.close()


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_provider_refusal_is_a_provider_error(
    kind: str, fake: FakeProviders, registry: TaskRegistry
) -> None:
    provider = make(kind, fake, registry)
    fake.refuse_next = True
    try:
        with pytest.raises(ProviderError, match="the fake refuses this batch"):
            await provider.submit(tenant_id="ten_1", requests=requests())
        # Refused once, as intended, after a valid request: no retry, nothing else.
        assert fake.refused == [CREATE_CALLS[kind][-1]]
        assert fake.calls == CREATE_CALLS[kind]
        assert not fake.batches
    finally:
        await provider.close()


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_provider_with_a_wrong_key_is_refused_without_retries(
    kind: str, fake: FakeProviders, registry: TaskRegistry
) -> None:
    provider = make(kind, fake, registry, key="sk-not-the-one")
    try:
        with pytest.raises(ProviderError):
            await provider.submit(tenant_id="ten_1", requests=requests())
        assert fake.calls == CREATE_CALLS[kind][:1]
        seen = fake.take_violations()
        assert len(seen) == 1 and " 401 " in seen[0], seen
        assert not fake.batches and not fake.refused
    finally:
        await provider.close()


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_fake_provider_refuses_what_the_provider_would(kind: str, fake: FakeProviders) -> None:
    """The fake is strict: unknown fields, wrong types, bad headers, unknown routes."""
    good: dict[str, Any]
    bad_bodies: list[dict[str, Any]]
    if kind == "anthropic":
        headers = {"authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"}
        params = {"model": "claude-haiku-4-5", "max_tokens": 8,
                  "messages": [{"role": "user", "content": "hi"}]}
        path, good = "/v1/messages/batches", {"requests": [{"custom_id": "a", "params": params}]}
        bad_bodies = [
            {"requests": [{"custom_id": "a", "params": {**params, "temprature": 0}}]},
            {"requests": [{"custom_id": "a", "params": {**params, "max_tokens": "8"}}]},
            {"requests": [{"custom_id": "a", "params": {**params, "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi", "x": 1}]}]}}]},
            {"requests": [{"custom_id": "a b", "params": params}]},
            {"requests": [{"custom_id": "a", "params": params}] * 2},
        ]
        bad_headers = [{"authorization": "Bearer wrong"}, {"anthropic-version": "2020-01-01"}]
    else:
        headers = {"authorization": f"Bearer {KEY}"}
        path = "/v1/batches"
        good = {"input_file_id": "file-none", "endpoint": "/v1/chat/completions",
                "completion_window": "24h"}
        bad_bodies = [{**good, "completion_window": "1h"}, {**good, "metadata": {"a": 1}},
                      {**good, "priority": "high"}]
        bad_headers = [{"authorization": "Bearer wrong"}]
    with httpx.Client(base_url=fake.url, headers=headers) as c:
        refused = [c.post(path, json=body) for body in bad_bodies]
        refused += [c.post(path, json=good, headers=h) for h in bad_headers]
        refused += [c.get("/v1/nowhere"), c.put(path, json=good)]
    for r in refused:
        assert 400 <= r.status_code < 500 and r.status_code not in (408, 409, 429), r.text
        assert r.headers["x-should-retry"] == "false"
        error = r.json()["error"]
        if kind == "anthropic" and r.url.path.startswith("/v1/messages"):
            assert r.json()["type"] == "error" and set(error) == {"type", "message"}
        else:
            assert set(error) == {"message", "type", "param", "code"}
    assert len(fake.take_violations()) == len(refused)
    assert not fake.batches


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_provider_fetch_only_returns_the_jobs_asked_about(
    kind: str, fake: FakeProviders, registry: TaskRegistry
) -> None:
    fake.polls_before_end = 0
    provider = make(kind, fake, registry)
    try:
        batch_id = await provider.submit(tenant_id="ten_1", requests=requests())
        done = await provider.fetch(batch_id, waiting={"job_b"})
        assert [r.custom_id for r in done.results] == ["job_b"]
    finally:
        await provider.close()


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_provider_sends_an_llm_tasks_own_prompt_and_model(
    kind: str, fake: FakeProviders
) -> None:
    registry = load_tasks([], entry_points=False)
    registry.add(llm.build(TaskSpec.model_validate({
        "name": "one_liner", "kind": "llm", "description": "One line about a company.",
        "config": {"prompt": "Describe {company} in one line.", "system": "Be brief.",
                   "model": "claude-sonnet-4-5" if kind == "anthropic" else "gpt-4.1-mini",
                   "max_tokens": 64},
    })))
    provider = make(kind, fake, registry)
    try:
        job = JobRequest("job_llm", "one_liner", {"company": "Acme"}, 50)
        batch_id = await provider.submit(tenant_id="ten_1", requests=[job])
        sent = fake.batches[batch_id].requests[0]
        if kind == "anthropic":
            params = sent["params"]
            assert params["model"] == "claude-sonnet-4-5" and params["max_tokens"] == 64
            assert params["system"] == "Be brief."
            assert params["messages"] == [{"role": "user",
                                           "content": "Describe Acme in one line."}]
        else:
            body = sent["body"]
            assert body["model"] == "gpt-4.1-mini" and body["max_completion_tokens"] == 64
            assert body["messages"] == [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Describe Acme in one line."},
            ]
        first = await provider.fetch(batch_id, waiting={"job_llm"})
        assert first.progress == BatchProgress.IN_PROGRESS and first.results == []
        done = await provider.fetch(batch_id, waiting={"job_llm"})
        assert [r.kind for r in done.results] == [ResultKind.SUCCEEDED]
        assert done.results[0].model == (
            "claude-sonnet-4-5" if kind == "anthropic" else "gpt-4.1-mini")
    finally:
        await provider.close()
