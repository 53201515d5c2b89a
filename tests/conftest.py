"""Shared fixtures: a real simulator served over HTTP on a free local port."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from simulator.faults import parse_faults
from simulator.server import RunningServer, start_in_thread
from simulator.state import SimState
from simulator.world import World, WorldConfig

_WORLDS: dict[WorldConfig, World] = {}


def world_for(config: WorldConfig) -> World:
    """Worlds are deterministic, so tests share one per config; runtime touches are per-test state though."""
    if config not in _WORLDS or _WORLDS[config].has_runtime_edits():
        _WORLDS[config] = World.build(config)
    return _WORLDS[config]


@pytest.fixture
def simulator() -> Iterator[Callable[..., RunningServer]]:
    """Start simulators: simulator(customers=500, seed=7, faults='none', rate_limits=False) -> RunningServer.

    RunningServer.url is the base URL; .state.world is the ground truth. Stopped after the test.
    """
    started: list[RunningServer] = []

    def start(faults: str = "none", rate_limits: bool = True, **config) -> RunningServer:
        plan = parse_faults(faults)
        config.setdefault("customers", 500)
        config.setdefault("tie_burst_size", plan.tie_burst_size)
        world = world_for(WorldConfig(**config))
        handle = start_in_thread(SimState(world=world, faults=plan, rate_limits=rate_limits))
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()
