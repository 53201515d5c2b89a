"""The one place Tailor opens DuckDB.

DuckDB lets one process write a database file at a time (and a read-only process excludes writers too). Every
connection here is short-lived: open, read or write, close. Opening retries a lock conflict with backoff until a
generous timeout (TAILOR_DUCKDB_LOCK_TIMEOUT), because another writer being busy is normal, not a failure; the same
wait (Warehouse.lock_wait) serves a process that opens the file itself (dbt, through tailor.transform), and
lock_conflict_line recognises a lock conflict in its error.

The raw layer's tables and the loading of batches into them live in tailor.raw.

Also the DuckDB side of two things that keep people off the production file: copying raw.* into the raw snapshot
(Warehouse.copy_raw_into; tailor.snapshot publishes it) and opening a file for dbt without a traceback when another
process holds it (connect_for_dbt, used by the dbt-duckdb plugin tailor.dbt_guard).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from tailor import settings

log = logging.getLogger(__name__)


class WarehouseLockTimeout(RuntimeError):
    """Another process held the DuckDB file for longer than the lock timeout."""


# How a lock conflict reads when it is not waited for (connect_for_dbt; tailor.transform looks for it in dbt's error).
IN_USE = "is in use by another process"


class WarehouseBusy(RuntimeError):
    """Another process holds the DuckDB file right now (from the calls that do not wait: connect_for_dbt)."""

    def __init__(self, message: str, path: Path, holder: str):
        super().__init__(message)
        self.path = path
        self.holder = holder


# DuckDB's words for a lock another process holds.
_DUCKDB_LOCK_WORDS = ("Could not set lock", "Conflicting lock")


# Another thread of this process closing the file's last connection while this one opens it: DuckDB is still
# releasing the file (seen with the Klaviyo sink's submit thread noting jobs while the caller records outcomes).
_DUCKDB_CLOSING_WORDS = "Unique file handle conflict"


def _is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and any(word in str(exc) for word in _DUCKDB_LOCK_WORDS)


def _is_transient_conflict(exc: BaseException) -> bool:
    """A conflict that goes away by waiting: another process's lock, or this process still closing the file."""
    return _is_lock_conflict(exc) or (isinstance(exc, duckdb.Error) and _DUCKDB_CLOSING_WORDS in str(exc))


def lock_conflict_line(message: str) -> str | None:
    """The line of `message` (an error from anything that opened a DuckDB file: dbt, tailor.dbt_guard) that says
    another process holds the file, if one does."""
    for line in message.strip().splitlines():
        if any(marker in line for marker in (*_DUCKDB_LOCK_WORDS, IN_USE)):
            return line.strip()
    return None


class LockWait:
    """Backoff with jitter while another process holds a DuckDB file, until the lock timeout.

    One per wait: next_delay() after each conflict says how long to sleep before trying again, or raises
    WarehouseLockTimeout once the timeout is spent. Jitter spreads the retries of processes waiting together.
    """

    def __init__(self, path: Path, timeout: float, *, first_delay: float, max_delay: float, min_sleep: float):
        self.path = path
        self.timeout = timeout
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.min_sleep = min_sleep
        self.started = time.monotonic()
        self.attempts = 0  # conflicts met so far

    def waited(self) -> float:
        return time.monotonic() - self.started

    def next_delay(self, conflict: object) -> float:
        """Seconds to sleep before the next try; WarehouseLockTimeout (naming `conflict`) once the timeout is spent."""
        waited = self.waited()
        if waited >= self.timeout:
            raise WarehouseLockTimeout(f"{self.path} stayed locked by another process for {waited:.0f} s "
                                       f"(TAILOR_DUCKDB_LOCK_TIMEOUT={self.timeout:.0f}): {conflict}") from None
        self.attempts += 1
        delay = min(self.max_delay, self.first_delay * 2 ** min(self.attempts, 6)) * (0.5 + random.random() / 2)
        return min(delay, max(self.min_sleep, self.timeout - waited))


