"""The hourly extract DAG: it parses cleanly and cheaply, has the shape and policies it promises, and an hourly
run through dag.test() lands exactly the simulator's records of that hour in raw.*."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tailor import sources
from tailor.raw import raw_table
from tailor.warehouse import Warehouse
from tests.dags.conftest import ROOT, run_in_airflow

DAG_FILE = ROOT / "dags" / "tailor_extract_hourly.py"

PARSE = f"""
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(DAG_FILE)!r})
dag = bag.get_dag("tailor_extract_hourly")
print(json.dumps({{
    "errors": {{k: str(v) for k, v in bag.import_errors.items()}},
    "timetable": type(dag.timetable).__name__,
    "cron": dag.timetable.expression,
    "tags": sorted(dag.tags),
    "max_active_runs": dag.max_active_runs,
    "catchup": dag.catchup,
    "doc": bool(dag.doc_md),
    "tasks": {{t.task_id: {{"pool": t.pool, "retries": t.retries, "callback": bool(t.on_failure_callback),
                            "upstream": sorted(t.upstream_task_ids)}} for t in dag.tasks}},
}}))
"""


@pytest.fixture(scope="module")
def parsed(airflow_env) -> dict:
    result = run_in_airflow(airflow_env, PARSE)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_dag_parses_with_its_policies(parsed):
    assert parsed["errors"] == {}
    assert parsed["timetable"] == "CronDataIntervalTimetable"
    assert parsed["cron"] == "0 * * * *"
    assert {"tailor", "extract"} <= set(parsed["tags"])
    assert parsed["max_active_runs"] == 1
    assert parsed["catchup"] is False
    assert parsed["doc"]
    for task_id, task in parsed["tasks"].items():
        assert task["retries"] >= 1, task_id
        assert task["callback"], task_id


def test_one_extract_and_one_pooled_load_per_source_entity(parsed):
    expected = {f"{s}.{verb}_{e}" for s, es in sources.entities().items() for e in es for verb in ("extract", "load")}
    assert set(parsed["tasks"]) == expected | {"raw_gate", "raw_snapshot"}
    # the raw gate: after every load, in the duckdb pool (tests/dags/test_raw_gate.py runs it); the snapshot for
    # dbt's dev target only after it passed
    assert parsed["tasks"]["raw_gate"]["pool"] == "duckdb"
    assert parsed["tasks"]["raw_gate"]["upstream"] == sorted(t for t in expected if ".load_" in t)
    assert parsed["tasks"]["raw_snapshot"]["pool"] == "duckdb"
    assert parsed["tasks"]["raw_snapshot"]["upstream"] == ["raw_gate"]
    for source, entities in sources.entities().items():
        for entity in entities:
            load = parsed["tasks"][f"{source}.load_{entity}"]
            assert load["pool"] == "duckdb"
            assert load["upstream"] == [f"{source}.extract_{entity}"]
            assert parsed["tasks"][f"{source}.extract_{entity}"]["pool"] != "duckdb"


def test_parsing_touches_no_network_and_no_warehouse(airflow_env, tmp_path):
    """A parse is cheap: importing the DAG file opens no socket and creates no file under TAILOR_DATA_DIR."""
    code = f"""
import socket
def refuse(*args, **kwargs):
    raise RuntimeError("network touched at parse time")
socket.socket.connect = refuse
socket.create_connection = refuse
import runpy
runpy.run_path({str(DAG_FILE)!r})
print("parsed")
"""
    result = run_in_airflow(airflow_env, code, {"TAILOR_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "data").exists()


def test_the_first_hourly_run_lands_the_whole_history_and_publishes_the_snapshot(airflow_env, simulator, tmp_path):
    sim = simulator(customers=1_500, seed=21, rate_limits=False)
    world = sim.state.world
    logical = datetime.fromtimestamp(world.now, UTC)  # dag.test(logical_date=X) runs the interval [X - 1h, X)
    code = f"""
from datetime import datetime
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder={str(DAG_FILE)!r}).get_dag("tailor_extract_hourly")
run = dag.test(logical_date=datetime.fromisoformat({logical.isoformat()!r}))
print("STATE", run.state)
"""
    data = tmp_path / "data"
    result = run_in_airflow(airflow_env, code, {"TAILOR_DATA_DIR": str(data), "TAILOR_SIMULATOR_URL": sim.url,
                                                "TAILOR_LOOKBACK_MINUTES": "10"})
    assert "STATE success" in result.stdout, (result.stdout[-3000:], result.stderr[-5000:])
    end = int(logical.timestamp())
    warehouse = Warehouse(data / "warehouse.duckdb")
    snapshot = Warehouse(data / "snapshots" / "raw_snapshot.duckdb")
    totals = 0
    with warehouse.reader() as con, snapshot.reader() as snap:
        for source, entities in sources.entities().items():
            for entity in entities:
                # a fresh install: the first run catches up everything before its interval's end
                truth = world.truth_versions(entity, world.now, None, end)
                rows = con.execute(
                    f"select record_id, strftime(updated_at at time zone 'UTC', '%Y-%m-%dT%H:%M:%SZ') "
                    f"from {raw_table(source, entity)} where not is_deleted").fetchall()
                assert set(rows) == truth, f"{source} {entity}"
                assert len(rows) == len(set(rows))
                table = raw_table(source, entity)
                assert snap.execute(f"select count(*) from {table}").fetchone() == \
                    con.execute(f"select count(*) from {table}").fetchone()
                totals += len(rows)
    assert totals > 1_000
