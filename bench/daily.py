"""Bench stage `daily`: one run of the daily DAG at the size, the whole day, timed per task with each task's peak
memory.

The run is `dag.test(use_executor=True)` of tailor_daily as of the world's clock, in a fresh process configured for
Airflow (SQLite metadata in the run's folder), with an Airflow API server started for it: the tasks run as a
scheduler runs them, each in its own process forked by Tailor's LocalExecutor (tailor.airflow.executor, the task
libraries imported before it forks), reporting through the API server's execution API. One task at a time, as on
SQLite (`make airflow`). Each task process's peak RSS is the kernel's high-water mark (VmHWM), read every 0.1 s while
it runs (a task that ends sooner may go unread); the stage's own peak is the bench harness's, not a task's.

What the run finds: the warehouse the dbt stage built (a day after the hourly runs finds its marts built; alone,
raw.* of the size and every model built from nothing); the world of the size served with rate limits on (at S raw.*
holds its day already, and no version is loaded twice; at M and L the day before the world's clock brings that
world's day, of the size's volume, beside raw.*'s copies of the S world); the day's first 23 hours extracted and
loaded before the run starts, as the hourly DAG would have (untimed: `python -m tailor extract` and `load`, their
seconds reported), so the run's catch-up reads the last hour; and the models the train and train_personalization
stages promoted (trained as of this date, so training is skipped, as on six days of seven; MLFLOW_TRACKING_URI
points at their store). Run those stages first, at this size or a smaller one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.context import SIZES, Context, StageResult, mlflow_store, tracking_uri

DAILY_DAG_FILE = Path(__file__).resolve().parents[1] / "dags" / "tailor_daily.py"

# In a fresh process configured for Airflow (it reads its configuration once, at import): dag.test() of the day with
# the configured executor, a thread reading the task processes' high-water marks meanwhile (from /proc: Linux); prints
# the run's state and each task's state, seconds and peak RSS in kB.
_DAILY_RUN = """
import json, os, re, sys, threading, time
from datetime import datetime

from airflow.dag_processing.dagbag import DagBag
from airflow.utils.session import create_session

task_process = re.compile(r"airflow worker -- ([0-9a-f-]{36})$")  # the task runner's title: its task instance's id
peak_kb = {}  # task instance id -> the peak RSS of its task process

