"""Delivery to a sink (S3 drop, Klaviyo): only what changed, each change once, resumable, logged.

    plan = plan_delivery(warehouse, rows, sink="klaviyo", as_of_date=d, ...)    # what would be sent, and why
    result = deliver(warehouse, plan, sink_object, rows)                        # send it; logs export.deliveries

What is sent comes from the day's outbox export (the gated files, not the warehouse), so a delivery reads exactly
what was exported and holds no DuckDB connection while it talks to the ESP. `rows` re-reads the export's rows
(tailor.export.outbox.read_rows): the plan compares every row's hash, the delivery parses only the rows it sends.
export.delivered_rows keeps, per sink and customer, the hash of the row last accepted and the as-of date it was sent
for:
- delta: a customer is sent when the sink never accepted them or their row's hash changed;
- full (every TAILOR_FEED_FULL_SYNC_DAYS of as-of dates, or forced): every customer not yet sent for this date;
- superseded: the sink already took a later date's feed, so nothing is sent: a backfilled or re-run past day never
  puts older values (or a customer who has since withdrawn consent) back into the ESP. Its export stays in the outbox.
A sink reports each batch once the ESP holds it (an S3 object written, a Klaviyo job complete) and the batch's rows
are recorded at once, in one transaction: a delivery killed midway resumes where it stopped, and re-running a day
sends nothing twice. Rows the ESP rejected or that were skipped (over a size limit) are not recorded as delivered:
they are logged in export.delivery_issues with the reason and tried again by the next delivery.

Both sinks also announce each batch when it leaves (an S3 object's key before its upload, a Klaviyo import job's id
as soon as Klaviyo has made it): export.delivery_jobs keeps the batch's rows until the batch is reported. A process
killed in between leaves them there, and the next delivery to that sink first asks the ESP what became of those
batches (JobSink.resolve_jobs: is the object there, did the job complete): the rows of a batch that landed are
recorded as delivered by the delivery that sent them, so they are not sent again; the others are sent again.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Protocol

import pandas as pd

from tailor.export.outbox import ExportedRow
from tailor.export.payload import BatchOutcome, Payload
from tailor.warehouse import Warehouse

log = logging.getLogger(__name__)

DELIVERIES = "export.deliveries"
DELIVERED_ROWS = "export.delivered_rows"
DELIVERY_ISSUES = "export.delivery_issues"
DELIVERY_JOBS = "export.delivery_jobs"
EXPORTS = "export.exports"

DDL = [
    "create schema if not exists export",
    f"""create table if not exists {EXPORTS} (
        as_of_date date primary key, exported_at timestamptz not null, rows bigint not null,
        content_sha256 varchar not null, path varchar not null, gate_run_id varchar not null)""",
    f"""create table if not exists {DELIVERIES} (
        delivery_id varchar primary key, sink varchar not null, as_of_date date not null, mode varchar not null,
        status varchar not null,                -- running | complete | failed | interrupted | superseded
        started_at timestamptz not null, finished_at timestamptz, duration_seconds double,
        rows_in_feed bigint not null, rows_unchanged bigint not null, rows_sent bigint not null default 0,
        rows_skipped bigint not null default 0, rows_failed bigint not null default 0, batches bigint not null default 0,
        export_sha256 varchar not null, content_hash varchar, error varchar)""",
    f"""create table if not exists {DELIVERED_ROWS} (
        sink varchar not null, customer_id varchar not null, row_hash varchar not null, as_of_date date not null,
        delivery_id varchar not null, primary key (sink, customer_id))""",
    f"""create table if not exists {DELIVERY_ISSUES} (
        delivery_id varchar not null, sink varchar not null, customer_id varchar not null, kind varchar not null,
        reason varchar not null)""",
    # the rows of each batch announced (an S3 key, a Klaviyo job id) and not yet reported, in its order (position)
    f"""create table if not exists {DELIVERY_JOBS} (
        sink varchar not null, job_id varchar not null, position integer not null, delivery_id varchar not null,
        as_of_date date not null, customer_id varchar not null, email varchar not null, row_hash varchar not null,
        primary key (sink, job_id, position))""",
]


class Sink(Protocol):
    name: str

    def deliver(self, payloads: Iterator[Payload], *, as_of_date: date, delivery_id: str,
                on_batch: Callable[[BatchOutcome], None]) -> None: ...


class JobSink(Sink, Protocol):
    """A sink that announces each batch as it leaves (on_submit) and can later be asked whether it landed."""

    def deliver(self, payloads: Iterator[Payload], *, as_of_date: date, delivery_id: str,
                on_batch: Callable[[BatchOutcome], None],
                on_submit: Callable[[str, list[Payload]], None] | None = None) -> None: ...

    def resolve_jobs(self, jobs: dict[str, list[Payload]]) -> Iterator[tuple[str, BatchOutcome | None]]: ...


class DeliveryError(RuntimeError):
    """A delivery could not start or did not finish: the message names the sink, the date and what to do."""


def ensure_tables(warehouse: Warehouse) -> None:
    with warehouse.writer() as con:
        for statement in DDL:
            con.execute(statement)


@dataclass
class Plan:
    """What a delivery of one export to one sink would send."""

    sink: str
    as_of_date: date
    mode: str  # delta | full
    export_dir: Path
    export_sha256: str
    rows_in_feed: int
    pending: set[str]  # customer ids to send
    resumes: list[str] = field(default_factory=list)  # earlier deliveries of this date that did not finish
    superseded_by: date | None = None  # the latest later date the sink took a complete delivery of: nothing is sent

    @property
    def rows_unchanged(self) -> int:
        return self.rows_in_feed - len(self.pending)


@dataclass
class DeliveryResult:
    delivery_id: str
    plan: Plan
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    batches: int = 0
    seconds: float = 0.0
    issues: list[tuple[str, str, str]] = field(default_factory=list)  # (customer_id, kind, reason), the first few
    recovered: int = 0  # pending rows an interrupted delivery's jobs had delivered after all: not sent again

    def summary(self) -> str:
        if self.plan.superseded_by is not None:
            return (f"{self.plan.sink} delivery {self.delivery_id} for {self.plan.as_of_date}: superseded, nothing "
                    f"sent: the sink took the feed of {self.plan.superseded_by} (newer values); the export stays in "
                    "the outbox")
        recovered = f"{self.recovered:,} delivered by an interrupted delivery's jobs, " if self.recovered else ""
        return (f"{self.plan.sink} {self.plan.mode} delivery {self.delivery_id} for {self.plan.as_of_date}: "
                f"{self.sent:,} sent, {recovered}{self.plan.rows_unchanged:,} unchanged, {self.skipped:,} skipped, "
                f"{self.failed:,} failed in {self.batches:,} batches, {self.seconds:.1f} s "
                f"({self.sent / self.seconds if self.seconds else 0:,.0f} rows/s)")


def full_sync_due(warehouse: Warehouse, sink: str, as_of_date: date, every_days: int) -> bool:
    """A full sync is due when this sink's last complete full delivery is `every_days` as-of days back or more (as-of
    dates, not the wall clock: a backfill decides as the day's run did)."""
    with warehouse.reader() as con:
        (last,) = con.execute(f"select max(as_of_date) from {DELIVERIES} where sink = ? and mode = 'full' "  # noqa: S608 constant
                              "and status = 'complete' and as_of_date <= ?", [sink, as_of_date]).fetchone()
    return last is None or (as_of_date - last) >= timedelta(days=every_days)


