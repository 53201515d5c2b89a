"""Fixtures for the dbt tests: one simulator world extracted over real HTTP and loaded into raw.* once per test
session (twice: by several runs, and by one), then copied into a fresh DuckDB file for each build.

    from tests.integration import dbt_fixtures
    dbt_world = dbt_fixtures.dbt_world  # registers the fixture in the test module

dbt_world: the loaded raw.* of extract-and-load runs at several clock times (copy it before building on it);
one_extract_world: the same world extracted once, at its clock (a new install: every record in its latest version
only); built_now: the project built on a copy of dbt_world as of the world's clock. build_as_of(world, as_of) builds
either world as of any time. Worlds and builds are made once per process however many modules ask for them.

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
from tailor import sources
from tailor.lake import Lake
from tailor.pipeline import BEGINNING, extract_window, load_batches
from tailor.sources import Credentials, Window, build_extractor
from tailor.transform import WITHOUT_TESTS, BuildResult, build
from tailor.warehouse import Warehouse
from tests.conftest import world_for

DBT_CUSTOMERS = 600
DBT_SEED = 404
# dbt_world: Tailor "ran" this many days before the world's clock too, so raw.* holds the versions of then (see
# extract_and_load); test_dbt_point_in_time builds as of each of them.
EARLIER_RUNS_DAYS = (120, 31, 7)


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

    def days_before_now(self, days: int) -> datetime:
        return self.now - timedelta(days=days)

    def earlier_run(self, days: int) -> datetime:
        """The earlier extract-and-load run `days` before the clock (one of EARLIER_RUNS_DAYS)."""
        run = self.days_before_now(days)
        assert run in self.earlier_runs, f"no extract ran {days} days before the clock: {self.earlier_runs}"
        return run


# (customers, seed, days before the clock of the earlier runs) -> the loaded world
_WORLDS: dict[tuple[int, int, tuple[int, ...]], DbtWorld] = {}
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
                    for entity in sources.entities()[source]:
                        extract_window(extractor, entity, window, lake)
                except BaseException as exc:  # re-raised in the main thread
                    errors.append(exc)

            threads = [threading.Thread(target=extract, args=(source,)) for source in sources.entities()]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]
            load_batches(warehouse, lake)
    finally:
        server.stop()


def loaded_world(customers: int, seed: int, earlier_runs_days: tuple[int, ...]) -> DbtWorld:
    """The world for (customers, seed) extracted and loaded by runs at `earlier_runs_days` before its clock and at
    its clock, once per process."""
    days_before = tuple(sorted(earlier_runs_days, reverse=True))  # the earliest run first
    key = (customers, seed, days_before)
    with _LOCK:
        if key not in _WORLDS:
            root = Path(tempfile.mkdtemp(prefix="tailor-dbt-world-"))
            atexit.register(shutil.rmtree, root, ignore_errors=True)
            world = world_for(WorldConfig(customers=customers, seed=seed))
            raw_path = root / "world.duckdb"  # not raw.duckdb: its catalog name would clash with schema raw
            now = datetime.fromtimestamp(world.now, UTC)
            runs = [now - timedelta(days=days) for days in days_before] + [now]
            extract_and_load(world, Warehouse(raw_path, lock_timeout=60), root / "lake", runs)
            shutil.rmtree(root / "lake", ignore_errors=True)
            _WORLDS[key] = DbtWorld(world=world, raw_path=raw_path, now=now, earlier_runs=tuple(runs[:-1]))
        return _WORLDS[key]


def dbt_world_for(customers: int = DBT_CUSTOMERS, seed: int = DBT_SEED) -> DbtWorld:
    """The world extracted at EARLIER_RUNS_DAYS before its clock and at its clock: raw.* holds each record's version
    at each of those times (the versions as they happened, at those times' granularity)."""
    return loaded_world(customers, seed, EARLIER_RUNS_DAYS)


def one_extract_world_for(customers: int = DBT_CUSTOMERS, seed: int = DBT_SEED) -> DbtWorld:
    """The same world extracted once, at its clock, as a new install does: raw.* holds each record's latest version
    only, so a record changed since a past time T has no version at or before T."""
    return loaded_world(customers, seed, ())


@dataclass(frozen=True)
class Built:
    """A warehouse file after a successful build, and where that build kept its target/ (manifest) and logs/."""

    path: Path
    state_dir: Path
    as_of: datetime
    result: BuildResult
    select: str | None = None  # None: every model, test and seed; else only those models and their parents, no tests


# (a loaded world's raw.* file, as_of, select) -> the project built on a copy of it as of as_of
_BUILDS: dict[tuple[Path, datetime, str | None], Built] = {}
_BUILDS_LOCK = threading.Lock()


def build_as_of(world: DbtWorld, as_of: datetime, select: str | None = None) -> Built:
    """The project built on a fresh copy of the world's raw.* (the same as a full refresh) as of `as_of`, once per
    process per (world, as_of, select). Read it, never build on it again: other tests share it.

    select (dbt's selection syntax, e.g. "+orders +customers": parents included): only those models, and no tests,
    several times quicker than the whole project and its tests; a whole build made earlier serves it as well.
    """
    whole, selected = (world.raw_path, as_of, None), (world.raw_path, as_of, select)
    with _BUILDS_LOCK:
        known = _BUILDS.get(whole) or _BUILDS.get(selected)
        if known is None:
            root = Path(tempfile.mkdtemp(prefix=f"as-of-{as_of.astimezone(UTC):%Y%m%dT%H%M%S}-",
                                         dir=world.raw_path.parent))  # removed with the world's directory
            path = world.copy(root / "warehouse.duckdb")
            result = build(as_of, duckdb_path=path, state_dir=root / "dbt", quiet=True, select=select,
                           exclude=list(WITHOUT_TESTS) if select else None)
            known = _BUILDS[selected] = Built(path=path, state_dir=root / "dbt", as_of=as_of, result=result,
                                              select=select)
        return known


def share_build(world: DbtWorld, built: Built) -> None:
    """Let build_as_of(world, built.as_of) answer with `built`, a whole build made elsewhere: a warehouse file holding
    exactly the world's raw.*, last built with --full-refresh as of built.as_of (so the same as a fresh build), that
    nobody builds on again and that lasts the session. Does nothing when such a build is already known."""
    assert built.select is None, "only a build of the whole project can stand for any build"
    with _BUILDS_LOCK:
        _BUILDS.setdefault((world.raw_path, built.as_of, None), built)


def build_now(world: DbtWorld) -> Built:
    """The project built (a fresh file: the same as a full refresh) as of the world's clock, once per process."""
    return build_as_of(world, world.now)


@pytest.fixture(scope="session")
def dbt_world() -> DbtWorld:
    return dbt_world_for()


@pytest.fixture(scope="session")
def one_extract_world() -> DbtWorld:
    return one_extract_world_for()


@pytest.fixture(scope="session")
def built_now(dbt_world: DbtWorld) -> Built:
    return build_now(dbt_world)
