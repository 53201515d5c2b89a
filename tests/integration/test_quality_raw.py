"""The raw gate on a real warehouse: a simulator world extracted over HTTP and loaded passes; each class of bad data
that then arrives through the real extract and load path fails with a message naming it (or is quarantined, within
the allowed share); results and Data Docs are kept; the CLI entry point reports and exits as documented."""

from __future__ import annotations

import copy
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from simulator.faults import parse_faults
from simulator.server import start_in_thread
from simulator.state import TOKENS, SimState
from simulator.world import WorldConfig
from tailor import quality, sources
from tailor.cli import gate_command
from tailor.lake import Lake
from tailor.pipeline import BEGINNING, extract_window, load_batches
from tailor.quality.suite import load_suite
from tailor.sources import Credentials, Progress, RecordVersion, Window, build_extractor
from tailor.warehouse import Warehouse
from tests.conftest import world_for

from .lakekit import ListExtractor

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Loaded:
    """A warehouse file holding a whole simulator world, loaded as of `now`, and real payloads to build bad ones."""

    path: Path
    now: datetime
    payloads: dict[str, dict]  # entity -> one real payload of a live record


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> Loaded:
    root = tmp_path_factory.mktemp("quality_world")
    world = world_for(WorldConfig(customers=300, seed=7))
    now = datetime.fromtimestamp(world.now, UTC)
    handle = start_in_thread(SimState(world=world, faults=parse_faults("none"), rate_limits=False))
    try:
        lake = Lake.from_url(str(root / "lake"))
        refs = []
        for source, entities in sources.entities().items():
            extractor = build_extractor(source, Credentials(f"test {source}", handle.url, TOKENS[source]))
            refs += [extract_window(extractor, entity, Window(BEGINNING, now), lake) for entity in entities]
        warehouse = Warehouse(root / "warehouse.duckdb", lock_timeout=60)
        load_batches(warehouse, lake, refs)
    finally:
        handle.stop()
    payloads = {}
    with warehouse.reader() as con:
        for source, entities in sources.entities().items():
            for entity in entities:
                (payload,) = con.execute(f"select payload from raw.{source}_{entity} where not is_deleted "
                                         "order by record_id limit 1").fetchone()
                payloads[entity] = json.loads(payload)
    return Loaded(root / "warehouse.duckdb", now, payloads)


@dataclass
class Shop:
    """One test's own copy of the loaded warehouse, with helpers to land more batches the way the DAG does."""

    warehouse: Warehouse
    lake: Lake
    now: datetime
    payloads: dict[str, dict]

    def versions(self, entity: str, count: int, start: datetime, step: timedelta = timedelta(minutes=1),
                 change: Callable[[int, dict], None] | None = None) -> list[RecordVersion]:
        """`count` new record versions shaped like real ones, updated from `start` every `step`; `change(i, payload)`
        may break some."""
        out = []
        for i in range(count):
            payload = copy.deepcopy(self.payloads[entity])
            record_id = _new_id(entity, payload, i)
            at = start + i * step
            _set_identity(entity, payload, record_id, at)
            if change is not None:
                change(i, payload)
            out.append(RecordVersion(record_id=record_id, updated_at=at, payload=payload))
        return out

    def land(self, source: str, entity: str, records: list[RecordVersion], start: datetime,
             end: datetime, extractor_type: type = ListExtractor) -> None:
        extractor = extractor_type(source, {entity: records})
        ref = extract_window(extractor, entity, Window(start, end), self.lake)
        load_batches(self.warehouse, self.lake, [ref])

    def gate(self, as_of: datetime) -> quality.GateReport:
        return quality.run_gate("raw", as_of, self.warehouse)

    def failure(self, as_of: datetime) -> str:
        with pytest.raises(quality.GateFailed) as failed:
            self.gate(as_of)
        return str(failed.value)

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        with self.warehouse.reader() as con:
            return con.execute(sql, params or []).fetchall()


