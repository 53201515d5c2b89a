"""
### Tailor: hourly extract and load

Every hour, for the hour that just ended (plus a lookback overlap for late-arriving updates):

- **extract**, per source and entity, in parallel: page the vendor API into one landing batch in the lake
  (`lake/raw/<source>/<entity>/<window_start>/<batch_id>.jsonl.gz`). Network only; no DuckDB connection.
- **load**, in the `duckdb` pool (one slot): insert the batch into `raw.<source>_<entity>` in one transaction
  that also records the batch and moves the watermark. Re-running either task for the same hour changes nothing.

A manual run (empty data interval) extracts [last watermark, now). Backfills (UI or `POST /api/v2/backfills`)
re-run past hours with their own intervals. Credentials come from the Connections `shopify_default`,
`hubspot_default` and `klaviyo_default` (with none defined, the local simulator); an S3 lake uses `aws_default`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, dag, task, task_group

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
    for source, entities in ENTITIES.items():

        @task_group(group_id=source)
        def per_source(source: str = source, entities: tuple[str, ...] = entities):
            for entity in entities:
                batch = extract.override(task_id=f"extract_{entity}")(source, entity)
                load.override(task_id=f"load_{entity}")(batch)

        per_source()


tailor_extract_hourly()