def plan_delivery(warehouse: Warehouse, rows: Callable[[], Iterator[ExportedRow]], *, sink: str, as_of_date: date,
                  export_dir: Path, export_sha256: str, full: bool) -> Plan:
    """Compare the export's rows with what the sink holds: the customers to send."""
    with warehouse.reader() as con:
        held = dict(con.execute(f"select customer_id, row_hash || '@' || cast(as_of_date as varchar) "  # noqa: S608 constant
                                f"from {DELIVERED_ROWS} where sink = ?", [sink]).fetchall())
        resumes = [delivery_id for (delivery_id,) in con.execute(
            f"select delivery_id from {DELIVERIES} where sink = ? and as_of_date = ? and status in ('running', "  # noqa: S608 constant
            "'failed', 'interrupted') order by started_at", [sink, as_of_date]).fetchall()]
        (superseded_by,) = con.execute(f"select max(as_of_date) from {DELIVERIES} where sink = ? "  # noqa: S608 constant
                                       "and status = 'complete' and as_of_date > ?", [sink, as_of_date]).fetchone()
    pending: set[str] = set()
    rows_in_feed = 0
    today = f"@{as_of_date.isoformat()}"
    for row in rows():
        rows_in_feed += 1
        last = held.get(row.customer_id)
        if superseded_by is None and (last is None or not last.startswith(row.row_hash)
                                      or (full and not last.endswith(today))):
            pending.add(row.customer_id)
    return Plan(sink=sink, as_of_date=as_of_date, mode="full" if full else "delta", export_dir=export_dir,
                export_sha256=export_sha256, rows_in_feed=rows_in_feed, pending=pending, resumes=resumes,
                superseded_by=superseded_by)


