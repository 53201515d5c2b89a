"""The live clock: a world anchored at one time, served as of a clock that advances with the wall clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest

from simulator.server import RunningServer, start_in_thread
from simulator.state import SimState
from simulator.world import DAY, ENTITIES, World, WorldConfig, iso, parse_time

ANCHOR = "2026-12-02T16:00:00Z"  # what a live server started at 16:xx that day anchors its world at
LIVE = WorldConfig(seed=8, customers=400, now=ANCHOR, future_days=365)


@pytest.fixture(scope="module")
def live_world() -> World:
    return World.build(LIVE)


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    """serve(world, live=True, clock_start=...) -> a running in-thread server, stopped (files removed) after."""
    started: list[RunningServer] = []

    def start(world: World, **state) -> RunningServer:
        handle = start_in_thread(SimState(world=world, rate_limits=False, **state))
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


def health(sim: RunningServer) -> dict:
    return httpx.get(sim.url + "/_simulator/health", timeout=10).json()


def wait_for_clock(sim: RunningServer, at_least: int, timeout: float = 15) -> dict:
    """The summary once the server's clock has reached `at_least`."""
    deadline = time.monotonic() + timeout
    while True:
        summary = httpx.get(sim.url + "/_simulator/summary", timeout=10).json()
        if parse_time(summary["clock"]) >= at_least:
            return summary
        if time.monotonic() > deadline:
            pytest.fail(f"the clock did not reach {iso(at_least)}: {summary['clock']}")
        time.sleep(0.2)


# ---- the clock itself, on a fake wall clock ---------------------------------------------------------------------
class FakeWall:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_live_clock_follows_the_wall_clock_from_its_start(live_world):
    wall = FakeWall(1_900_000_000.7)
    state = SimState(world=live_world, live=True, clock_start=ANCHOR, wall_clock=wall)
    assert state.clock_mode == "live" and state.now() == parse_time(ANCHOR)
    wall.t += 90.5
    assert state.now() == parse_time(ANCHOR) + 90
    state.set_now(parse_time(ANCHOR) + DAY)  # moved: it keeps advancing from there
    assert state.now() == parse_time(ANCHOR) + DAY
    wall.t += 10
    assert state.now() == parse_time(ANCHOR) + DAY + 10
    wall.t -= 5  # the wall clock stepped back: the simulated clock holds, it never runs backwards
    assert state.now() == parse_time(ANCHOR) + DAY + 10
    wall.t += 7
    assert state.now() == parse_time(ANCHOR) + DAY + 12
    default = SimState(world=live_world, live=True, wall_clock=wall)  # no clock_start: the wall clock itself
    assert default.now() == int(wall.t)
    state.close()
    default.close()


def test_pinned_clock_ignores_the_wall_clock(live_world):
    wall = FakeWall(1_900_000_000.0)
    state = SimState(world=live_world, wall_clock=wall)
    assert state.clock_mode == "pinned" and state.now() == live_world.now == parse_time(ANCHOR)
    wall.t += 3_600
    assert state.now() == live_world.now
    state.set_now(live_world.now + 60)
    wall.t += 3_600
    assert state.now() == live_world.now + 60
    state.close()


def test_state_removes_only_the_files_directory_it_made(live_world, tmp_path):
    state = SimState(world=live_world)
    made = state.files_dir
    assert made.is_dir()
    state.close()
    assert not made.exists()
    given = SimState(world=live_world, files_dir=tmp_path / "bulk")
    given.close()
    assert (tmp_path / "bulk").is_dir()


# ---- over HTTP ------------------------------------------------------------------------------------------------
def test_live_server_clock_advances_with_the_wall_clock(serve, live_world):
    sim = serve(live_world, live=True, clock_start=live_world.now + 3_600)
    first = health(sim)
    time.sleep(1.6)
    second = health(sim)
    assert first["clock_mode"] == second["clock_mode"] == "live"
    assert first["world_now"] == ANCHOR and first["start"] == iso(live_world.now - 730 * DAY)
    assert second["end"] == iso(live_world.now + 365 * DAY)
    elapsed = parse_time(second["clock"]) - parse_time(first["clock"])
    assert 1 <= elapsed <= 10
    assert live_world.now + 3_600 <= parse_time(first["clock"]) < live_world.now + 3_600 + 30


def test_live_server_without_clock_start_runs_on_the_wall_clock(serve, live_world):
    sim = serve(live_world, live=True)
    before = int(time.time())
    clock = parse_time(health(sim)["clock"])
    assert before - 30 <= clock <= int(time.time())


def test_pinned_server_does_not_move(serve, live_world):
    sim = serve(live_world)
    first = health(sim)
    time.sleep(1.2)
    second = health(sim)
    assert first["clock_mode"] == "pinned" and first["clock"] == second["clock"] == ANCHOR


