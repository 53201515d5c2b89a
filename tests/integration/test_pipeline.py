"""Extract to the lake and load from it, as the hourly DAG and the CLI run them: the time rules, overlapping
windows, re-runs, failures that stop only their own stream, S3, the CLI, and SIGKILL at any point of a load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tailor import cli
from tailor.lake import CorruptBatch, Lake, LakeError
from tailor.pipeline import BEGINNING, LoadFailed, extract_window, load_batches, next_window, pending_batches
from tailor.sources import Progress, RecordVersion, Window
from tailor.warehouse import Warehouse

from .lakekit import T0, ListExtractor, customer, env_for, moto_s3, raw_snapshot, versions

LOOKBACK = timedelta(minutes=15)
EXTRACTED = datetime(2026, 11, 2, tzinfo=UTC)


def hourly_run(extractor: ListExtractor, entity: str, hour: int, lake: Lake, warehouse: Warehouse) -> int:
    """What one hourly DAG run does for one entity: window, extract, load. Returns the rows inserted."""
    start = T0 + timedelta(hours=hour)
    window = next_window(warehouse, extractor.source, entity, start, start + timedelta(hours=1), None, LOOKBACK)
    ref = extract_window(extractor, entity, window, lake)
    return load_batches(warehouse, lake, [ref]).rows_inserted


def history(count: int, hours: int, updates: int = 3) -> list[RecordVersion]:
    """`count` customers, each updated `updates` times spread over `hours` hours (so windows overlap them)."""
    span = timedelta(hours=hours)
    out = []
    for number in range(count):
        for update in range(updates):
            at = T0 + (span * ((number * updates + update) % (count * updates))) / (count * updates)
            out.append(customer(number, at, version=update))
    return out


def test_next_window_follows_the_time_rules(lake: Lake, warehouse: Warehouse) -> None:
    hour = (T0, T0 + timedelta(hours=1))
    now = T0 + timedelta(hours=5, minutes=7)
    # Before any load every run catches up from the beginning: scheduled (an interval), manual (none, or empty).
    assert next_window(warehouse, "shopify", "orders", *hour, None, LOOKBACK) == Window(BEGINNING, hour[1])
    assert next_window(warehouse, "shopify", "orders", None, None, now, LOOKBACK) == Window(BEGINNING, now)
    assert next_window(warehouse, "shopify", "orders", now, now, now, LOOKBACK) == Window(BEGINNING, now)

    extractor = ListExtractor("shopify", {"orders": []})
    hourly_run(extractor, "orders", 2, lake, warehouse)  # watermark: the end of hour 2's window
    mark = T0 + timedelta(hours=3)
    assert warehouse.watermark("shopify", "orders") == mark
    # The next hour: its interval and the lookback.
    next_hour = (mark, mark + timedelta(hours=1))
    assert next_window(warehouse, "shopify", "orders", *next_hour, None, LOOKBACK) == Window(mark - LOOKBACK, next_hour[1])
    # After downtime: from the watermark, whatever the interval.
    later = (mark + timedelta(hours=6), mark + timedelta(hours=7))
    assert next_window(warehouse, "shopify", "orders", *later, None, LOOKBACK) == Window(mark - LOOKBACK, later[1])
    # A backfill of a past hour re-reads that hour; the watermark stays where it is.
    assert next_window(warehouse, "shopify", "orders", *hour, None, LOOKBACK) == Window(T0 - LOOKBACK, hour[1])
    # A catch-up (the daily DAG's) starts at the watermark: a day read through by hourly runs costs its last hours;
    # a past day (the watermark beyond it) reads back the lookback only; before any load, everything.
    day = (T0, T0 + timedelta(days=1))
    assert next_window(warehouse, "shopify", "orders", *day, None, LOOKBACK, catch_up=True) == \
        Window(mark - LOOKBACK, day[1])
    assert next_window(warehouse, "shopify", "orders", *hour, None, LOOKBACK, catch_up=True) == \
        Window(hour[1] - LOOKBACK, hour[1])
    assert next_window(warehouse, "shopify", "customers", *day, None, LOOKBACK, catch_up=True) == \
        Window(BEGINNING, day[1])
    assert next_window(warehouse, "shopify", "orders", None, None, now, LOOKBACK) == Window(mark - LOOKBACK, now)
    assert next_window(warehouse, "shopify", "customers", None, None, now, LOOKBACK) == Window(BEGINNING, now)
    early = mark - timedelta(hours=1)  # a clock behind the watermark reaches back by the lookback only
    assert next_window(warehouse, "shopify", "orders", None, None, early, LOOKBACK) == Window(early - LOOKBACK, early)
    with pytest.raises(ValueError, match="no timezone"):
        next_window(warehouse, "shopify", "orders", datetime(2026, 11, 1), datetime(2026, 11, 2), None, LOOKBACK)
    with pytest.raises(ValueError, match="needs `now`"):
        next_window(warehouse, "shopify", "orders", None, None, None, LOOKBACK)
    with pytest.raises(ValueError, match="before its start"):
        next_window(warehouse, "shopify", "orders", hour[1], hour[0], None, LOOKBACK)


def test_overlapping_hourly_runs_keep_every_version_once(lake: Lake, warehouse: Warehouse) -> None:
    records = history(400, hours=6)
    extractor = ListExtractor("shopify", {"customers": records})
    inserted = sum(hourly_run(extractor, "customers", hour, lake, warehouse) for hour in range(6))

    expected = {(r.record_id, r.updated_at) for r in records}
    with warehouse.reader() as con:
        stored = con.execute("select record_id, updated_at from raw.shopify_customers").fetchall()
        total, batches = con.execute("select sum(rows_inserted), count(*) from raw._batches").fetchone()
    assert len(stored) == len(set(stored)) == len(expected) == inserted == total and set(stored) == expected
    assert batches == 6 and warehouse.watermark("shopify", "customers") == T0 + timedelta(hours=6)
    # every window reached back by the lookback: the records of each overlap were extracted twice
    assert sum(ref.records for ref in lake.batches()) > len(expected)

    # A manual run afterwards picks up from the watermark (minus the lookback) to now.
    late = customer(9999, T0 + timedelta(hours=6, minutes=30))
    extractor.records["customers"].append(late)
    now = T0 + timedelta(hours=7)
    window = next_window(warehouse, "shopify", "customers", None, None, now, LOOKBACK)
    assert window == Window(T0 + timedelta(hours=6) - LOOKBACK, now)
    assert load_batches(warehouse, lake, [extract_window(extractor, "customers", window, lake)]).rows_inserted == 1
    assert warehouse.watermark("shopify", "customers") == now


def test_rerunning_a_window_replaces_its_batch_and_loads_late_arrivals(lake: Lake, warehouse: Warehouse) -> None:
    extractor = ListExtractor("hubspot", {"contacts": versions(30)})
    assert hourly_run(extractor, "contacts", -1, lake, warehouse) == 0  # the first run: history up to hour 0
    lake_before = lake.batches()
    assert hourly_run(extractor, "contacts", 0, lake, warehouse) == 30
    extractor.records["contacts"].append(customer(500, T0 + timedelta(minutes=45)))  # visible only now
    assert hourly_run(extractor, "contacts", 0, lake, warehouse) == 1  # the same run again (a task retry)
    assert hourly_run(extractor, "contacts", 0, lake, warehouse) == 0  # and again: nothing new
    (ref,) = [ref for ref in lake.batches() if ref not in lake_before]
    with warehouse.reader() as con:
        assert con.execute("select count(*) from raw.hubspot_contacts").fetchone() == (31,)
        assert con.execute("select batch_id, records, rows_inserted from raw._batches where records > 0 "
                           "order by records").fetchall() == [(ref.batch_id, 30, 30), (ref.batch_id, 31, 1)]


def test_extraction_holds_no_duckdb_connection(lake: Lake, warehouse: Warehouse) -> None:
    probe = ("import sys; from tailor.warehouse import Warehouse\n"
             "with Warehouse(sys.argv[1], lock_timeout=1).writer() as con: con.execute('select 1')\n")
    extractor = ListExtractor("shopify", {"orders": versions(10)})
    hourly_run(extractor, "orders", 0, lake, warehouse)  # the warehouse exists, with a watermark

    class Probing(ListExtractor):
        def extract(self, entity, window, progress=None) -> Iterator[RecordVersion]:
            for number, record in enumerate(super().extract(entity, window, progress)):
                if number == 5:  # mid-extraction, another process can take the writer lock at once
                    subprocess.run([sys.executable, "-c", probe, str(warehouse.path)], check=True)
                yield record

    window = next_window(warehouse, "shopify", "orders", None, None, T0 + timedelta(hours=3), LOOKBACK)
    ref = extract_window(Probing("shopify", {"orders": versions(20, start=T0 + timedelta(hours=1))}), "orders",
                         window, lake, progress=Progress())
    assert ref.records == 20


def test_a_broken_batch_stops_its_own_stream_only(lake: Lake, warehouse: Warehouse) -> None:
    customers = ListExtractor("shopify", {"customers": history(50, hours=3)})
    contacts = ListExtractor("hubspot", {"contacts": versions(40, step=timedelta(minutes=4))})
    refs = [extract_window(customers, "customers", Window(T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1)), lake)
            for h in range(3)]
    contact_ref = extract_window(contacts, "contacts", Window(T0, T0 + timedelta(hours=3)), lake)
    broken = Path(refs[1].path)
    broken.write_bytes(broken.read_bytes()[:-10])

    with pytest.raises(LoadFailed) as caught:
        load_batches(warehouse, lake)
    message = str(caught.value)
    assert f"{refs[1].path} does not match its manifest" in message
    assert f"the earlier {refs[1].describe()} failed" in message
    assert [load.ref for load in caught.value.report.loaded] == [refs[0], contact_ref]
    assert warehouse.watermark("shopify", "customers") == refs[0].window.end  # not past the hole
    assert warehouse.watermark("hubspot", "contacts") == contact_ref.window.end

    extract_window(customers, "customers", refs[1].window, lake)  # the re-run repairs the window
    assert [load.ref.window for load in load_batches(warehouse, lake).loaded] == [refs[1].window, refs[2].window]
    assert warehouse.watermark("shopify", "customers") == refs[2].window.end
    assert pending_batches(warehouse, lake) == []


def test_a_batch_whose_landing_never_completed_is_a_clear_error(lake: Lake, warehouse: Warehouse) -> None:
    ref = extract_window(ListExtractor("klaviyo", {"events": versions(5)}), "events",
                         Window(T0, T0 + timedelta(hours=1)), lake)
    Path(ref.path.replace(".jsonl.gz", ".manifest.json")).unlink()  # killed between data file and manifest
    assert pending_batches(warehouse, lake) == []
    with pytest.raises(LoadFailed, match="no manifest.*re-run the extract") as caught:
        load_batches(warehouse, lake, [ref])
    assert isinstance(caught.value.report.failed[0][1], LakeError)
    assert not isinstance(caught.value.report.failed[0][1], CorruptBatch)


def test_extract_and_load_through_s3(tmp_path: Path) -> None:
    with moto_s3() as url:
        lake = Lake.from_url(url)
        warehouse = Warehouse(tmp_path / "warehouse.duckdb")
        extractor = ListExtractor("klaviyo", {"profiles": history(100, hours=2), "events": versions(250)})
        for hour in range(2):
            for entity in extractor.entities:
                hourly_run(extractor, entity, hour, lake, warehouse)
        with warehouse.reader() as con:
            counts = con.execute("select (select count(*) from raw.klaviyo_profiles), "
                                 "(select count(*) from raw.klaviyo_events)").fetchone()
            paths = [path for (path,) in con.execute("select path from raw._batches").fetchall()]
        assert counts == (300, 120)  # events: one a minute, two hours of them
        assert len(paths) == 4 and all(path.startswith(f"{url}/raw/klaviyo/") for path in paths)
        assert pending_batches(warehouse, lake) == []


# --- the CLI ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "message"), [
    (["extract", "--source", "shopfiy"], "invalid choice: 'shopfiy'"),
    (["extract", "--start", "2026-11-31", "--end", "2026-12-01"], "--start '2026-11-31' is not an ISO 8601 date"),
    (["extract", "--start", "2026-11-02T00:00Z", "--end", "2026-11-01"], "--end 2026-11-01 is not after --start"),
    (["extract", "--start", "2026-11-01"], "give both --start and --end, or neither"),
    (["extract", "--source", "klaviyo", "--entity", "orders"], "--entity 'orders': klaviyo has profiles, events"),
    (["extract", "--entity", "invoices"], "--entity 'invoices': no source has it"),
])
def test_cli_refuses_bad_input_with_one_message(argv: list[str], message: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("error:") == 1
    assert list(tmp_path.iterdir()) == []  # nothing landed, nothing opened


def test_cli_extracts_and_loads_from_the_simulator(simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    server = simulator(customers=120, seed=3, rate_limits=False)
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TAILOR_SIMULATOR_URL", server.url)
    for name in ("AIRFLOW_CONN_HUBSPOT_DEFAULT", "TAILOR_LAKE_URL", "TAILOR_DUCKDB_PATH"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["extract", "--source", "hubspot", "--start", "2024-01-01", "--end", "2026-11-01"]) == 0
    out = capsys.readouterr().out
    assert "extract hubspot/contacts: landed" in out and "next: python -m tailor load" in out
    (ref,) = Lake.from_url().batches()
    assert ref.records > 0

    assert cli.main(["load"]) == 0
    out = capsys.readouterr().out
    assert "raw.hubspot_contacts" in out and f"{ref.records:,} new rows" in out
    with Warehouse().reader() as con:
        assert con.execute("select count(*) from raw.hubspot_contacts").fetchone() == (ref.records,)
    assert cli.main(["load"]) == 0
    assert "nothing pending" in capsys.readouterr().out


def test_cli_load_reports_a_corrupt_batch_by_path_and_loads_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path))
    for name in ("TAILOR_LAKE_URL", "TAILOR_DUCKDB_PATH"):
        monkeypatch.delenv(name, raising=False)
    lake = Lake.from_url()
    good = extract_window(ListExtractor("shopify", {"products": versions(8)}), "products",
                          Window(T0, T0 + timedelta(hours=1)), lake)
    bad = extract_window(ListExtractor("klaviyo", {"events": versions(8)}), "events",
                         Window(T0, T0 + timedelta(hours=1)), lake)
    Path(bad.path).write_bytes(b"\x1f\x8b not what was landed")

    assert cli.main(["load"]) == 1
    out = capsys.readouterr().out
    assert f"load {good.describe()}: 8 records, 8 new rows" in out
    assert "raw.shopify_products" in out and "watermark 2026-11-01T01:00:00Z" in out
    assert f"load: error: 1 batch(es) not loaded:\n  {bad.describe()}: {bad.path} does not match its manifest" in out
    assert pending_batches(Warehouse(), lake) == [bad]


# --- SIGKILL during a load -------------------------------------------------------------------------------------

STREAMS = (("shopify", "customers"), ("shopify", "orders"), ("klaviyo", "events"))


def _land_many(lake: Lake) -> None:
    """18 batches of ~9k records over 6 overlapping hourly windows, 3 streams: a load takes several seconds."""
    for source, entity in STREAMS:
        records = history(15_000, hours=6, updates=3)
        extractor = ListExtractor(source, {entity: records}, page_size=5000)
        for hour in range(6):
            window = Window(T0 + timedelta(hours=hour), T0 + timedelta(hours=hour + 1)).widened(LOOKBACK)
            extract_window(extractor, entity, window, lake, extracted_at=EXTRACTED)


def _consistent(warehouse: Warehouse) -> None:
    """What any committed state must look like: every batch's rows all there or absent, watermarks at the end of
    the loaded windows."""
    with warehouse.reader() as con:
        tables = {t for (t,) in con.execute("select table_name from information_schema.tables "
                                           "where table_schema = 'raw'").fetchall()}
        if "_batches" not in tables:  # killed before its first commit: nothing loaded is a consistent state too
            assert not tables, tables
            return
        batches = con.execute("select batch_id, source, entity, window_end, rows_inserted from raw._batches").fetchall()
        marks = dict(((s, e), w) for s, e, w in con.execute("select source, entity, watermark from raw._watermarks"
                                                             ).fetchall())
        for source, entity in STREAMS:
            table = f"raw.{source}_{entity}"
            exists = con.execute("select count(*) from information_schema.tables where table_schema = 'raw' "
                                 "and table_name = ?", [f"{source}_{entity}"]).fetchone()[0]
            sql = f"select batch_id, count(*) from {table} group by 1"
            counts = dict(con.execute(sql).fetchall()) if exists else {}
            mine = [b for b in batches if (b[1], b[2]) == (source, entity)]
            assert counts == {b[0]: b[4] for b in mine if b[4]}
            assert marks.get((source, entity)) == max((b[3] for b in mine), default=None)


def _run_load(env: dict[str, str], kill_after_lines: int | None = None, delay: float = 0.0) -> int:
    """`python -m tailor load`; with kill_after_lines, SIGKILL it `delay` s after that many batch lines."""
    proc = subprocess.Popen([sys.executable, "-m", "tailor", "load"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        if kill_after_lines is not None:
            seen, ended = 0, False
            while seen < kill_after_lines and not ended:
                line = proc.stdout.readline()
                ended = not line  # the load finished first: nothing left to interrupt
                seen += line.startswith("load shopify/") or line.startswith("load klaviyo/")
            if not ended:
                time.sleep(delay)
                os.kill(proc.pid, signal.SIGKILL)
        proc.stdout.read()
        return proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_load_killed_at_any_point_then_rerun_equals_an_uninterrupted_load(tmp_path: Path) -> None:
    lake = Lake.from_url(str(tmp_path / "lake"))
    _land_many(lake)
    clean_dir, killed_dir = tmp_path / "clean", tmp_path / "killed"
    lake_env = {"TAILOR_LAKE_URL": lake.url}
    assert _run_load(env_for(clean_dir, **lake_env)) == 0
    clean = Warehouse(clean_dir / "warehouse.duckdb")

    killed = Warehouse(killed_dir / "warehouse.duckdb")
    env = env_for(killed_dir, **lake_env)
    # Kill points: during the first batch, right after a commit, mid-batch, late in a batch, and again. A busy
    # machine can let a run finish the remaining batches before its kill lands: that is a legal outcome too, but
    # most kills must really interrupt a load for the test to mean anything.
    outcomes = []
    for lines, delay in ((0, 0.6), (1, 0.0), (1, 0.08), (1, 0.2), (0, 0.35), (1, 0.05)):
        outcomes.append(_run_load(env, kill_after_lines=lines, delay=delay))
        assert outcomes[-1] in (-signal.SIGKILL, 0), outcomes
        if killed.exists():
            _consistent(killed)
    assert outcomes.count(-signal.SIGKILL) >= 4, outcomes
    assert _run_load(env) == 0
    _consistent(killed)
    assert raw_snapshot(killed) == raw_snapshot(clean)
    assert len(raw_snapshot(clean)["_batches"]) == 18
