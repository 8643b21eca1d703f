"""Issue 14, the user's path: the real ``batchd`` command (and the client) against a live
server, as the README tells a newcomer to use them.

Parquet results in every path; ``submit --webhook-url``; ``list``, ``wait``, ``items``,
``webhooks``; the display state, a bar that counts records, cancelled counts and
reasons, Ctrl-C, partial downloads, an unreachable server, and the README's task list.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.parquet as pq
import pytest
import standardwebhooks

from batchd.client import AsyncClient, BatchdConnectionError, Client
from tests.conftest import ROOT, Server, scaled, wait_batch, wait_until
from tests.support.receiver import receiver

pytestmark = pytest.mark.timeout(scaled(180))

README = ROOT / "README.md"
BATCH_ID = re.compile(r"\bbat_[0-9a-f]+\b")


def env_for(url: str | None, key: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHD_")}
    env.update({"COLUMNS": "100", "PYTHONPATH": str(ROOT), **extra})
    if url is not None:
        env["BATCHD_URL"] = url
    if key is not None:
        env["BATCHD_API_KEY"] = key
    return env


def batchd(server: Server | None, *args: str, url: str | None = None, cwd: Path | None = None,
           **extra: str) -> subprocess.CompletedProcess[str]:
    """``batchd ARGS`` as a user runs it (BATCHD_URL, BATCHD_API_KEY from the server)."""
    env = env_for(url if server is None else server.url,
                  None if server is None else server.admin_key, **extra)
    return subprocess.run([sys.executable, "-m", "batchd.cli.main", *args], env=env,
                          cwd=cwd or (server.log_path.parent if server else None),
                          capture_output=True, text=True, timeout=scaled(120))


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, (done.args, done.stdout, done.stderr)
    return done


def flat(text: str) -> str:
    return " ".join(text.split())


def jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def create(c: httpx.Client, **body: Any) -> dict[str, Any]:
    r = c.post("/api/batches", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def get(c: httpx.Client, batch_id: str) -> dict[str, Any]:
    return dict(c.get(f"/api/batches/{batch_id}").json())


# 1. Parquet results, and the format from the file name, in every path

def test_parquet_results_in_the_api_the_cli_and_both_clients(
    server: Server, tmp_path: Path,
) -> None:
    rows = [{"n": i, "x": i / 2, "tag": f"t{i}"} for i in range(7)]
    with server.client() as c:
        b = create(c, task="echo", items=rows)
        wait_batch(c, b["id"])
        r = c.get(f"/api/batches/{b['id']}/results", params={"format": "parquet"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.apache.parquet"

    out = tmp_path / "out.parquet"
    done = ok(batchd(server, "results", b["id"], "-o", str(out)))
    assert "of parquet to" in done.stderr
    table = pq.read_table(out)
    assert table.column("input.n").to_pylist() == list(range(7))
    assert table.column("output.x").to_pylist() == [i / 2 for i in range(7)]

    # an explicit --format the suffix contradicts is refused before anything is written
    clash = batchd(server, "results", b["id"], "-o", str(tmp_path / "r.csv"), "--format", "json")
    assert clash.returncode == 2 and "does not match" in flat(clash.stderr)
    assert not (tmp_path / "r.csv").exists()

    with Client(server.url, api_key=server.admin_key) as client:
        client.download_results(b["id"], tmp_path / "x.csv")
        with (tmp_path / "x.csv").open() as f:
            got = list(csv.DictReader(f))
        assert [int(g["input.n"]) for g in got] == list(range(7))
        with pytest.raises(ValueError, match="does not match"):
            client.download_results(b["id"], tmp_path / "y.csv", format="jsonl")
        assert not (tmp_path / "y.csv").exists()


async def test_async_client_download_takes_parquet_from_the_suffix(
    server: Server, tmp_path: Path,
) -> None:
    async with AsyncClient(server.url, api_key=server.admin_key) as c:
        b = await c.wait((await c.submit("echo", [{"n": 1}, {"n": 2}]))["id"], poll_s=0.05)
        await c.download_results(b["id"], tmp_path / "a.pq")
    assert pq.read_table(tmp_path / "a.pq").column("output.n").to_pylist() == [1, 2]


# 5b. submit --webhook-url

def test_submit_webhook_url_delivers_a_signed_batch_finished_shown_by_batchd_webhooks(
    make_server: Callable[..., Server], tmp_path: Path,
) -> None:
    srv = make_server(outbound_allow="loopback", webhook_poll_interval_s="0.1")
    with srv.client() as c:
        secret = c.get("/api/webhooks/secret").json()["secret"]
    data = jsonl(tmp_path / "in.jsonl", [{"n": i} for i in range(3)])
    with receiver(secret) as rx:
        url = rx.url("/hooks/done")
        done = ok(batchd(srv, "submit", "echo", str(data), "--webhook-url", url, "--wait"))
        batch_id = done.stdout.split()[-1]
        (delivery,) = wait_until(lambda: rx.on("/hooks/done"), what="the webhook").copy()
    assert delivery.verified
    standardwebhooks.Webhook(secret).verify(delivery.body, delivery.headers)
    body = delivery.json()
    assert body["type"] == "batch.finished"
    assert body["data"]["id"] == batch_id
    assert body["data"]["status"] == body["data"]["display_status"] == "completed"
    assert body["data"]["webhook_url"] == url

    status = ok(batchd(srv, "status", batch_id))
    assert url in status.stdout

    def delivered() -> dict[str, Any] | None:
        with srv.client() as c:
            rows = c.get("/api/webhooks", params={"batch_id": batch_id}).json()["data"]
        return rows[0] if rows and rows[0]["status"] == "delivered" else None

    message = wait_until(delivered, what="the delivery to be recorded")
    listed = ok(batchd(srv, "webhooks", "--batch", batch_id))
    assert message["id"] in listed.stdout and "delivered" in listed.stdout
    assert "batch.finished" in listed.stdout
    one = ok(batchd(srv, "webhooks", message["id"]))
    assert "attempt" in one.stdout and "200" in one.stdout  # the delivery log

    # an address the server may not send to is refused at submit, naming the setting
    refused = batchd(srv, "submit", "echo", str(data), "--webhook-url",
                     "http://169.254.169.254/latest")
    assert refused.returncode == 1 and "error 422" in refused.stderr
    assert "webhook_url" in refused.stderr and "Traceback" not in refused.stderr


# 9. list, wait, items, webhooks; the client's listing methods

def test_batchd_list_filters_by_task_and_status_and_pages(server: Server, tmp_path: Path) -> None:
    with server.client() as c:
        echoes = [create(c, task="echo", items=[{"n": i}])["id"] for i in range(3)]
        failed = create(c, task="fail", items=[{"fail": True}], max_attempts=1)["id"]
        for batch_id in [*echoes, failed]:
            wait_batch(c, batch_id)

    first = ok(batchd(server, "list", "--task", "echo", "--limit", "2"))
    assert BATCH_ID.findall(first.stdout) == [echoes[2], echoes[1]]  # newest first
    more = re.search(r"more: (batchd list .*--cursor \S+)", first.stderr)
    assert more is not None, first.stderr
    assert "--task echo" in more.group(1)
    second = ok(batchd(server, *more.group(1).split()[1:]))
    assert BATCH_ID.findall(second.stdout) == [echoes[0]]
    assert "more:" not in second.stderr

    by_status = ok(batchd(server, "list", "--status", "failed"))
    assert BATCH_ID.findall(by_status.stdout) == [failed]
    assert "failed" in by_status.stdout
    every = orjson.loads(ok(batchd(server, "list", "--json")).stdout)
    assert [b["id"] for b in every["data"]] == [failed, *reversed(echoes)]
    assert every["next_cursor"] is None
    bad = batchd(server, "list", "--status", "running")  # not a lifecycle status
    assert bad.returncode == 2 and "running" in bad.stderr

    with Client(server.url, api_key=server.admin_key) as client:
        page = client.list_batches(limit=2, task="echo")
        assert [b["id"] for b in page] == [echoes[2], echoes[1]] and page.next_cursor
        rest = client.list_batches(limit=2, task="echo", cursor=page.next_cursor)
        assert [b["id"] for b in rest] == [echoes[0]] and rest.next_cursor is None
        assert [b["id"] for b in client.iter_batches(task="echo", page_size=1)] == \
            [echoes[2], echoes[1], echoes[0]]
        assert [b["id"] for b in client.list_batches("failed")] == [failed]


def test_batchd_items_shows_each_items_error_and_one_item_in_full(
    server: Server, tmp_path: Path,
) -> None:
    rows = [{"value": 1}, {"fail": True}, {"value": 3}]
    done = ok(batchd(server, "submit", "fail", str(jsonl(tmp_path / "in.jsonl", rows)),
                     "--max-attempts", "1", "--wait"))
    batch_id = done.stdout.split()[-1]

    every = ok(batchd(server, "items", batch_id))
    assert every.stdout.count("succeeded") == 2
    failed = ok(batchd(server, "items", batch_id, "--status", "failed"))
    (item_id,) = re.findall(r"\bitm_\d+\b", failed.stdout)
    assert "failed on demand" in failed.stdout and "succeeded" not in failed.stdout
    one = orjson.loads(ok(batchd(server, "items", batch_id, item_id)).stdout)
    assert one["id"] == item_id and one["status"] == "failed"
    assert one["input"] == {"fail": True}
    assert "failed on demand" in one["error"]["message"]
    missing = batchd(server, "items", batch_id, "itm_999999")
    assert missing.returncode == 1 and "error 404" in missing.stderr

    with Client(server.url, api_key=server.admin_key) as client:
        page = client.list_items(batch_id, limit=2)
        assert [i["seq"] for i in page] == [0, 1] and page.next_cursor
        assert [i["seq"] for i in client.iter_items(batch_id, page_size=1)] == [0, 1, 2]
        assert [i["id"] for i in client.list_items(batch_id, "failed")] == [item_id]
        assert client.get_item(batch_id, item_id)["error"] == one["error"]


def test_batchd_wait_reattaches_to_a_running_batch(server: Server) -> None:
    with server.client() as c:
        b = create(c, task="sleep", items=[{"seconds": 0.2}] * 12, parallelism=2,
                   records_per_item=2)  # 6 items of 2 records
    done = ok(batchd(server, "wait", b["id"]))
    assert f"{b['id']} completed: 12 records, 12 succeeded, 0 failed, 0 cancelled" in done.stderr
    assert "12/12" in done.stderr and "━" in done.stderr  # the bar, in records
    assert "6/6" not in done.stderr
    again = ok(batchd(server, "wait", b["id"]))  # an ended batch: its summary at once
    assert f"{b['id']} completed" in again.stderr
    missing = batchd(server, "wait", "bat_missing")
    assert missing.returncode == 1 and "error 404" in missing.stderr
    assert "━" not in missing.stderr  # no bar for a batch that is not there


# 10. Feedback

def test_display_status_says_what_a_batch_is_doing(make_server: Callable[..., Server]) -> None:
    idle = make_server(run_worker="false")  # nothing runs: items stay queued
    with idle.client() as c:
        queued = create(c, task="echo", items=[{"n": 1}])
        assert (queued["status"], queued["display_status"]) == ("closed", "queued")
        later = create(c, task="echo", items=[{"n": 1}], run_after="2999-01-01T00:00:00Z")
        assert later["display_status"] == "waiting"
        empty = create(c, task="echo", close=False)
        assert (empty["status"], empty["display_status"]) == ("open", "open")
        listed = {b["id"]: b["display_status"] for b in c.get("/api/batches").json()["data"]}
        assert listed == {queued["id"]: "queued", later["id"]: "waiting", empty["id"]: "open"}
    shown = ok(batchd(idle, "status", queued["id"]))
    assert "queued (batch closed)" in shown.stdout


def test_a_running_batch_shows_running_in_status_and_list(server: Server) -> None:
    with server.client() as c:
        b = create(c, task="sleep", items=[{"seconds": 30}] * 3, parallelism=1)
        running = wait_until(lambda: (s := get(c, b["id"]))["counts"]["running"] and s,
                             what="an item to run")
        assert (running["status"], running["display_status"]) == ("closed", "running")
        shown = ok(batchd(server, "status", b["id"]))
        assert "running (batch closed)" in shown.stdout
        listed = ok(batchd(server, "list"))
        assert re.search(rf"{b['id']}\s+sleep\s+running\s+0/3", listed.stdout), listed.stdout
        c.post(f"/api/batches/{b['id']}/cancel", json={"reason": "test over"})


def test_the_bar_counts_records_in_full_on_a_narrow_terminal(
    server: Server, tmp_path: Path,
) -> None:
    # 20 items of 1,000 records; one record sleeps, so the bar has something to follow
    rows = [{"seconds": 0}] * 19_999 + [{"seconds": 1.5}]
    data = jsonl(tmp_path / "in.jsonl", rows)
    done = ok(batchd(server, "submit", "sleep", str(data), "--records-per-item", "1000",
                     "--wait", COLUMNS="50"))
    assert "20000 records in 20 items" in done.stderr
    assert "20000/20000" in done.stderr  # records, not items, and the total whole
    assert "20/20" not in done.stderr and "…" not in done.stderr
    assert "completed: 20000 records, 20000 succeeded, 0 failed, 0 cancelled" in flat(
        done.stderr)


def test_cancelled_counts_and_reasons_in_the_bar_and_status(
    server: Server, tmp_path: Path,
) -> None:
    rows = [{"fail": True}] + [{"value": i} for i in range(30)]
    done = ok(batchd(server, "submit", "fail", str(jsonl(tmp_path / "in.jsonl", rows)),
                     "--fail-fast", "--max-attempts", "1", "--parallelism", "1", "--wait"))
    batch_id = done.stdout.split()[-1]
    with server.client() as c:
        b = get(c, batch_id)
    r = b["records"]
    # partial, or failed if the stop came before any other record ran
    assert b["status"] in ("partial", "failed") and b["error"]["code"] == "fail_fast"
    assert r["failed"] == 1 and r["cancelled"] > 0
    assert r["succeeded"] + r["failed"] + r["cancelled"] == r["total"] == 31
    assert r["cancelled"] == b["counts"]["cancelled"]
    summary = flat(done.stderr)
    assert (f"{batch_id} {b['status']}: 31 records, {r['succeeded']} succeeded, 1 failed, "
            f"{r['cancelled']} cancelled (fail_fast)") in summary
    status = flat(ok(batchd(server, "status", batch_id)).stdout)
    assert f"cancelled={r['cancelled']}" in status and "stopped │ fail_fast" in status

    # a batch stopped while the bar follows it: the bar's last frame counts the cancelled
    with server.client() as c:
        slow = create(c, task="sleep", items=[{"seconds": 30}] * 4, parallelism=1)
        watching = subprocess.Popen(
            [sys.executable, "-m", "batchd.cli.main", "wait", slow["id"]],
            env=env_for(server.url, server.admin_key), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            assert watching.stderr is not None
            assert watching.stderr.readline().startswith(f"following {slow['id']}")
            wait_until(lambda: get(c, slow["id"])["counts"]["running"], what="an item to run")
            ok(batchd(server, "cancel", slow["id"], "--reason", "over budget for today"))
            _, shown = watching.communicate(timeout=scaled(60))
        finally:
            if watching.poll() is None:
                watching.kill()
        assert watching.returncode == 0, shown
        wait_until(lambda: get(c, slow["id"])["counts"]["running"] == 0, what="settling")
    bar = flat(shown)
    assert re.search(r"cancelled=[34]\b", bar), bar  # the running one may settle after
    assert "(cancelled: over budget for today)" in bar
    status = flat(ok(batchd(server, "status", slow["id"])).stdout)
    assert "stopped │ cancelled: over budget for today" in status
    assert "cancelled=4" in status


def test_ctrl_c_while_waiting_says_how_to_cancel_and_leaves_the_batch_running(
    server: Server, tmp_path: Path,
) -> None:
    data = jsonl(tmp_path / "in.jsonl", [{"seconds": 30}] * 3)
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchd.cli.main", "submit", "sleep", str(data),
         "--parallelism", "1", "--wait"],
        env=env_for(server.url, server.admin_key), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        (batch_id,) = BATCH_ID.findall(first)
        following = proc.stderr.readline()
        assert following.startswith(f"following {batch_id}") and "Ctrl-C" in following
        with server.client() as c:
            wait_until(lambda: get(c, batch_id)["counts"]["running"], what="an item to run")
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=scaled(30))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    assert "keeps running" in rest
    assert f"batchd cancel {batch_id}" in rest and f"batchd wait {batch_id}" in rest
    with server.client() as c:
        b = get(c, batch_id)
        assert (b["status"], b["display_status"]) == ("closed", "running")
        c.post(f"/api/batches/{batch_id}/cancel", json={})


def test_results_of_an_unfinished_batch_say_so_and_fail_unless_partial(
    server: Server, tmp_path: Path,
) -> None:
    with server.client() as c:
        b = create(c, task="sleep", items=[{"seconds": 0}] * 2 + [{"seconds": 60}],
                   parallelism=1)
        wait_until(lambda: get(c, b["id"])["records"]["succeeded"] == 2, what="2 records")
    out = tmp_path / "part.jsonl"
    got = batchd(server, "results", b["id"], "-o", str(out))
    assert got.returncode == 3, got.stderr
    message = flat(got.stderr)
    assert "only the records finished so far" in message and "--partial" in message
    assert len(out.read_text().splitlines()) == 2  # written all the same
    accepted = ok(batchd(server, "results", b["id"], "-o", str(out), "--partial"))
    assert "only the records finished so far" in flat(accepted.stderr)
    with server.client() as c:
        c.post(f"/api/batches/{b['id']}/cancel", json={})
        wait_batch(c, b["id"])
    final = ok(batchd(server, "results", b["id"], "-o", str(out)))
    assert "so far" not in final.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_is_one_line_naming_batchd_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["tasks"], ["list"], ["status", "bat_x"], ["wait", "bat_x"],
                 ["results", "bat_x", "-o", str(tmp_path / "r.csv")]):
        done = batchd(None, *args, url=url, BATCHD_API_KEY="bd_x")
        assert done.returncode == 1, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, (args, done.stderr)
        assert url in lines[0] and "BATCHD_URL" in lines[0], lines
        assert "Traceback" not in done.stderr
    unset = batchd(None, "tasks", url=None, BATCHD_API_KEY="bd_x")
    if unset.returncode == 1:  # nothing listens on the default address on a test machine
        assert "http://127.0.0.1:8080" in unset.stderr and "set BATCHD_URL" in unset.stderr
    with Client(url, api_key="bd_x") as c, pytest.raises(BatchdConnectionError) as exc:
        c.tasks()
    assert exc.value.url == url and url in str(exc.value)
    assert isinstance(exc.value, httpx.TransportError)  # what callers caught before


def readme_example_tasks() -> list[str]:
    """The task names the README's CLI section says ``batchd tasks`` lists."""
    text = README.read_text()
    section = text[text.index("### CLI"):text.index("### Python client")]
    found = re.search(r"<!-- tasks -->(.*?)<!-- /tasks -->", section, re.S)
    assert found is not None, "the README's CLI section lists the shipped tasks"
    first_cells = re.findall(r"^\| (`.*?`) \|", found.group(1), re.M)  # the task column
    return sorted(name for cell in first_cells for name in re.findall(r"`([^`]+)`", cell))


def test_readme_lists_exactly_the_tasks_batchd_tasks_shows(
    make_server: Callable[..., Server],
) -> None:
    plain = make_server(tasks="")  # `batchd serve` as the quick start runs it
    shown = ok(batchd(plain, "tasks", COLUMNS="200"))
    names = sorted(re.findall(r"^│ (\S+)\s+│", shown.stdout, re.M))
    assert names and names == readme_example_tasks()