def watch():
    while True:
        for pid in (name for name in os.listdir("/proc") if name.isdigit()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:  # setproctitle pads the title with NULs
                    title = cmdline.read().replace(b"\\0", b" ").decode(errors="replace").strip()
                if (found := task_process.match(title)) is None:
                    continue
                with open(f"/proc/{pid}/status") as status:
                    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
            except (OSError, StopIteration):  # it ended meanwhile
                continue
            peak_kb[found.group(1)] = max(peak_kb.get(found.group(1), 0), hwm)
        time.sleep(0.1)

threading.Thread(target=watch, daemon=True).start()
dag = DagBag(dag_folder=sys.argv[1]).get_dag("tailor_daily")
dag.deadline = None  # Airflow 3.3's dag.test() fails a run whose DAG declares one (see tailor.demo.run_days)
run = dag.test(logical_date=datetime.fromisoformat(sys.argv[2]), use_executor=True)
with create_session() as session:
    tis = sorted(run.get_task_instances(session=session), key=lambda ti: (ti.start_date is None, ti.start_date))
    tasks = [[ti.task_id, str(ti.state), round(ti.duration or 0, 1), peak_kb.get(str(ti.id))]
             for ti in tis]
print("RESULT " + json.dumps({"state": str(run.state), "tasks": tasks,
                              "interval": [str(run.data_interval_start), str(run.data_interval_end)]}))
"""


def daily(ctx: Context) -> StageResult:
    """The daily run at the size (see the module's docstring): seconds, state and peak RSS per task."""
    from bench.rawdata import base_inputs, base_world_config, fresh_build_warehouse
    from bench.serving import served
    from simulator.world import World
    from tailor.airflow.local import free_port
    from tailor.warehouse import Warehouse

    models_size, models = _trained_models(ctx)
    warehouse = ctx.work_dir / "dbt-run" / "warehouse.duckdb"
    built_by_dbt = warehouse.exists()
    if not built_by_dbt:
        warehouse, _, _ = fresh_build_warehouse(ctx)
    data = warehouse.parent  # the day's data dir: its lake, outbox, reports and Airflow state beside the warehouse
    _, _, now = base_inputs(ctx.work_dir.parent, ctx.seed)
    home = data / "airflow-daily"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir()
    port = free_port()
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(DAILY_DAG_FILE.parent),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(DAILY_DAG_FILE.parents[1] / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
           "AIRFLOW__CORE__EXECUTOR": "tailor.airflow.executor.LocalExecutor", "AIRFLOW__CORE__PARALLELISM": "1",
           "AIRFLOW__API__PORT": str(port),
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
           "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),  # the run's and the API server's, shared
           "TAILOR_DATA_DIR": str(data), "MLFLOW_TRACKING_URI": tracking_uri(models), "TAILOR_FEED_SINKS": "klaviyo"}
    airflow = str(Path(sys.executable).with_name("airflow"))
    for command in (["db", "migrate"], ["pools", "set", "duckdb", "1", "DuckDB writer"]):  # set-up, untimed
        subprocess.run([airflow, *command], env=env, check=True, capture_output=True)

    # The day is extracted from the world of the size (at S, the one raw.* was made from; untimed, as is its build).
    # At M and L raw.* repeats the S world's people a hundred times over, and the raw gate judges a day's volume
    # against that history: the S world's day, a hundredth of it, failed the gate as records lost.
    world = World.build(dataclasses.replace(base_world_config(ctx.seed), customers=ctx.customers))
    log = data / "daily-run.log"  # a lent cache goes back when the harness ends (bench.run), whatever happened here
    with (served(world, rate_limits=True) as url,
          _api_server(airflow, env, port, data / "daily-api-server.log"), log.open("w") as out):
        hourly_seconds = _hourly_runs(warehouse, env={**env, "TAILOR_SIMULATOR_URL": url},
                                      day=(now - timedelta(days=1), now - timedelta(hours=1)),
                                      log=data / "daily-hourly-runs.log")
        started, run_started = time.perf_counter(), datetime.now(UTC)
        done = subprocess.run([sys.executable, "-c", _DAILY_RUN, str(DAILY_DAG_FILE), now.isoformat()],
                              stdout=out, stderr=subprocess.STDOUT, check=False,
                              env={**env, "TAILOR_SIMULATOR_URL": url})
        seconds = time.perf_counter() - started
    results = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not results:
        raise RuntimeError(f"the daily run failed (exit code {done.returncode}); its log, {log}, ends:\n"
                           f"{log.read_text(errors='replace')[-4000:]}")
    outcome = json.loads(results[-1][len("RESULT "):])
    tasks = outcome["tasks"]
    failed = [task for task, state, *_ in tasks if state not in ("success", "skipped")]
    if outcome["state"] != "success" or failed:
        raise RuntimeError(f"the daily run ended {outcome['state']}, failed tasks: {failed}; its log: {log}, task "
                           f"logs under {home / 'logs'}")
    with Warehouse(warehouse).reader() as con:
        feed_rows = con.execute("select count(*) from exports.esp_feed where as_of_date = ?",
                                [now.date()]).fetchone()[0]
        delivered = con.execute("select sink, status, rows_sent from export.deliveries where as_of_date = ? "
                                "and started_at >= ?", [now.date(), run_started]).fetchall()  # this run's
    ran = [task for task in tasks if task[1] == "success"]
    return StageResult(rows=feed_rows, unit="feed rows", seconds=seconds, details={
        "interval": f"{(now - timedelta(days=1)).isoformat()} to {now.isoformat()} ({outcome['interval'][1]})",
        "warehouse": "marts built already (the dbt stage's)" if built_by_dbt else "raw.* only: every model built",
        "hourly_runs_before": f"the day to {(now - timedelta(hours=1)).time()} extracted and loaded in "
                              f"{hourly_seconds:,.1f} s (untimed)",
        "models": f"promoted by the train stages at size {models_size}",
        "task_seconds": "; ".join(f"{task} {secs:,.1f}" for task, _, secs, _ in tasks),
        "task_seconds_sum": round(sum(secs for _, _, secs, _ in tasks), 1),
        "slowest": ", ".join(f"{task} {secs:,.1f}" for task, _, secs, _ in sorted(tasks, key=lambda t: -t[2])[:5]),
        # "-": a task process that ended before the watcher (every 0.1 s) read it
        "task_peak_rss_mb": "; ".join(f"{task} {f'{kb / 1024:,.0f}' if kb else '-'}" for task, _, _, kb in ran),
        "largest_task_peak_rss_mb": round(max((kb or 0 for *_, kb in ran), default=0) / 1024),
        "skipped": ", ".join(task for task, state, *_ in tasks if state == "skipped") or "none",
        "delivered": "; ".join(f"{sink} {status}, {sent:,} sent" for sink, status, sent in delivered),
        "log": str(log),
    })


def _hourly_runs(warehouse: Path, env: dict, day: tuple[datetime, datetime], log: Path) -> float:
    """What the hourly DAG lands before the daily run: every entity from the day's start (or the earliest watermark,
    when one is earlier) to the day's last hour, extracted and loaded through the CLI (one window for the hours, the
    same records); its seconds."""
    from tailor.warehouse import Warehouse

    start = min([day[0], *Warehouse(warehouse).watermarks().values()])
    started = time.perf_counter()
    with log.open("w") as out:
        for command in (["extract", "--start", start.isoformat(), "--end", day[1].isoformat()], ["load"]):
            done = subprocess.run([sys.executable, "-m", "tailor", *command], env=env, stdout=out,
                                  stderr=subprocess.STDOUT, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"`python -m tailor {' '.join(command)}` before the daily run failed (exit code "
                                   f"{done.returncode}); its log: {log}")
    return time.perf_counter() - started


def _trained_models(ctx: Context) -> tuple[str, Path]:
    """(size, run dir) of the models the train stages promoted at this size, else at the largest smaller one: a model
    scores any number of customers, and M and L repeat S's people, so only training's own time (its stages' subject)
    would differ."""
    sizes = [size for size in sorted(SIZES, key=SIZES.get) if SIZES[size] <= ctx.customers][::-1]
    for size in sizes:
        models = ctx.work_dir.parent / f"work-{size}" / "models"
        if mlflow_store(models).exists():
            return size, models
    raise RuntimeError(f"no trained models under {ctx.work_dir.parent}: the daily run scores with the models the "
                       f"train and train_personalization stages promote, so run them first (at size {ctx.size} or a "
                       "smaller one)")


@contextmanager
def _api_server(airflow: str, env: dict, port: int, log: Path) -> Iterator[None]:
    """`airflow api-server` for the run's task processes, in its own process group, until the block ends (then
    stopped and waited for); its output in `log`."""
    from tailor.airflow.local import stop_group
    from tailor.local_simulator import answers

    with log.open("w") as out:
        process = subprocess.Popen([airflow, "api-server", "--port", str(port)], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while not answers(f"http://127.0.0.1:{port}/api/v2/monitor/health"):
                if process.poll() is not None:
                    raise RuntimeError(f"the Airflow API server exited ({process.returncode}); its log: {log}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Airflow API server did not answer in 180 s; its log: {log}")
                time.sleep(1)
            yield
        finally:
            stop_group(process)

