"""python -m tailor <command>: Tailor without Airflow."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from tailor.sources import SOURCES
from tailor.times import stamp


class _BadInput(Exception):
    """Wrong arguments or configuration: one message, exit code 2."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tailor", description="Tailor without Airflow.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the pipeline on the embedded defaults against the local simulator")
    extract = sub.add_parser(
        "extract", help="land the records of a window as batches in the lake (no warehouse writes)",
        description="Land every record version updated in a window as one batch per source and entity. Without "
                    "--start/--end, a manual run: from each entity's watermark (minus TAILOR_LOOKBACK_MINUTES; "
                    "before the first load, from the beginning) to now. With them: exactly [start, end), widened by "
                    "the lookback. Times are ISO 8601 (2026-11-01, 2026-11-01T06:00:00Z); without a zone they are "
                    "UTC.")
    extract.add_argument("--source", choices=(*SOURCES, "all"), default="all")
    extract.add_argument("--start", help="interval start, ISO 8601")
    extract.add_argument("--end", help="interval end (exclusive), ISO 8601")
    extract.add_argument("--entity", help="one entity only (default: every entity of the source)")
    sub.add_parser("load", help="load every landed batch not loaded yet into raw.* (one transaction per batch)")
    build = sub.add_parser(
        "build", help="dbt build the project (staging, marts and their tests) as of a time",
        description="Run `dbt build` on dbt_project/ as of --as-of (default: now): every model sees, per record, its "
                    "state at that time (the latest version at or before it, else its earliest later version reduced "
                    "to it). dbt's target/ and logs/ go under TAILOR_DATA_DIR/dbt.")
    build.add_argument("--as-of", help="the time to build as of, ISO 8601 (default: now)")
    build.add_argument("--known-at", help="use only the versions loaded by this time, ISO 8601, to reproduce a past "
                                          "run exactly (default: everything loaded)")
    build.add_argument("--select", action="append", help="dbt node selection (repeatable), e.g. marts or +customers")
    build.add_argument("--exclude", action="append", help="dbt nodes to leave out (repeatable)")
    build.add_argument("--selector", help="a selector of dbt_project/selectors.yml: hourly (every model but the daily "
                                          "marketing and ml marts, tested only where rows carry over from run to run) "
                                          "or feed")
    build.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
    build.add_argument("--target", choices=("duckdb", "dev", "postgres"),
                       help="profile target (default: TAILOR_DBT_TARGET, else duckdb; dev: the raw snapshot into "
                            "its own file)")
    build.add_argument("--quiet", action="store_true", help="only dbt's errors and the summary, not every node")
    gate = sub.add_parser(
        "gate", help="validate a quality gate (a GX suite in expectations/) inside DuckDB as of a time",
        description="Run the suite expectations/<gate>.yml as of --as-of (default: now). Exit 1 when a fail-level "
                    "expectation fails, with the suite, expectation, table, column, count and sample values.")
    gate.add_argument("gate", help="the gate: raw, marts or feed (expectations/<gate>.yml; feed is `feed gate`)")
    gate.add_argument("--as-of", help="the time to validate as of, ISO 8601 (default: now)")
    snapshot = sub.add_parser(
        "snapshot", help="publish the raw snapshot that `dbt build --target dev` reads (a read-only copy of raw.*)",
        description="Copy every table of raw.* into TAILOR_RAW_SNAPSHOT_PATH (default: "
                    "TAILOR_DATA_DIR/snapshots/raw_snapshot.duckdb) in one atomic file swap: dev builds reading the "
                    "old snapshot keep reading it. The hourly DAG does this after each passed raw gate. Only the rows "
                    "loaded since the previous snapshot are copied from the warehouse, which is held read-only for "
                    "as long as that takes.")
    snapshot.add_argument("--full", action="store_true",
                          help="copy raw.* whole instead of adding what was loaded since the previous snapshot")
    feed = sub.add_parser(
        "feed", help="build, gate, export or deliver the per-customer feed of an as-of date",
        description="The feed of --as-of's date (UTC), one step at a time: build (dbt: exports.esp_feed from the marts "
                    "and the models' scores; score first with python -m ml score), gate (expectations/feed.yml), "
                    "export (the gated rows to TAILOR_DATA_DIR/outbox/<date>/, manifest.json last) and deliver (the "
                    "export to each sink of TAILOR_FEED_SINKS, or --sink: only the rows that changed since the "
                    "sink's last accepted ones, all of them every TAILOR_FEED_FULL_SYNC_DAYS). Every step can be "
                    "re-run: nothing is sent twice.")
    feed.add_argument("step", choices=("build", "gate", "export", "deliver"))
    feed.add_argument("--as-of", required=True, help="the as-of time the models scored, ISO 8601")
    feed.add_argument("--sink", action="append", choices=("s3", "klaviyo"),
                      help="deliver to this sink (repeatable; default TAILOR_FEED_SINKS, else klaviyo)")
    feed.add_argument("--dry-run", action="store_true", help="deliver: report what would be sent, send nothing")
    feed.add_argument("--full", action="store_true", help="deliver: every row, not only the changed ones")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from tailor import demo

        return demo.run()
    _configure_logging()
    try:
        if args.command == "extract":
            return _extract(args)
        if args.command == "load":
            return _load()
        if args.command == "build":
            return _build(args)
        if args.command == "snapshot":
            return _snapshot(args)
        if args.command == "feed" and args.step == "gate":
            _leave(_feed(args))
        if args.command == "feed":
            return _feed(args)
        if args.command == "gate" and args.gate == "feed":  # with the recommender's list size and the export log
            _leave(_feed(argparse.Namespace(step="gate", as_of=args.as_of or stamp(datetime.now(UTC)))))
        if args.command == "gate":
            _leave(gate_command(args.gate, args.as_of))
    except _BadInput as exc:
        parser.exit(2, f"python -m tailor {args.command}: error: {exc}\n")
    return 2


