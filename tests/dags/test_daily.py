"""The daily DAG end to end through Airflow (dag.test() in a subprocess, real tasks, no mocks): on a fresh install
(its history loaded first, `python -m tailor extract` and `load`) it extracts its day from the simulator over HTTP,
gates raw.*, builds the dbt layers, gates the marts, trains (no model is registered yet), scores, and builds, gates,
exports and delivers the feed of the interval end's date to the simulator's Klaviyo, then writes the run report. The next day's run (not a Monday) skips training, visibly, and
delivers that date's feed with the models day one trained. Then the production topology runs both days again as one
backfill through the API, side by side on Celery: the same feeds.

The world is the smallest the feed tests use (tests/integration/test_feed_delivery.py: 600 customers), and training
builds two churn snapshots instead of six, as there: the feed needs models that score, not the best ones.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tailor.airflow.local import free_port
from tailor.warehouse import Warehouse
from tests.dags.cluster import Cluster, airflow_env
from tests.dags.dailykit import daily_settings, feed, few_snapshots, load_history, run_day
from tests.postgres import drop_database, fresh_database, pg_settings

# The simulator's world ends at 2026-11-01T00:00Z (a Sunday). Day one is the run for Oct 30, as of Oct 31 00:00
# (a Saturday); day two the run for Oct 31, as of Nov 1 00:00 (a Sunday): neither is the weekly training day.
DAY_ONE = datetime(2026, 10, 31, tzinfo=UTC)
DAY_TWO = datetime(2026, 11, 1, tzinfo=UTC)


def _logged_report(log: str) -> Path:
    paths = [line.split("run report: ", 1)[1].strip().split()[0].strip("'\",") for line in log.splitlines()
             if "run report: " in line]
    assert paths, "the run report task logged no 'run report: <path>' line"
    return Path(paths[-1])


def _feed_and_deliveries(warehouse: Warehouse, day: datetime) -> tuple[int, list[tuple]]:
    with warehouse.reader() as con:
        rows = con.execute("select count(*) from exports.esp_feed where as_of_date = ?", [day.date()]).fetchone()[0]
        logged = con.execute("select sink, status, rows_in_feed, rows_sent from export.deliveries "
                             "where as_of_date = ? order by started_at", [day.date()]).fetchall()
    return rows, logged


@pytest.fixture(scope="module")
def default_setup(tmp_path_factory) -> Path:
    """The data dir of the daily runs made in the default setup (dag.test(), in process, SQLite metadata), which the
    Celery topology's run of the same day is compared with."""
    return tmp_path_factory.mktemp("daily") / "data"


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_fresh_install_delivers_a_feed_then_the_next_day_skips_training(airflow_env, simulator, default_setup):
    sim = simulator(customers=600, seed=23, rate_limits=False)
    sim.state.set_now(int(DAY_TWO.timestamp()))  # both days are past days, as for the backfill below
    data = default_setup
    warehouse = Warehouse(data / "warehouse.duckdb")
    load_history(sim, data, DAY_TWO)

    # --- day one: a fresh install: everything runs, training because no model is registered yet
    outcome, log = run_day(airflow_env, sim, data, DAY_ONE)
    failed = {task: state for task, state in outcome["tasks"].items() if state != "success"}
    assert outcome["state"] == "success" and not failed, (failed, log[-6000:])
    assert outcome["interval"][1].startswith("2026-10-31 00:00:00")
    assert "no customer, recommendation, send-time model promoted as of 2026-10-31 yet" in log
    assert outcome["emitted"] == ["deliver", "marts_gate", "raw_gate"]  # tailor_feed, tailor_marts, tailor_raw

    rows, logged = _feed_and_deliveries(warehouse, DAY_ONE)
    assert rows > 100  # the consented customers of a 600-customer shop as of that day
    assert logged == [("klaviyo", "complete", rows, rows)]  # the first delivery sends every row
    export_dir = data / "outbox" / DAY_ONE.date().isoformat()
    manifest = json.loads((export_dir / "manifest.json").read_text())
    assert manifest["rows"] == rows
    assert (export_dir / "feed.jsonl.gz").exists()
    assert "dbt core: model.tailor.customers" in log  # the per-model table of a layer task
    report = _logged_report(log)
    assert report.exists() and report.stat().st_size > 0

    # --- day two: not the weekly day, production models registered, no drift request: training is skipped
    outcome, log = run_day(airflow_env, sim, data, DAY_TWO)
    states = outcome["tasks"]
    assert outcome["state"] == "success", log[-6000:]
    assert states["train"] == "skipped"
    assert {task: state for task, state in states.items() if task != "train" and state != "success"} == {}
    assert "no training as of 2026-11-01T00:00:00+00:00" in log
    rows, logged = _feed_and_deliveries(warehouse, DAY_TWO)
    assert rows > 100
    assert len(logged) == 1 and logged[0][:3] == ("klaviyo", "complete", rows)  # a delta: only what changed
    assert (data / "outbox" / DAY_TWO.date().isoformat() / "manifest.json").exists()
    assert _logged_report(log).exists()


