"""Crash safety of ``/v1/batches``: SIGKILL of the server again and again while a
10,000-request batch runs (and, when it can be caught, while it is finalizing); every
``custom_id`` ends up exactly once across the output and error files."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import orjson
import pytest

from tests.conftest import Server, wait_until
from tests.support.model_server import StandIn

pytestmark = [pytest.mark.timeout(240), pytest.mark.xdist_group("crash")]
N = 10_000
KILLS = 5


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[StandIn]:
    s = StandIn(log_path=str(tmp_path / "stand-in.log"), latency_s=0.002)
    yield s
    s.stop()


def test_v1_batch_survives_repeated_sigkill_with_every_request_once(
        make_server: Callable[..., Server], stand_in: StandIn) -> None:
    ups = json.dumps([{"name": "stand-in", "base_url": stand_in.base_url,
                       "models": ["m"], "limits": {"concurrency": 64}}])
    server = make_server(upstreams=ups, lease_s=2, reap_interval_s=0.2)
    key = server.new_key("acme")

    def client() -> openai.OpenAI:  # the port changes with every restart
        return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)

    data = b"".join(orjson.dumps({
        "custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}}) + b"\n"
        for i in range(N))
    c = client()
    file_id = c.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch").id
    batch_id = c.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                completion_window="24h").id
    step = N // (KILLS + 2)
    for k in range(1, KILLS + 1):
        wait_until(lambda k=k: client().batches.retrieve(batch_id).request_counts.completed
                   >= k * step, timeout_s=60, what=f"{k * step} requests done")
        server.kill()
        server.start()
    # One more kill aimed at the finalization, if the poll catches it.
    caught = wait_until(lambda: client().batches.retrieve(batch_id).status
                        in ("finalizing", "completed"), timeout_s=90, interval_s=0.01,
                        what="the batch to finalize")
    if caught:
        server.kill()
        server.start()
    done = wait_until(lambda: (b := client().batches.retrieve(batch_id)).status == "completed"
                      and b, timeout_s=90, what="the batch to complete")
    c = client()
    lines = []
    for fid in (done.output_file_id, done.error_file_id):
        if fid:
            lines += [orjson.loads(x) for x in c.files.content(fid).content.splitlines() if x]
    seen = Counter(x["custom_id"] for x in lines)
    assert len(seen) == N and set(seen.values()) == {1}
    assert done.request_counts.total == N
    assert done.request_counts.completed + done.request_counts.failed == N
    ok = [x for x in lines if x["response"] and x["response"]["status_code"] == 200]
    assert len(ok) == done.request_counts.completed
    for x in ok[:50]:
        answer = x["response"]["body"]["choices"][0]["message"]["content"]
        assert answer == f"answer to: q{x['custom_id'][1:]}"


def test_v1_batch_left_validating_by_a_dead_server_is_settled(
        make_server: Callable[..., Server], stand_in: StandIn) -> None:
    """A create request cut short (the server died while it validated the input) leaves
    a validating batch; the next server fails it, saying so, rather than leave it."""
    ups = json.dumps([{"name": "stand-in", "base_url": stand_in.base_url, "models": ["m"]}])
    server = make_server(upstreams=ups, staging_ttl_s=1)
    key = server.new_key("acme")
    server.kill()
    _insert_validating(server.database_url, "acme")
    server.start()
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    failed = wait_until(lambda: (b := client.batches.retrieve("batch_cutshort")).status
                        == "failed" and b, timeout_s=30, what="the stale batch to fail")
    assert failed.errors is not None and failed.errors.data
    assert failed.errors.data[0].code == "validation_interrupted"


def _insert_validating(url: str, tenant: str) -> None:
    sql = ("INSERT INTO v1_batches (id, tenant_id, owner, dialect, endpoint, "
           "completion_window, status, created_at) "
           "SELECT 'batch_cutshort', t.id, k.owner, 'openai', '/v1/chat/completions', '24h', "
           "'validating', 1 FROM tenants t JOIN api_keys k ON k.tenant_id = t.id "
           "WHERE t.name = ?")
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.replace("?", "%s"), (tenant,))
    else:
        import sqlite3

        from batchd.store.sqlite.connection import sqlite_path

        with sqlite3.connect(sqlite_path(url)) as conn:
            conn.execute(sql, (tenant,))
