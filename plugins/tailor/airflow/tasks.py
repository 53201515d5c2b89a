"""The bodies of Tailor's Airflow tasks, shared by the DAGs (dags/ only wires them).

Each task is one short call into tailor or ml, made as of its run's time: the data interval's end, or for a run
without an interval (a manual run) its run_after (tailor.pipeline.run_interval, the one place that tells them apart).
Imports of tailor and ml happen inside the tasks: parsing a DAG file imports only this module and airflow.sdk.

Failures that a retry cannot fix (a failed gate, a failed dbt node, models that cannot be trained or scored on this
data, a feed that is not there to export) raise AirflowFailException: the task fails at once, without retries, with
the step's own message. Everything else (a DuckDB lock held past its timeout, a vendor API down, a killed worker) is
retried with exponential backoff (the DAGs' default_args).

Every task that writes the DuckDB warehouse takes the `duckdb` pool (one slot); tests/dags/test_dag_integrity.py keeps
the list of writer task ids and checks every DAG against it. Each writer also waits, with backoff, for another
process's DuckDB lock (tailor.warehouse, tailor.transform), so a writer outside Airflow never fails a task.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from airflow.sdk import task, task_group

from tailor.airflow.assets import TAILOR_FEED, TAILOR_MARTS, TAILOR_RAW
from tailor.airflow.callbacks import DUCKDB_POOL

log = logging.getLogger("tailor")

# Generous limits: a task that runs past them is stuck (a hung connection), not slow. The first run of a fresh
# install extracts and loads the whole history, and at 1M customers a full dbt build takes about 10 minutes
# (README, "Cost"); training builds its past snapshots with dbt first.
EXTRACT_TIMEOUT = timedelta(hours=3)
LOAD_TIMEOUT = timedelta(hours=2)
GATE_TIMEOUT = timedelta(hours=1)
SNAPSHOT_TIMEOUT = timedelta(hours=1)
DBT_LAYER_TIMEOUT = timedelta(hours=2)
TRAIN_TIMEOUT = timedelta(hours=4)
SCORE_TIMEOUT = timedelta(hours=2)
FEED_TIMEOUT = timedelta(hours=1)
DELIVER_TIMEOUT = timedelta(hours=3)
DECIDE_TIMEOUT = timedelta(minutes=15)
REPORT_TIMEOUT = timedelta(minutes=30)


def run_as_of(data_interval_start, data_interval_end, dag_run) -> datetime:
    """The time a run computes everything as of: its interval's end, or run_after for a run without an interval."""
    from tailor import pipeline

    _, end = pipeline.run_interval(data_interval_start, data_interval_end, dag_run.run_after)
    return datetime.fromtimestamp(end.timestamp(), UTC)  # a plain datetime: pendulum's does not reach MLflow or dbt


@contextmanager
def failing_fast(*errors: type[BaseException]) -> Iterator[None]:
    """Turn `errors` (the ones a retry would meet again) into AirflowFailException, keeping their message."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except errors as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


# --- extract, load, raw gate: the hourly DAG and the daily DAG's catch-up ------------------------------------------


@task(execution_timeout=EXTRACT_TIMEOUT)
def extract(source: str, entity: str, catch_up: bool = False, data_interval_start=None, data_interval_end=None,
            dag_run=None) -> dict:
    """Land one batch for the run's window (a catch-up's: from the watermark, see pipeline.next_window); returns the
    batch reference (a small dict, via XCom)."""
    from tailor import pipeline, settings, sources, warehouse
    from tailor.airflow import hooks

    window = pipeline.next_window(warehouse.Warehouse(), source, entity, data_interval_start, data_interval_end,
                                  now=dag_run.run_after, lookback=settings.lookback(), catch_up=catch_up)
    extractor = sources.build_extractor(source, hooks.source_credentials(source))
    ref = pipeline.extract_window(extractor, entity, window, hooks.lake())
    return ref.to_dict()


@task(pool=DUCKDB_POOL, execution_timeout=LOAD_TIMEOUT)
def load(batch: dict) -> dict:
    """Load the batch into raw.*; returns what was inserted."""
    from tailor import lake, pipeline, warehouse
    from tailor.airflow import hooks

    report = pipeline.load_batches(warehouse.Warehouse(), hooks.lake(), [lake.BatchRef.from_dict(batch)])
    return {"batch_id": batch["batch_id"], "rows_inserted": report.rows_inserted}


def extract_and_load(catch_up: bool = False) -> list:
    """One task group per source: extract_<entity> >> load_<entity> for each of its entities (a catch-up's extracts
    start at the watermark). Returns the groups."""
    from tailor import sources

    groups = []
    for source, entities in sources.entities().items():

        @task_group(group_id=source)
        def per_source(source: str = source, entities: tuple[str, ...] = entities):
            for entity in entities:
                batch = extract.override(task_id=f"extract_{entity}")(source, entity, catch_up)
                load.override(task_id=f"load_{entity}")(batch)

        groups.append(per_source())
    return groups


@task(pool=DUCKDB_POOL, outlets=[TAILOR_RAW], execution_timeout=GATE_TIMEOUT)
def raw_gate(data_interval_start=None, data_interval_end=None, dag_run=None) -> dict:
    """Validate raw.* as of the end of the run's interval (a manual run: its run_after); emits tailor_raw on success."""
    from airflow.sdk.exceptions import AirflowFailException

    from tailor import pipeline, quality

    _, as_of = pipeline.run_interval(data_interval_start, data_interval_end, dag_run.run_after)
    try:
        report = quality.run_gate("raw", as_of)
    except quality.GateFailed as exc:
        raise AirflowFailException(str(exc)) from exc
    return {"suite": report.suite, "as_of": report.as_of.isoformat(), "warned": len(report.warnings),
            "quarantined": len(report.quarantines), "docs": report.docs}


