"""Shared fixtures: a real simulator served over HTTP on a free local port; the order modules start in; and a run's
temp folders in one place that goes when the run ends."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator

import pytest

from simulator.faults import parse_faults
from simulator.server import RunningServer, start_in_thread
from simulator.state import SimState
from simulator.world import World, WorldConfig

_WORLDS: dict[WorldConfig, World] = {}


# Minutes each of the longest modules takes (pytest's durations, summed, in a full run on a 2-core machine; the
# Airflow modules since their executors preload Tailor's libraries): they start first, so the workers end together
# instead of one of them starting a long module at the end (xdist would order by test count).
_LONGEST_MODULES = {
    "tests/dags/test_daily.py": 11.0,
    "tests/integration/test_ml_models.py": 5.8,
    "tests/dags/test_first_runs.py": 5.0,
    "tests/integration/test_quiet_hours.py": 4.7,
    "tests/dags/test_backfill.py": 4.0,
    "tests/integration/test_dbt_build.py": 3.4,
    "tests/integration/test_feed_delivery.py": 3.0,
    "tests/integration/test_dbt_as_of.py": 2.9,
    "tests/integration/test_dbt_dev_target.py": 2.3,
    "tests/integration/test_ml_replayed.py": 1.6,
    "tests/dags/test_extract_hourly.py": 1.6,
    "tests/integration/test_dbt_lint.py": 1.5,
    "tests/dags/test_raw_gate.py": 1.3,
    "tests/integration/test_source_shopify.py": 1.0,
    "tests/integration/test_quality_raw.py": 1.0,
    "tests/integration/test_ml_bad_input.py": 0.7,
    "tests/integration/test_dbt_point_in_time.py": 0.7,
    "tests/dags/test_airflow_hooks.py": 0.7,
    "tests/unit/test_compose.py": 0.6,
    "tests/integration/test_order_line_baskets.py": 0.6,
    "tests/unit/test_ml_registry.py": 0.5,
    "tests/integration/test_extract_load_e2e.py": 0.5,
    "tests/integration/test_dbt_feed.py": 0.5,
    "tests/dags/test_dag_integrity.py": 0.5,
}


_OWN_BASETEMP = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Each tmp_path under one fresh folder that the run removes at its end (pytest would keep its last three runs'
    under the system temp dir, gigabytes of warehouses): the suite leaves the temp dir as it found it. A --basetemp
    given on the command line is kept. xdist's workers get their folders under the controller's."""
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="tailor-pytest-")
        config.stash[_OWN_BASETEMP] = config.option.basetemp


def pytest_unconfigure(config: pytest.Config) -> None:
    if (path := config.stash.get(_OWN_BASETEMP, None)) is not None:
        shutil.rmtree(path, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest modules first (with --dist loadfile and --no-loadscope-reorder, xdist hands modules out in this order);
    within a module, the order it was written in."""
    items.sort(key=lambda item: -_LONGEST_MODULES.get(item.path.relative_to(item.config.rootpath).as_posix(), 0))


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