def test_records_created_while_the_clock_runs_appear(serve, live_world):
    """Orders (and the customers, contacts, profiles and events around them) placed between two clock reads
    are served at the second."""
    orders = live_world.orders.created_at
    # an order placed a while after the anchor, alone in its second
    future = np.flatnonzero((orders > live_world.now + 10 * DAY) & (orders < live_world.end - DAY))
    due = next(int(orders[i]) for i in future if np.count_nonzero(orders == orders[i]) == 1)
    sim = serve(live_world, live=True, clock_start=due - 20)
    # the clock control API in live mode: the clock goes where it is told and keeps advancing from there
    moved = httpx.post(sim.url + "/_simulator/clock", json={"now": iso(due - 3)}).json()
    assert moved == {"clock": iso(due - 3), "clock_mode": "live"}
    before = httpx.get(sim.url + "/_simulator/summary").json()
    t_before = parse_time(before["clock"])
    assert due - 3 <= t_before < due, "the summary was read too late to see the clock pass the order"
    after = wait_for_clock(sim, due)
    t_after = parse_time(after["clock"])
    for summary, t in ((before, t_before), (after, t_after)):
        assert summary["records"] == {e: live_world.truth_count(e, t) for e in ENTITIES}
    assert after["records"]["orders"] > before["records"]["orders"]
    assert live_world.truth_count("orders", t_after) - live_world.truth_count("orders", t_before) >= 1
    # and over a vendor API: the Shopify orders placed since the first read are served now
    query = f"{{ ordersCount(query: \"created_at:>='{iso(due)}'\") {{ count }} }}"
    body = httpx.post(sim.url + "/admin/api/2026-07/graphql.json", json={"query": query},
                      headers={"X-Shopify-Access-Token": "shpat_simulator_0000000000000000"}).json()
    assert body["data"]["ordersCount"]["count"] >= 1


def test_clock_control_in_live_mode(serve, live_world):
    sim = serve(live_world, live=True, clock_start=live_world.now)
    ahead = httpx.post(sim.url + "/_simulator/clock", json={"advance_seconds": 7 * DAY}).json()
    target = parse_time(ahead["clock"])
    assert live_world.now + 7 * DAY <= target < live_world.now + 7 * DAY + 30
    time.sleep(1.2)
    assert parse_time(health(sim)["clock"]) >= target + 1  # still live
    back = httpx.post(sim.url + "/_simulator/clock", json={"now": iso(live_world.now - DAY)}).json()
    assert back["clock"] == iso(live_world.now - DAY)
    assert live_world.now - DAY <= parse_time(health(sim)["clock"]) < live_world.now - DAY + 30
    assert httpx.post(sim.url + "/_simulator/clock", json={"now": "soon"}).status_code == 400


def test_a_live_world_is_determined_by_its_config(live_world):
    again = World.build(LIVE)
    for table in ("products", "persons", "orders", "customers", "contacts", "profiles", "events"):
        mine, theirs = getattr(live_world, table), getattr(again, table)
        for name, value in vars(mine).items():
            other = getattr(theirs, name)
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, other), (table, name)
            elif name == "versions" and value is not None:
                assert np.array_equal(value.times, other.times) and np.array_equal(value.offsets, other.offsets)
            elif name != "versions":
                assert value == other, (table, name)
    assert np.array_equal(live_world.campaign_times, again.campaign_times)
    assert (live_world.start, live_world.now, live_world.end) == (again.start, again.now, again.end)
    for entity in ENTITIES:
        for t in (live_world.now, live_world.now + 100 * DAY):
            assert live_world.truth_versions(entity, t) == again.truth_versions(entity, t)
    # the anchor and the future are part of the world's identity
    shifted = World.build(WorldConfig(seed=8, customers=400, now="2026-12-02T17:00:00Z", future_days=365))
    shorter = World.build(WorldConfig(seed=8, customers=400, now=ANCHOR, future_days=30))
    assert not np.array_equal(shifted.orders.created_at, live_world.orders.created_at)
    assert shorter.end == live_world.now + 30 * DAY != live_world.end


def test_the_live_world_keeps_trading_for_a_year(live_world):
    """The future part of the timeline holds every kind of change, spread over the year."""
    now, end = live_world.now, live_world.end
    quarters = [(now + q * 91 * DAY, now + (q + 1) * 91 * DAY) for q in range(4)]
    for lo, hi in quarters:
        for entity in ("customers", "orders", "contacts", "profiles", "events"):
            assert live_world.truth_count(entity, hi) >= live_world.truth_count(entity, lo), entity
        assert live_world.truth_versions("orders", hi, lo, hi), "orders placed or changed in every quarter"
        assert live_world.truth_versions("contacts", hi, lo, hi)
        assert live_world.truth_versions("profiles", hi, lo, hi)
    refunds = live_world.orders.refund_at
    assert np.count_nonzero((refunds > now) & (refunds < end))
    assert np.count_nonzero((live_world.events.time > end - 30 * DAY) & (live_world.events.time < end))
