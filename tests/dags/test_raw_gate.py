"""The raw gate in the hourly DAG, through dag.test(): a failed gate fails the run after the loads (which keep what
they loaded), names what is wrong, and emits no tailor_raw asset event, so nothing downstream is triggered."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tailor.raw import ensure_raw_tables
from tailor.warehouse import Warehouse
from tests.dags.conftest import ROOT, run_in_airflow

DAG_FILE = ROOT / "dags" / "tailor_extract_hourly.py"

RUN = """
import json
from datetime import datetime
from airflow.dag_processing.dagbag import DagBag
from airflow.models.asset import AssetEvent
from airflow.utils.session import create_session
dag = DagBag(dag_folder={dag_file!r}).get_dag("tailor_extract_hourly")
run = dag.test(logical_date=datetime.fromisoformat({logical!r}))
with create_session() as session:
    states = {{ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session)}}
    events = session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id).count()
print("RESULT", json.dumps({{"state": str(run.state), "tasks": states, "asset_events": events}}))
"""


def test_a_broken_key_fails_the_run_at_the_gate(airflow_env, simulator, tmp_path):
    sim = simulator(customers=1_500, seed=21, rate_limits=False)
    logical = datetime.fromtimestamp(sim.state.world.now, UTC)  # the run covers [logical - 1h, logical)
    data = tmp_path / "data"
    warehouse = Warehouse(data / "warehouse.duckdb")
    # raw.shopify_orders already holds one record version twice (a load gone wrong outside Tailor's loader): the
    # run's loads go through, and the gate, which checks keys over the time its batches cover, must stop the run.
    twice = logical - timedelta(minutes=30)
    with warehouse.writer() as con:
        ensure_raw_tables(con)
        for copy in range(2):
            con.execute("insert into raw.shopify_orders values ('gid://shopify/Order/1', ?, '{}', false, ?, ?)",
                        [twice, f"preloaded{copy}", twice])
    code = RUN.format(dag_file=str(DAG_FILE), logical=logical.isoformat())
    result = run_in_airflow(airflow_env, code, {"TAILOR_DATA_DIR": str(data), "TAILOR_SIMULATOR_URL": sim.url,
                                                "TAILOR_LOOKBACK_MINUTES": "10"})
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, (result.stdout[-3000:], result.stderr[-5000:])
    outcome = json.loads(lines[-1][len("RESULT "):])

    assert outcome["state"] == "failed"
    assert outcome["tasks"]["raw_gate"] == "failed"
    assert outcome["tasks"]["raw_snapshot"] != "success"  # dev builds never see ungated data
    loads = {task: state for task, state in outcome["tasks"].items() if ".load_" in task}
    assert loads and set(loads.values()) == {"success"}, loads  # the gate ran after every load, and only then
    assert outcome["asset_events"] == 0  # tailor_raw is not emitted: nothing downstream is scheduled

    log = result.stdout + result.stderr
    assert "gate raw failed as of" in log
    assert "column copies" in log and "gid://shopify/Order/1" in log

    with warehouse.reader() as con:
        kept = con.execute("select count(*) from raw._batches").fetchone()[0]
        failed = con.execute("select asset, column_name, unexpected_count, sample_values from quality.gate_results "
                             "where status = 'failed'").fetchall()
    assert kept == 6  # the loads committed their batches before the gate failed
    assert failed and failed[0][:3] == ("record_keys", "copies", 1)
    assert "gid://shopify/Order/1" in failed[0][3]
    assert (data / "quality" / "docs" / "index.html").exists()
    assert not (data / "snapshots" / "raw_snapshot.duckdb").exists()
