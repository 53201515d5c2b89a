"""Fourteen days of the daily DAG as one backfill, started as the UI starts it (`POST /api/v2/backfills`,
max_active_runs 4), on a real API server, DAG processor and scheduler (LocalExecutor, metadata on the local
PostgreSQL): every run succeeds with no task retried (so none failed on the DuckDB lock while four runs shared the
file), and each day's feed is, row for row, the feed of that day run alone (`dag.test()`, one day after the other,
in a data dir of its own). Then two finished days again with "reprocess completed": nothing more is delivered.

The days run from Monday 2026-10-19 to Sunday 2026-11-01 (as-of dates): the first day trains (no model yet), the
second Monday retrains (the weekly day), the other days score with the models before them unless the drift check
asks for training, which the backfill must then do on the same days. The world is the daily tests' (600 customers,
two churn snapshots per training).

About 27 minutes on this 2-core machine (1,625 s on 2026-12-07, the days alone and then the backfill), more than
`make test`'s whole budget, so it is left out of it (marked `long`): `make test-long` runs it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tailor.airflow.local import free_port
from tailor.warehouse import Warehouse
from tests.dags.cluster import Cluster, airflow_env
from tests.dags.conftest import sqlite_airflow_env
from tests.dags.dailykit import daily_settings, feed, few_snapshots, load_history, run_day
from tests.postgres import drop_database, fresh_database

DAYS = [datetime(2026, 10, 19, tzinfo=UTC) + timedelta(days=n) for n in range(14)]  # as-of dates, interval ends
LAST = DAYS[-1]  # the simulator's world ends here
TRAINING_DAYS = {DAYS[0], DAYS[7]}  # the first run, and the weekly retraining on the next Monday
DATABASE = "tailor_test_airflow_backfill_14"


def _deliveries(warehouse: Warehouse) -> list[tuple]:
    with warehouse.reader() as con:
        return con.execute("select as_of_date, sink, status, rows_sent from export.deliveries "
                           "order by started_at").fetchall()


def _wait_until_completed(cluster: Cluster, backfill_id: int) -> None:
    """Until the scheduler marks the backfill completed (a loop after its last run finished)."""
    cluster.wait(f"backfill {backfill_id} to be marked completed",
                 lambda: cluster.client().get(f"/backfills/{backfill_id}").json()["completed_at"], timeout=3600, every=5)


@pytest.mark.long
@pytest.mark.timeout(3 * 3600)
def test_14_days_backfilled_four_at_once_give_each_day_the_feed_it_gets_alone(simulator, tmp_path):
    # --- each day alone, one after the other: the reference
    alone_home = tmp_path / "alone_airflow"
    alone_home.mkdir()
    alone_env = sqlite_airflow_env(alone_home)
    alone_sim = simulator(customers=600, seed=23, rate_limits=False)
    alone_sim.state.set_now(int(LAST.timestamp()))
    alone_data = tmp_path / "alone"
    load_history(alone_sim, alone_data, LAST)
    trained_alone = set()
    for day in DAYS:
        outcome, log = run_day(alone_env, alone_sim, alone_data, day)
        assert outcome["state"] == "success", log[-6000:]
        trained_alone |= {day} if outcome["tasks"]["train"] == "success" else set()
    assert trained_alone >= TRAINING_DAYS  # and any day the drift check asked for
    alone = Warehouse(alone_data / "warehouse.duckdb")
    expected = {day: feed(alone, day) for day in DAYS}
    assert all(len(rows) > 100 for rows in expected.values()), {d.date(): len(r) for d, r in expected.items()}

    # --- the same fourteen days as one backfill, four runs at once on one DuckDB file
    sim = simulator(customers=600, seed=23, rate_limits=False)  # a shop of its own: the same world, untouched
    sim.state.set_now(int(LAST.timestamp()))
    port = free_port()
    home = tmp_path / "airflow_home"
    home.mkdir()
    data = tmp_path / "backfilled"
    warehouse = Warehouse(data / "warehouse.duckdb")
    env = airflow_env(home, fresh_database(DATABASE), port, dags=("tailor_daily.py",),
                      AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False", **daily_settings(data, sim))
    cluster = Cluster(env, tmp_path, port, dag_id="tailor_daily")
    try:
        cluster.start_api_server()
        cluster.start("dag-processor", "dag-processor")
        # no scheduled runs (the wall clock is weeks past the shop's); the tasks, forked from the scheduler, train
        # on two churn snapshots as the runs alone do
        cluster.start("scheduler", "scheduler",
                      extra_env={"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False", **few_snapshots(env)})
        load_history(sim, data, LAST)

        # a run's logical date is its interval's start, the day before its as-of
        response = cluster.client().post("/backfills", json={
            "dag_id": "tailor_daily", "from_date": (DAYS[0] - timedelta(days=1)).isoformat(),
            "to_date": (LAST - timedelta(days=1)).isoformat(), "max_active_runs": 4, "reprocess_behavior": "failed"})
        assert response.status_code in (200, 201), response.text
        runs = cluster.wait_for_runs(len(DAYS), timeout=2 * 3600, run_type="backfill")
        assert len(runs) == len(DAYS)
        _wait_until_completed(cluster, response.json()["id"])  # Airflow takes one backfill of a DAG at a time

        retried, trained = [], set()
        for run in runs:
            day = datetime.fromisoformat(run["data_interval_end"]).astimezone(UTC)
            tis = cluster.client().get(f"/dags/tailor_daily/dagRuns/{run['dag_run_id']}/taskInstances",
                                       params={"limit": 100}).json()["task_instances"]
            retried += [(day.date(), ti["task_id"], ti["try_number"]) for ti in tis if ti["try_number"] > 1]
            trained |= {day for ti in tis if ti["task_id"] == "train" and ti["state"] == "success"}
            assert {ti["state"] for ti in tis} <= {"success", "skipped"}, (day, tis)
        assert not retried, f"tasks that failed and were retried: {retried}\n{cluster.task_failures(runs)}"
        assert trained == trained_alone

        different = [day.date() for day in DAYS if feed(warehouse, day) != expected[day]]
        assert not different, f"feeds that differ from the day run alone: {different}"

        # --- two finished days again, as "reprocess completed" from the UI: nothing more is delivered
        delivered_before = _deliveries(warehouse)
        jobs_before = len(sim.state.vendor_state["klaviyo"].jobs)
        again = DAYS[-3:-1]
        response = cluster.client().post("/backfills", json={
            "dag_id": "tailor_daily", "from_date": (again[0] - timedelta(days=1)).isoformat(),
            "to_date": (again[-1] - timedelta(days=1)).isoformat(), "max_active_runs": 4,
            "reprocess_behavior": "completed"})
        assert response.status_code in (200, 201), response.text
        _wait_until_completed(cluster, response.json()["id"])
        cluster.wait_for_runs(len(DAYS), timeout=600, run_type="backfill")  # every run finished, none failed
        new = _deliveries(warehouse)[len(delivered_before):]
        assert {row[0] for row in new} == {day.date() for day in again}, new  # each reprocessed day delivered again
        assert all(rows_sent == 0 for *_, rows_sent in new), new
        assert len(sim.state.vendor_state["klaviyo"].jobs) == jobs_before  # not one import job more
        assert [day.date() for day in DAYS if feed(warehouse, day) != expected[day]] == []
    finally:
        cluster.stop()
        drop_database(DATABASE)
