"""Fixtures for the dbt tests: one simulator world extracted over real HTTP and loaded into raw.* once per test
session, then copied into a fresh DuckDB file for each build.

    from tests.integration import dbt_fixtures
    dbt_world = dbt_fixtures.dbt_world  # registers the fixture in the test module

dbt_world: the loaded raw.* (copy it before building on it); built_now: the project built on a copy as of the world's
clock. Both are made once per process however many modules import them.

The world is small (DBT_CUSTOMERS) so that the dbt tests stay within a few minutes on two cores.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from simulator.faults import parse_faults
from simulator.server import start_in_thread
from simulator.state import TOKENS, SimState
from simulator.world import World, WorldConfig
from tailor.lake import Lake
from tailor.pipeline import BEGINNING, extract_window, load_batches
from tailor.sources import ENTITIES, Credentials, Window, build_extractor
from tailor.transform import BuildResult, build
from tailor.warehouse import Warehouse
from tests.conftest import world_for

DBT_CUSTOMERS = 600
DBT_SEED = 404
# Tailor "ran" this many days before the world's clock too, so raw.* holds the versions of then (see extract_and_load).
EARLIER_RUNS_DAYS = (120,)


@dataclass(frozen=True)
class DbtWorld:
    world: World
    raw_path: Path  # a DuckDB file holding raw.* as extracted and loaded; never built on: copy it first
    now: datetime  # the world's clock: the end of the loaded data
    earlier_runs: tuple[datetime, ...]  # earlier extract-and-load runs: raw.* holds each record's version at these times

    def copy(self, path: Path) -> Path:
        """A fresh warehouse file at `path` holding this world's raw.*."""
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.raw_path, path)
        return path


_CACHE: dict[tuple[int, int], DbtWorld] = {}
_LOCK = threading.Lock()


def extract_and_load(world: World, warehouse: Warehouse, lake_dir: Path, runs: list[datetime]) -> None:
    """Extract and load as Tailor running at each of `runs` would have: for each run time, the simulator's clock set
    to it and every record version updated since the previous run extracted through the connectors over HTTP (sources
    in parallel, as the CLI does), then loaded into raw.* (one transaction per batch).

    One run at the world's clock gives raw.* the latest version of each record only (what the APIs serve today);
    an earlier run too keeps that run's versions, so a build as of it can be checked against the world then.
    """
    server = start_in_thread(SimState(world=world, faults=parse_faults("none"), rate_limits=False))
    lake = Lake.from_url(str(lake_dir))
    errors: list[BaseException] = []
    start = BEGINNING
    try:
        for run in runs:
            server.state.set_now(int(run.timestamp()))
            # the API at clock t serves versions up to and including t: the window's end is just after it
            window = Window(start, run + timedelta(seconds=1))
            start = window.end

            def extract(source: str, window: Window = window) -> None:
                try:
                    extractor = build_extractor(source, Credentials(f"test {source}", server.url, TOKENS[source]))
                    for entity in ENTITIES[source]:
                        extract_window(extractor, entity, window, lake)
                except BaseException as exc:  # re-raised in the main thread
                    errors.append(exc)

            threads = [threading.Thread(target=extract, args=(source,)) for source in ENTITIES]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]
            load_batches(warehouse, lake)
    finally:
        server.stop()


def dbt_world_for(customers: int = DBT_CUSTOMERS, seed: int = DBT_SEED) -> DbtWorld:
    """The loaded world for (customers, seed), built once per process."""
    key = (customers, seed)
    with _LOCK:
        if key not in _CACHE:
            root = Path(tempfile.mkdtemp(prefix="tailor-dbt-world-"))
            atexit.register(shutil.rmtree, root, ignore_errors=True)
            world = world_for(WorldConfig(customers=customers, seed=seed))
            raw_path = root / "world.duckdb"  # not raw.duckdb: its catalog name would clash with schema raw
            now = datetime.fromtimestamp(world.now, UTC)
            runs = [now - timedelta(days=days) for days in EARLIER_RUNS_DAYS] + [now]
            extract_and_load(world, Warehouse(raw_path, lock_timeout=60), root / "lake", runs)
            shutil.rmtree(root / "lake", ignore_errors=True)
            _CACHE[key] = DbtWorld(world=world, raw_path=raw_path, now=now, earlier_runs=tuple(runs[:-1]))
        return _CACHE[key]


@dataclass(frozen=True)
class Built:
    """A warehouse file after a successful build, and where that build kept its target/ (manifest) and logs/."""

    path: Path
    state_dir: Path
    as_of: datetime
    result: BuildResult


_BUILT_NOW: dict[tuple[int, int], Built] = {}


def build_now(world: DbtWorld) -> Built:
    """The project built (a fresh file: the same as a full refresh) as of the world's clock, once per process."""
    key = (world.world.config.customers, world.world.config.seed)
    with _LOCK:
        if key not in _BUILT_NOW:
            root = world.raw_path.parent / "now"
            path = world.copy(root / "warehouse.duckdb")
            result = build(world.now, duckdb_path=path, state_dir=root / "dbt", quiet=True)
            _BUILT_NOW[key] = Built(path=path, state_dir=root / "dbt", as_of=world.now, result=result)
        return _BUILT_NOW[key]


@pytest.fixture(scope="session")
def dbt_world() -> DbtWorld:
    return dbt_world_for()


@pytest.fixture(scope="session")
def built_now(dbt_world: DbtWorld) -> Built:
    return build_now(dbt_world)
