"""Sharing an upstream's limits between processes: the plan (pure) and the gates."""

from __future__ import annotations

import asyncio
import random

import pytest

from batchd.domain import upstreams
from batchd.domain.upstreams import Held, UpstreamLimits, Want
from batchd.tasks.upstream.gate import Gate, MemoryShares, TooLarge


def held(pid: str, concurrency: int = 0, *, demand: int = 0, rpm: int = 0,
         lease_until: float = 100.0, paused_until: float = 0.0) -> Held:
    return Held(process_id=pid, concurrency=concurrency, rpm=rpm, tpm=0, demand=demand,
                lease_until=lease_until, paused_until=paused_until)


def test_water_fill_is_max_min_fair_and_never_over_capacity() -> None:
    assert upstreams.water_fill(10, {"a": 2, "b": 100, "c": 100}) == {"a": 2, "b": 4, "c": 4}
    assert upstreams.water_fill(7, {"a": 100, "b": 100}) == {"a": 4, "b": 3}
    assert upstreams.water_fill(10, {"a": 0, "b": 3}) == {"a": 0, "b": 3}
    rng = random.Random(7)
    for _ in range(500):
        demands = {f"p{i}": rng.randrange(0, 50) for i in range(rng.randrange(1, 6))}
        cap = rng.randrange(0, 80)
        shares = upstreams.water_fill(cap, demands)
        assert sum(shares.values()) <= cap
        assert all(0 <= shares[k] <= demands[k] for k in demands)


def test_plan_grows_only_from_what_others_do_not_hold() -> None:
    limits = UpstreamLimits(concurrency=10)
    # b holds 8 of 10: a may take only 2 now, though its fair share is 5
    share = upstreams.plan(limits, me="a", want=Want(demand=50), now=0,
                           others=[held("b", 8, demand=50)], lease_until=5)
    assert share.concurrency == 2 and share.held.concurrency == 2
    # b, renewing next, shrinks to its fair share; a then grows to its own
    b = upstreams.plan(limits, me="b", want=Want(demand=50, in_flight=3), now=1,
                       others=[held("a", 2, demand=50)], lease_until=6)
    assert b.concurrency == 5
    a = upstreams.plan(limits, me="a", want=Want(demand=50), now=2,
                       others=[held("b", b.held.concurrency, demand=50)], lease_until=7)
    assert a.concurrency == 5 and a.held.concurrency + b.held.concurrency <= 10


def test_plan_never_records_less_than_in_use_and_ignores_gone_processes() -> None:
    limits = UpstreamLimits(concurrency=4, rpm=600)
    share = upstreams.plan(limits, me="a", want=Want(demand=1, in_flight=3, rpm_used=480),
                           others=[held("b", 2, demand=9, rpm=300)], now=0, lease_until=5)
    assert share.concurrency <= 2 and share.held.concurrency == 3  # in flight stays counted
    assert share.held.rpm >= 480
    gone = upstreams.plan(limits, me="a", want=Want(demand=9), now=10, lease_until=15,
                          others=[held("b", 4, demand=9, rpm=600, lease_until=9)])
    assert gone.concurrency == 4 and gone.rpm == 600


def test_plan_pause_of_any_live_process_holds_for_all() -> None:
    share = upstreams.plan(UpstreamLimits(concurrency=4), me="a", want=Want(demand=1), now=10,
                           others=[held("b", 0, paused_until=12)], lease_until=15)
    assert share.paused_until == 12


def test_rpm_window() -> None:
    assert upstreams.rpm_window(600) == (1.0, 10)
    assert upstreams.rpm_window(30) == (60.0, 30)


def test_upstreams_parse_refuses_a_model_served_twice() -> None:
    base = {"base_url": "http://127.0.0.1:9/v1", "models": ["m"]}
    with pytest.raises(ValueError, match="served by both"):
        upstreams.parse([{"name": "a", **base}, {"name": "b", **base}])
    routes = upstreams.Routes(upstreams.parse([
        {"name": "a", **base, "models": [{"name": "m", "aliases": ["alias"]}]}]))
    found = routes.route("alias")
    assert found is not None and found.model == "m" and found.upstream.name == "a"
    assert routes.route("other") is None


async def test_gates_of_several_processes_never_pass_the_shared_limit() -> None:
    store = MemoryShares()
    limits = UpstreamLimits(concurrency=5)
    gates = [Gate("u", limits, store=store, process_id=f"p{i}", renew_s=0.01, lease_s=1.0)
             for i in range(3)]
    in_flight = peak = 0
    done = 0

    async def request(gate: Gate) -> None:
        nonlocal in_flight, peak, done
        ticket = await gate.acquire(1)
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(random.random() * 0.004)
        in_flight -= 1
        gate.release(ticket)
        done += 1

    await asyncio.wait_for(asyncio.gather(*(request(gates[i % 3]) for i in range(300))), 30)
    assert done == 300 and peak <= 5
    assert sum(g.peak_in_flight for g in gates) > 5  # each got its turn, none alone


async def test_gate_rate_window_and_too_large() -> None:
    gate = Gate("u", UpstreamLimits(rpm=600, tpm=1000), store=MemoryShares(), process_id="p",
                renew_s=0.01, lease_s=1.0)
    with pytest.raises(TooLarge):
        await gate.acquire(5000)
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(25):
        ticket = await asyncio.wait_for(gate.acquire(1), 10)
        times.append(loop.time())
        gate.release(ticket, tokens=1)
    for i in range(len(times) - 10):
        assert times[i + 10] - times[i] >= 1.0  # at most 10 in any second