def has_table(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    """Whether schema.table exists on this connection (ml.* and export.* appear only once something wrote them)."""
    schema, name = qualified.split(".")
    return con.execute("select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                       [schema, name]).fetchone()[0] > 0


class Warehouse:
    """The DuckDB file (default TAILOR_DUCKDB_PATH / <data dir>/warehouse.duckdb)."""

    def __init__(self, path: str | Path | None = None, lock_timeout: float | None = None):
        self.path = Path(path).resolve() if path else settings.duckdb_path()
        self.lock_timeout = settings.duckdb_lock_timeout() if lock_timeout is None else lock_timeout

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    def exists(self) -> bool:
        return self.path.exists()

    def lock_wait(self, *, first_delay: float, max_delay: float, min_sleep: float) -> LockWait:
        """A wait for this file's lock, up to this warehouse's lock timeout (for a process that opens it itself)."""
        return LockWait(self.path, self.lock_timeout, first_delay=first_delay, max_delay=max_delay,
                        min_sleep=min_sleep)

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        settings.duckdb_memory_limit()  # a bad TAILOR_DUCKDB_MEMORY_LIMIT fails before any file is touched
        wait = self.lock_wait(first_delay=0.05, max_delay=2.0, min_sleep=0.01)
        next_note = 0.0
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.Error as exc:
                if not _is_transient_conflict(exc):
                    raise
                delay = wait.next_delay(exc)
                if (waited := wait.waited()) >= next_note:
                    log.warning("waiting for the DuckDB lock on %s (%.0f s so far): %s", self.path, waited, exc)
                    next_note = waited + 30
                time.sleep(delay)
                continue
            try:
                con.execute("set TimeZone = 'UTC'")
                con.execute("set enable_progress_bar = false")  # it would draw into task logs and CLI output
                apply_memory_budget(con)
            except BaseException:
                con.close()
                raise
            if wait.attempts:
                log.info("got the DuckDB lock on %s after %.1f s", self.path, wait.waited())
            return con

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection, closed on exit. Waits (with backoff) while another process holds the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = self._connect(read_only=False)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection, closed on exit. Waits while a writer holds the file."""
        if not self.path.exists():
            raise FileNotFoundError(f"no warehouse at {self.path}: nothing has been loaded yet")
        con = self._connect(read_only=True)
        try:
            yield con
        finally:
            con.close()

    def copy_raw_into(self, target: str | Path, *, incremental: bool = True) -> RawCopy:
        """Make the DuckDB file `target` hold every table of raw.* as it is now (schema raw, same names and columns).

        The warehouse is held read-only (a shared lock: the loads wait, other readers do not) only while rows are
        copied, and no writer can commit meanwhile, so every table is copied as of one moment. With incremental and
        `target` holding an earlier copy of this warehouse (the previous snapshot, copied), only what is new is
        written: raw.* is append-only, so a record table's new rows are those past the copy's row count (rowid order
        is insertion order). That is checked, not assumed: the copy's raw._batches must all be in the warehouse's,
        its last row must be the warehouse's row at that position, and the counts must agree afterwards; anything
        else (a reloaded raw layer, another warehouse's copy, changed columns) copies the whole raw layer into an
        emptied `target` instead. The control tables (raw._batches, _watermarks, _quarantine; small, and the gate
        replaces quarantine rows) are always copied whole. `target` is written here only: give a temp file.
        """
        target = Path(target).resolve()
        with self.reader() as con:
            held = time.monotonic()
            con.execute(f"attach '{_sql_text(str(target))}' as {_COPY_ALIAS} (read_write)")
            try:
                # Every table's rows as of one moment, read in insertion order (rowid): that is what makes a later
                # append-only copy of this one line up with the warehouse row for row.
                con.execute("set preserve_insertion_order = true")
                result = _copy_raw(con, incremental)
                if result is None:  # the earlier copy cannot be brought up to date: start from an empty file
                    con.execute(f"detach {_COPY_ALIAS}")
                    _remove_database_file(target)
                    con.execute(f"attach '{_sql_text(str(target))}' as {_COPY_ALIAS} (read_write)")
                    result = _copy_raw(con, incremental=False)
            finally:
                with suppress(duckdb.Error):
                    con.execute(f"detach {_COPY_ALIAS}")  # checkpoints the copy: no WAL file is left next to it
            return RawCopy(tables=result[0], appended=result[1], rewritten=result[2], rows_written=result[3],
                           lock_seconds=time.monotonic() - held)

    def sqlalchemy_engine(self, read_only: bool = False):
        """A SQLAlchemy engine (duckdb-engine's dialect) whose one connection is opened here, lock retry included.

        For tools that only speak SQLAlchemy (Great Expectations). The engine holds a single connection
        (StaticPool), opened on first use; dispose() the engine to close it as soon as the work is done. In one
        process it shares the database with writer()/reader() connections of the same mode.
        """
        import sqlalchemy
        from duckdb_engine import ConnectionWrapper

        if read_only and not self.path.exists():
            raise FileNotFoundError(f"no warehouse at {self.path}: nothing has been loaded yet")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        return sqlalchemy.create_engine(f"duckdb:///{self.path}", poolclass=sqlalchemy.pool.StaticPool,
                                        creator=lambda: ConnectionWrapper(self._connect(read_only=read_only)))

    # small reads --------------------------------------------------------------------------------------------

    def watermark(self, source: str, entity: str) -> datetime | None:
        """The end of the last committed window of (source, entity); None before the first load."""
        return self.watermarks().get((source, entity))

    def watermarks(self) -> dict[tuple[str, str], datetime]:
        rows = self._control_rows("select source, entity, watermark from raw._watermarks")
        return {(source, entity): mark.astimezone(UTC) for source, entity, mark in rows}

    def loaded_batches(self) -> set[tuple[str, str]]:
        """(batch_id, checksum) of every batch already loaded."""
        return {(bid, checksum) for bid, checksum in self._control_rows("select batch_id, checksum from raw._batches")}

    def _control_rows(self, sql: str) -> list[tuple]:
        if not self.exists():
            return []
        with self.reader() as con:
            try:
                return con.execute(sql).fetchall()
            except duckdb.CatalogException:  # nothing loaded yet
                return []


# --- the raw snapshot ---------------------------------------------------------------------------------------

_COPY_ALIAS = "_tailor_raw_copy"
_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class RawCopy:
    """What Warehouse.copy_raw_into did."""

    tables: dict[str, int]  # raw table -> rows it holds in the copy
    appended: list[str]  # record tables brought up to date by appending their new rows only
    rewritten: list[str]  # tables copied whole (control tables always; record tables on a first or full copy)
    rows_written: int  # rows written into the copy this time
    lock_seconds: float  # how long the warehouse was held (read-only: loads waited meanwhile, readers did not)


def _sql_text(value: str) -> str:
    return value.replace("'", "''")


def _remove_database_file(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)


def _raw_tables(con: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, list[tuple[str, str]]]:
    """Table -> its (column, type) list, for every table in schema raw of `catalog`."""
    tables: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in con.execute(
            "select table_name, column_name, data_type from information_schema.columns "
            "where table_catalog = ? and table_schema = 'raw' and table_name in (select table_name "
            "from information_schema.tables where table_catalog = ? and table_schema = 'raw' "
            "and table_type = 'BASE TABLE') order by table_name, ordinal_position", [catalog, catalog]).fetchall():
        if not _TABLE_NAME.match(table):
            raise ValueError(f"raw.{table} is not a plain lowercase table name: it cannot be copied safely")
        tables.setdefault(table, []).append((column, kind))
    return tables


def _copy_raw(con: duckdb.DuckDBPyConnection, incremental: bool
              ) -> tuple[dict[str, int], list[str], list[str], int] | None:
    """Copy raw.* of the connection's database into the attached copy (schema raw). None when incremental and the
    copy's content is not an earlier state of this warehouse's raw.* (nothing was written then)."""
    (home,) = con.execute("select current_database()").fetchone()
    source = _raw_tables(con, home)
    copy = _raw_tables(con, _COPY_ALIAS)
    here, there = f'"{home}".raw', f"{_COPY_ALIAS}.raw"

    def count(schema: str, table: str) -> int:
        return con.execute(f'select count(*) from {schema}."{table}"').fetchone()[0]  # noqa: S608 (checked names)

    plan: dict[str, int] = {}  # record table -> the copy's row count, its new rows start there
    if incremental and copy:
        if "_batches" not in copy or "_batches" not in source:
            return None
        # every batch the copy holds must be one of this warehouse's: else it is another raw layer's copy
        foreign = (f"select count(*) from {there}._batches as c anti join {here}._batches as w "  # noqa: S608
                   "on c.batch_id = w.batch_id and c.checksum = w.checksum")
        if con.execute(foreign).fetchone()[0]:
            return None
        for table, columns in source.items():
            if table.startswith("_"):
                continue
            if table not in copy:
                plan[table] = 0
                continue
            old = count(there, table)
            if copy[table] != columns or old > count(here, table):
                return None
            if old and (con.execute(f'select * from {here}."{table}" where rowid = ?', [old - 1]).fetchall()  # noqa: S608
                        != con.execute(f'select * from {there}."{table}" where rowid = ?', [old - 1]).fetchall()):  # noqa: S608
                return None
            plan[table] = old
    con.execute(f"create schema if not exists {there}")
    appended, rewritten, written = [], [], 0
    for table in copy.keys() - source.keys():
        con.execute(f'drop table {there}."{table}"')
    for table in source:
        if table in plan:
            start = plan[table]
            if table not in copy:
                con.execute(f'create table {there}."{table}" as select * from {here}."{table}" limit 0')  # noqa: S608
            new = con.execute(f'insert into {there}."{table}" select * from {here}."{table}" where rowid >= ?',  # noqa: S608
                              [start]).fetchone()[0]
            if count(there, table) != count(here, table):  # rows missing in between: the copy is no prefix
                return None  # nothing is lost: the caller starts over from an empty file
            appended.append(table)
        else:
            new = con.execute(f'create or replace table {there}."{table}" as select * from {here}."{table}"'  # noqa: S608
                              ).fetchone()[0]
            rewritten.append(table)
        written += new
    tables = {table: count(there, table) for table in source}
    return tables, appended, rewritten, written


# --- dbt's connection ------------------------------------------------------------------------------------------

_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


def lock_holder(exc: BaseException) -> str:
    """Who holds a DuckDB file, from a lock conflict's message: 'PID 123: python -m tailor load' (its command line,
    when this machine can read it), else what DuckDB said."""
    match = _HOLDER.search(str(exc))
    if match is None:
        return "another process"
    pid = int(match["pid"])
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        command = ""
    command = " ".join(command.split()) or match["program"]
    if len(command) > 160:
        command = command[:157] + "..."
    return f"PID {pid}: {command}"


def apply_memory_budget(con: duckdb.DuckDBPyConnection) -> None:
    """Hold the connection's database to Tailor's memory budget (TAILOR_DUCKDB_MEMORY_LIMIT); past it DuckDB spills
    beside the database file. Set with SET rather than as connect() config: a database already open in this process
    with other config (dbt's connection joining it) would refuse a connection with different config."""
    con.execute(f"set memory_limit = '{settings.duckdb_memory_limit()}'")


def connect_for_dbt(path: str, config: dict | None = None) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file dbt is about to open, read-write with dbt's own connect config, without waiting.

    Returned open, it keeps the database loaded in this process, so the dbt-duckdb connection opened right after
    with the same path and config joins it instead of taking the file lock a second time (no other process can take
    it in between). Close it once dbt's connection is open. Raises WarehouseBusy, one line naming the file and the
    process that holds it, when another process has the file.
    """
    if path != ":memory:":
        Path(path).resolve().parent.mkdir(parents=True, exist_ok=True)
    try:
        return duckdb.connect(path, read_only=False, config=dict(config or {}))
    except duckdb.IOException as exc:
        if not _is_lock_conflict(exc):
            raise
        where = Path(path).resolve()
        holder = lock_holder(exc)
        raise WarehouseBusy(f"{where} {IN_USE} ({holder})", where, holder) from None


