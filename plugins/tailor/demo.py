"""`make demo`: the last seven days of the local live shop through the daily DAG, then what they left behind.

    python -m tailor demo

It starts (or reuses) the local live simulator, prepares the Airflow metadata database `make airflow` uses (the local
PostgreSQL when it answers, else SQLite under the data dir), and runs `tailor_daily` for each of the last seven
days, oldest first, with `dag.test()`: the same tasks, in the same order, as the scheduler runs them (catch-up
extract and load, raw gate, dbt in layers, marts gate, training when due, scoring, the feed built, gated, exported
and delivered to the simulator's Klaviyo, the run report). Each run computes as of its interval's end (midnight UTC),
so its gates, dbt build and models see exactly the data up to it: the first day lands the shop's whole history, the
others what changed that day. A day whose run already succeeded and whose export is in this data dir's outbox is not
run again: a second `make demo` the same day only prints the summary, one a day later runs that day. (Airflow's
metadata database may be shared by several clones: a run it records is not enough.) Airflow's log of each day goes to
<data dir>/demo/daily-<date>.log; `make airflow` then shows the runs in its UI.

The summary: records per source, tables and rows, gate results, the models against their baselines, segments, feed
rows and deliveries per day, three exported rows, and where to look next.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tailor import local_simulator, settings
from tailor.times import stamp

DAYS = 7
DAILY_DAG = "tailor_daily"
DAGS = Path(__file__).resolve().parents[2] / "dags"


def run() -> int:
    started = time.monotonic()
    # The simulator stays up to the end: each day's feed is delivered to its Klaviyo.
    with local_simulator.running(settings.simulator_url(), say=lambda line: print(f"demo: {line}", flush=True)) as url:
        tour = subprocess.run([sys.executable, "-m", "simulator", "tour", "--url", url], check=False)
        if tour.returncode != 0:
            return tour.returncode
        ends = run_ends(local_simulator.clock(url))
        code = _daily_runs(url, ends)
    if code != 0:
        return code
    _summary(ends)
    print(f"\ndemo: done in {time.monotonic() - started:.0f} s", flush=True)
    return 0


def run_ends(clock: datetime) -> list[datetime]:
    """The interval ends of the last DAYS complete days before `clock` (midnights UTC), oldest first."""
    today = clock.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return [today - timedelta(days=back) for back in range(DAYS - 1, -1, -1)]


def _daily_runs(url: str, ends: list[datetime]) -> int:
    """The daily DAG for each day, in a process configured for Airflow (it reads its settings once, at import)."""
    from tailor.airflow import local

    database, env = local.prepare(settings.airflow_port())
    env["TAILOR_SIMULATOR_URL"] = url
    first, last = (ends[0] - timedelta(days=1)).date(), (ends[-1] - timedelta(days=1)).date()
    print(f"\ndemo: the daily DAG for {first} to {last}, each as of its day's end; Airflow's {database.note}",
          flush=True)
    code = "import sys; from tailor.demo import run_days; sys.exit(run_days(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, str(settings.data_dir() / "demo"),
                           *(end.isoformat() for end in ends)], env=env, check=False).returncode


def run_days(argv: list[str]) -> int:
    """(In the Airflow-configured process.) dag.test() of the daily DAG for each interval end of argv[1:], but a day
    already done here (done_here); Airflow's output goes to argv[0]/daily-<date>.log, one line per day to the terminal."""
    log_dir, ends = Path(argv[0]), [datetime.fromisoformat(text) for text in argv[1:]]
    log_dir.mkdir(parents=True, exist_ok=True)
    say = os.fdopen(os.dup(1), "w", buffering=1)  # the terminal, kept before Airflow's output goes to the day's file
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState

    dag = DagBag(dag_folder=str(DAGS / f"{DAILY_DAG}.py")).get_dag(DAILY_DAG)
    # dag.test() in Airflow 3.3 fails a successful run whose DAG declares a deadline alert ("'dict' object has no
    # attribute 'hex'": its in-memory serialization has no alert ids); the scheduler's runs keep the alert
    dag.deadline = None
    for end in ends:
        day = (end - timedelta(days=1)).date()
        log_path = log_dir / f"daily-{day}.log"
        if DagRun.find(dag_id=DAILY_DAG, logical_date=end, state=DagRunState.SUCCESS) and done_here(end):
            print(f"demo: {day}: its daily run already succeeded (log {log_path})", file=say)
            continue
        started = time.monotonic()
        sys.stdout.flush()
        sys.stderr.flush()
        with log_path.open("w") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                run = dag.test(logical_date=end)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        failed = sorted(task for task, state in states.items() if state not in ("success", "skipped"))
        models = "trained the models" if states.get("train") == "success" else "scored with production's models"
        print(f"demo: {day}: {run.state} in {time.monotonic() - started:.0f} s, {len(states)} tasks, {models} "
              f"(log {log_path})", file=say)
        if str(run.state) != "success" or failed:
            print(f"demo: failed: {', '.join(failed) or 'the run'}; the end of its log:", file=say)
            print("\n".join(log_path.read_text(errors="replace").splitlines()[-40:]), file=say)
            return 1
    return 0