@task(pool=DUCKDB_POOL, execution_timeout=SNAPSHOT_TIMEOUT)
def raw_snapshot() -> dict:
    """Publish raw.* as the read-only snapshot `dbt build --target dev` reads (only after a passed gate)."""
    from tailor.snapshot import publish_raw_snapshot

    return publish_raw_snapshot().as_dict()


# --- the daily run after the raw gate ----------------------------------------------------------------------------


@task(pool=DUCKDB_POOL, execution_timeout=DBT_LAYER_TIMEOUT)
def dbt_layer(layer: str, data_interval_start=None, data_interval_end=None, dag_run=None) -> dict:
    """dbt build one layer (tailor.airflow.dbt_layers) as of the run's time; logs one line per model and seed
    (status, seconds, rows); fails naming each failed node and dbt's message for it."""
    from tailor import transform
    from tailor.airflow.dbt_layers import build_layer, node_table
    from tailor.airflow.dbt_layers import layer as layer_of
    from tailor.warehouse import Warehouse

    as_of = run_as_of(data_interval_start, data_interval_end, dag_run)
    log.info("dbt %s as of %s: %s", layer, as_of.isoformat(), layer_of(layer).what)
    with failing_fast(transform.BuildFailed):
        result = build_layer(layer, as_of, quiet=True)
    for line in node_table(result, Warehouse()):
        log.info("dbt %s: %s", layer, line)
    log.info("dbt %s: %s", layer, result.summary())
    return {"layer": layer, "nodes": len(result.nodes), "seconds": round(result.seconds, 1), **result.counts()}


@task(pool=DUCKDB_POOL, outlets=[TAILOR_MARTS], execution_timeout=GATE_TIMEOUT)
def marts_gate(data_interval_start=None, data_interval_end=None, dag_run=None) -> dict:
    """Validate the marts as of the run's time (expectations/marts.yml); emits tailor_marts on success. Marts another
    build moved to another as-of since the run's dbt layers (another day's run, an hourly build) are built again as of
    the run's time first, so the gate reads its own day."""
    from tailor import quality, transform

    as_of = run_as_of(data_interval_start, data_interval_end, dag_run)
    with failing_fast(quality.GateFailed, transform.BuildFailed):
        transform.rebuild_moved(as_of)
        report = quality.run_gate("marts", as_of)
    return {"suite": report.suite, "as_of": report.as_of.isoformat(), "warned": len(report.warnings),
            "docs": report.docs}


# depends_on_past with wait_for_downstream: a day decides only once the previous day's decision, training and scoring
# are done, so backfilled days running side by side still see their models in date order (the drift request and
# the production model as of their date are what the day before left), as runs one day after the other would.
@task.branch(execution_timeout=DECIDE_TIMEOUT, depends_on_past=True, wait_for_downstream=True)
def decide_training(data_interval_start=None, data_interval_end=None, dag_run=None) -> list[str]:
    """Follow `train` then `score` when the models are due (weekly, asked for by drift, or none promoted as of the
    run's date yet); otherwise skip `train`, visibly: scoring then uses the models in production as of that date.
    Reads only (DuckDB read-only, the registry)."""
    from tailor.airflow.daily import training_reasons

    as_of = run_as_of(data_interval_start, data_interval_end, dag_run)
    reasons = training_reasons(as_of)
    if reasons:
        log.info("training as of %s: %s", as_of.isoformat(), "; ".join(reasons))
        return ["train", "score"]
    log.info("no training as of %s: not the weekly day and no drift request, with models promoted as of that date, "
             "or that date trained already; scoring uses the models promoted as of it", as_of.isoformat())
    return ["score"]


