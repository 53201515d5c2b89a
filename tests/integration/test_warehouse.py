"""Loading landed batches into raw.* in a real DuckDB file: idempotency, exact payloads, schema drift in
payloads, atomic failures, watermarks, and a second process holding the database's lock."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tailor.lake import DATA_SUFFIX, MANIFEST_SUFFIX, BatchRef, CorruptBatch, Lake
from tailor.pipeline import load_batches
from tailor.raw import ensure_raw_tables, insert_batch, raw_tables
from tailor.sources import RecordVersion, Window
from tailor.warehouse import Warehouse, WarehouseLockTimeout

from .lakekit import T0, customer, raw_snapshot, versions

EXTRACTED = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def hour(n: int) -> Window:
    return Window(T0 + timedelta(hours=n), T0 + timedelta(hours=n + 1))


def rows(warehouse: Warehouse, sql: str, params: list | None = None) -> list[tuple]:
    with warehouse.reader() as con:
        return con.execute(sql, params or []).fetchall()


def test_raw_tables_have_the_contract_columns(warehouse: Warehouse) -> None:
    with warehouse.writer() as con:
        ensure_raw_tables(con)
    columns = rows(warehouse, "select table_name, column_name, data_type from information_schema.columns "
                              "where table_schema = 'raw' order by table_name, ordinal_position")
    tables = {table for table, _, _ in columns}
    assert tables == {f"{source}_{entity}" for source, entity in raw_tables()} | {"_batches", "_watermarks", "_quarantine"}
    assert [(c, t) for table, c, t in columns if table == "shopify_orders"] == [
        ("record_id", "VARCHAR"), ("updated_at", "TIMESTAMP WITH TIME ZONE"), ("payload", "JSON"),
        ("is_deleted", "BOOLEAN"), ("batch_id", "VARCHAR"), ("extracted_at", "TIMESTAMP WITH TIME ZONE")]
    assert [c for table, c, _ in columns if table == "_batches"] == [
        "batch_id", "source", "entity", "window_start", "window_end", "path", "records", "checksum",
        "extracted_at", "loaded_at", "rows_inserted"]
    assert [c for table, c, _ in columns if table == "_watermarks"] == ["source", "entity", "watermark", "updated_at"]


def test_loading_the_same_batch_twice_changes_nothing(lake: Lake, warehouse: Warehouse) -> None:
    records = versions(500, step=timedelta(seconds=7))
    ref = lake.write_batch("shopify", "customers", hour(0), records, EXTRACTED)
    first = load_batches(warehouse, lake)
    assert [load.rows_inserted for load in first.loaded] == [500]
    before = raw_snapshot(warehouse)

    assert load_batches(warehouse, lake).loaded == []  # nothing pending
    again = load_batches(warehouse, lake, [ref])  # asked explicitly: recognised as loaded
    assert [(load.already_loaded, load.rows_inserted) for load in again.loaded] == [(True, 0)]
    with lake.verified_file(ref) as data, warehouse.writer() as con:
        assert insert_batch(con, ref, data).already_loaded
    assert raw_snapshot(warehouse) == before

    # The same versions arriving in another batch (an overlapping window) insert nothing either.
    overlap = lake.write_batch("shopify", "customers", Window(T0 - timedelta(minutes=15), hour(0).end), records,
                               EXTRACTED + timedelta(hours=1))
    assert [load.rows_inserted for load in load_batches(warehouse, lake).loaded] == [0]
    after = raw_snapshot(warehouse)
    assert after["shopify_customers"] == before["shopify_customers"]
    assert [(b[0], b[-1]) for b in after["_batches"]] == sorted([(ref.batch_id, 500), (overlap.batch_id, 0)])


def test_payload_is_stored_as_the_exact_json_text(lake: Lake, warehouse: Warehouse) -> None:
    payload = {"id": "gid://shopify/Customer/1", "big": 2**70, "float": 0.1, "huge": 1e300, "exp": 1e5,
               "negzero": -0.0, "unicode": "Grüße ✓ 😀 日本", "controls": "tab\tline\nnul\u0000", "quotes": 'a "b" \\ c',
               "nested": {"list": [1, None, True, {"k": []}], "empty": {}}, "key with spaces": None, "zz": 1, "aa": 2}
    record = RecordVersion("gid://shopify/Customer/1", T0 + timedelta(minutes=5), payload)
    lake.write_batch("shopify", "customers", hour(0), [record], EXTRACTED)
    load_batches(warehouse, lake)

    ((text, kind, unicode, big),) = rows(
        warehouse, "select payload::varchar, typeof(payload), payload->>'unicode', payload->>'big' "
                   "from raw.shopify_customers")
    assert text == json.dumps(payload, ensure_ascii=False, separators=(",", ":"))  # key order and numbers kept
    assert json.loads(text) == payload and kind == "JSON"
    assert unicode == "Grüße ✓ 😀 日本" and big == str(2**70)


def test_payloads_gaining_and_losing_fields_load(lake: Lake, warehouse: Warehouse) -> None:
    old_shape = [customer(1, T0 + timedelta(minutes=1), legacyField="x")]
    new_shape = [RecordVersion("gid://shopify/Customer/1", T0 + timedelta(hours=1, minutes=1),
                               {"id": "gid://shopify/Customer/1", "newField": {"nested": [1, 2]}})]
    lake.write_batch("shopify", "customers", hour(0), old_shape, EXTRACTED)
    lake.write_batch("shopify", "customers", hour(1), new_shape, EXTRACTED)
    assert load_batches(warehouse, lake).rows_inserted == 2
    assert rows(warehouse, "select payload->>'legacyField', payload->'newField'->'nested'->>1 "
                           "from raw.shopify_customers order by updated_at") == [("x", None), (None, "2")]


def test_a_version_seen_twice_in_one_batch_is_one_row_the_last_seen(lake: Lake, warehouse: Warehouse) -> None:
    at = T0 + timedelta(minutes=10)
    records = [*versions(5), RecordVersion("gid://shopify/Customer/42", at, {"seen": 1}),
               *versions(5, first=100), RecordVersion("gid://shopify/Customer/42", at, {"seen": 2})]
    ref = lake.write_batch("shopify", "customers", hour(0), records, EXTRACTED)
    (load,) = load_batches(warehouse, lake).loaded
    assert load.rows_inserted == 11 and ref.records == 12
    assert rows(warehouse, "select payload::varchar from raw.shopify_customers "
                           "where record_id = 'gid://shopify/Customer/42'") == [('{"seen":2}',)]


def test_watermarks_never_move_back_and_batches_are_recorded(lake: Lake, warehouse: Warehouse) -> None:
    later = lake.write_batch("hubspot", "contacts", hour(3), versions(4, start=hour(3).start), EXTRACTED)
    load_batches(warehouse, lake)
    earlier = lake.write_batch("hubspot", "contacts", hour(1), versions(3, start=hour(1).start, first=50),
                               EXTRACTED)
    load_batches(warehouse, lake)  # a backfill of an older window loads, but the watermark stays
    assert warehouse.watermark("hubspot", "contacts") == hour(3).end
    assert warehouse.watermark("hubspot", "contacts") == warehouse.watermarks()[("hubspot", "contacts")]

    recorded = rows(warehouse, "select batch_id, source, entity, window_start, window_end, path, records, checksum, "
                               "extracted_at, rows_inserted, loaded_at is not null from raw._batches "
                               "order by window_start")
    assert recorded == [
        (ref.batch_id, "hubspot", "contacts", ref.window.start, ref.window.end, ref.path, ref.records, ref.checksum,
         ref.extracted_at, ref.records, True) for ref in (earlier, later)]
    assert rows(warehouse, "select batch_id, count(*) from raw.hubspot_contacts group by 1 order by 2") == [
        (earlier.batch_id, 3), (later.batch_id, 4)]


def _rewrite_batch(ref: BatchRef, lines: list[str]) -> BatchRef:
    """Replace a landed file by `lines` with a manifest that matches it (checksum and all): a file that passes
    every landing check but cannot load."""
    import gzip

    from tailor.lake import _checksum

    data = Path(ref.path)
    with gzip.open(data, "wt", encoding="utf-8") as handle:
        handle.write("".join(f"{line}\n" for line in lines))
    checksum, size = _checksum(data)
    bad = BatchRef(ref.batch_id, ref.source, ref.entity, ref.window, ref.path, len(lines), checksum, size,
                   ref.extracted_at)
    Path(ref.path[: -len(DATA_SUFFIX)] + MANIFEST_SUFFIX).write_text(json.dumps(bad.to_dict()))
    return bad


def test_a_failing_load_leaves_no_rows_no_batch_and_no_watermark(lake: Lake, warehouse: Warehouse) -> None:
    good = lake.write_batch("shopify", "orders", hour(0), versions(3), EXTRACTED)
    load_batches(warehouse, lake, [good])
    before = raw_snapshot(warehouse)

    ref = lake.write_batch("shopify", "orders", hour(1), versions(3, start=hour(1).start, first=10), EXTRACTED)
    line = {"record_id": "gid://shopify/Order/1", "updated_at": hour(1).start.isoformat(), "is_deleted": False}
    bad = _rewrite_batch(ref, [json.dumps({**line, "payload": '{"id": 1}'}),
                               json.dumps({**line, "record_id": "gid://shopify/Order/2", "payload": '{"id": 2'})])
    with warehouse.writer() as con, lake.verified_file(bad) as data, pytest.raises(CorruptBatch) as caught:
        insert_batch(con, bad, data)
    assert bad.path in str(caught.value)
    assert raw_snapshot(warehouse) == before  # not one row of it; the watermark did not move
    assert warehouse.watermark("shopify", "orders") == hour(0).end


_HOLD = """
import sys, time
from tailor.warehouse import Warehouse
with Warehouse(sys.argv[1]).writer() as con:
    con.execute("create table if not exists main.holder (note varchar)")
    con.execute("insert into main.holder values ('the other process')")
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _hold(warehouse: Warehouse, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(warehouse.path), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_a_load_waits_for_another_process_holding_the_database(lake: Lake, warehouse: Warehouse,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    lake.write_batch("klaviyo", "events", hour(0), versions(50), EXTRACTED)
    holder = _hold(warehouse, 3)
    try:
        with caplog.at_level(logging.WARNING, logger="tailor.warehouse"):
            report = load_batches(warehouse, lake)
    finally:
        holder.wait(timeout=30)
    assert holder.returncode == 0 and report.rows_inserted == 50
    assert "waiting for the DuckDB lock" in caplog.text  # it did meet the lock, and waited instead of failing
    assert rows(warehouse, "select note from main.holder") == [("the other process",)]
    assert rows(warehouse, "select count(*) from raw.klaviyo_events") == [(50,)]


def test_threads_of_one_process_open_and_close_the_file_side_by_side(warehouse: Warehouse) -> None:
    # the Klaviyo sink notes each job from its submit thread while the calling thread records outcomes: one thread's
    # open can meet another's close, which DuckDB reports as a "Unique file handle conflict" until the close is done
    with warehouse.writer() as con:
        con.execute("create table counts (n integer)")
    errors: list[str] = []

    def open_and_close() -> None:
        for _ in range(300):
            try:
                with warehouse.writer() as con:
                    con.execute("insert into counts values (1)")
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=open_and_close) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with warehouse.reader() as con:
        assert con.execute("select count(*) from counts").fetchone()[0] == 1200


def test_a_lock_held_past_the_timeout_is_a_clear_error(lake: Lake, warehouse: Warehouse) -> None:
    impatient = Warehouse(warehouse.path, lock_timeout=0.5)
    holder = _hold(warehouse, 4)
    try:
        with pytest.raises(WarehouseLockTimeout, match=f"{warehouse.path} stayed locked by another process"), \
                impatient.writer():
            pass
        with pytest.raises(WarehouseLockTimeout), impatient.reader():
            pass
    finally:
        holder.kill()
        holder.wait()


def test_every_connection_holds_the_memory_budget(warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR_DUCKDB_MEMORY_LIMIT", "321MiB")
    with warehouse.writer() as con:
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] == "321.0 MiB"
    with warehouse.reader() as con:
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] == "321.0 MiB"


def test_a_bad_memory_budget_is_a_clear_error_before_any_file_is_made(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR_DUCKDB_MEMORY_LIMIT", "lots")
    fresh = Warehouse(tmp_path / "fresh.duckdb")
    with pytest.raises(ValueError, match="TAILOR_DUCKDB_MEMORY_LIMIT='lots' is not a memory size"), fresh.writer():
        pass
    assert not fresh.path.exists()