def done_here(end: datetime) -> bool:
    """Whether the export of the run ending at `end` is in this data dir's outbox: the day ran here."""
    from tailor.export import outbox

    try:
        outbox.read_manifest(settings.outbox_dir(), end.astimezone(UTC).date())
    except (outbox.ExportNotFound, outbox.CorruptExport):
        return False
    return True


def _summary(ends: list[datetime]) -> None:
    _print_raw_counts()
    _print_marts()
    _print_gates()
    _print_models()
    _print_feed_and_deliveries(ends)
    _print_feed_samples(ends[-1])
    _print_next(ends[-1])


def _print_raw_counts() -> None:
    from tailor import sources
    from tailor.raw import raw_table
    from tailor.warehouse import Warehouse

    warehouse = Warehouse()
    print(f"\ndemo: what landed in {warehouse.path}:")
    with warehouse.reader() as con:
        for source, entities in sources.entities().items():
            for entity in entities:
                table = raw_table(source, entity)
                rows, deleted, newest = con.execute(
                    f"select count(*), count(*) filter (where is_deleted), max(updated_at) from {table}"  # noqa: S608 checked names
                ).fetchone()
                print(f"  {table:<24} {rows:>9,} record versions  {deleted:>5,} deletions  latest {newest}")


def _print_marts() -> None:
    from tailor.warehouse import Warehouse

    warehouse = Warehouse()
    with warehouse.reader() as con:
        marts = [name for (name,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' order by 1").fetchall()]
        print(f"\ndemo: the marts in {warehouse.path}:")
        for name in marts:
            rows = con.execute(f'select count(*) from marts."{name}"').fetchone()[0]  # noqa: S608 names from the catalog
            note = ("  (labels need churn_horizon_days of data after the as-of: try an earlier --as-of)"
                    if name == "churn_labels" and rows == 0 else "")
            print(f"  marts.{name:<28} {rows:>9,} rows{note}")
        if "customer_rfm" in marts:
            segments = con.execute("select rfm_segment, count(*) from marts.customer_rfm group by rfm_segment "
                                   "order by count(*) desc, rfm_segment").fetchall()
            total = sum(count for _, count in segments) or 1
            print("\ndemo: RFM segments (marts.customer_rfm):")
            for segment, count in segments:
                print(f"  {segment or '(none)':<20} {count:>7,}  {count / total:>6.1%}")


def _print_gates() -> None:
    """The latest run of each gate: how many expectations passed, warned, quarantined rows or failed."""
    from tailor.warehouse import Warehouse, has_table

    with Warehouse().reader() as con:
        if not has_table(con, "quality.gate_results"):
            return
        rows = con.execute("""
            with runs as (
                select suite, run_id, as_of, row_number() over (partition by suite order by run_at desc) as newest
                from (select distinct suite, run_id, as_of, run_at from quality.gate_results)
            )
            select runs.suite, runs.as_of, count(*) filter (where results.status = 'passed'),
                count(*) filter (where results.status = 'warned'),
                count(*) filter (where results.status = 'quarantined'), count(*) filter (where results.status = 'failed')
            from runs join quality.gate_results as results on results.run_id = runs.run_id
            where runs.newest = 1 group by runs.suite, runs.as_of order by runs.suite""").fetchall()
    print(f"\ndemo: the gates' latest runs (quality.gate_results; Data Docs: {settings.quality_dir() / 'docs'}):")
    for suite, at, passed, warned, quarantined, failed in rows:
        print(f"  {suite:<6} as of {stamp(at)}: {passed} passed, {warned} warned, {quarantined} quarantined, "
              f"{failed} failed")


def _print_models() -> None:
    """Production's models and the baselines they were measured against on their validation window."""
    import re

    from ml.personalization import recommendation_registry, send_time_registry
    from ml.registry import Registry

    families = (("customer models: churn ROC-AUC", Registry, r"^churn_(.+)_roc_auc$"),
                ("recommendations: hit rate @10 on new-to-customer purchases", recommendation_registry,
                 r"^rec_(.+)_hit_rate_at_10$"),
                ("send times: share of later opens and clicks within +-1 h", send_time_registry,
                 r"^send_(.+)_hit_share$"))
    print("\ndemo: the models in production, against their baselines (validation window of their training):")
    for what, registry, pattern in families:
        production = registry().production()
        if production is None:
            print(f"  {what}: none in production")
            continue
        scores = sorted(((match.group(1), value) for key, value in production.metrics.items()
                         if (match := re.match(pattern, key))), key=lambda item: -item[1])
        shown = ", ".join(f"{name} {value:.3f}" for name, value in scores)
        print(f"  {what} ({production.model_version}): {shown}")


def _print_feed_and_deliveries(ends: list[datetime]) -> None:
    """Per day: consented customers in the feed, and what each sink was sent."""
    from tailor.warehouse import Warehouse, has_table

    dates = [end.date() for end in ends]
    with Warehouse().reader() as con:
        if not has_table(con, "exports.esp_feed"):
            return
        feed = dict(con.execute("select as_of_date, count(*) from exports.esp_feed "
                                "where as_of_date in (select unnest(?)) group by 1", [dates]).fetchall())
        sent = {}
        if has_table(con, "export.deliveries"):
            for day, sink, status, rows_sent, unchanged in con.execute(
                    "select as_of_date, sink, status, sum(rows_sent), sum(rows_unchanged) from export.deliveries "
                    "where as_of_date in (select unnest(?)) group by 1, 2, 3 order by 1, 2", [dates]).fetchall():
                sent.setdefault(day, []).append(f"{sink} {status}: {rows_sent:,} sent, {unchanged:,} unchanged")
        segments = con.execute("select segment_name, count(*) from ml.customer_scores where as_of_date = ? "
                               "group by 1 order by 2 desc", [dates[-1]]).fetchall() \
            if has_table(con, "ml.customer_scores") else []
    if segments:
        total = sum(count for _, count in segments) or 1
        print(f"\ndemo: segments of {dates[-1]} (ml.customer_scores):")
        for name, count in segments:
            print(f"  {name:<28} {count:>7,}  {count / total:>6.1%}")
    print("\ndemo: the feed of each run's as-of date (exports.esp_feed: consented customers) and its deliveries "
          "(export.deliveries):")
    for day in dates:
        print(f"  {day}: {feed.get(day, 0):>7,} rows; {'; '.join(sent.get(day, ['nothing delivered']))}")


def _print_next(as_of: datetime) -> None:
    data = settings.data_dir()
    print("\ndemo: where to look next:")
    print("  make airflow                   the Airflow UI: these daily runs, their tasks and logs (login admin/admin)")
    print(f"  {data / 'reports' / 'run' / as_of.date().isoformat() / 'run-report.html'}"
          "   the last day's run report")
    print(f"  {data / 'reports'}   the model reports (one per training)")
    print(f"  {settings.quality_dir() / 'docs' / 'index.html'}   the gates' Data Docs")
    print("  cd dbt_project && ../.venv/bin/dbt docs generate && ../.venv/bin/dbt docs serve   the dbt docs "
          "(lineage, columns, tests)")
    print("  make demo again tomorrow: the daily run for the day that passed; python -m tailor snapshot, then "
          "cd dbt_project && ../.venv/bin/dbt build --target dev: build by hand beside the schedule")


def _print_feed_samples(as_of: datetime) -> None:
    """Three exported rows, as the ESP received them."""
    import json

    from tailor.export.outbox import read_rows

    export_dir = settings.outbox_dir() / as_of.date().isoformat()
    print(f"\ndemo: three rows of {export_dir / 'feed.jsonl.gz'} (what the ESP received):")
    for number, row in enumerate(read_rows(export_dir)):
        if number == 3:
            break
        payload = row.payload()
        fields = dict(payload.fields)
        recommendations = fields.pop("tailor_recommendations")
        print(f"  {json.dumps(fields, ensure_ascii=False)}")
        for item in recommendations[:3]:
            print(f"    #{item['rank']} {item['title']} ({item['price']}, {item['reason']}) {item['url']}")
        if len(recommendations) > 3:
            print(f"    ... {len(recommendations) - 3} more")