class CarelessExtractor(ListExtractor):
    """An API that ignores the requested window and returns every record it has."""

    def extract(self, entity: str, window: Window, progress: Progress | None = None) -> Iterator[RecordVersion]:
        yield from self.records[entity]


def _new_id(entity: str, payload: dict, i: int) -> str:
    if entity in ("customers", "orders", "products"):
        kind = payload["id"].split("/")[-2]
        return f"gid://shopify/{kind}/99{i:011d}"
    return f"99{i:09d}"


def _set_identity(entity: str, payload: dict, record_id: str, at: datetime) -> None:
    stamp = at.isoformat().replace("+00:00", "Z")
    payload["id"] = record_id
    if entity in ("customers", "orders", "products", "contacts"):
        payload["updatedAt"] = stamp
    elif entity == "profiles":
        payload["attributes"]["updated"] = stamp
    else:
        payload["attributes"]["datetime"] = stamp


@pytest.fixture
def shop(loaded: Loaded, tmp_path: Path, monkeypatch) -> Shop:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(loaded.path, data / "warehouse.duckdb")
    monkeypatch.setenv("TAILOR_DATA_DIR", str(data))
    monkeypatch.delenv("TAILOR_QUARANTINE_MAX_SHARE", raising=False)
    return Shop(Warehouse(data / "warehouse.duckdb", lock_timeout=60), Lake.from_url(str(tmp_path / "lake")),
                loaded.now, loaded.payloads)


# --- a good world passes, and the run is kept ------------------------------------------------------------------


def test_a_loaded_simulator_world_passes_and_the_run_is_kept(shop: Shop, caplog):
    caplog.set_level(logging.INFO, logger="tailor.quality.gate")
    report = shop.gate(shop.now)

    expected = sum(len(asset.checks) for asset in load_suite("raw").assets)
    assert report.success and report.failures == [] and report.quarantines == []
    assert len(report.outcomes) == expected
    assert {o.status for o in report.outcomes} <= {"passed", "warned"}
    scoped = {o.table: o.element_count for o in report.outcomes if o.expectation == "expect_column_values_to_not_be_null"
              and o.column == "record_id"}
    loaded = dict(shop.rows("select 'raw.' || source || '_' || entity, records from raw._batches"))
    assert scoped == loaded  # every row of the latest batches was checked

    results = shop.rows("select status, count(*) from quality.gate_results where run_id = ? group by status",
                        [f"raw@{shop.now:%Y-%m-%dT%H:%M:%SZ}"])
    assert sum(count for _, count in results) == expected
    assert shop.rows("select count(*) from raw._quarantine") == [(0,)]
    docs = Path(report.docs)
    assert docs == shop.warehouse.path.parent / "quality" / "docs" / "index.html" and docs.exists()
    assert "raw.shopify_orders" in docs.read_text()
    assert f"Data Docs: {docs}" in caplog.text

    shop.gate(shop.now)  # the same gate and as-of again replaces its results
    assert shop.rows("select count(*) from quality.gate_results") == [(expected,)]


# --- each class of bad data fails with a message naming it ------------------------------------------------------


def test_null_keys_fail(shop: Shop):
    with shop.warehouse.writer() as con:  # a table from before the NOT NULL constraints, say
        con.execute("alter table raw.shopify_orders alter column record_id drop not null")
        con.execute("insert into raw.shopify_orders select null, updated_at, payload, is_deleted, batch_id, "
                    "extracted_at from raw.shopify_orders order by updated_at limit 2")
    message = shop.failure(shop.now)
    assert "expect_column_values_to_not_be_null on raw.shopify_orders column record_id" in message
    assert "2 unexpected" in message


