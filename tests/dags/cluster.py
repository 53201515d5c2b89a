"""Airflow's production processes for scheduler-level tests: API server, DAG processor and scheduler on a fresh
PostgreSQL metadata database, each in its own process group, logging to files shown on failure.

A process can run with its wall clock shifted back (time-machine, loaded by shifted_clock/sitecustomize.py): a
scheduler started "six hours ago" schedules the hour that ended then, which is how the tests make downtime without
waiting for it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tailor import sources
from tailor.raw import raw_table
from tailor.warehouse import Warehouse
from tests.dags.conftest import AIRFLOW, ROOT

DAG_ID = "tailor_extract_hourly"
SHIFTED_CLOCK = Path(__file__).with_name("shifted_clock")


def wait_until(what: str, check, timeout: float, every: float, alive, diagnostics):
    """Poll `check` until it returns something truthy (returned); `alive` asserts the processes still run, and a
    timeout fails the test with `diagnostics()`. A poll the API server does not answer within the client's timeout
    is polled again (on 2 cores, with four DAG runs in flight, one took over 30 s once)."""
    deadline, unanswered = time.monotonic() + timeout, None
    while True:
        alive()
        try:
            value = check()
        except httpx.TimeoutException as error:  # a poll the busy API server did not answer in time: poll again
            value, unanswered = None, error
        if value:
            return value
        if time.monotonic() > deadline:
            last = f" (the last poll unanswered: {unanswered!r})" if unanswered is not None else ""
            pytest.fail(f"timed out waiting for {what}{last}\n{diagnostics()}")
        time.sleep(every)


class Cluster:
    def __init__(self, env: dict[str, str], logs: Path, port: int, dag_id: str = DAG_ID):
        self.dag_id = dag_id  # the DAG whose runs client(), runs() and task_failures() look at
        self.env = env
        self.logs = logs
        self.port = port
        self.api = f"http://127.0.0.1:{port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self._client: httpx.Client | None = None

    def start(self, name: str, *args: str, shift_hours: int = 0, extra_env: dict[str, str] | None = None) -> None:
        """Start `airflow <args>` as `name`; with shift_hours, its clock (and its children's) runs that far behind:
        Python's wall clock, and the metadata database's now() as its queries see it."""
        env = {**self.env, **(extra_env or {})}
        if shift_hours:
            database = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
            env.update({"TAILOR_TEST_CLOCK_SHIFT_HOURS": str(shift_hours),
                        "PYTHONPATH": os.pathsep.join(filter(None, [str(SHIFTED_CLOCK), env.get("PYTHONPATH")])),
                        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": shifted_database_clock(database, shift_hours)})
        log = (self.logs / f"{name}.log").open("a")
        self.procs[name] = subprocess.Popen([AIRFLOW, *args], env=env, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def start_api_server(self) -> None:
        self.start("api-server", "api-server", "--port", str(self.port))

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"airflow {name} exited with {proc.returncode}:\n{self.tail(name)}"

    def tail(self, name: str, chars: int = 4000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def diagnostics(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.tail(name)}" for name in self.procs)

    def stop(self, *names: str) -> None:
        chosen = [self.procs[name] for name in (names or list(self.procs)) if name in self.procs]
        for proc in chosen:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in chosen:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for name in names or list(self.procs):
            self.procs.pop(name, None)

    def wait(self, what: str, check, timeout: float = 300, every: float = 2):
        return wait_until(what, check, timeout, every, alive=self.check_alive, diagnostics=self.diagnostics)

    def client(self) -> httpx.Client:
        """An API v2 client logged in as admin (waits for the API server and the DAG to be parsed)."""
        if self._client is not None:
            return self._client

        def token() -> str | None:
            try:
                response = httpx.post(f"{self.api}/auth/token", json={"username": "admin", "password": "admin"},
                                      timeout=5)
            except httpx.TransportError:
                return None
            return response.json()["access_token"] if response.status_code in (200, 201) else None

        bearer = self.wait("the API server", token, 180)
        self._client = httpx.Client(base_url=f"{self.api}/api/v2", timeout=30,
                                    headers={"Authorization": f"Bearer {bearer}"})
        self.wait("the DAG to be parsed", lambda: self._client.get(f"/dags/{self.dag_id}").status_code == 200, 180)
        return self._client

    def runs(self, **params) -> list[dict]:
        return self.client().get(f"/dags/{self.dag_id}/dagRuns", params={"limit": 100, **params}).json()["dag_runs"]

    def wait_for_runs(self, count: int = 1, timeout: float = 600, ending: datetime | None = None,
                      **params) -> list[dict]:
        """Wait until `count` runs (matching params), or a run whose data interval ends at or after `ending`, and
        every other run have finished; fail with diagnostics when one failed. Returns the runs."""

        def finished() -> list[dict] | None:
            runs = self.runs(**params)
            if not all(run["state"] in ("success", "failed") for run in runs):
                return None
            if ending is not None:  # the wall clock may pass an hour meanwhile: a later end counts too
                ends = {datetime.fromisoformat(run["data_interval_end"]).astimezone(UTC) for run in runs}
                return runs if ends and max(ends) >= ending else None
            return runs if len(runs) >= count else None

        runs = self.wait(f"{count} run(s) {params or ''}", finished, timeout=timeout, every=5)
        failed = [run for run in runs if run["state"] != "success"]
        assert not failed, f"failed runs: {failed}\n{self.task_failures(failed)}\n{self.diagnostics()}"
        return runs

    def task_failures(self, runs: list[dict]) -> str:
        lines = []
        for run in runs:
            tis = self.client().get(f"/dags/{self.dag_id}/dagRuns/{run['dag_run_id']}/taskInstances").json()
            for ti in tis.get("task_instances", []):
                if ti["state"] not in ("success", "skipped"):
                    lines.append(f"{run['dag_run_id']} {ti['task_id']}: {ti['state']}")
                    log = self.client().get(f"/dags/{self.dag_id}/dagRuns/{run['dag_run_id']}/taskInstances/"
                                            f"{ti['task_id']}/logs/{max(1, ti['try_number'])}",
                                            headers={"Accept": "text/plain"})
                    lines.append(log.text[-3000:])
        return "\n".join(lines)


def shifted_database_clock(url: str, hours: int) -> str:
    """The metadata database's URL for a process whose clock runs `hours` behind. The scheduler asks PostgreSQL's
    now() which DAGs are due: a schema holding a now() `hours` earlier, first on the session's search_path (before
    pg_catalog), makes that answer agree with the shifted Python clock."""
    import psycopg2
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    schema = f"tailor_clock_minus_{int(hours)}h"
    con = psycopg2.connect(host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password or "",
                           dbname=parsed.database)
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f"create schema if not exists {schema}")
            cur.execute(f"create or replace function {schema}.now() returns timestamptz language sql stable as "
                        f"$$ select pg_catalog.now() - interval '{int(hours)} hours' $$")
    finally:
        con.close()
    return parsed.update_query_dict({"options": f"-csearch_path={schema},public,pg_catalog"}).render_as_string(
        hide_password=False)


def airflow_env(home: Path, database_url: str, port: int, dags: tuple[str, ...] | None = None,
                **overrides: str) -> dict[str, str]:
    """The environment of a cluster on `database_url`, migrated and with the duckdb pool. dags: the DAG files of
    dags/ it runs (links in a folder of its own), when a test is about some of them only: every DAG of dags/ starts
    unpaused here, and a daily run beside the hourly ones would take the CPU and the duckdb pool for minutes."""
    (home / "passwords.json").write_text('{"admin": "admin"}')
    dags_folder = ROOT / "dags"
    if dags is not None:
        dags_folder = home / "dags"
        dags_folder.mkdir()
        for name in dags:
            (dags_folder / name).symlink_to(ROOT / "dags" / name)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
        "AIRFLOW__CORE__EXECUTOR": "tailor.airflow.executor.LocalExecutor",  # task processes start warm
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        # the scheduler signs task tokens that the API server checks: both need the same secret
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "PATH": f"{Path(AIRFLOW).parent}:{os.environ.get('PATH', '')}",
        **overrides,
    }
    for cmd in (["db", "migrate"], ["pools", "set", "duckdb", "1", "DuckDB writer"]):
        result = subprocess.run([AIRFLOW, *cmd], env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"airflow {' '.join(cmd)} failed:\n{result.stderr[-3000:]}"
    return env


def raw_versions(data: Path) -> dict[str, set[tuple[str, str]]]:
    """Per entity: the (record_id, updated_at) pairs raw.* holds (deletions left out), checked for duplicates."""
    out = {}
    with Warehouse(data / "warehouse.duckdb").reader() as con:
        for source, entities in sources.entities().items():
            for entity in entities:
                rows = con.execute(
                    f"select record_id, strftime(updated_at at time zone 'UTC', '%Y-%m-%dT%H:%M:%SZ') "
                    f"from {raw_table(source, entity)} where not is_deleted").fetchall()
                assert len(rows) == len(set(rows)), f"{source} {entity}: duplicate versions in raw"
                out[entity] = set(rows)
    return out


def hour_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