def deliver(warehouse: Warehouse, plan: Plan, sink: Sink, rows: Callable[[], Iterator[ExportedRow]],
            say: Callable[[str], None] = log.info) -> DeliveryResult:
    """Send the plan's pending rows through `sink`, recording each batch as the sink reports it."""
    delivery_id = f"{plan.sink}-{plan.as_of_date.isoformat()}-{uuid.uuid4().hex[:12]}"
    result = DeliveryResult(delivery_id=delivery_id, plan=plan)
    content = hashlib.sha256()
    started = time.monotonic()
    superseded = plan.superseded_by is not None
    now = datetime.now(UTC)
    # a superseded delivery sends nothing: it is recorded finished in the moment it starts
    status, finished_at, duration = ("superseded", now, 0.0) if superseded else ("running", None, None)
    with warehouse.writer() as con:
        con.execute("begin")
        # a delivery of the same sink and date that never finished (killed): this one takes over where it stopped
        con.execute(f"update {DELIVERIES} set status = 'interrupted' where sink = ? and as_of_date = ? "  # noqa: S608 constant
                    "and status = 'running'", [plan.sink, plan.as_of_date])
        con.execute(f"insert into {DELIVERIES} (delivery_id, sink, as_of_date, mode, status, started_at, rows_in_feed, "  # noqa: S608 constant
                    "rows_unchanged, export_sha256, finished_at, duration_seconds) "
                    "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [delivery_id, plan.sink, plan.as_of_date, plan.mode, status, now, plan.rows_in_feed,
                     plan.rows_unchanged, plan.export_sha256, finished_at, duration])
        con.execute("commit")
    if superseded:
        say(result.summary())
        return result

    def record(outcome: BatchOutcome) -> None:
        _record(warehouse, plan.sink, plan.as_of_date, delivery_id, outcome)
        for payload in outcome.sent:
            content.update(f"{payload.customer_id}:{payload.row_hash}\n".encode())
        result.sent += len(outcome.sent)
        result.failed += len(outcome.failed)
        result.skipped += len(outcome.skipped)
        result.batches += 1
        for kind, items in (("failed", outcome.failed), ("skipped", outcome.skipped)):
            for payload, reason in items:
                log.warning("%s delivery %s: %s customer %s: %s", plan.sink, delivery_id, kind, payload.customer_id,
                            reason)
                if len(result.issues) < 20:
                    result.issues.append((payload.customer_id, kind, reason))
        say(f"deliver {plan.sink}: batch {result.batches}: {len(outcome.sent):,} sent, {len(outcome.failed):,} "
            f"failed, {len(outcome.skipped):,} skipped ({result.sent:,} of {len(plan.pending):,} so far)")

    def announce(job_id: str, job: list[Payload]) -> None:  # on the sink's thread (Klaviyo); lists, as in _record
        with warehouse.writer() as con:
            con.execute(f"insert into {DELIVERY_JOBS} select ?, ?, unnest(range(?)), ?, ?, unnest(?::varchar[]), "
                        "unnest(?::varchar[]), unnest(?::varchar[])",
                        [plan.sink, job_id, len(job), delivery_id, plan.as_of_date, [p.customer_id for p in job],
                         [p.email for p in job], [p.row_hash for p in job]])

    resolved: dict[str, str] = {}  # customer id -> row hash an interrupted delivery's job turned out to deliver

    def pending() -> Iterator[Payload]:
        for row in rows():
            if row.customer_id not in plan.pending:
                continue
            if resolved.get(row.customer_id) == row.row_hash:
                result.recovered += 1
                continue
            yield row.payload()

    try:
        options = {}
        if callable(getattr(sink, "resolve_jobs", None)):
            resolved = _resolve_earlier_jobs(warehouse, plan.sink, sink, say)
            options["on_submit"] = announce
        sink.deliver(pending(), as_of_date=plan.as_of_date, delivery_id=delivery_id, on_batch=record, **options)
    except BaseException as exc:
        _finish(warehouse, delivery_id, "failed", time.monotonic() - started, None, f"{type(exc).__name__}: {exc}")
        raise
    result.seconds = time.monotonic() - started
    _finish(warehouse, delivery_id, "complete", result.seconds, content.hexdigest(), None)
    return result


