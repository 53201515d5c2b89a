"""Fixtures shared by the integration tests: a local lake and a warehouse file per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailor.lake import Lake
from tailor.warehouse import Warehouse


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.from_url(str(tmp_path / "lake"))


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb", lock_timeout=60)