def test_payload_without_its_id_or_required_fields_fails(shop: Shop):
    def damage(i: int, payload: dict) -> None:
        if i == 0:
            payload["id"] = None
        if i == 1:
            del payload["totalPriceSet"]

    start = shop.now
    shop.land("shopify", "orders", shop.versions("orders", 5, start, change=damage), start, start + HOUR)
    message = shop.failure(start + HOUR)
    assert "expect_column_values_to_be_null on raw.shopify_orders column missing_fields" in message
    assert "2 unexpected of 5 rows" in message
    assert "'id'" in message and "'totalPriceSet.shopMoney.amount'" in message
    assert "over the 1.00% limit" in message


def test_duplicate_ids_fail(shop: Shop):
    with shop.warehouse.writer() as con:  # the loader never does this; a manual insert or a bug could
        con.execute("insert into raw.hubspot_contacts select * from raw.hubspot_contacts order by record_id limit 2")
    message = shop.failure(shop.now)
    assert "raw.* column copies" in message and "2 unexpected" in message
    assert "'hubspot_contacts' @ " in message


def test_malformed_emails_fail(shop: Shop):
    broken = {3: "jane.doe@", 7: "no-at-sign.example.com"}

    def damage(i: int, payload: dict) -> None:
        if i in broken:
            payload["defaultEmailAddress"]["emailAddress"] = broken[i]

    start = shop.now
    shop.land("shopify", "customers", shop.versions("customers", 10, start, change=damage), start, start + HOUR)
    message = shop.failure(start + HOUR)
    assert "expect_column_values_to_match_regex on raw.shopify_customers column email" in message
    assert "2 unexpected of 10 rows" in message
    assert "'jane.doe@'" in message and "'no-at-sign.example.com'" in message


def test_negative_prices_fail(shop: Shop):
    def damage(i: int, payload: dict) -> None:
        if i == 2:
            payload["variants"][0]["price"] = "-12.50"

    start = shop.now
    shop.land("shopify", "products", shop.versions("products", 4, start, change=damage), start, start + HOUR)
    message = shop.failure(start + HOUR)
    assert "expect_column_values_to_be_between on raw.shopify_products column lowest_price" in message
    assert "1 unexpected of 4 rows" in message and ": -12.5" in message


def test_future_timestamps_fail(shop: Shop):
    start = shop.now
    records = shop.versions("orders", 4, start)
    future = start + 4 * HOUR  # the gate runs as of start + 1 hour; the skew allowed is 15 minutes
    records.append(shop.versions("orders", 1, future)[0].__class__(f"{records[0].record_id}-late", future,
                                                                      records[0].payload))
    shop.land("shopify", "orders", records, start, start + HOUR, extractor_type=CarelessExtractor)
    message = shop.failure(start + HOUR)
    assert "expect_column_values_to_be_between on raw.shopify_orders column updated_at" in message
    assert "1 unexpected of 5 rows" in message and "2026-11-01T04:00:00Z" in message


# --- volume: judged against what recent history makes likely (expectations/raw.yml, "Volume") -----------------


def _history(shop: Shop, entity: str, per_hour: int, days: int = 7, burst: int = 0) -> datetime:
    """`days` of orders (or another Shopify entity) at `per_hour` an hour, evenly spread and landed as one batch
    starting at the loaded world's now (so the baseline is this history alone); `burst` more at one second on the
    first day (a campaign send). Returns the history's end."""
    start, end = shop.now, shop.now + days * 24 * HOUR
    records = shop.versions(entity, days * 24 * per_hour, start, step=HOUR / per_hour)
    records += [RecordVersion(f"{r.record_id}-burst", start + 5 * HOUR, r.payload)
                for r in shop.versions(entity, burst, start + 5 * HOUR, step=timedelta(0))]
    shop.land("shopify", entity, records, start, end)
    _keep_fresh(shop, end)
    return end


def _keep_fresh(shop: Shop, end: datetime) -> None:
    """HubSpot and Klaviyo loaded up to `end` too (an empty hour each), so that only volume is under test."""
    for source, entity in (("hubspot", "contacts"), ("klaviyo", "profiles")):
        shop.land(source, entity, [], end - HOUR, end)


