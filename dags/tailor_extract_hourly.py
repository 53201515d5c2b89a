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

A failed task alerts through `tailor.airflow.notify.TailorNotifier`: e-mail when an `smtp_default` Connection (or
Airflow's [smtp] settings) is configured, Slack when a `slack_default` webhook Connection is, and always one log line
naming the task, the interval and the error. Gate failures fail at once; other errors retry with backoff.

Credentials come from the Connections `shopify_default`, `hubspot_default` and `klaviyo_default` (with none
defined, the local simulator); an S3 lake uses `aws_default`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, dag

from tailor.airflow.notify import TailorNotifier
from tailor.airflow.tasks import extract_and_load, raw_gate, raw_snapshot


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
        "max_retry_delay": timedelta(minutes=15),
        "execution_timeout": timedelta(hours=1),  # for a task that sets none (tailor.airflow.tasks sets each)
        "on_failure_callback": TailorNotifier(),
    },
    tags=["tailor", "extract"],
    doc_md=__doc__,
)
def tailor_extract_hourly():
    extract_and_load() >> raw_gate() >> raw_snapshot()


tailor_extract_hourly()
