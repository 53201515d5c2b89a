"""Helpers for the model tests: a simulator world extracted over real HTTP and loaded once, installed (copied and
built with real dbt) into a fresh data dir per use; the data-dir environment the models read; a quiet progress line."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from simulator.world import World
from tailor.transform import WITHOUT_TESTS, build
from tailor.warehouse import Warehouse
from tests.integration.dbt_fixtures import extract_and_load


class Shop:
    """A world loaded into raw.* (by extract runs at `runs`), copied into a fresh data dir per use."""

    def __init__(self, world: World, root: Path, runs: list[datetime]):
        self.world = world
        self.now = datetime.fromtimestamp(world.now, UTC)
        self.raw = root / "world.duckdb"  # not raw.duckdb: its catalog name would clash with schema raw
        extract_and_load(world, Warehouse(self.raw, lock_timeout=60), root / "lake", runs)
        shutil.rmtree(root / "lake", ignore_errors=True)

    def install(self, data_dir: Path, build_as_of: datetime | None = None) -> Warehouse:
        """A data dir holding a copy of the loaded raw.*, built as of `build_as_of` (default: the world's clock)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.raw, data_dir / "warehouse.duckdb")
        build(build_as_of or self.now, duckdb_path=data_dir / "warehouse.duckdb", state_dir=data_dir / "dbt",
              quiet=True, exclude=list(WITHOUT_TESTS))  # the dbt tests check these builds elsewhere
        return Warehouse(data_dir / "warehouse.duckdb")


def use_data_dir(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    """Point the models (and their MLflow store) at `data_dir`, whatever the environment says."""
    monkeypatch.setenv("TAILOR_DATA_DIR", str(data_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("TAILOR_DUCKDB_PATH", raising=False)


def quiet(line: str) -> None:
    """The models' progress lines, kept in pytest's captured output."""
    print(line)