def _record(warehouse: Warehouse, sink: str, as_of_date: date, delivery_id: str, outcome: BatchOutcome) -> None:
    """One batch the sink reported, in one transaction: its rows delivered, its issues, the delivery's counts, and
    (a job's) its rows out of export.delivery_jobs."""
    issues = [(payload.customer_id, kind, reason)
              for kind, items in (("failed", outcome.failed), ("skipped", outcome.skipped)) for payload, reason in items]
    # rows as list parameters, not registered DataFrames: with a batch being announced from the sink's thread at the
    # same moment, DuckDB's pandas scan was not found ("Table Function with name pandas_scan does not exist")
    with warehouse.writer() as con:
        con.execute("begin")
        try:
            if outcome.sent:
                con.execute(f"insert or replace into {DELIVERED_ROWS} select ?, unnest(?::varchar[]), "
                            "unnest(?::varchar[]), ?, ?",
                            [sink, [p.customer_id for p in outcome.sent], [p.row_hash for p in outcome.sent],
                             as_of_date, delivery_id])
            if issues:
                con.execute(f"insert into {DELIVERY_ISSUES} select ?, ?, unnest(?::varchar[]), "
                            "unnest(?::varchar[]), unnest(?::varchar[])",
                            [delivery_id, sink, *(list(column) for column in zip(*issues, strict=True))])
            if outcome.batch_id is not None:
                con.execute(f"delete from {DELIVERY_JOBS} where sink = ? and job_id = ?",  # noqa: S608 constant
                            [sink, outcome.batch_id])
            con.execute(f"update {DELIVERIES} set rows_sent = rows_sent + ?, rows_failed = rows_failed + ?, "  # noqa: S608 constant
                        "rows_skipped = rows_skipped + ?, batches = batches + 1 where delivery_id = ?",
                        [len(outcome.sent), len(outcome.failed), len(outcome.skipped), delivery_id])
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise


def _resolve_earlier_jobs(warehouse: Warehouse, sink_name: str, sink: JobSink,
                          say: Callable[[str], None]) -> dict[str, str]:
    """Ask the sink about the jobs earlier deliveries announced and never reported (a killed process): record each
    completed job for the delivery that sent it, drop the rows of the others (they are sent again). Returns the rows
    found delivered: customer id -> row hash."""
    with warehouse.reader() as con:
        rows = con.execute(f"select job_id, delivery_id, as_of_date, customer_id, email, row_hash "  # noqa: S608 constant
                           f"from {DELIVERY_JOBS} where sink = ? order by delivery_id, job_id, position",
                           [sink_name]).fetchall()
    if not rows:
        return {}
    jobs: dict[str, list[Payload]] = {}
    sent_by: dict[str, tuple[str, date]] = {}
    for job_id, delivery_id, as_of_date, customer_id, email, row_hash in rows:
        jobs.setdefault(job_id, []).append(Payload(customer_id, email, {}, row_hash))
        sent_by[job_id] = (delivery_id, as_of_date)
    say(f"deliver {sink_name}: {len(jobs):,} jobs of an interrupted delivery were never reported; asking the ESP")
    found: dict[str, str] = {}
    for job_id, outcome in sink.resolve_jobs(jobs):
        delivery_id, as_of_date = sent_by[job_id]
        if outcome is None:
            with warehouse.writer() as con:
                con.execute(f"delete from {DELIVERY_JOBS} where sink = ? and job_id = ?",  # noqa: S608 constant
                            [sink_name, job_id])
            continue
        _record(warehouse, sink_name, as_of_date, delivery_id, outcome)
        found.update((payload.customer_id, payload.row_hash) for payload in outcome.sent)
        say(f"deliver {sink_name}: job {job_id} of {delivery_id} had completed: {len(outcome.sent):,} rows recorded "
            f"as delivered, {len(outcome.failed):,} failed")
    return found


def _finish(warehouse: Warehouse, delivery_id: str, status: str, seconds: float, content_hash: str | None,
            error: str | None) -> None:
    with warehouse.writer() as con:
        con.execute(f"update {DELIVERIES} set status = ?, finished_at = ?, duration_seconds = ?, content_hash = ?, "  # noqa: S608 constant
                    "error = ? where delivery_id = ?",
                    [status, datetime.now(UTC), seconds, content_hash, error, delivery_id])


def delivery_log(warehouse: Warehouse, as_of_date: date | None = None, limit: int = 20) -> pd.DataFrame:
    """The latest deliveries (of one date, or all), newest first."""
    where, params = ("where as_of_date = ?", [as_of_date]) if as_of_date else ("", [])
    with warehouse.reader() as con:
        return con.execute(f"select delivery_id, sink, as_of_date, mode, status, rows_in_feed, rows_unchanged, "  # noqa: S608 constant
                           f"rows_sent, rows_skipped, rows_failed, batches, round(duration_seconds, 1) as seconds, "
                           f"content_hash from {DELIVERIES} {where} order by started_at desc limit {int(limit)}",
                           params).df()
