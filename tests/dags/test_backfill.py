"""A backfill as a user starts it: a real scheduler, DAG processor and API server on a PostgreSQL metadata
database, `POST /api/v2/backfills` for past hours, and raw.* afterwards holds exactly the simulator's records of
those hours (what the hourly runs on that day would have landed)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tailor.sources import ENTITIES
from tailor.warehouse import Warehouse, raw_table
from tests.dags.conftest import AIRFLOW, ROOT
from tests.postgres import fresh_database

DAG_ID = "tailor_extract_hourly"
LOOKBACK_MINUTES = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """Airflow's production processes, each in its own process group, logging to files shown on failure."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("w")
        self.procs[name] = subprocess.Popen([AIRFLOW, *args], env=self.env, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"airflow {name} exited with {proc.returncode}:\n{self.tail(name)}"

    def tail(self, name: str, chars: int = 4000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def diagnostics(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.tail(name)}" for name in self.procs)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    port = _free_port()
    home = tmp_path / "airflow_home"
    home.mkdir()
    (home / "passwords.json").write_text('{"admin": "admin"}')
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": fresh_database("tailor_test_airflow_backfill"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        # the scheduler signs task tokens that the API server checks: both need the same secret
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        # only the backfill's runs: no run for the wall clock's latest hour once the DAG is unpaused
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "PATH": f"{Path(AIRFLOW).parent}:{os.environ.get('PATH', '')}",
    }
    for cmd in (["db", "migrate"], ["pools", "set", "duckdb", "1", "DuckDB writer"]):
        result = subprocess.run([AIRFLOW, *cmd], env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"airflow {' '.join(cmd)} failed:\n{result.stderr[-3000:]}"
    running = Cluster(env, tmp_path)
    running.env["AIRFLOW_TEST_API"] = f"http://127.0.0.1:{port}"
    try:
        yield running
    finally:
        running.stop()


def _wait(what: str, cluster: Cluster, check, timeout: float = 300, every: float = 2):
    deadline = time.monotonic() + timeout
    while True:
        cluster.check_alive()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{cluster.diagnostics()}")
        time.sleep(every)


def test_a_backfill_from_the_api_lands_exactly_those_hours(cluster, simulator, tmp_path):
    sim = simulator(customers=1_000, seed=33, rate_limits=False)
    world = sim.state.world
    data = tmp_path / "data"
    cluster.env.update({"TAILOR_DATA_DIR": str(data), "TAILOR_SIMULATOR_URL": sim.url,
                        "TAILOR_LOOKBACK_MINUTES": str(LOOKBACK_MINUTES)})
    api = cluster.env["AIRFLOW_TEST_API"]
    cluster.start("api-server", "api-server", "--port", api.rsplit(":", 1)[1])
    cluster.start("dag-processor", "dag-processor")
    cluster.start("scheduler", "scheduler")

    def token() -> str | None:
        try:
            response = httpx.post(f"{api}/auth/token", json={"username": "admin", "password": "admin"}, timeout=5)
        except httpx.TransportError:
            return None
        return response.json()["access_token"] if response.status_code in (200, 201) else None

    client = httpx.Client(base_url=f"{api}/api/v2", timeout=30,
                          headers={"Authorization": f"Bearer {_wait('the API server', cluster, token, 180)}"})
    _wait("the DAG to be parsed", cluster, lambda: client.get(f"/dags/{DAG_ID}").status_code == 200, 180)
    assert client.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200

    # the last two hours of the world's history, as logical dates (each run covers [logical, logical + 1h))
    end = datetime.fromtimestamp(world.now, UTC)
    first = end - timedelta(hours=2)
    response = client.post("/backfills", json={"dag_id": DAG_ID, "from_date": first.isoformat(),
                                               "to_date": (end - timedelta(hours=1)).isoformat(),
                                               "max_active_runs": 2, "reprocess_behavior": "none"})
    assert response.status_code in (200, 201), response.text
    backfill_id = response.json()["id"]

    def finished_runs():
        runs = client.get(f"/dags/{DAG_ID}/dagRuns", params={"run_type": "backfill"}).json()["dag_runs"]
        if len(runs) == 2 and all(run["state"] in ("success", "failed") for run in runs):
            return runs
        return None

    runs = _wait("the backfill's runs", cluster, finished_runs, timeout=600, every=5)
    assert {run["state"] for run in runs} == {"success"}, (runs, cluster.diagnostics())
    intervals = sorted((run["data_interval_start"], run["data_interval_end"]) for run in runs)
    assert [datetime.fromisoformat(start) for start, _ in intervals] == [first, first + timedelta(hours=1)]
    assert client.get(f"/backfills/{backfill_id}").status_code == 200

    start = int((first - timedelta(minutes=LOOKBACK_MINUTES)).timestamp())
    totals = 0
    with Warehouse(data / "warehouse.duckdb").reader() as con:
        for source, entities in ENTITIES.items():
            for entity in entities:
                truth = world.truth_versions(entity, world.now, start, world.now)
                rows = con.execute(
                    f"select record_id, strftime(updated_at at time zone 'UTC', '%Y-%m-%dT%H:%M:%SZ') "
                    f"from {raw_table(source, entity)} where not is_deleted").fetchall()
                assert len(rows) == len(set(rows)), f"{source} {entity}: duplicates"
                assert set(rows) == truth, f"{source} {entity}"
                totals += len(rows)
    assert totals > 0
