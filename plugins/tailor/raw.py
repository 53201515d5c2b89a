"""The raw layer: its tables, and the one transaction that loads a landed batch into them.

    raw.<source>_<entity>  record_id, updated_at, payload (JSON text as the API returned it), is_deleted,
                           batch_id, extracted_at; one row per record version, unique on (record_id, updated_at)
    raw._batches           what each loaded batch held (batch_id, checksum) and how many rows it added
    raw._watermarks        per (source, entity): the end of the last committed window; never moves backwards
    raw._quarantine        versions a quality gate set aside (its DDL belongs to tailor.quality.quarantine)

Apart from tailor.warehouse, which only opens DuckDB, so that the file's locking and the layer's contract change
apart. The record tables follow the source registry (tailor.sources.SOURCES).
"""

from __future__ import annotations

import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import duckdb

from tailor import sources
from tailor.lake import BatchRef, CorruptBatch, check_name
from tailor.quality.quarantine import QUARANTINE_DDL


def raw_tables() -> tuple[tuple[str, str], ...]:
    """(source, entity) of every table the connectors fill, from the registry as it is now; others are created the
    first time a batch of theirs loads."""
    return tuple(sources.streams())


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


def raw_table(source: str, entity: str) -> str:
    """raw.<source>_<entity>, from names checked to be safe identifiers."""
    return f"raw.{check_name('source', source)}_{check_name('entity', entity)}"


def ensure_control_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw schema and its control tables (raw._batches, raw._watermarks, raw._quarantine) if missing."""
    con.execute(_CONTROL_DDL)
    con.execute(QUARANTINE_DDL)


def ensure_raw(con: duckdb.DuckDBPyConnection, source: str, entity: str) -> str:
    """Create the raw schema, its control tables and raw.<source>_<entity> if missing; return the table name."""
    table = raw_table(source, entity)
    ensure_control_tables(con)
    con.execute(_RAW_DDL.format(table=table))
    return table


def ensure_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    for source, entity in raw_tables():
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
