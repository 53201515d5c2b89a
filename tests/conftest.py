"""Shared fixtures: a real simulator served over HTTP on a free local port; and how the suite splits over two
workers (pytest-xdist, `--dist loadgroup`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from simulator.faults import parse_faults
from simulator.server import RunningServer, start_in_thread
from simulator.state import SimState
from simulator.world import World, WorldConfig

_WORLDS: dict[WorldConfig, World] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One worker per group, so a group's session fixtures are made once: the Airflow tests (they wait on schedulers
    more than they compute, so they overlap well with the rest), the dbt tests (one loaded world and its builds), and
    every other module on its own."""
    for item in items:
        path = item.path.as_posix()
        if "/tests/dags/" in path:
            group = "airflow"
        elif item.path.name.startswith("test_dbt_"):
            group = "dbt"
        else:
            group = item.path.stem
        item.add_marker(pytest.mark.xdist_group(group))


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
