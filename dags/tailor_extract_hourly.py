"""
### Tailor: hourly extract and load

Every hour, for every source and entity, from where the last load stopped up to the end of the hour that just ended:

- **extract**, per source and entity, in parallel: read the entity's watermark (one short read-only DuckDB
  connection, outside the pool), then page the vendor API into one landing batch in the lake
  (`lake/raw/<source>/<entity>/<window_start>/<batch_id>.jsonl.gz`); no DuckDB connection is held while it pages.
- **load**, in the `duckdb` pool (one slot): insert the batch into `raw.<source>_<entity>` in one transaction
  that also records the batch and moves the watermark. Re-running either task for the same hour changes nothing.
- **raw_gate**, after every load, in the `duckdb` pool: the GX suite `expectations/raw.yml`, validated inside
  DuckDB as of the end of the interval. A failed `fail` expectation fails the run (no retries: the data would not
  change) with a message naming each one; bad rows within the allowed share are quarantined in `raw._quarantine`.
  Results go to `quality.gate_results`, Data Docs to `<TAILOR_DATA_DIR>/quality/docs/index.html` (path in the log).
  Only a passed gate emits the asset `tailor_raw`, which the DAGs that read raw.* are scheduled on.
- **raw_snapshot**, after a passed gate, in the `duckdb` pool: publish raw.* as a read-only DuckDB file
  (`<TAILOR_DATA_DIR>/snapshots/raw_snapshot.duckdb`, an atomic swap; only rows loaded since the last snapshot are
  copied). Data engineers build on it with `dbt build --target dev` without touching the warehouse.

**Every run catches up.** The window of a run is `[min(interval start, watermark) - lookback, interval end)`, per
source and entity, whatever started the run:

| run | data interval | what it extracts |
|---|---|---|
| the first run of a fresh install (scheduled, manual or a backfill) | any | the whole history the API has, up to its interval end (Shopify through a bulk operation) |
| scheduled, the hour after the last one | the hour | that hour plus the lookback (`TAILOR_LOOKBACK_MINUTES`, late updates) |
| scheduled after downtime (paused DAG, stopped scheduler) | the last hour | everything since the watermark: the gap is filled |
| triggered from the UI (a logical date) | the hour before it | from the watermark up to the interval end |
| triggered without a logical date (API, CLI) | empty | from the watermark to the run's start |
| a backfill of past hours (UI or `POST /api/v2/backfills`) | each hour | that hour again (watermarks never move backwards) |

Credentials come from the Connections `shopify_default`, `hubspot_default` and `klaviyo_default` (with none
defined, the local simulator); an S3 lake uses `aws_default`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, dag, task, task_group

from tailor.airflow.assets import TAILOR_RAW
from tailor.airflow.callbacks import DUCKDB_POOL, on_task_failure
from tailor.sources import ENTITIES


@task
def extract(source: str, entity: str, data_interval_start=None, data_interval_end=None, dag_run=None) -> dict:
    """Land one batch for the run's window; returns the batch reference (a small dict, via XCom)."""
    from tailor import pipeline, settings, sources, warehouse
    from tailor.airflow import hooks

    window = pipeline.next_window(warehouse.Warehouse(), source, entity, data_interval_start, data_interval_end,
                                  now=dag_run.run_after, lookback=settings.lookback())
    extractor = sources.build_extractor(source, hooks.source_credentials(source))
    ref = pipeline.extract_window(extractor, entity, window, hooks.lake())
    return ref.to_dict()


@task(pool=DUCKDB_POOL)
def load(batch: dict) -> dict:
    """Load the batch into raw.*; returns what was inserted."""
    from tailor import lake, pipeline, warehouse
    from tailor.airflow import hooks

    report = pipeline.load_batches(warehouse.Warehouse(), hooks.lake(), [lake.BatchRef.from_dict(batch)])
    return {"batch_id": batch["batch_id"], "rows_inserted": report.rows_inserted}


@task(pool=DUCKDB_POOL, outlets=[TAILOR_RAW])
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


@task(pool=DUCKDB_POOL)
def raw_snapshot() -> dict:
    """Publish raw.* as the read-only snapshot `dbt build --target dev` reads (only after a passed gate)."""
    from tailor.snapshot import publish_raw_snapshot

    return publish_raw_snapshot().as_dict()


@dag(
    dag_id="tailor_extract_hourly",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "on_failure_callback": on_task_failure,
    },
    tags=["tailor", "extract"],
    doc_md=__doc__,
)
def tailor_extract_hourly():
    sources = []
    for source, entities in ENTITIES.items():

        @task_group(group_id=source)
        def per_source(source: str = source, entities: tuple[str, ...] = entities):
            for entity in entities:
                batch = extract.override(task_id=f"extract_{entity}")(source, entity)
                load.override(task_id=f"load_{entity}")(batch)

        sources.append(per_source())
    sources >> raw_gate() >> raw_snapshot()


tailor_extract_hourly()
