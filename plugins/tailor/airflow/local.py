"""`make airflow`: Airflow 3 standalone (scheduler, DAG processor, API server, triggerer) over this project.

    python -m tailor.airflow.local [--port 8080]

It picks the metadata database: AIRFLOW_DB when set, else the local PostgreSQL when one answers (database
TAILOR_AIRFLOW_DATABASE, default `tailor_airflow`, created if missing), else SQLite. SQLite takes one writer at a time: with Airflow's defaults a
backfill of several concurrent runs makes the scheduler, triggerer and DAG processor die with "database is locked".
On SQLite, Airflow here runs one task at a time and one scheduled run at a time, which a 12-hour backfill with four
runs at once survives (slowly); one line says so at start.

Each metadata database gets its own state folder under TAILOR_DATA_DIR (airflow/<database>/: airflow.cfg, logs,
the login file), so two databases never share a log file. Tailor's DAGs are not paused on creation, and the
`duckdb` pool is created. Without source Connections in the environment the local live simulator runs alongside
(tailor.local_simulator: the same shop on every start). The URL is printed once the API server answers. Airflow
runs as a child process: no Airflow import here.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from tailor import connections, local_simulator, settings

ROOT = Path(__file__).resolve().parents[3]
LOGIN = ("admin", "admin")


@dataclass(frozen=True)
class MetadataDatabase:
    url: str  # SQLAlchemy URL
    label: str  # names the state folder: sqlite, or postgres-<host>-<port>-<database>
    note: str  # the one line saying what was chosen and why

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


def _label(url: str) -> str:
    if url.startswith("sqlite"):
        return "sqlite"
    rest = url.split("://", 1)[-1].rsplit("@", 1)[-1]  # never a password in a folder name
    return re.sub(r"[^A-Za-z0-9]+", "-", f"{url.split(':', 1)[0].split('+')[0]}-{rest}").strip("-")


def _postgres_database(name: str) -> str | None:
    """The SQLAlchemy URL of database `name` on the local PostgreSQL, created if missing; None if none answers."""
    try:
        import psycopg2
        from psycopg2 import sql
    except ImportError:
        return None
    server = settings.postgres_server()
    host, port, user, password = server.host, server.port, server.user, server.password
    try:
        con = psycopg2.connect(host=host, port=port, user=user, password=password, dbname="postgres",
                               connect_timeout=3)
    except psycopg2.Error:
        return None
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", [name])
            if cur.fetchone() is None:
                cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    except psycopg2.Error:
        return None
    finally:
        con.close()
    auth = f"{user}:{password}@" if password else f"{user}@"
    return f"postgresql+psycopg2://{auth}{host}:{port}/{name}"


def choose_metadata_database(state_root: Path) -> MetadataDatabase:
    """AIRFLOW_DB, else the local PostgreSQL (database TAILOR_AIRFLOW_DATABASE, default tailor_airflow), else SQLite
    under `state_root`/sqlite."""
    explicit = settings.airflow_metadata_url()
    if explicit:
        label = _label(explicit)
        return MetadataDatabase(explicit, label, f"metadata database from AIRFLOW_DB ({label})")
    url = _postgres_database(settings.airflow_database())
    if url is not None:
        label = _label(url)
        return MetadataDatabase(url, label, f"metadata database: the local PostgreSQL ({label}); backfills may run "
                                            "several DAG runs at once")
    path = state_root / "sqlite" / "airflow.db"
    return MetadataDatabase(
        f"sqlite:///{path}", "sqlite",
        "metadata database: SQLite (no PostgreSQL answered): Airflow runs one task at a time, so backfills are slow. "
        "For parallel runs start PostgreSQL (make airflow uses it when it answers) or set AIRFLOW_DB")


def airflow_environment(database: MetadataDatabase, home: Path, port: int) -> dict[str, str]:
    """The environment every Airflow process of this install runs with."""
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Tailor's DAGs run as soon as Airflow sees them: a fresh install's first run lands the whole history.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database.url,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{LOGIN[0]}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "TAILOR_DATA_DIR": str(settings.data_dir()),
    }
    # Airflow's LocalExecutor whose task processes start with Tailor's task libraries imported (tailor.airflow.executor)
    env.setdefault("AIRFLOW__CORE__EXECUTOR", "tailor.airflow.executor.LocalExecutor")
    # Airflow's default of 32 task slots starts 32 worker processes; on a laptop a few per core keep it responsive
    # (tasks mostly wait on the network or take the one DuckDB slot).
    env.setdefault("AIRFLOW__CORE__PARALLELISM", str(max(4, 2 * (os.cpu_count() or 2))))
    if database.is_sqlite:
        # One task at a time: SQLite takes one writer, and every running task writes its state (measured: a 12-hour
        # backfill with four runs at once completes; with Airflow's defaults the scheduler dies "database is locked").
        env["AIRFLOW__CORE__PARALLELISM"] = "1"
        env["AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG"] = "1"
    return env


def _run(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(["airflow", *args], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"airflow {' '.join(args)} failed:\n{result.stderr[-3000:]}")


def prepare(port: int) -> tuple[MetadataDatabase, dict[str, str]]:
    """Choose the database, lay out its state folder, migrate it and create the pool; return it and the env."""
    state_root = settings.data_dir() / "airflow"
    database = choose_metadata_database(state_root)
    home = state_root / database.label
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "passwords.json"
    if not passwords.exists():
        passwords.write_text(f'{{"{LOGIN[0]}": "{LOGIN[1]}"}}')
    env = airflow_environment(database, home, port)
    _run(env, "db", "migrate")
    _run(env, "pools", "set", "duckdb", "1", "DuckDB allows one writer: every task that writes it")
    return database, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tailor.airflow.local", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=settings.airflow_port())
    args = parser.parse_args(argv)
    database, env = prepare(args.port)
    print(f"airflow: {database.note}", flush=True)
    print(f"airflow: state and logs in {env['AIRFLOW_HOME']}", flush=True)
    print("airflow: Tailor's DAGs start unpaused: the first hourly run extracts the whole history", flush=True)
    url = f"http://127.0.0.1:{args.port}"
    local_simulator.stop_on_term()
    with ExitStack() as stack:
        if not any(connections.set_in_environment(conn_id) for conn_id in connections.conn_ids().values()):
            # No source Connection in the environment: the DAGs read the local live shop, so run it alongside.
            stack.enter_context(local_simulator.running(say=lambda line: print(f"airflow: {line}", flush=True)))
        return _standalone(env, url)


def _standalone(env: dict[str, str], url: str) -> int:
    """Run `airflow standalone` until it exits or we are interrupted; say the URL once the API server answers."""
    proc = subprocess.Popen(["airflow", "standalone"], env=env, start_new_session=True)
    try:
        started = time.monotonic()
        while not local_simulator.answers(f"{url}/api/v2/monitor/health"):
            if proc.poll() is not None:
                print(f"airflow: standalone exited with code {proc.returncode}", file=sys.stderr)
                return proc.returncode or 1
            time.sleep(1)
        print(f"\nairflow: ready after {time.monotonic() - started:.0f} s: {url}  login: {LOGIN[0]} / {LOGIN[1]}\n",
              flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_group(proc, signal.SIGINT)


def stop_group(process: subprocess.Popen, how: int = signal.SIGTERM, timeout: float = 60) -> None:
    """Stop a process started in its own session (start_new_session=True) with its children: `how` to the group,
    SIGKILL after `timeout` seconds; waits for it."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, how)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS's pick), for a server about to be started."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
