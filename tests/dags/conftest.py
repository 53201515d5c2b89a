"""A real Airflow for DAG tests: its own AIRFLOW_HOME with a migrated metadata database and Tailor's pool.

DAG runs happen in a subprocess with that environment, so Airflow's configuration (read once per process at
import) never leaks into the rest of the test session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def sqlite_airflow_env(home: Path) -> dict[str, str]:
    """The environment of an Airflow whose state is in `home`: SQLite metadata, migrated, with the duckdb pool."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    for cmd in ([AIRFLOW, "db", "migrate"], [AIRFLOW, "pools", "set", "duckdb", "1", "DuckDB writer"]):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{' '.join(cmd[1:])} failed:\n{result.stderr[-3000:]}"
    return env


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    return sqlite_airflow_env(tmp_path_factory.mktemp("airflow_home"))


def run_in_airflow(env: dict[str, str], code: str, extra_env: dict[str, str] | None = None,
                   timeout: float = 600) -> subprocess.CompletedProcess:
    """Run Python code in a fresh process configured for the test Airflow."""
    return subprocess.run([sys.executable, "-c", code], env={**env, **(extra_env or {})}, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
