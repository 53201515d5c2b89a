"""The one place Tailor opens DuckDB.

DuckDB lets one process write a database file at a time (and a read-only process excludes writers too). Every
connection here is short-lived: open, read or write, close. Opening retries a lock conflict with backoff until a
generous timeout (TAILOR_DUCKDB_LOCK_TIMEOUT), because another writer being busy is normal, not a failure.

Also here: the raw layer's tables and the one transaction that loads a landed batch into them.

    raw.<source>_<entity>  record_id, updated_at, payload (JSON text as the API returned it), is_deleted,
                           batch_id, extracted_at; one row per record version, unique on (record_id, updated_at)
    raw._batches           what each loaded batch held (batch_id, checksum) and how many rows it added
    raw._watermarks        per (source, entity): the end of the last committed window; never moves backwards
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from tailor import settings
from tailor.lake import BatchRef, CorruptBatch, check_name

log = logging.getLogger(__name__)

# The tables the connectors fill; others are created the first time a batch of theirs loads.
RAW_TABLES = (("shopify", "customers"), ("shopify", "orders"), ("shopify", "products"), ("hubspot", "contacts"),
              ("klaviyo", "profiles"), ("klaviyo", "events"))

# One record version (its line, payload included) may be this large.
MAX_RECORD_BYTES = 64 * 1024 * 1024

_CONTROL_DDL = """
create schema if not exists raw;
create table if not exists raw._batches (
    batch_id varchar not null,
    source varchar not null,
    entity varchar not null,
    window_start timestamptz not null,
    window_end timestamptz not null,
    path varchar not null,
    records bigint not null,
    checksum varchar not null,
    extracted_at timestamptz not null,
    loaded_at timestamptz not null,
    rows_inserted bigint not null,
    primary key (batch_id, checksum)
);
create table if not exists raw._watermarks (
    source varchar not null,
    entity varchar not null,
    watermark timestamptz not null,
    updated_at timestamptz not null,
    primary key (source, entity)
);
"""

# Record versions a quality gate set aside (tailor.quality): staging leaves them out. Created with the raw layer so that
# dbt can always read it.
QUARANTINE_DDL = """
create table if not exists raw._quarantine (
    table_name varchar not null,      -- raw.<source>_<entity>
    record_id varchar not null,
    updated_at timestamptz not null,
    reason varchar not null,          -- the expectation, its column and what it means
    value varchar,                    -- the failing value
    suite varchar not null,
    run_id varchar not null,
    as_of timestamptz not null,
    quarantined_at timestamptz not null
);
"""

# No primary key on purpose: uniqueness on (record_id, updated_at) is kept by the loader's anti-join, which
# measured 2-3x faster than INSERT ... ON CONFLICT DO NOTHING over an ART index at 1M rows (and ~8x on a re-load).
_RAW_DDL = """
create table if not exists {table} (
    record_id varchar not null,
    updated_at timestamptz not null,
    payload json not null,
    is_deleted boolean not null,
    batch_id varchar not null,
    extracted_at timestamptz not null
)
"""


class WarehouseLockTimeout(RuntimeError):
    """Another process held the DuckDB file for longer than the lock timeout."""


def _is_lock_conflict(exc: BaseException) -> bool:
    message = str(exc)
    return isinstance(exc, duckdb.IOException) and ("Could not set lock" in message or "Conflicting lock" in message)


def raw_table(source: str, entity: str) -> str:
    """raw.<source>_<entity>, from names checked to be safe identifiers."""
    return f"raw.{check_name('source', source)}_{check_name('entity', entity)}"


class Warehouse:
    """The DuckDB file (default TAILOR_DUCKDB_PATH / <data dir>/warehouse.duckdb)."""

    def __init__(self, path: str | Path | None = None, lock_timeout: float | None = None):
        self.path = Path(path).resolve() if path else settings.duckdb_path()
        self.lock_timeout = settings.duckdb_lock_timeout() if lock_timeout is None else lock_timeout

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    def exists(self) -> bool:
        return self.path.exists()

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        started = time.monotonic()
        attempt = 0
        next_note = 0.0
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as exc:
                if not _is_lock_conflict(exc):
                    raise
                waited = time.monotonic() - started
                if waited >= self.lock_timeout:
                    raise WarehouseLockTimeout(
                        f"{self.path} stayed locked by another process for {waited:.0f} s "
                        f"(TAILOR_DUCKDB_LOCK_TIMEOUT={self.lock_timeout:.0f}): {exc}") from None
                if waited >= next_note:
                    log.warning("waiting for the DuckDB lock on %s (%.0f s so far): %s", self.path, waited, exc)
                    next_note = waited + 30
                attempt += 1
                delay = min(2.0, 0.05 * 2 ** min(attempt, 6)) * (0.5 + random.random() / 2)
                time.sleep(min(delay, max(0.01, self.lock_timeout - waited)))
                continue
            try:
                con.execute("set TimeZone = 'UTC'")
                con.execute("set enable_progress_bar = false")  # it would draw into task logs and CLI output
            except BaseException:
                con.close()
                raise
            if attempt:
                log.info("got the DuckDB lock on %s after %.1f s", self.path, time.monotonic() - started)
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


def ensure_raw(con: duckdb.DuckDBPyConnection, source: str, entity: str) -> str:
    """Create the raw schema, its control tables and raw.<source>_<entity> if missing; return the table name."""
    table = raw_table(source, entity)
    con.execute(_CONTROL_DDL)
    con.execute(QUARANTINE_DDL)
    con.execute(_RAW_DDL.format(table=table))
    return table


def ensure_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    for source, entity in RAW_TABLES:
        ensure_raw(con, source, entity)


@dataclass(frozen=True)
class BatchLoad:
    """What one batch load did."""

    ref: BatchRef
    rows_inserted: int
    already_loaded: bool = False
    seconds: float = 0.0


def insert_batch(con: duckdb.DuckDBPyConnection, ref: BatchRef, data_file: Path) -> BatchLoad:
    """Load one verified batch file in one transaction: its new rows, its raw._batches row, the watermark.

    Idempotent: a batch already recorded with the same checksum changes nothing, and only rows whose
    (record_id, updated_at) is not in the table yet are inserted. The watermark only moves forward.
    """
    started = time.monotonic()
    table = ensure_raw(con, ref.source, ref.entity)
    con.begin()
    try:
        done = con.execute("select rows_inserted from raw._batches where batch_id = ? and checksum = ?",
                           [ref.batch_id, ref.checksum]).fetchone()
        if done is not None:
            con.rollback()
            return BatchLoad(ref, 0, already_loaded=True, seconds=time.monotonic() - started)
        try:
            con.execute(
                "create or replace temp table _tailor_staged as "
                "select record_id, updated_at, is_deleted, payload::json as payload "
                "from read_json(?, format = 'newline_delimited', compression = 'gzip', "
                "maximum_object_size = ?, columns = {record_id: 'VARCHAR', updated_at: 'TIMESTAMPTZ', "
                "is_deleted: 'BOOLEAN', payload: 'VARCHAR'})",
                [str(data_file), MAX_RECORD_BYTES])
        except duckdb.Error as exc:
            raise CorruptBatch(f"{ref.path} cannot be read as a batch: {exc}") from None
        count, lowest, highest, nulls = con.execute(
            "select count(*), min(updated_at), max(updated_at), count(*) filter (where record_id is null "
            "or updated_at is null or payload is null or is_deleted is null) from _tailor_staged").fetchone()
        keys = con.execute("select count(*) from (select distinct record_id, updated_at from _tailor_staged)"
                           ).fetchone()[0]
        if count != ref.records:
            raise CorruptBatch(f"{ref.path} holds {count} records, its manifest says {ref.records}")
        if nulls:
            raise CorruptBatch(f"{ref.path} has {nulls} records without an id, updated_at, payload or is_deleted")
        if keys != count:
            # The same version twice in one window (pages overlapping on a tie): keep its last occurrence.
            con.execute("create or replace temp table _tailor_unique as select * from _tailor_staged "
                        "qualify row_number() over (partition by record_id, updated_at order by rowid desc) = 1")
            con.execute("drop table _tailor_staged")
            con.execute("alter table _tailor_unique rename to _tailor_staged")
        inserted = 0
        if count:
            # Only versions not loaded yet. The updated_at range lets DuckDB skip row groups of other windows.
            inserted = con.execute(
                f"insert into {table} (record_id, updated_at, payload, is_deleted, batch_id, extracted_at) "  # noqa: S608 (table is a checked identifier)
                "select s.record_id, s.updated_at, s.payload, s.is_deleted, ?, ? from _tailor_staged as s "
                f"where not exists (select 1 from {table} as t where t.updated_at between ? and ? "
                "and t.record_id = s.record_id and t.updated_at = s.updated_at)",
                [ref.batch_id, ref.extracted_at, lowest, highest]).fetchone()[0]
        con.execute("drop table _tailor_staged")
        con.execute("insert into raw._batches values (?, ?, ?, ?, ?, ?, ?, ?, ?, now(), ?)",
                    [ref.batch_id, ref.source, ref.entity, ref.window.start, ref.window.end, ref.path, ref.records,
                     ref.checksum, ref.extracted_at, inserted])
        con.execute("insert into raw._watermarks values (?, ?, ?, now()) on conflict (source, entity) do update "
                    "set watermark = excluded.watermark, updated_at = excluded.updated_at "
                    "where excluded.watermark > raw._watermarks.watermark",
                    [ref.source, ref.entity, ref.window.end])
        con.commit()
    except BaseException:
        with suppress(duckdb.Error):  # the original error is the one worth seeing
            con.rollback()
        raise
    return BatchLoad(ref, inserted, seconds=time.monotonic() - started)
