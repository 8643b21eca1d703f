"""core.fleet's pure decisions: what a starting process lacks that the others have in use,
and which batches wait for a task no running process claims."""

from __future__ import annotations

from typing import Any

from batchd.core import fleet, scheduling
from batchd.domain.models import Batch
from batchd.settings import Settings

NOW = 1_700_000_000.0


def announcement(pid: str, role: str = fleet.WORKER, *, serves: tuple[tuple[str, str], ...] = (),
                 seen_at: float = NOW, **settings: Any) -> fleet.Announcement:
    claims = None if role == fleet.SERVER else scheduling.Claimable(
        names=tuple(t[0] for t in serves), versions=tuple(t[1] for t in serves))
    return fleet.Announcement(
        id=pid, role=role, host="h", pid=1, version="0", claims=claims,
        settings=fleet.shared_settings(Settings.model_construct(**settings)), interval_s=10.0,
        started_at=seen_at, seen_at=seen_at)


def batch(task: str = "score", version: str = "1.0.0", **counts: Any) -> Batch:
    fields: dict[str, Any] = {f: None for f in Batch.__dataclass_fields__}
    fields.update(task=task, version=version, status="closed", n_queued=3, n_running=0)
    fields.update(counts)
    return Batch(**fields)


def test_a_process_lacking_nothing_has_nothing_to_say() -> None:
    me = announcement("w1", outbound_allow="loopback")
    assert fleet.lacking(me, [announcement("s1", fleet.SERVER, outbound_allow="Loopback")]) == []


def test_one_line_per_setting_naming_everyone_who_has_it() -> None:
    me = announcement("w3")
    others = [announcement("s1", fleet.SERVER, outbound_allow="loopback, 10.0.0.0/8"),
              announcement("w2", outbound_allow="private", tasks="myproj.tasks")]
    lines = fleet.lacking(me, others)
    assert len(lines) == 2
    allow = next(ln for ln in lines if ln.startswith("BATCHD_OUTBOUND_ALLOW: "))
    assert allow.startswith("BATCHD_OUTBOUND_ALLOW: server s1 on h (pid 1) and 1 more allows ")
    assert "'10.0.0.0/8', 'loopback', 'private'" in allow and "this worker does not" in allow
    assert next(ln for ln in lines if ln.startswith("BATCHD_TASKS: worker w2 "))


def test_a_setting_left_at_its_default_is_not_in_use() -> None:
    # The server never set BATCHD_LLM_BASE_URL: the worker's own endpoint is no difference.
    me = announcement("w1", llm_base_url="http://vllm:8000/v1")
    assert fleet.lacking(me, [announcement("s1", fleet.SERVER)]) == []
    # The other way round it is: llm tasks run here would go elsewhere.
    [line] = fleet.lacking(announcement("w2"), [announcement("s1", llm_base_url="http://vllm/v1")])
    assert line.startswith("BATCHD_LLM_BASE_URL: ") and "'http://vllm/v1'" in line
    assert "https://api.openai.com/v1" in line


def test_settings_only_a_worker_needs_are_not_asked_of_an_api_server() -> None:
    other = announcement("w1", llm_api_key="sk-x", llm_prices={"m": {"input": 1, "output": 1}})
    assert fleet.lacking(announcement("s1", fleet.SERVER), [other]) == []
    lines = fleet.lacking(announcement("w2"), [other])
    assert [ln.split(":")[0] for ln in lines] == ["BATCHD_LLM_API_KEY", "BATCHD_LLM_PRICES"]
    assert "sk-x" not in " ".join(lines)


def test_a_worker_without_the_upstreams_of_the_others_is_told() -> None:
    ups = [{"name": "vllm", "base_url": "http://vllm/v1", "api_key": "sk-up",
            "models": [{"name": "llama", "aliases": ["small"]}]}]
    other = announcement("s1", fleet.SERVER, upstreams=ups)
    assert fleet.lacking(announcement("w1", upstreams=ups), [other]) == []
    [line] = fleet.lacking(announcement("w2"), [other])
    assert line.startswith("BATCHD_UPSTREAMS: server s1 on h (pid 1) sends the models "
                           "'llama', 'small' to model upstreams; this worker does not")
    assert "model_not_found" in line and "sk-up" not in line
    assert fleet.lacking(announcement("s2", fleet.SERVER), [other]) == []  # runs no items


def test_an_announcement_round_trips_and_a_foreign_one_is_ignored() -> None:
    a = announcement("w1", serves=(("score", "1.0.0"),), tasks="myproj.tasks")
    again = fleet.Announcement.load((a.id, a.dump(), NOW, NOW))
    assert again == a
    assert fleet.Announcement.load(("x", b"{not json", NOW, NOW)) is None
    assert fleet.Announcement.load(("x", b'{"role": "worker"}', NOW, NOW)) is None


def test_a_batch_waits_only_when_no_running_claimer_has_its_task() -> None:
    score = announcement("w1", serves=(("score", "1.0.0"),))
    api = announcement("s1", fleet.SERVER)
    assert not fleet.waits_for_task(batch(), [score])
    assert fleet.waits_for_task(batch(version="2.0.0"), [score])
    assert fleet.waits_for_task(batch(), [api])  # an API server claims nothing
    assert not fleet.waits_for_task(batch(n_queued=0), [])  # nothing waiting
    assert not fleet.waits_for_task(batch(status="completed"), [])
    # A definition any process builds is claimed by every worker.
    assert not fleet.waits_for_task(batch("remote"), [score], defined_kind="http")
    assert fleet.waits_for_task(batch("remote"), [score], defined_kind="python")


def test_the_warning_says_whether_any_worker_runs() -> None:
    none = fleet.task_warning(batch(), 0)
    assert none["code"] == "task_not_served" and "no worker is running" in none["message"]
    two = fleet.task_warning(batch(), 2)
    assert two["workers"] == 2 and "'score'" in two["message"] and "BATCHD_TASKS" in two["message"]


def test_a_process_not_seen_for_three_intervals_is_gone() -> None:
    a = announcement("w1", seen_at=NOW)
    assert a.alive(NOW + 30.0) and not a.alive(NOW + 30.1)
