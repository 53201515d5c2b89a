"""Extract to the lake, load from the lake: the two steps of every run, without Airflow.

    window = next_window(warehouse, source, entity, interval_start, interval_end, now, lookback)
    ref = extract_window(extractor, entity, window, lake)       # network only: no DuckDB connection is held
    load_batches(warehouse, lake, [ref])                          # one DuckDB transaction per batch

Time rules: every run catches up. An extract covers the half-open window [start, end) where end is the run's data
interval end (now, for a run whose interval is empty) and start is the earlier of the interval start and the
entity's watermark, widened backwards by a lookback overlap for late-arriving updates. So a fresh install's first
run, whatever started it, lands the whole history the API has; a run after downtime fills the gap; a backfill of a
past interval re-reads that interval. Watermarks move in the load's transaction, so only after it commits, and
never backwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tailor.lake import BatchRef, CorruptBatch, Lake, LakeError
from tailor.raw import BatchLoad, insert_batch
from tailor.sources import Extractor, Progress, RecordVersion, Window
from tailor.warehouse import Warehouse

log = logging.getLogger(__name__)

# Where a manual run starts for a (source, entity) never loaded before: the whole history the API has.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


def next_window(warehouse: Warehouse, source: str, entity: str, interval_start: datetime | None,
                interval_end: datetime | None, now: datetime | None, lookback: timedelta, *,
                catch_up: bool = False) -> Window:
    """The window one run extracts for (source, entity): [min(interval start, watermark) - lookback, interval end).

    A run with an empty data interval (manual runs: both None, or equal) ends at `now`, the time it runs as of.
    Before the first load of (source, entity) there is no watermark: the window starts at 1970-01-01, everything
    the API has. A watermark later than the interval (a backfill of a past hour) leaves the interval as it is.
    A catch-up (the daily DAG's) starts at the watermark whatever the interval (never after its end): the versions
    before it are loaded already, so a day the hourly DAG ran through costs its last hour, not the whole day again.
    """
    if lookback < timedelta(0):
        raise ValueError(f"lookback {lookback} is negative")
    start, end = run_interval(interval_start, interval_end, now)
    mark = warehouse.watermark(source, entity)
    if mark is None:
        return Window(min(BEGINNING, end), end)
    begin = min(mark, end) if catch_up else min(start, mark)
    return Window(max(BEGINNING, begin - lookback), end)


def run_interval(interval_start: datetime | None, interval_end: datetime | None,
                 now: datetime | None) -> tuple[datetime, datetime]:
    """(start, end) of what a run covers: its data interval, or (now, now) for a run whose interval is empty (a manual
    run: both None, or equal), `now` being the time it runs as of. The one place that tells a manual run apart: the
    extract window and the gates' as-of (the end) both follow it."""
    for name, value in (("interval start", interval_start), ("interval end", interval_end), ("now", now)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} {value.isoformat()} has no timezone: give a UTC time")
    if interval_start is not None and interval_end is not None and interval_start != interval_end:
        if interval_end < interval_start:
            raise ValueError(f"data interval end {interval_end} is before its start {interval_start}")
        return interval_start, interval_end
    if now is None:
        raise ValueError("a run without a data interval needs `now`, the time it runs as of")
    return now, now


def extract_window(extractor: Extractor, entity: str, window: Window, lake: Lake,
                   lookback: timedelta = timedelta(0), progress: Progress | None = None,
                   extracted_at: datetime | None = None) -> BatchRef:
    """Land every record version of `entity` in `window` (widened by `lookback`, if given) as one batch.

    Pass the window from next_window (already widened) with no lookback, or a bare interval with one. The
    extraction pages straight into the batch's temp file; the batch appears in the lake only once complete.
    Re-running the same window replaces the batch (same batch id). Holds no DuckDB connection.

    An empty extraction is checked with the source's cheap probe (Extractor.newest): if the source's most recently
    updated record before the window's end lies inside the window, the records were lost on the way and
    tailor.sources.http.SourceSilent is raised, before the batch is landed (so nothing loads and the watermark
    stays). An empty window the source confirms is a quiet one and lands as an empty batch.
    """
    if entity not in extractor.entities:
        raise ValueError(f"{extractor.source} has no entity {entity!r}: choose one of {', '.join(extractor.entities)}")
    target = window.widened(lookback) if lookback else window
    progress = progress if progress is not None else Progress()
    extracted_at = extracted_at or datetime.now(UTC)  # metadata (when we looked), not a business date
    records = _counted(extractor.extract(entity, target, progress), progress)
    records = _confirmed_if_empty(records, extractor, entity, target)
    ref = lake.write_batch(extractor.source, entity, target, records, extracted_at)
    if progress.report is not None:
        progress.report(progress)
    return ref


def _confirmed_if_empty(records: Iterable[RecordVersion], extractor: Extractor, entity: str,
                        window: Window) -> Iterator[RecordVersion]:
    """Pass records through; after none at all, raise SourceSilent if the source's newest record before the window's
    end is inside the window. Raising from here makes write_batch land nothing."""
    empty = True
    for record in records:
        empty = False
        yield record
    probe = getattr(extractor, "newest", None)
    if not empty or probe is None:  # an extractor without the probe (a test double) is taken at its word
        return
    newest = probe(entity, window.end)
    if newest is not None and window.start <= newest < window.end:
        from tailor.sources.http import SourceSilent

        raise SourceSilent(extractor.source, entity, window, newest)
    log.info("%s/%s: nothing in [%s, %s); the source's newest record before its end is from %s", extractor.source,
             entity, window.start.isoformat(), window.end.isoformat(), newest.isoformat() if newest else "never")


def _counted(records: Iterable[RecordVersion], progress: Progress, every: float = 2.0) -> Iterator[RecordVersion]:
    """Pass records through, keeping progress.records up to date and reporting at most every `every` seconds."""
    count = 0
    last = time.monotonic()
    for record in records:
        count += 1
        yield record
        if count % 256 == 0:
            progress.records = max(progress.records, count)
            now = time.monotonic()
            if progress.report is not None and now - last >= every:
                progress.report(progress)
                last = now
    progress.records = max(progress.records, count)


@dataclass
class LoadReport:
    loaded: list[BatchLoad] = field(default_factory=list)  # committed now, or found already loaded
    failed: list[tuple[BatchRef, Exception]] = field(default_factory=list)

    @property
    def rows_inserted(self) -> int:
        return sum(load.rows_inserted for load in self.loaded)


class LoadFailed(RuntimeError):
    """Some batches could not be loaded (the others were); the message names each file and why."""

    def __init__(self, report: LoadReport):
        self.report = report
        lines = [f"{len(report.failed)} batch(es) not loaded:"]
        lines += [f"  {ref.describe()}: {error}" for ref, error in report.failed]
        super().__init__("\n".join(lines))


def _order(ref: BatchRef) -> tuple:
    return (ref.window.start, ref.window.end, ref.source, ref.entity, ref.batch_id)


def pending_batches(warehouse: Warehouse, lake: Lake, source: str | None = None,
                    entity: str | None = None) -> list[BatchRef]:
    """Complete batches in the lake whose content (batch id + checksum) is not loaded yet, oldest window first."""
    loaded = warehouse.loaded_batches()
    return [ref for ref in lake.batches(source, entity) if (ref.batch_id, ref.checksum) not in loaded]


def load_batches(warehouse: Warehouse, lake: Lake, refs: Iterable[BatchRef] | None = None,
                 on_batch: Callable[[BatchLoad], None] | None = None) -> LoadReport:
    """Load `refs` (default: every pending batch) into raw.*, oldest window first, one transaction per batch.

    A ref names a window; what loads is the batch the lake holds for it now (a re-run may have replaced it).
    Loading a batch again changes nothing. A batch that is missing or corrupt stops the later batches of its
    (source, entity), so that they keep their order; the others go on, and LoadFailed is raised at the end.
    The writer connection is opened per batch, only after the file has been fetched and verified.
    """
    explicit = refs is not None
    batches = sorted(refs, key=_order) if explicit else pending_batches(warehouse, lake)
    report = LoadReport()
    blocked: dict[tuple[str, str], BatchRef] = {}
    for ref in batches:
        stream = (ref.source, ref.entity)
        if stream in blocked:
            report.failed.append((ref, LakeError(f"not loaded: the earlier {blocked[stream].describe()} failed")))
            continue
        try:
            result = _load_one(warehouse, lake, ref, refresh=explicit)
        except LakeError as exc:
            log.error("%s not loaded: %s", ref.describe(), exc)
            report.failed.append((ref, exc))
            blocked[stream] = ref
            continue
        report.loaded.append(result)
        if on_batch is not None:
            on_batch(result)
    if report.failed:
        raise LoadFailed(report)
    return report


def _load_one(warehouse: Warehouse, lake: Lake, ref: BatchRef, refresh: bool) -> BatchLoad:
    current = lake.current(ref) if refresh else ref
    for attempt in (1, 2):
        if current is None:
            raise LakeError(f"{ref.describe()} is not in the lake {lake.url} (no manifest): its landing never "
                            "completed; re-run the extract for that window")
        try:
            with lake.verified_file(current) as data_file, warehouse.writer() as con:
                return insert_batch(con, current, data_file)
        except CorruptBatch:
            # A re-landing may have replaced the file since its manifest was read: then load the new batch.
            newer = lake.current(current)
            if attempt == 2 or newer is None or newer.checksum == current.checksum:
                raise
            current = newer
    raise AssertionError("unreachable")
