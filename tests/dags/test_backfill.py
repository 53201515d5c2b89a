"""`make airflow` as a new user meets it, then a backfill as they start it.

`python -m tailor.airflow.local` (what `make airflow` runs) picks the metadata database (here the local PostgreSQL
answers, so it takes it), keeps its state and logs under the data dir (one folder per database), starts the local
live simulator beside Airflow standalone, prints the URL only once the server answers, and leaves Tailor's DAG
unpaused. Then five past hours through `POST /api/v2/backfills`, four runs at once: every run is green, and raw.*
holds exactly what the live shop serves for everything up to the last hour (the first run of a fresh install
catches up the whole history). A TERM, as make sends when interrupted, stops everything it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from simulator.cli import LIVE_FUTURE_DAYS
from simulator.world import World, WorldConfig, parse_time
from tailor import local_simulator
from tailor.airflow.local import free_port
from tailor.connections import conn_ids
from tests.dags.cluster import DAG_ID, hour_floor, raw_versions, wait_until
from tests.dags.conftest import ROOT
from tests.postgres import drop_database, require_postgres

DATABASE = "tailor_test_make_airflow"
HOURS = 5  # four backfill runs at once, each contending for the DuckDB file, and the scheduled latest hour


class MakeAirflow:
    """The launcher in its own process group, its output kept; the API through a logged-in client."""

    def __init__(self, env: dict[str, str], port: int, logs: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.stderr = logs / "make-airflow.log"
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "tailor.airflow.local", "--port", str(port)], cwd=ROOT,
                                     env=env, stdout=subprocess.PIPE, stderr=self.stderr.open("w"), text=True,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if "ready after" in line or time.monotonic() > deadline:
                break
        said = "\n".join(self.lines)
        assert "ready after" in said, (said, self.stderr.read_text()[-3000:])
        # Keep reading what Airflow prints, as a terminal would: a full pipe would stall every component.
        threading.Thread(target=self._drain, daemon=True).start()
        return said

    def _drain(self) -> None:
        with self.stderr.with_name("make-airflow.out").open("w") as out:
            for line in self.proc.stdout:
                out.write(line)

    def client(self) -> httpx.Client:
        token = httpx.post(f"{self.url}/auth/token", json={"username": "admin", "password": "admin"},
                           timeout=10).json()["access_token"]
        return httpx.Client(base_url=f"{self.url}/api/v2", timeout=30, headers={"Authorization": f"Bearer {token}"})

    def wait(self, what: str, check, timeout: float, every: float = 5):
        def alive() -> None:
            assert self.proc.poll() is None, f"make airflow exited:\n{self.stderr.read_text()[-3000:]}"

        return wait_until(what, check, timeout, every, alive=alive,
                          diagnostics=lambda: self.stderr.read_text()[-5000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # as make does when interrupted
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def make_airflow(tmp_path):
    require_postgres()
    drop_database(DATABASE)
    port, sim_port = free_port(), free_port()
    env = {**os.environ, "TAILOR_DATA_DIR": str(tmp_path / "data"), "TAILOR_AIRFLOW_DATABASE": DATABASE,
           "TAILOR_SIMULATOR_URL": f"http://127.0.0.1:{sim_port}"}
    for name in ("AIRFLOW_DB", *(f"AIRFLOW_CONN_{conn_id.upper()}" for conn_id in conn_ids().values())):
        env.pop(name, None)
    launcher = MakeAirflow(env, port, tmp_path)
    launcher.data = tmp_path / "data"
    launcher.sim_url = env["TAILOR_SIMULATOR_URL"]
    try:
        yield launcher
    finally:
        launcher.stop()
        drop_database(DATABASE)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _processes_of(data: Path) -> list[str]:
    """Processes whose environment names this data dir: what make airflow started, directly or not."""
    marker = f"TAILOR_DATA_DIR={data}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {command[:100]}")
        except OSError:
            continue
    return found


def _sim_clock(url: str) -> int:
    return parse_time(httpx.get(f"{url}/_simulator/health", timeout=5).json()["clock"])


@pytest.mark.slow
@pytest.mark.timeout(1500)  # about five minutes on an idle machine
def test_make_airflow_then_a_5_hour_backfill_four_runs_at_once_is_green_and_exact(make_airflow):
    said = make_airflow.wait_ready()
    # the URL is said only once it answers, and the database is the local PostgreSQL, chosen without being asked
    assert httpx.get(f"{make_airflow.url}/api/v2/monitor/health", timeout=5).status_code == 200
    assert f"{make_airflow.url}  login: admin / admin" in said
    assert "metadata database: the local PostgreSQL" in said
    home = Path(next(line.split(" in ", 1)[1] for line in make_airflow.lines if "state and logs in" in line))
    assert home.parent == make_airflow.data / "airflow" and home.name.endswith(DATABASE.replace("_", "-"))
    assert (home / "airflow.cfg").exists()
    # the live simulator runs beside it, anchored where the data dir keeps it
    health = httpx.get(f"{make_airflow.sim_url}/_simulator/health", timeout=5).json()
    anchor = (make_airflow.data / "simulator" / "anchor").read_text().strip()
    assert health["clock_mode"] == "live" and health["world_now"] == anchor

    client = make_airflow.client()
    make_airflow.wait("the DAG to be parsed", lambda: client.get(f"/dags/{DAG_ID}").status_code == 200, 180)
    # About the hourly DAG: the daily one, unpaused too, would run its latest day beside the backfill (minutes of dbt
    # and models on the CPU and in the duckdb pool)
    make_airflow.wait("the daily DAG to be parsed", lambda: client.get("/dags/tailor_daily").status_code == 200, 180)
    client.patch("/dags/tailor_daily", json={"is_paused": True}).raise_for_status()
    assert client.get(f"/dags/{DAG_ID}").json()["is_paused"] is False  # a fresh database, and nobody unpaused it

    hour = hour_floor(datetime.now(UTC))
    before = _sim_clock(make_airflow.sim_url)
    first = hour - timedelta(hours=HOURS)
    response = client.post("/backfills", json={"dag_id": DAG_ID, "from_date": first.isoformat(),
                                               "to_date": (hour - timedelta(hours=1)).isoformat(),
                                               "max_active_runs": 4, "reprocess_behavior": "none"})
    assert response.status_code in (200, 201), response.text

    wanted = {first + timedelta(hours=h) for h in range(HOURS)}

    def starts(runs: list[dict]) -> set[datetime]:
        return {datetime.fromisoformat(run["data_interval_start"]).astimezone(UTC) for run in runs}

    def finished() -> list[dict] | None:
        runs = client.get(f"/dags/{DAG_ID}/dagRuns", params={"limit": 100}).json()["dag_runs"]
        if wanted <= starts(runs) and all(run["state"] in ("success", "failed") for run in runs):
            return runs
        return None

    runs = make_airflow.wait("the backfill's runs", finished, timeout=900)
    # its LocalExecutor forked the task processes with Tailor's libraries imported (tailor.airflow.executor)
    printed = make_airflow.stderr.with_name("make-airflow.out")
    make_airflow.wait("the scheduler's preload line", lambda: "Tailor's task modules preloaded" in printed.read_text(
        errors="replace"), timeout=60, every=1)
    after = _sim_clock(make_airflow.sim_url)
    assert {run["state"] for run in runs} == {"success"}, runs
    # The unpaused DAG had already run its latest hour (scheduled): the backfill ran the four before it.
    backfill = [run for run in runs if run["run_type"] == "backfill"]
    assert starts(backfill) | starts([run for run in runs if run["run_type"] == "scheduled"]) >= wanted
    assert len(backfill) >= HOURS - 1

    # The same world, rebuilt here from its seed and anchor. It kept trading while the runs read it: a record
    # changed meanwhile may be stored as it was before the change or not at all; every other record is exact.
    world = World.build(WorldConfig(seed=local_simulator.SEED, customers=local_simulator.CUSTOMERS, now=anchor,
                                    future_days=LIVE_FUTURE_DAYS))
    end = max(int(hour.timestamp()), *(parse_time(run["data_interval_end"]) for run in runs))
    stored = raw_versions(make_airflow.data)
    for entity, rows in stored.items():
        then, now = world.truth_versions(entity, before, None, end), world.truth_versions(entity, after, None, end)
        moving = {record_id for record_id, _ in then ^ now}
        steady = {row for row in rows if row[0] not in moving}
        assert steady == {row for row in then if row[0] not in moving}, entity
        assert rows - steady <= then | now, entity
        assert len(moving) <= max(5, len(then) // 100), f"{entity}: {len(moving)} records changed during the test"
    assert sum(len(rows) for rows in stored.values()) > 1_000

    make_airflow.stop()
    sim_port = int(make_airflow.sim_url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 30
    while not (_port_free(make_airflow.port) and _port_free(sim_port)) and time.monotonic() < deadline:
        time.sleep(1)
    assert _port_free(make_airflow.port) and _port_free(sim_port), "make airflow left a server running"
    assert not _processes_of(make_airflow.data), f"still running: {_processes_of(make_airflow.data)}"