def _window(shop: Shop, entity: str, start: datetime, hours: float, count: int, tag: str) -> datetime:
    """Land the window [start, start + hours) holding `count` records; returns its end."""
    end = start + hours * HOUR
    records = shop.versions(entity, count, start, step=(end - start) / max(count, 1))
    shop.land("shopify", entity, [RecordVersion(f"{r.record_id}-{tag}", r.updated_at, r.payload) for r in records],
              start, end)
    return end


def test_an_empty_window_where_records_were_expected_fails(shop: Shop):
    end = _window(shop, "orders", _history(shop, "orders", per_hour=20), 1, 0, "empty")
    message = shop.failure(end)
    assert "raw._batches column silence" in message
    assert ("'shopify/orders': 'no records in the last 1.00 h (1 empty window(s)) where 20.0 were expected: "
            "P = 2.1e-09'") in message
    assert "volume_drop" not in message


def test_a_quiet_hour_of_a_slow_stream_passes_and_silent_hours_add_up(shop: Shop):
    """At 2 records an hour an empty hour is ordinary (P = exp(-2) = 0.14); the empty hours that follow are judged
    together, and the 5th fails: P = exp(-10) < 0.0001 (the header's bound: k > ln(1 / alpha) / 2 = 4.6)."""
    end = _history(shop, "orders", per_hour=2)
    for hour in range(1, 5):
        end = _window(shop, "orders", end, 1, 0, f"quiet{hour}")
        assert shop.gate(end).success, f"silent hour {hour} failed"
    end = _window(shop, "orders", end, 1, 0, "quiet5")
    message = shop.failure(end)
    assert "'shopify/orders': 'no records in the last 5.00 h (5 empty window(s)) where 10.0 were expected" in message


def test_a_volume_drop_fails(shop: Shop):
    end = _window(shop, "orders", _history(shop, "orders", per_hour=20), 1, 2, "few")
    message = shop.failure(end)
    assert "raw._batches column volume_drop" in message
    assert "'shopify/orders': '2 records in the latest 1.00 h window where 20.0 were expected: P = 4.6e-07'" in message
    assert "silence" not in message


def test_an_ordinary_dip_passes(shop: Shop):
    end = _window(shop, "orders", _history(shop, "orders", per_hour=20), 1, 12, "some")  # P(X <= 12) = 0.04
    assert shop.gate(end).success


def test_a_window_is_judged_by_its_length(shop: Shop):
    """After downtime a window spans hours: 6 hours at 2/h expect 12 records."""
    end = _history(shop, "orders", per_hour=2)
    assert shop.gate(_window(shop, "orders", end, 6, 7, "long")).success  # P(X <= 7 | 12) = 0.09
    message = shop.failure(_window(shop, "orders", end, 6, 0, "long"))  # the same window landed again, empty
    assert "'shopify/orders': 'no records in the last 6.00 h (1 empty window(s)) where 12.0 were expected" in message


def test_a_campaign_burst_neither_fails_quiet_hours_nor_blinds_the_check(shop: Shop):
    """2 orders an hour plus 600 in one second at 05:00 a week ago. That hour is capped to the baseline's 95th
    percentile of hourly counts, so the same hour of the day today expects 2.5 records, not ~38, and the dispersion
    stays 1 (uncapped, the burst would make it ~370 and hide a silent stream for weeks)."""
    end = _history(shop, "orders", per_hour=2, burst=600)
    assert end.hour == 0
    end = _window(shop, "orders", end, 4.75, 10, "before")
    end = _window(shop, "orders", end, 1.25, 0, "burst-hour")  # 04:45-06:00: the burst's hour of the day, empty
    report = shop.gate(end)
    assert report.success, [o.describe() for o in report.failures]
    message = shop.failure(_window(shop, "orders", end, 4, 0, "after"))  # still nothing by 10:00
    assert "'shopify/orders': 'no records in the last 5.25 h (2 empty window(s)) where 10.5 were expected" in message