CELERY_DATABASE = "tailor_test_airflow_celery"
REDIS_DB = 13  # a database of the local Redis of its own, flushed before and after


def _celery_results(database: str) -> dict[str, int]:
    """Celery task outcomes in the result backend's table, by status."""
    import psycopg2

    con = psycopg2.connect(**pg_settings(database))
    try:
        with con.cursor() as cur:
            cur.execute("select status, count(*) from celery_taskmeta group by status")
            return dict(cur.fetchall())
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_both_days_as_a_backfill_on_celery_with_postgres_and_redis_deliver_the_same_feeds(default_setup, simulator,
                                                                                          tmp_path):
    """The production topology: metadata on PostgreSQL, the CeleryExecutor on Redis, tasks run by a separate `airflow
    celery worker` process (four at once), both days started as one backfill through the API (max_active_runs 4, as
    the UI does), so they run side by side on one DuckDB file. Each day's feed is the default setup's for that day,
    row for row, though there the days ran one after the other: day two scores with the models day one trained, as
    there. (A re-run of a delivered day sends nothing: tests/integration/test_feed_delivery.py, at a fraction of the
    minutes a third run costs here.)"""
    import redis

    default = Warehouse(default_setup / "warehouse.duckdb")
    expected = {day: feed(default, day) for day in (DAY_ONE, DAY_TWO)}
    assert all(expected.values()), "the default setup's runs (the test before) left no feeds to compare with"
    broker = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    broker.flushdb()
    sim = simulator(customers=600, seed=23, rate_limits=False)
    sim.state.set_now(int(DAY_TWO.timestamp()))  # the shop's clock at the later day: day one reads the past
    port = free_port()
    home = tmp_path / "airflow_home"
    home.mkdir()
    database = fresh_database(CELERY_DATABASE)
    data = tmp_path / "data"
    warehouse = Warehouse(data / "warehouse.duckdb")
    env = airflow_env(home, database, port, dags=("tailor_daily.py",),
                      AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
                      AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS="tailor.airflow.executor.CELERY_CONFIG",
                      AIRFLOW__CELERY__BROKER_URL=f"redis://127.0.0.1:6379/{REDIS_DB}",
                      AIRFLOW__CELERY__RESULT_BACKEND=f"db+{database}",
                      AIRFLOW__CELERY__WORKER_CONCURRENCY="4",
                      AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False", **daily_settings(data, sim))
    cluster = Cluster(env, tmp_path, port, dag_id="tailor_daily")

    try:
        cluster.start_api_server()
        cluster.start("dag-processor", "dag-processor")
        # no scheduled runs: the shop's clock stands at day two, the wall clock weeks later
        cluster.start("scheduler", "scheduler", extra_env={"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"})
        cluster.start("worker", "celery", "worker", extra_env=few_snapshots(env))
        load_history(sim, data, DAY_TWO)

        # a run's logical date is its interval's start: the day before its as-of. Reprocess "none" is refused for a
        # DAG with depends_on_past tasks (decide_training)
        response = cluster.client().post("/backfills", json={
            "dag_id": "tailor_daily", "from_date": (DAY_ONE - timedelta(days=1)).isoformat(),
            "to_date": (DAY_TWO - timedelta(days=1)).isoformat(), "max_active_runs": 4, "reprocess_behavior": "failed"})
        assert response.status_code in (200, 201), response.text
        runs = cluster.wait_for_runs(2, timeout=1200, run_type="backfill")
        states = {run["data_interval_end"][:10]: {ti["task_id"]: ti["state"] for ti in cluster.client().get(
            f"/dags/tailor_daily/dagRuns/{run['dag_run_id']}/taskInstances").json()["task_instances"]} for run in runs}
        assert set(states["2026-10-31"].values()) == {"success"}, states  # training too: no model yet
        assert states["2026-11-01"].pop("train") == "skipped"  # day one's models, as in the default setup
        assert set(states["2026-11-01"].values()) == {"success"}, states
        # every task that ran went through Celery: the worker reported each one's outcome to the result backend
        ran = sum(state == "success" for day in states.values() for state in day.values())
        # (the worker stores a task's outcome a moment after Airflow records its state: seen as STARTED under load)
        settled = cluster.wait("the Celery results to settle", lambda: (results := _celery_results(CELERY_DATABASE))
                               and not set(results) & {"PENDING", "STARTED"} and results, timeout=120)
        assert settled == {"SUCCESS": ran}
        for day in (DAY_ONE, DAY_TWO):
            assert feed(warehouse, day) == expected[day], f"the feed of {day.date()} differs"
        # the worker's pool processes were forked with Tailor's libraries imported (tailor.airflow.executor)
        assert "Tailor's task modules preloaded" in (tmp_path / "worker.log").read_text(errors="replace")

    finally:
        cluster.stop()
        broker.flushdb()
        drop_database(CELERY_DATABASE)