@task(pool=DUCKDB_POOL, execution_timeout=TRAIN_TIMEOUT)
def train(data_interval_start=None, data_interval_end=None, dag_run=None) -> dict:
    """Train the customer and personalization models as of the run's time; each candidate is promoted by its rule."""
    from ml.errors import ModelInputError
    from tailor import transform
    from tailor.airflow.daily import train_all

    as_of = run_as_of(data_interval_start, data_interval_end, dag_run)
    with failing_fast(ModelInputError, transform.BuildFailed):
        return train_all(as_of).as_dict()


@task(pool=DUCKDB_POOL, execution_timeout=SCORE_TIMEOUT, trigger_rule="none_failed")
def score(data_interval_start=None, data_interval_end=None, dag_run=None) -> dict:
    """Score every customer with the models in production as of the run's date (trained just now, or skipped:
    none_failed)."""
    from ml.errors import ModelInputError
    from tailor import transform
    from tailor.airflow.daily import score_all

    as_of = run_as_of(data_interval_start, data_interval_end, dag_run)
    with failing_fast(ModelInputError, transform.BuildFailed):
        return score_all(as_of)


@task(pool=DUCKDB_POOL, execution_timeout=FEED_TIMEOUT)
def feed_build(data_interval_start=None, data_interval_end=None, dag_run=None) -> dict:
    """dbt build the feed (exports.esp_feed) of the as-of date from the marts and the scores."""
    from tailor import transform
    from tailor.export import feed
    from tailor.warehouse import Warehouse

    as_of = run_as_of(data_interval_start, data_interval_end, dag_run)
    warehouse = Warehouse()
    with failing_fast(feed.FeedError, transform.BuildFailed):
        result = feed.build_feed(as_of, warehouse=warehouse)
    with warehouse.reader() as con:
        rows = feed.feed_rows(con, as_of.date())
    log.info("feed build: %s consented customers in %s for %s (%s)", f"{rows:,}", feed.FEED, as_of.date(),
             result.summary())
    return {"as_of_date": as_of.date().isoformat(), "rows": rows}


@task(pool=DUCKDB_POOL, execution_timeout=GATE_TIMEOUT)
def feed_gate(data_interval_start=None, data_interval_end=None, dag_run=None) -> dict:
    """The feed gate (expectations/feed.yml); a failure stops here: nothing is exported, the last feed stays."""
    from tailor import quality
    from tailor.export import feed

    as_of = run_as_of(data_interval_start, data_interval_end, dag_run)
    with failing_fast(quality.GateFailed):
        report = feed.gate_feed(as_of)
    return {"suite": report.suite, "as_of": report.as_of.isoformat(), "warned": len(report.warnings)}


@task(pool=DUCKDB_POOL, execution_timeout=FEED_TIMEOUT)
def export(data_interval_start=None, data_interval_end=None, dag_run=None) -> dict:
    """The gated feed into <data dir>/outbox/<date>/ (manifest.json last) and export.exports."""
    from tailor.export import steps

    as_of = run_as_of(data_interval_start, data_interval_end, dag_run)
    with failing_fast(steps.ExportError):
        exported = steps.export(as_of)
    log.info("feed export: %s rows to %s", f"{exported.rows:,}", exported.path)
    return {"as_of_date": exported.as_of_date.isoformat(), "rows": exported.rows, "path": str(exported.path)}


@task(pool=DUCKDB_POOL, outlets=[TAILOR_FEED], execution_timeout=DELIVER_TIMEOUT)
def deliver(data_interval_start=None, data_interval_end=None, dag_run=None) -> list[dict]:
    """The day's export to each sink of TAILOR_FEED_SINKS (only what changed; resumable, logged in
    export.deliveries); emits tailor_feed once every sink took it. A retry resumes where a delivery stopped."""
    from tailor import settings
    from tailor.airflow import hooks
    from tailor.airflow.daily import deliver_all
    from tailor.export import steps

    as_of = run_as_of(data_interval_start, data_interval_end, dag_run)
    sinks = settings.feed_sinks()
    if not sinks:
        log.info("feed deliver: TAILOR_FEED_SINKS=none: the outbox export is the only delivery")
        return []
    with failing_fast(steps.ExportError):
        return deliver_all(as_of, sinks, make_sink=hooks.make_sink)


@task(pool=DUCKDB_POOL, execution_timeout=REPORT_TIMEOUT)
def run_report(data_interval_start=None, data_interval_end=None, dag_run=None) -> str:
    """Write the run's HTML report (tailor.run_report) and log where it is."""
    from tailor.run_report import write_run_report  # its own module: imported only when the report is written

    as_of = run_as_of(data_interval_start, data_interval_end, dag_run)
    path = write_run_report(as_of)
    log.info("run report: %s", path)
    return str(path)
