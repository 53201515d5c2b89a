"""A fresh install meets the real scheduler: its first scheduled run lands the whole history, the first scheduled
run after hours of downtime fills the gap, and a run triggered as the UI does it (a logical date, an interval
Airflow infers) catches up from the watermark. After each, raw.* holds exactly what the simulator can serve.

Downtime is made, not waited for: the scheduler and DAG processor of the first two phases run with their clocks
shifted back (time-machine, see cluster.py), so they schedule hours that ended nine and five hours ago; the API server keeps the
real clock throughout, as it would across a scheduler outage.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from simulator.world import iso
from tailor.airflow.local import free_port
from tests.dags.cluster import DAG_ID, Cluster, airflow_env, hour_floor, raw_versions
from tests.postgres import drop_database, fresh_database

LOOKBACK_MINUTES = 10


@pytest.fixture
def cluster(tmp_path):
    port = free_port()
    home = tmp_path / "airflow_home"
    home.mkdir()
    env = airflow_env(home, fresh_database("tailor_test_airflow_first_runs"), port, dags=(f"{DAG_ID}.py",),
                      AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
                      # Airflow's own: three scheduler starts for one hourly run each, where importing the daily
                      # DAG's libraries up front (tailor.airflow.executor) costs more than the one gate each saves
                      AIRFLOW__CORE__EXECUTOR="LocalExecutor",
                      # task tokens signed by a scheduler whose clock is hours behind must still be valid
                      AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME=str(24 * 3600),
                      AIRFLOW__API_AUTH__JWT_LEEWAY=str(12 * 3600))
    running = Cluster(env, tmp_path, port)
    try:
        yield running
    finally:
        running.stop()
        drop_database("tailor_test_airflow_first_runs")


def _assert_exact(data, world, clock: int, end: datetime) -> int:
    """raw.* holds exactly the versions an API read at `clock` returns for [beginning, end)."""
    stored = raw_versions(data)
    total = 0
    for entity, rows in stored.items():
        truth = world.truth_versions(entity, clock, None, int(end.timestamp()))
        assert rows == truth, (f"{entity}: {len(truth - rows)} missing, {len(rows - truth)} unexpected "
                               f"(up to {end:%Y-%m-%d %H:%M})")
        total += len(rows)
    return total


def _interval(run: dict) -> tuple[datetime, datetime]:
    return (datetime.fromisoformat(run["data_interval_start"]).astimezone(UTC),
            datetime.fromisoformat(run["data_interval_end"]).astimezone(UTC))


@pytest.mark.slow
@pytest.mark.timeout(1500)  # three phases of real Airflow processes; about two minutes on an idle machine
def test_first_scheduled_run_lands_history_then_runs_after_downtime_catch_up(cluster: Cluster, simulator, tmp_path):
    hour = hour_floor(datetime.now(UTC))
    # The shop's clock stands at the current hour, so every window below ends at or before it and the truth is exact.
    sim = simulator(customers=400, seed=44, rate_limits=False, now=iso(int(hour.timestamp())))
    world, clock = sim.state.world, int(hour.timestamp())
    data = tmp_path / "data"
    cluster.env.update({"TAILOR_DATA_DIR": str(data), "TAILOR_SIMULATOR_URL": sim.url,
                        "TAILOR_LOOKBACK_MINUTES": str(LOOKBACK_MINUTES)})
    cluster.start_api_server()

    # 1. A fresh install, nine hours ago: the DAG starts unpaused and the scheduler runs the hour that just ended.
    cluster.start("dag-processor", "dag-processor", shift_hours=9)
    cluster.start("scheduler", "scheduler", shift_hours=9)
    runs = cluster.wait_for_runs(1, run_type="scheduled")
    # should the wall clock pass an hour meanwhile, the scheduler also runs the next hour: the latest run bounds raw.*
    assert len(runs) <= 2, runs
    first = max(runs, key=lambda run: _interval(run)[1])
    start, end = _interval(first)
    # the latest complete hour nine hours ago (the next one, if the wall clock passed an hour since the test began)
    assert end - start == timedelta(hours=1) and end in (hour - timedelta(hours=9), hour - timedelta(hours=8))
    landed = _assert_exact(data, world, clock, end)
    assert landed > 1_000  # the whole history, not one hour of it

    # 2. The scheduler was down for four hours. Back up, Airflow (catchup=False) first runs the hour it had planned
    # next, then the latest hour, which fills the rest of the gap from the watermark.
    cluster.stop("scheduler", "dag-processor")
    cluster.start("dag-processor", "dag-processor", shift_hours=5)
    cluster.start("scheduler", "scheduler", shift_hours=5)
    runs = cluster.wait_for_runs(ending=hour - timedelta(hours=5), run_type="scheduled")
    latest = max(_interval(run)[1] for run in runs)
    assert latest - end >= timedelta(hours=4)  # hours of downtime, filled
    assert all(finish - start == timedelta(hours=1) for start, finish in map(_interval, runs))
    _assert_exact(data, world, clock, latest)

    # 3. Five hours later someone presses "Trigger" in the UI: a logical date, an interval Airflow infers (the
    # last complete hour). No scheduled run this time, so only the triggered one moves the data.
    cluster.stop("scheduler", "dag-processor")
    cluster.start("dag-processor", "dag-processor")
    cluster.start("scheduler", "scheduler", extra_env={"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"})
    response = cluster.client().post(f"/dags/{first['dag_id']}/dagRuns",
                                     json={"logical_date": datetime.now(UTC).isoformat(), "conf": {}})
    assert response.status_code in (200, 201), response.text
    (triggered,) = cluster.wait_for_runs(run_type="manual")
    start, end = _interval(triggered)
    assert end - start == timedelta(hours=1) and end >= hour and end - latest >= timedelta(hours=4)
    _assert_exact(data, world, clock, end)