def _leave(code: int) -> None:
    """Exit after a gate. GX with duckdb-engine leaves DuckDB type objects that nanobind lists, harmlessly but at
    length, at interpreter teardown; a finished gate has nothing left to clean up, so leave without it."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    # The CLI prints its own progress lines; the lake's and the HTTP stack's info logs would repeat them.
    for noisy in ("tailor.lake", "httpx", "httpcore", "botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _say(message: str) -> None:
    print(message, flush=True)


def _parse_time(flag: str, text: str) -> datetime:
    from tailor.transform import parse_as_of

    try:
        return parse_as_of(text)
    except ValueError:
        raise _BadInput(f"{flag} {text!r} is not an ISO 8601 date or time (e.g. 2026-11-01 or "
                        "2026-11-01T06:00:00Z)") from None


# --- extract ---------------------------------------------------------------------------------------------------


def _extractor(source: str):
    from tailor import connections, sources

    try:
        return sources.build_extractor(source, connections.credentials(source))
    except connections.ConnectionConfigError as exc:
        raise _BadInput(str(exc)) from None


def _reporter(label: str, every: float = 5.0) -> Callable:
    last = [0.0]

    def report(progress) -> None:
        now = time.monotonic()
        if now - last[0] < every:
            return
        last[0] = now
        _say(f"extract {label}: {progress.records:,} records, {progress.pages:,} pages, "
             f"{progress.rate_waits:,} rate waits ({progress.rate_wait_seconds:.1f} s), {progress.retries:,} retries")

    return report


def _extract(args: argparse.Namespace) -> int:
    from tailor import connections, pipeline, settings
    from tailor.sources import Progress, Window
    from tailor.warehouse import Warehouse

    if (args.start is None) != (args.end is None):
        raise _BadInput("give both --start and --end, or neither (a manual run: from each watermark to now)")
    start = _parse_time("--start", args.start) if args.start else None
    end = _parse_time("--end", args.end) if args.end else None
    if start is not None and end is not None and end <= start:
        raise _BadInput(f"--end {args.end} is not after --start {args.start}")
    try:
        lookback = settings.lookback()
        lake = connections.lake()
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    warehouse = Warehouse()
    now = datetime.now(UTC)  # the CLI is where a manual run's "now" comes from

    chosen = tuple(SOURCES) if args.source == "all" else (args.source,)
    wanted: dict[str, list[str]] = {}
    for source in chosen:
        entities = list(SOURCES[source].entities)
        if args.entity:
            if args.entity not in entities:
                if args.source != "all":
                    raise _BadInput(f"--entity {args.entity!r}: {source} has {', '.join(entities)}")
                continue
            entities = [args.entity]
        wanted[source] = entities
    if not wanted:
        raise _BadInput(f"--entity {args.entity!r}: no source has it")
    plans = {source: (_extractor(source), entities) for source, entities in wanted.items()}

    def window_for(source: str, entity: str) -> Window:
        if start is not None and end is not None:  # an operator's exact window: re-read it, no catch-up
            return Window(start, end).widened(lookback)
        return pipeline.next_window(warehouse, source, entity, None, None, now, lookback)

    windows = {(source, entity): window_for(source, entity)
               for source, (_, entities) in plans.items() for entity in entities}
    landed: list = []
    failures: list[str] = []
    lock = threading.Lock()

    def run_source(source: str) -> None:
        extractor, entities = plans[source]
        for entity in entities:
            label = f"{source}/{entity}"
            window = windows[(source, entity)]
            _say(f"extract {label}: window [{stamp(window.start)}, {stamp(window.end)})")
            progress = Progress(report=_reporter(label))
            began = time.monotonic()
            try:
                ref = pipeline.extract_window(extractor, entity, window, lake, progress=progress)
            except Exception as exc:  # one entity failing must not hide the others' results
                with lock:
                    failures.append(f"{label}: {type(exc).__name__}: {exc}")
                _say(f"extract {label}: FAILED after {time.monotonic() - began:.1f} s: {exc}")
                continue
            with lock:
                landed.append((ref, progress))
            _say(f"extract {label}: landed {ref.records:,} records ({progress.pages:,} pages, "
                 f"{progress.rate_waits:,} rate waits, {progress.retries:,} retries) in "
                 f"{time.monotonic() - began:.1f} s as {ref.path}")

    with ThreadPoolExecutor(max_workers=len(plans)) as pool:  # sources in parallel, entities one after another
        list(pool.map(run_source, plans))

    _say(f"extract summary ({lake.url}):")
    for ref, progress in sorted(landed, key=lambda item: (item[0].source, item[0].entity)):
        _say(f"  {ref.source:<8} {ref.entity:<10} {ref.records:>10,} records  {progress.pages:>6,} pages  "
             f"[{stamp(ref.window.start)}, {stamp(ref.window.end)})  batch {ref.batch_id}")
    for failure in failures:
        _say(f"  FAILED {failure}")
    if landed:
        _say("next: python -m tailor load")
    return 1 if failures else 0


# --- load ------------------------------------------------------------------------------------------------------


def _load() -> int:
    from tailor import connections, pipeline
    from tailor.lake import LakeError
    from tailor.warehouse import Warehouse, WarehouseLockTimeout

    try:
        lake = connections.lake()
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    warehouse = Warehouse()
    try:
        pending = pipeline.pending_batches(warehouse, lake)
    except (LakeError, WarehouseLockTimeout) as exc:
        _say(f"load: error: {exc}")
        return 1
    if not pending:
        _say(f"load: nothing pending in {lake.url}")
        return 0
    _say(f"load: {len(pending)} batch(es) pending in {lake.url}, {sum(r.records for r in pending):,} records "
         f"-> {warehouse.path}")
    totals: dict[tuple[str, str], list[int]] = {}

    def on_batch(result) -> None:
        ref = result.ref
        row = totals.setdefault((ref.source, ref.entity), [0, 0, 0])
        row[0] += 1
        row[1] += ref.records
        row[2] += result.rows_inserted
        rate = ref.records / result.seconds if result.seconds else 0.0
        state = "already loaded" if result.already_loaded else f"{result.rows_inserted:,} new rows"
        _say(f"load {ref.describe()}: {ref.records:,} records, {state} in {result.seconds:.2f} s "
             f"({rate:,.0f} records/s)")

    failed: Exception | None = None
    try:
        pipeline.load_batches(warehouse, lake, pending, on_batch=on_batch)
    except (pipeline.LoadFailed, WarehouseLockTimeout) as exc:
        failed = exc
    marks = {} if isinstance(failed, WarehouseLockTimeout) else warehouse.watermarks()
    _say("load summary:")
    for (source, entity), (batches, records, rows) in sorted(totals.items()):
        mark = marks.get((source, entity))
        _say(f"  raw.{source}_{entity:<10} {batches:>4} batches  {records:>10,} records  {rows:>10,} new rows  "
             f"watermark {stamp(mark) if mark else '-'}")
    if failed is not None:
        _say(f"load: error: {failed}")
        return 1
    return 0


# --- build -----------------------------------------------------------------------------------------------------


def _build(args: argparse.Namespace) -> int:
    from tailor import transform
    from tailor.warehouse import WarehouseLockTimeout

    # the CLI is where an ad-hoc build's "now" comes from
    as_of = _parse_time("--as-of", args.as_of) if args.as_of else datetime.now(UTC)
    known_at = _parse_time("--known-at", args.known_at) if args.known_at else None
    _say(f"build: dbt build as of {stamp(as_of)}{f' with what was loaded by {stamp(known_at)}' if known_at else ''}"
         f"{' (full refresh)' if args.full_refresh else ''}")
    try:
        result = transform.build(as_of, known_at=known_at, select=args.select, exclude=args.exclude,
                                 selector=args.selector, full_refresh=args.full_refresh, target=args.target,
                                 quiet=args.quiet)
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    except (transform.BuildFailed, WarehouseLockTimeout) as exc:
        _say(f"build: error: {exc}")
        return 1
    _say(f"build: {result.summary()}")
    return 0


# --- snapshot --------------------------------------------------------------------------------------------------


def _snapshot(args: argparse.Namespace) -> int:
    from tailor.snapshot import SnapshotError, publish_raw_snapshot
    from tailor.warehouse import WarehouseLockTimeout

    logging.getLogger("tailor.snapshot").setLevel(logging.WARNING)  # its summary line is printed below
    try:
        result = publish_raw_snapshot(full=args.full)
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    except (SnapshotError, WarehouseLockTimeout) as exc:
        _say(f"snapshot: error: {exc}")
        return 1
    _say(f"snapshot: {result.summary()}")
    _say("next: cd dbt_project && dbt build --target dev")
    return 0


# --- gate ------------------------------------------------------------------------------------------------------


def gate_command(gate: str, as_of: str | None) -> int:
    """`python -m tailor gate <gate> [--as-of ISO]`: run the gate, print its results and where the Data Docs are.

    as_of is ISO 8601 (a date, or a time; without a zone, UTC); None means now. Returns 0 when the gate passed,
    1 when it failed (the message names each failed expectation) or could not run, 2 on bad arguments.
    """
    from tailor.quality import GateError, GateFailed, run_gate
    from tailor.quality.suite import SuiteError, available_gates
    from tailor.transform import parse_as_of
    from tailor.warehouse import WarehouseLockTimeout

    try:
        when = parse_as_of(as_of) if as_of else datetime.now(UTC)  # the CLI is where an ad-hoc "now" comes from
    except ValueError as exc:
        print(f"python -m tailor gate: error: {exc}", file=sys.stderr)
        return 2
    print(f"gate {gate}: validating as of {stamp(when)} ...", flush=True)
    logging.getLogger("tailor.quality.gate").setLevel(logging.WARNING)  # the lines below say it all once
    try:
        report = run_gate(gate, when, raise_on_failure=False)
    except SuiteError as exc:
        print(f"python -m tailor gate: error: {exc}\n(gates: {', '.join(available_gates()) or 'none'})",
              file=sys.stderr)
        return 2
    except (GateError, WarehouseLockTimeout) as exc:
        print(f"gate {gate}: error: {exc}", flush=True)
        return 1
    if report.success:
        for line in report.lines():
            print(line, flush=True)
        return 0
    print(report.summary(), flush=True)
    for line in report.lines()[1:]:
        if not line.lstrip().startswith(("FAILED", "Data Docs")):
            print(line, flush=True)  # warnings and quarantines; the failures follow in the error message
    print(GateFailed(report), flush=True)
    return 1


# --- feed ------------------------------------------------------------------------------------------------------


def _feed(args: argparse.Namespace) -> int:
    from tailor import settings
    from tailor.export import deliveries, feed, steps
    from tailor.quality import GateError, GateFailed
    from tailor.transform import BuildFailed
    from tailor.warehouse import Warehouse, WarehouseLockTimeout

    as_of = _parse_time("--as-of", args.as_of)
    warehouse = Warehouse()
    failures = (feed.FeedError, steps.ExportError, deliveries.DeliveryError, BuildFailed, GateError,
                WarehouseLockTimeout)
    try:
        if args.step == "build":
            result = feed.build_feed(as_of, warehouse=warehouse)
            with warehouse.reader() as con:
                rows = feed.feed_rows(con, as_of.date())
                lift = feed.lift_readout(con)
            _say(f"feed build: {rows:,} consented customers in {feed.FEED} for {as_of.date()} ({result.summary()})")
            if lift:
                _say("feed build: the lift readout (exports.feed_lift: conversion and net sales per customer after "
                     "each feed date, treatment against holdout):")
                for line in lift:
                    _say(line)
            _say(f"feed build: report {feed.write_feed_report(warehouse, as_of)}")
            _say(f"next: python -m tailor feed gate --as-of {args.as_of}")
            return 0
        if args.step == "gate":
            report = feed.gate_feed(as_of, warehouse=warehouse, raise_on_failure=False)
            for line in report.lines() if report.success else [report.summary(), str(GateFailed(report))]:
                _say(line)
            return 0 if report.success else 1
        if args.step == "export":
            exported = steps.export(as_of, warehouse=warehouse)
            files = ", ".join(f"{item['name']} {item['bytes']:,} B" for item in exported.manifest["files"])
            _say(f"feed export: {exported.rows:,} rows to {exported.path} ({files}; manifest.json last)")
            return 0
        sinks = tuple(args.sink or settings.feed_sinks())
        if not sinks:
            _say("feed deliver: TAILOR_FEED_SINKS=none: the outbox export is the only delivery")
            return 0
        code = 0
        for sink in sinks:
            plan, _ = steps.plan(as_of, sink, warehouse=warehouse, full=True if args.full else None)
            _say(f"feed deliver {sink}: {plan.mode} sync of {plan.as_of_date}: {len(plan.pending):,} of "
                 f"{plan.rows_in_feed:,} rows to send, {plan.rows_unchanged:,} unchanged since the last delivery"
                 + (f" (resuming after {', '.join(plan.resumes)})" if plan.resumes else "")
                 + (f" (superseded: the sink took the feed of {plan.superseded_by})" if plan.superseded_by else ""))
            if args.dry_run:
                continue
            try:
                result = steps.deliver(as_of, sink, warehouse=warehouse, full=True if args.full else None, say=_say)
            except failures as exc:
                _say(f"feed deliver {sink}: error: {exc}")
                code = 1
                continue
            _say(f"feed deliver: {result.summary()}")
            for customer_id, kind, reason in result.issues:
                _say(f"  {kind} {customer_id}: {reason}")
        if args.dry_run:
            _say("feed deliver: dry run: nothing sent")
        else:
            _say(f"delivery log ({deliveries.DELIVERIES}):")
            _say(deliveries.delivery_log(warehouse, as_of.date()).to_string(index=False))
        return code
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    except failures as exc:
        _say(f"feed {args.step}: error: {exc}")
        return 1
