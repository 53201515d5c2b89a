"""Extract to the lake, load from the lake: the two steps of every run, without Airflow.

    window = next_window(warehouse, source, entity, interval_start, interval_end, now, lookback)
    ref = extract_window(extractor, entity, window, lake)       # network only: no DuckDB connection is held
    load_batches(warehouse, lake, [ref])                          # one DuckDB transaction per batch

Time rules (ARCHITECTURE.md, Time): an extract covers the half-open window [start, end) of the run's data
interval, widened backwards by a lookback overlap for late-arriving updates. Where the interval is empty (a manual
run) the window is [last watermark - lookback, now); with no watermark yet, everything the API has. Watermarks
move in the load's transaction, so only after it commits, and never backwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tailor.lake import BatchRef, CorruptBatch, Lake, LakeError
from tailor.sources import Extractor, Progress, RecordVersion, Window
from tailor.warehouse import BatchLoad, Warehouse, insert_batch

log = logging.getLogger(__name__)

# Where a manual run starts for a (source, entity) never loaded before: the whole history the API has.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


def next_window(warehouse: Warehouse, source: str, entity: str, interval_start: datetime | None,
                interval_end: datetime | None, now: datetime | None, lookback: timedelta) -> Window:
    """The window to extract for one run.

    A data interval [interval_start, interval_end) that is not empty gives that interval widened by `lookback`.
    An empty one (a manual run: both None, or equal) gives [watermark - lookback, now), reading the watermark of
    (source, entity) from the warehouse; before the first load, [1970-01-01, now).
    """
    if lookback < timedelta(0):
        raise ValueError(f"lookback {lookback} is negative")
    if interval_start is not None and interval_end is not None and interval_start != interval_end:
        return Window(interval_start, interval_end).widened(lookback)
    if now is None:
        raise ValueError("a run without a data interval needs `now`, the time it runs as of")
    mark = warehouse.watermark(source, entity)
    if mark is None:
        return Window(min(BEGINNING, now), now)
    return Window(min(mark - lookback, now), now)


def extract_window(extractor: Extractor, entity: str, window: Window, lake: Lake,
                   lookback: timedelta = timedelta(0), progress: Progress | None = None,
                   extracted_at: datetime | None = None) -> BatchRef:
    """Land every record version of `entity` in `window` (widened by `lookback`, if given) as one batch.

    Pass the window from next_window (already widened) with no lookback, or a bare interval with one. The
    extraction pages straight into the batch's temp file; the batch appears in the lake only once complete.
    Re-running the same window replaces the batch (same batch id). Holds no DuckDB connection.
    """
    if entity not in extractor.entities:
        raise ValueError(f"{extractor.source} has no entity {entity!r}: choose one of {', '.join(extractor.entities)}")
    target = window.widened(lookback) if lookback else window
    progress = progress if progress is not None else Progress()
    extracted_at = extracted_at or datetime.now(UTC)  # metadata (when we looked), not a business date
    records = _counted(extractor.extract(entity, target, progress), progress)
    ref = lake.write_batch(extractor.source, entity, target, records, extracted_at)
    if progress.report is not None:
        progress.report(progress)
    return ref


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