def test_clustered_records_are_judged_by_their_clusters(shop: Shop):
    """10 orders at once every 5 hours (2/h on average, dispersion ~8): 9 hours without one is nothing unusual,
    though independent records at 2/h would make it improbable (exp(-18))."""
    start = shop.now
    records = [RecordVersion(f"{r.record_id}-c{i}", r.updated_at, r.payload)
               for i in range(7 * 24 // 5)
               for r in shop.versions("orders", 10, start + i * 5 * HOUR + 10 * timedelta(minutes=1),
                                      step=timedelta(seconds=1))]
    end = start + 7 * 24 * HOUR
    shop.land("shopify", "orders", records, start, end)
    _keep_fresh(shop, end)
    assert shop.gate(_window(shop, "orders", end, 9, 0, "gap")).success


# --- quarantine ----------------------------------------------------------------------------------------------------


def test_bad_rows_under_the_threshold_are_quarantined_and_over_it_fail(shop: Shop, monkeypatch):
    def damage(i: int, payload: dict) -> None:
        if i == 17:
            payload["email"] = "nobody@@example"

    start = shop.now
    as_of = start + HOUR
    shop.land("shopify", "orders", shop.versions("orders", 150, start, step=timedelta(seconds=20), change=damage),
              start, as_of)

    report = shop.gate(as_of)  # 1 bad row in 150 (0.67%): within the default 1%
    assert report.success
    (quarantined,) = report.quarantines
    assert (quarantined.table, quarantined.column, quarantined.quarantined_rows) == ("raw.shopify_orders", "email", 1)
    rows = shop.rows("select table_name, record_id, reason, value, run_id from raw._quarantine")
    assert rows == [("raw.shopify_orders", "gid://shopify/Order/9900000000017",
                     "expect_column_values_to_match_regex on email: a malformed email address (surrounding spaces "
                     "and letter case are fine; staging normalizes them)", "nobody@@example",
                     f"raw@{as_of:%Y-%m-%dT%H:%M:%SZ}")]
    # nothing is lost: the quarantined version stays in raw.*, staging is what leaves it out
    assert shop.rows("select count(*) from raw.shopify_orders where record_id like 'gid://shopify/Order/99%'") == [(150,)]
    assert shop.rows("select status from quality.gate_results where column_name = 'email' "
                     "and table_name = 'raw.shopify_orders'") == [("quarantined",)]

    monkeypatch.setenv("TAILOR_QUARANTINE_MAX_SHARE", "0.005")
    message = shop.failure(as_of)  # the same run again, with a stricter limit
    assert "expect_column_values_to_match_regex on raw.shopify_orders column email" in message
    assert "1 quarantined (0.67% of the rows, over the 0.50% limit)" in message
    assert "'nobody@@example'" in message
    assert shop.rows("select count(*) from raw._quarantine") == [(1,)]  # replaced, not added twice


# --- the CLI entry point ---------------------------------------------------------------------------------------------


def test_gate_command_prints_results_and_exits_by_verdict(shop: Shop, capsys):
    assert gate_command("raw", shop.now.isoformat()) == 0
    out = capsys.readouterr().out
    assert "gate raw passed as of 2026-11-01T00:00:00Z" in out and "Data Docs: " in out

    with shop.warehouse.writer() as con:
        con.execute("insert into raw.klaviyo_events select * from raw.klaviyo_events order by record_id limit 1")
    assert gate_command("raw", "2026-11-01T00:00:00Z") == 1
    out = capsys.readouterr().out
    assert "gate raw failed as of 2026-11-01T00:00:00Z: 1 failed expectation(s)" in out
    assert "'klaviyo_events' @ " in out

    assert gate_command("raw", "yesterday") == 2
    assert "is not an ISO 8601 date" in capsys.readouterr().err
    assert gate_command("nosuchgate", None) == 2
    assert "no suite for gate 'nosuchgate'" in capsys.readouterr().err
