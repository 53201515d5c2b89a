"""Daily runs for the DAG tests: one day through `dag.test()` in a fresh process (the default setup), the history a
first install loads before its first day, and the feed a day left in the warehouse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from tailor.warehouse import Warehouse
from tests.dags.conftest import ROOT, run_in_airflow

DAG_FILE = ROOT / "dags" / "tailor_daily.py"
# sitecustomize.py there: training on two churn snapshots, for the Airflow processes task processes are forked from
FEW_SNAPSHOTS = Path(__file__).with_name("few_snapshots")

RUN = """
import json
import os
from datetime import datetime

from ml import config
config.TRAINING_SNAPSHOTS = 2  # tasks run in this process under dag.test(): the feed tests' setting

from airflow.dag_processing.dagbag import DagBag
from airflow.models.asset import AssetEvent
from airflow.utils.session import create_session

dag = DagBag(dag_folder={dag_file!r}).get_dag("tailor_daily")
# Airflow 3.3's dag.test() hands the scheduler a DAG serialized without the metadata database, whose deadline alerts
# are still definitions, not the ids update_state() looks up: a successful run then fails with "'dict' object has no
# attribute 'hex'". The scheduler reads DAGs the DAG processor stored, with ids; test_dag_integrity.py checks the
# alert is declared.
dag.deadline = None
run = dag.test(logical_date=datetime.fromisoformat({logical!r}))
with create_session() as session:
    tis = run.get_task_instances(session=session)
    states = {{ti.task_id: str(ti.state) for ti in tis}}
    seconds = {{ti.task_id: round(ti.duration or 0, 1) for ti in tis}}
    emitted = sorted(e.source_task_id for e in session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id))
print("RESULT", json.dumps({{"state": str(run.state), "tasks": states, "seconds": seconds, "emitted": emitted,
                            "interval": [str(run.data_interval_start), str(run.data_interval_end)]}}))
"""


def daily_settings(data: Path, sim) -> dict[str, str]:
    """Tailor's settings for the tests' daily runs: their data dir, the shop, a short lookback, Klaviyo the one sink."""
    return {"TAILOR_DATA_DIR": str(data), "TAILOR_SIMULATOR_URL": sim.url, "TAILOR_LOOKBACK_MINUTES": "10",
            "TAILOR_FEED_SINKS": "klaviyo"}


def few_snapshots(env: dict[str, str]) -> dict[str, str]:
    """The extra environment of an Airflow process whose tasks train as the in-process runs do (RUN's setting)."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(FEW_SNAPSHOTS), env.get("PYTHONPATH")]))}


def run_day(airflow_env: dict[str, str], sim, data: Path, as_of: datetime) -> tuple[dict, str]:
    """dag.test() of the daily run whose interval ends at `as_of`, delivering to the simulator's Klaviyo; returns
    its outcome (state, task states and seconds, assets emitted, interval) and its log."""
    code = RUN.format(dag_file=str(DAG_FILE), logical=as_of.isoformat())
    result = run_in_airflow(airflow_env, code, daily_settings(data, sim), timeout=900)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, (result.stdout[-4000:], result.stderr[-6000:])
    outcome = json.loads(lines[-1][len("RESULT "):])
    print(f"run as of {as_of.isoformat()}: task seconds {outcome['seconds']}")  # shown by pytest -s or on failure
    return outcome, result.stdout + result.stderr


def load_history(sim, data: Path, end: datetime) -> None:
    """Land and load everything the shop holds up to `end` (`python -m tailor extract`, then `load`), as a first
    install does. A day's build reads what is loaded when it runs: a record changed after its as-of and loaded by
    then is rebuilt as of that day from its own timestamps, one not loaded yet is missing. Days run side by side load
    in any order, so every setup a test compares loads the whole span first, and the days compare as runs on the
    same raw.*."""
    env = {**os.environ, "TAILOR_DATA_DIR": str(data), "TAILOR_SIMULATOR_URL": sim.url}
    for command in (["extract", "--source", "all", "--start", "2000-01-01", "--end", end.isoformat()], ["load"]):
        done = subprocess.run([sys.executable, "-m", "tailor", *command], capture_output=True, text=True, env=env,
                              timeout=600)
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])


def feed(warehouse: Warehouse, day: datetime) -> list[tuple]:
    """The feed rows of the day whose as-of is `day`, in customer order."""
    with warehouse.reader() as con:
        return con.execute("select * from exports.esp_feed where as_of_date = ? order by customer_id",
                           [day.date()]).fetchall()
