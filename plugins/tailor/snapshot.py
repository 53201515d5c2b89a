"""The raw snapshot: a read-only copy of raw.* that dbt's `dev` target reads, so nobody builds on the warehouse file.

    snapshot = publish_raw_snapshot()      # the hourly DAG after its raw gate passed; python -m tailor snapshot
    log.info(snapshot.summary())

DuckDB lets one process write a file at a time, so a `dbt build` by hand on the warehouse either fails on the loads'
lock or blocks them. The snapshot (TAILOR_RAW_SNAPSHOT_PATH, default <data dir>/snapshots/raw_snapshot.duckdb) holds
every table of schema raw (the record tables, raw._batches, raw._watermarks, raw._quarantine) as of the last passed
raw gate; `dbt build --target dev` ATTACHes it read-only and writes its own file (TAILOR_DEV_DUCKDB_PATH).

Publishing is an atomic file swap: the new snapshot is written to a hidden temp file in the same folder and renamed
over the old one (os.replace), so a reader never sees a partial file, and one that has the old snapshot open (a dev
build) keeps reading it: it holds the old inode. The previous snapshot is copied first (no lock on the warehouse)
and only the rows loaded since are added from the warehouse (tailor.warehouse.Warehouse.copy_raw_into), so the
warehouse is held, read-only, for seconds. A publisher killed mid-write leaves the old snapshot as it was; its
temp file is removed by the next publish (publishers take turns on a lock file, so any temp file found is litter).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tailor import settings
from tailor.lake import fsync_path
from tailor.warehouse import Warehouse, WarehouseLockTimeout

log = logging.getLogger(__name__)


# What a dev build says when there is no snapshot yet (tailor.dbt_guard, tailor.transform); {path} is the snapshot.
MISSING_SNAPSHOT = ("no raw snapshot at {path} yet: it is published after each passed raw gate of the hourly DAG "
                    "(tailor_extract_hourly); publish one now with `python -m tailor snapshot`")


class SnapshotError(RuntimeError):
    """The snapshot could not be published (no warehouse yet, or another publisher held on for too long)."""


@dataclass(frozen=True)
class Snapshot:
    """A published raw snapshot."""

    path: Path
    tables: dict[str, int]  # raw table -> rows
    incremental: bool  # True: the previous snapshot plus the rows loaded since; False: raw.* copied whole
    rows_written: int  # rows copied from the warehouse this time
    bytes: int  # the snapshot file's size
    seconds: float  # the whole publish
    lock_seconds: float  # of which the warehouse was held (read-only: loads waited, readers did not)
    appended: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rows = sum(count for table, count in self.tables.items() if not table.startswith("_"))
        how = "incremental" if self.incremental else "full copy"
        return (f"raw snapshot {self.path}: {len(self.tables)} tables, {rows:,} record versions, "
                f"{self.bytes / 1e6:,.1f} MB ({how}, {self.rows_written:,} rows written) in {self.seconds:.1f} s, "
                f"the warehouse held read-only for {self.lock_seconds:.1f} s")

    def as_dict(self) -> dict:
        """Plain values (for an Airflow XCom or a JSON report)."""
        return {"path": str(self.path), "tables": dict(self.tables), "incremental": self.incremental,
                "rows_written": self.rows_written, "bytes": self.bytes, "seconds": round(self.seconds, 3),
                "lock_seconds": round(self.lock_seconds, 3)}


def publish_raw_snapshot(warehouse: Warehouse | None = None, path: str | Path | None = None, *,
                         full: bool = False) -> Snapshot:
    """Publish raw.* of the warehouse (default: TAILOR_DUCKDB_PATH) as the raw snapshot (default:
    TAILOR_RAW_SNAPSHOT_PATH) in one atomic swap; return what was published.

    Call it after the raw gate passed, so dev builds only ever see gated data. full: copy raw.* whole instead of
    adding the rows loaded since the previous snapshot (a full copy holds the warehouse for as long as it takes to
    write every table). Raises SnapshotError when there is no warehouse yet, WarehouseLockTimeout when another
    process held the warehouse (or another publisher the snapshot) for longer than TAILOR_DUCKDB_LOCK_TIMEOUT.
    """
    warehouse = warehouse or Warehouse()
    final = Path(path).resolve() if path is not None else settings.raw_snapshot_path()
    if not warehouse.exists():
        raise SnapshotError(f"no warehouse at {warehouse.path}: nothing has been loaded yet (python -m tailor load)")
    if final == warehouse.path:
        raise SnapshotError(f"the raw snapshot cannot be the warehouse itself ({final})")
    final.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with _publisher_turn(final, warehouse.lock_timeout):
        _sweep(final)
        temp = final.parent / f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        try:
            incremental = not full and final.exists()
            if incremental:
                shutil.copyfile(final, temp)  # the readers' file is only read: no lock on anything
            copied = warehouse.copy_raw_into(temp, incremental=incremental)
            wal = temp.with_name(temp.name + ".wal")
            if wal.exists():  # everything must be in the file itself before it is published
                raise SnapshotError(f"{temp} still has a write-ahead log after the copy: not published")
            fsync_path(temp)
            os.replace(temp, final)
            fsync_path(final.parent)
        finally:
            for leftover in (temp, temp.with_name(temp.name + ".wal")):
                leftover.unlink(missing_ok=True)
    snapshot = Snapshot(path=final, tables=copied.tables, incremental=bool(copied.appended),
                        rows_written=copied.rows_written, bytes=final.stat().st_size,
                        seconds=time.monotonic() - started, lock_seconds=copied.lock_seconds,
                        appended=copied.appended, rewritten=copied.rewritten)
    log.info("%s", snapshot.summary())
    return snapshot


@contextmanager
def _publisher_turn(final: Path, timeout: float) -> Iterator[None]:
    """One publisher of `final` at a time (an flock on a lock file next to it; released if the process dies)."""
    lock_path = final.parent / f".{final.name}.lock"
    started = time.monotonic()
    with open(lock_path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited >= timeout:
                    raise WarehouseLockTimeout(f"another process kept publishing {final} for {waited:.0f} s "
                                               f"(TAILOR_DUCKDB_LOCK_TIMEOUT={timeout:.0f})") from None
                time.sleep(min(0.5, max(0.01, timeout - waited)))
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sweep(final: Path) -> None:
    """Remove temp files (and their WAL files) of publishers that died mid-write. Called holding the publisher
    lock: no other publisher is writing, so every temp file found is litter."""
    for stale in final.parent.glob(f".{final.name}.*.tmp*"):
        log.warning("removing %s, left by a snapshot publish that did not finish", stale)
        stale.unlink(missing_ok=True)
