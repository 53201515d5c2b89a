"""
### Tailor: the daily run (warehouse, models, feed)

Once a day, for the day that just ended, everything **as of the end of its data interval** (midnight UTC): the
as-of of every step is the interval end, so a run for day D sees exactly the data of D and before. A manual run
without an interval runs as of the moment it was triggered (its `run_after`), like the hourly DAG's manual runs.

1. **extract** and **load** per source and entity, the hourly DAG's own tasks: from each entity's watermark (less
   the lookback) up to the interval end, so the day is complete even when hourly runs were missed (on a fresh
   install, the whole history), and a day the hourly DAG ran through reads only its last hour. Loads run in the
   `duckdb` pool.
2. **raw_gate** (expectations/raw.yml as of the interval end): emits `tailor_raw`, like the hourly one.
3. **dbt** (task group): `dbt build` of every model, seed and data test but the feed's, in three layers run
   one after another, together exactly what one `dbt build --exclude tag:feed resource_type:unit_test` builds
   (tailor.airflow.dbt_layers; the unit tests check the SQL, not the data: `make test` runs them):
   `sources` (seeds, base tables, staging views), `core` (identity, order steps, core marts), `daily` (engagement
   and churn steps, marketing and ml marts, the singular tests). Each layer task logs one line per model (status,
   seconds, rows) and fails naming the failed nodes; a retry rebuilds only the failed layer. Each layer first builds
   again, without tests, any model of the layers before it that another build (another day of a backfill, an hourly
   run) moved to another as-of since, so a layer builds and tests on its own day. Why layers and not one
   task per model: every task is a fresh process that imports dbt and parses the project (about 10 s measured on
   the 600-customer test world, against a 20-50 s plain build), so 43 model and seed tasks, one at a time in the
   duckdb pool, would add 7 minutes or more. In one process the three layers cost what one build does (within the
   noise); as tasks they add two process starts, +20-30 s: within 20 % of a plain build from about 2 minutes of
   build (the M and L worlds: L builds in 8-11 min), over it on tiny worlds (dbt_project/DECISIONLOG.md, "The daily
   DAG's dbt build", has the numbers).
4. **marts_gate** (expectations/marts.yml, on the marts as of the run: moved ones are built again first): emits
   `tailor_marts`.
5. **decide_training** (a branch) then **train**: the customer models (segments, churn, CLV) and the
   personalization models (recommendations, send times) retrain when the as-of is a Monday (the weekly
   retraining), when the previous day's scoring recorded drift past its threshold (`needs_retraining` in
   ml.model_monitoring), or when a model family has no version promoted as of the run's date (a fresh install still
   produces a feed). Otherwise `train` shows as **skipped** and the branch's log says why; so it does when the date
   was trained and decided before (a re-run). A day decides only when the previous day's decision, training and
   scoring are done (depends_on_past, wait_for_downstream): days run side by side still meet their models in date
   order.
6. **score** (runs after train or its skip): every customer with the models in production as of the run's date (the
   latest promoted version trained at or before it, ml.registry): a past date scores with the models it had then.
   Drift is recorded.
7. **feed_build** (dbt, selector `feed`) -> **feed_gate** -> **export** (outbox/<date>/, manifest last) ->
   **deliver** to each sink of `TAILOR_FEED_SINKS` (only the rows that changed; emits `tailor_feed`) ->
   **run_report** (tailor.run_report; the log says `run report: <path>`).

Every task that writes DuckDB takes the `duckdb` pool (one slot) and waits with backoff for the file's lock.
Gate and dbt test failures, and models that cannot be trained on the data, fail at once (retrying would meet the
same data); other errors retry with exponential backoff. A failed task alerts through TailorNotifier (e-mail with an
`smtp_default` Connection, Slack with a `slack_default` webhook Connection, always a log line); a run still not
finished 6 hours after it was queued (a scheduled run is queued at its interval end) raises a deadline alert
through the same notifier, from the triggerer.

**Backfill** past days from the UI (Backfill) or `POST /api/v2/backfills` with this DAG's id and a date range, and
"reprocess failed" or "reprocess completed" (Airflow refuses "none" for a DAG with depends_on_past tasks):
`max_active_runs=4` runs four days at once; their extracts overlap on the network, the DuckDB writers take turns in
the pool, and each day's models wait for the day before's (above). Each day re-reads its interval, builds as of its
own end, trains on its Mondays (or when asked by drift, or with no model promoted as of then) against the model in
production before it, and scores with the models of its date: a day's feed is what a run on that day produced. A
past Monday's promotion moves the `production` alias only if no later-trained model holds it. A day's feed replaces
only that day's partition; its delivery sends only what changed, and nothing at all to a sink that already took a
later day's feed (the ESP keeps the newer values; the export stays in the outbox). "Reprocess completed" days so
change nothing delivered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import AsyncCallback, CronDataIntervalTimetable, DeadlineAlert, DeadlineReference, dag, task_group

from tailor.airflow import tasks
from tailor.airflow.dbt_layers import LAYER_NAMES
from tailor.airflow.notify import TailorNotifier

# The feed is due 6 hours after a run was queued: a scheduled run is queued at its interval end (midnight UTC), so
# this is 06:00 UTC; a backfill's runs get 6 hours from their own queueing rather than alerts for past dates.
FEED_DEADLINE = timedelta(hours=6)


@dag(
    dag_id="tailor_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    # catchup off: a fresh install runs the latest day only (its extract still lands the whole history). The early
    # start date is what lets a backfill reach past days: Airflow runs no task before its DAG's start date.
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=4,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(hours=2),  # for a task that sets none (tailor.airflow.tasks sets each)
        "on_failure_callback": TailorNotifier(),
        # below the hourly DAG's tasks when both wait for the duckdb pool: the hourly loads are short and keep
        # raw.* fresh; the daily run can wait for them
        "weight_rule": "absolute",
        "priority_weight": 1,
    },
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=FEED_DEADLINE,
        callback=AsyncCallback(TailorNotifier, kwargs={"event": "deadline",
                                                      "message": "the day's feed is late: see the run's tasks"}),
    ),
    tags=["tailor", "daily", "dbt", "ml", "feed"],
    doc_md=__doc__,
)
def tailor_daily():
    loads = tasks.extract_and_load(catch_up=True)

    @task_group(group_id="dbt")
    def dbt():
        previous = None
        for name in LAYER_NAMES:
            current = tasks.dbt_layer.override(task_id=name)(name)
            if previous is not None:
                previous >> current
            previous = current

    decide = tasks.decide_training()
    trained = tasks.train()
    scored = tasks.score()
    loads >> tasks.raw_gate() >> dbt() >> tasks.marts_gate() >> decide >> [trained, scored]
    trained >> scored
    (scored >> tasks.feed_build() >> tasks.feed_gate() >> tasks.export() >> tasks.deliver()
     >> tasks.run_report())


tailor_daily()
