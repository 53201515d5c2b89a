"""The feed's four steps for one as-of date, as `python -m tailor feed ...` and the daily DAG run them.

    build    dbt builds exports.esp_feed for the date from the marts and the models' scores
    gate     expectations/feed.yml; a failure stops here: nothing is exported, the last delivered feed stays
    export   the gated rows into <data dir>/outbox/<date>/ (JSON Lines, CSV, manifest.json last; atomic)
    deliver  the export to each configured sink (S3 drop, Klaviyo bulk import): delta or full, logged, resumable

Each step is a transaction for its date: re-running it gives the same result and sends nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from tailor import settings
from tailor.export import deliveries, feed, outbox
from tailor.warehouse import Warehouse, has_table

log = logging.getLogger(__name__)

SINKS = ("s3", "klaviyo")


class ExportError(RuntimeError):
    """The day cannot be exported or delivered: the message names the date and the step to run first."""


@dataclass
class ExportResult:
    as_of_date: date
    path: Path
    rows: int
    manifest: dict


def export(as_of: datetime, *, warehouse: Warehouse | None = None, outbox_dir: Path | None = None) -> ExportResult:
    """Write the date's gated feed to the outbox and record it in export.exports. Refuses a feed whose latest gate
    for this as-of did not pass (or never ran): the last delivered export stays in place."""
    from ml import config

    warehouse = warehouse or Warehouse()
    as_of_date = as_of.astimezone(UTC).date()
    deliveries.ensure_tables(warehouse)
    gate = _gate_result(warehouse, as_of)
    outbox_dir = outbox_dir or settings.outbox_dir()
    exported_at = datetime.now(UTC)  # metadata of the export, not a business time
    with warehouse.reader() as con:
        rows = feed.feed_rows(con, as_of_date)
        if rows == 0:
            raise ExportError(f"no feed rows for {as_of_date} in {feed.FEED}: build it first "
                              f"(python -m tailor feed build --as-of {as_of_date})")
        versions = feed.model_versions(con, as_of_date)
        written = outbox.write_outbox(
            feed.feed_payloads(con, as_of_date), outbox_dir=outbox_dir, as_of_date=as_of_date,
            exported_at=exported_at, recommendations_per_customer=config.REC_LIST_SIZE,
            columns=list(feed.ESP_FIELDS.values()),
            manifest_extra={"as_of": as_of.astimezone(UTC).isoformat(), "model_versions": versions,
                            "feed_gate": gate})
    manifest = outbox.read_manifest(outbox_dir, as_of_date)
    with warehouse.writer() as con:
        con.execute(f"insert or replace into {deliveries.EXPORTS} values (?, ?, ?, ?, ?, ?)",  # noqa: S608 constant
                    [as_of_date, exported_at, manifest["rows"], _jsonl_sha256(manifest), str(written.path),
                     gate["run_id"]])
    return ExportResult(as_of_date=as_of_date, path=written.path, rows=manifest["rows"], manifest=manifest)


def _gate_result(warehouse: Warehouse, as_of: datetime) -> dict:
    from tailor.quality.gate import run_id_for

    run_id = run_id_for("feed", as_of)
    passed, checks, run_at = None, 0, None
    with warehouse.reader() as con:
        if has_table(con, "quality.gate_results"):
            passed, checks, run_at = con.execute(
                "select bool_and(status <> 'failed'), count(*), max(run_at) from quality.gate_results where run_id = ?",
                [run_id]).fetchone()
    if not checks:
        raise ExportError(f"the feed gate has not run for {run_id}: run python -m tailor feed gate "
                          f"--as-of {as_of.astimezone(UTC).isoformat()} first")
    if not passed:
        raise ExportError(f"the feed gate failed for {run_id}: nothing exported, the last delivered feed stays in "
                          "place (python -m tailor gate feed ... shows what failed)")
    return {"run_id": run_id, "passed": True, "checks": int(checks), "run_at": run_at.isoformat()}


def _jsonl_sha256(manifest: dict) -> str:
    return next(item["sha256"] for item in manifest["files"] if item["name"].endswith(".jsonl.gz"))


def exported_rows(export_dir: Path) -> Callable[[], Iterator[outbox.ExportedRow]]:
    """A re-readable stream of the rows of an outbox export (its JSON Lines file)."""
    return lambda: outbox.read_rows(export_dir)


def make_sink(name: str, *, klaviyo_credentials=None, s3_client=None):
    """The configured sink. Credentials: those given (an Airflow task reads them from its Connections:
    tailor.airflow.hooks.make_sink), else klaviyo_default / aws_default from AIRFLOW_CONN_* variables, else the
    simulator's Klaviyo / boto3's standard chain."""
    if name == "s3":
        from tailor.export.s3 import S3Sink

        return S3Sink.from_settings(client=s3_client)
    if name == "klaviyo":
        from tailor import connections
        from tailor.export.klaviyo import KlaviyoSink

        return KlaviyoSink(klaviyo_credentials or connections.credentials("klaviyo"),
                           max_profiles_per_job=settings.klaviyo_profiles_per_job())
    raise ValueError(f"sink {name!r} is not one of {', '.join(SINKS)}")


def plan(as_of: datetime, sink: str, *, warehouse: Warehouse | None = None, outbox_dir: Path | None = None,
         full: bool | None = None) -> tuple[deliveries.Plan, Callable[[], Iterator[outbox.ExportedRow]]]:
    """What delivering the date's export to `sink` would send (delta, or full when due or forced)."""
    warehouse = warehouse or Warehouse()
    as_of_date = as_of.astimezone(UTC).date()
    outbox_dir = outbox_dir or settings.outbox_dir()
    deliveries.ensure_tables(warehouse)
    try:
        manifest = outbox.read_manifest(outbox_dir, as_of_date)
    except outbox.ExportNotFound:
        raise ExportError(f"no export for {as_of_date} in {outbox_dir}: export it first "
                          f"(python -m tailor feed export --as-of {as_of_date})") from None
    export_dir = outbox.export_dir(outbox_dir, as_of_date)
    try:
        outbox.verify_export(export_dir)
    except outbox.CorruptExport as exc:
        raise ExportError(f"the export of {as_of_date} cannot be delivered: {exc}; export it again") from None
    if full is None:
        full = deliveries.full_sync_due(warehouse, sink, as_of_date, settings.full_sync_days())
    rows = exported_rows(export_dir)
    try:
        return deliveries.plan_delivery(warehouse, rows, sink=sink, as_of_date=as_of_date, export_dir=export_dir,
                                        export_sha256=_jsonl_sha256(manifest), full=full), rows
    except outbox.CorruptExport as exc:
        raise ExportError(f"the export of {as_of_date} cannot be delivered: {exc}; export it again") from None


def deliver(as_of: datetime, sink: str, *, warehouse: Warehouse | None = None, outbox_dir: Path | None = None,
            full: bool | None = None, sink_object=None,
            say: Callable[[str], None] = log.info) -> deliveries.DeliveryResult:
    """Deliver the date's export to `sink`: what changed since the sink's last accepted rows (or everything due)."""
    warehouse = warehouse or Warehouse()
    delivery_plan, rows = plan(as_of, sink, warehouse=warehouse, outbox_dir=outbox_dir, full=full)
    try:
        return deliveries.deliver(warehouse, delivery_plan, sink_object or make_sink(sink), rows, say=say)
    except outbox.CorruptExport as exc:  # a row the plan read whole but that does not parse
        raise ExportError(f"the export of {delivery_plan.as_of_date} could not be delivered whole: {exc}; "
                          "export it again") from None
