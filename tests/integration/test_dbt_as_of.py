"""Builds as of a past time: nothing later is visible, the past state is the world's state then, churn labels are
the orders of the horizon, and incremental runs (forward, and back for a backfill) equal a full refresh.

One warehouse file goes through the life an hourly/daily Tailor has:
  1. raw.* holds only what was loaded by T1 (an earlier extract-and-load run, 120 days before the world's clock);
     build as of T1 (a fresh file)
  2. the rest of the history is loaded; an incremental build as of T2 (= world clock), the hourly one (selector)
     -> its incremental marts equal the fresh build as of T2 (built_now); then the daily build as of T2 -> every
     incremental mart does (customer_features, which the hourly build leaves out, too)
  3. a backfill: an incremental build as of T1 again (raw now holds versions after T1)
  4. a --full-refresh as of T1 -> its incremental models equal the backfill's, and its incremental marts the first
     build's (the base tables hold every raw version loaded, whatever as_of is: step 1's held fewer)
The as-of checks then read the file after step 4 (a full refresh as of T1 over all the history); it is also
dbt_fixtures.build_as_of(dbt_world, T1) for the other modules (test_dbt_point_in_time), which then need not build it.

And a reproduction (known_at): a run as of C - 31 days made when only T1's loads had committed, reproduced later on a
copy of the warehouse built as of T2 over all the history, gives the marts that run made then.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tailor.transform import WITHOUT_TESTS, build
from tailor.warehouse import Warehouse
from tests.integration import dbt_fixtures
from tests.integration.dbt_fixtures import Built, DbtWorld
from tests.integration.dbtkit import (
    as_of_models,
    assert_churn_labels_match_world,
    assert_consent_matches_world,
    assert_one_customer_per_person,
    assert_orders_match_world,
    assert_staging_holds_latest_versions,
    differences,
    incremental_models,
    incremental_snapshot,
    order_truth,
    person_orders_truth,
)

dbt_world = dbt_fixtures.dbt_world
built_now = dbt_fixtures.built_now

T1_DAYS = 120  # T1: the earlier extract-and-load run this many days before the world's clock (EARLIER_RUNS_DAYS)
KNOWN_AT_AS_OF_DAYS = 31  # a later run's as-of, reproduced with only T1's loads known

# Columns that look past as_of by design (the churn label's future, and what tells whether it is observable yet).
FUTURE_BY_DESIGN = {
    ("marts", "churn_labels", "label_observable_at"),
    ("marts", "churn_labels", "next_order_at"),
    ("intermediate", "int_orders_in_churn_horizon", "ordered_at"),
    ("intermediate", "int_order_loads_summarized", "data_complete_through_at"),
    ("staging", "stg_loads__watermarks", "watermark"),
}


@dataclass
class AsOfRuns:
    path: Path
    t1: datetime
    t2: datetime
    incremental: list[str]
    forward: list[str]  # step 2 vs the fresh build as of T2
    backfill: list[str]  # step 3 vs step 4
    first: list[str]  # step 1 (raw up to T1 only) vs step 4 (all the history)


@pytest.fixture(scope="module")
def as_of_runs(dbt_world: DbtWorld, built_now: Built, tmp_path_factory: pytest.TempPathFactory) -> AsOfRuns:
    root = tmp_path_factory.mktemp("as_of")
    state = root / "dbt"
    t2 = dbt_world.now
    t1 = dbt_world.earlier_run(T1_DAYS)  # raw.* holds every record's version of then
    path = dbt_world.copy(root / "warehouse.duckdb")
    warehouse = Warehouse(path, lock_timeout=60)
    with warehouse.writer() as con:  # 1. the warehouse as the loads up to T1 left it
        tables = raw_tables(con)
        for table in tables:
            con.execute(f"delete from raw.{table} where updated_at > ?", [t1])
        con.execute("update raw._watermarks set watermark = ? where watermark > ?", [t1, t1])
    # steps 1 and 3 make tables only: their tests are test_dbt_build's (13 s a build with them, 4 s without); step 4
    # runs every test, as of T1 over all the history
    build(t1, duckdb_path=path, state_dir=state, quiet=True, exclude=list(WITHOUT_TESTS))
    models = incremental_models(state)
    with warehouse.reader() as con:
        first = incremental_snapshot(con, models, t1)

    with warehouse.writer() as con:  # 2. the later loads arrive; an incremental run as of T2
        con.execute(f"attach '{dbt_world.raw_path}' as loaded (read_only)")
        for table in tables:
            con.execute(f"insert into raw.{table} select * from loaded.raw.{table} where updated_at > ?", [t1])
        con.execute("delete from raw._watermarks")
        con.execute("insert into raw._watermarks select * from loaded.raw._watermarks")
        con.execute("detach loaded")
    build(t2, duckdb_path=path, state_dir=state, quiet=True, selector="hourly")  # as the hourly path builds
    hourly_models = incremental_models(state, hourly=True)
    with warehouse.reader() as con:
        forward_hourly = incremental_snapshot(con, hourly_models, t2)
    # then the daily build's models, after the day's hourly ones
    build(t2, duckdb_path=path, state_dir=state, quiet=True, exclude=list(WITHOUT_TESTS))
    with warehouse.reader() as con:
        forward = incremental_snapshot(con, models, t2)
    with Warehouse(built_now.path).reader() as con:
        fresh = incremental_snapshot(con, models, t2)

    build(t1, duckdb_path=path, state_dir=state, quiet=True, exclude=list(WITHOUT_TESTS))  # 3. a backfill
    with warehouse.reader() as con:
        backfill = incremental_snapshot(con, models, t1)
    result = build(t1, duckdb_path=path, state_dir=state, full_refresh=True, quiet=True)  # 4.
    with warehouse.reader() as con:
        full = incremental_snapshot(con, models, t1)
    # raw.* is the world's again and the file is built no more: the same as a fresh build as of T1, for other modules
    dbt_fixtures.share_build(dbt_world, Built(path=path, state_dir=state, as_of=t1, result=result))
    # step 1 read less of raw.* than step 4: the base tables (every version loaded) differ by design, the rest must not
    forward_differences = differences({model: fresh[model] for model in hourly_models}, forward_hourly)
    return AsOfRuns(path=path, t1=t1, t2=t2, incremental=models,
                    forward=forward_differences + differences(fresh, forward),
                    backfill=differences(full, backfill), first=differences(as_of_models(full), as_of_models(first)))


def raw_tables(con) -> list[str]:
    return [name for (name,) in con.execute(
        "select table_name from information_schema.tables where table_schema = 'raw' and table_name not like '\\_%' "
        "escape '\\' order by 1").fetchall()]


def test_the_project_has_incremental_marts(as_of_runs: AsOfRuns):
    # the large facts are incremental (issue 4); the comparisons below are about them
    assert {"order_lines", "email_events"} <= set(as_of_runs.incremental)


def test_an_incremental_run_after_new_loads_equals_a_full_refresh(as_of_runs: AsOfRuns):
    assert not as_of_runs.forward, "\n".join(as_of_runs.forward)


def test_a_backfill_to_an_earlier_as_of_equals_a_full_refresh(as_of_runs: AsOfRuns):
    assert not as_of_runs.backfill, "\n".join(as_of_runs.backfill)


def test_versions_loaded_after_as_of_change_nothing(as_of_runs: AsOfRuns):
    # built as of T1 from raw holding only what existed by T1, or from raw holding two more years: the same marts
    assert not as_of_runs.first, "\n".join(as_of_runs.first)


def test_known_at_reproduces_a_past_run_as_it_was(dbt_world: DbtWorld, built_now: Built, tmp_path: Path):
    # A run as of T made when only T1's loads had committed (known_at), reproduced after three more runs' loads
    # (versions up to the clock) and after a build as of the clock: the same marts as that run made then.
    t1, t = dbt_world.earlier_run(T1_DAYS), dbt_world.earlier_run(KNOWN_AT_AS_OF_DAYS)
    with Warehouse(dbt_world.raw_path).reader() as con:
        (known_at,) = con.execute("select max(loaded_at) from raw._batches where window_end <= ?",
                                  [t1 + timedelta(seconds=1)]).fetchone()

    then = dbt_world.copy(tmp_path / "then" / "warehouse.duckdb")
    with Warehouse(then).writer() as con:  # the warehouse as it was at known_at: later loads never happened
        for table in raw_tables(con):
            con.execute(f"delete from raw.{table} as r using raw._batches as b where r.batch_id = b.batch_id "
                        "and r.extracted_at = b.extracted_at and b.loaded_at > ?", [known_at])
        con.execute("delete from raw._batches where loaded_at > ?", [known_at])
        con.execute("update raw._watermarks as w set watermark = (select max(b.window_end) from raw._batches as b "
                    "where b.source = w.source and b.entity = w.entity)")
    build(t, duckdb_path=then, state_dir=tmp_path / "then" / "dbt", quiet=True, select="+marts",
          exclude=list(WITHOUT_TESTS))

    now = tmp_path / "now" / "warehouse.duckdb"
    now.parent.mkdir()
    shutil.copyfile(built_now.path, now)  # as of the clock over all the history: incremental marts hold later rows
    build(t, known_at=known_at, duckdb_path=now, state_dir=tmp_path / "now" / "dbt", quiet=True, select="+marts",
          exclude=list(WITHOUT_TESTS))

    with Warehouse(then).reader() as con:
        expected = mart_tables(con, t)
    with Warehouse(now).reader() as con:
        reproduced = mart_tables(con, t)
    # the later loads would have changed the marts (orders placed between T1 and T, for one)
    everything = dbt_fixtures.build_as_of(dbt_world, t, select="+orders")
    with Warehouse(everything.path).reader() as con:
        (orders_by_t,) = con.execute("select count(*) from marts.orders").fetchone()
    assert 0 < len(expected["orders"]) < orders_by_t
    problems = differences(expected, reproduced)
    assert not problems, "\n".join(problems)


def test_email_events_takes_in_a_late_event_of_an_old_day_and_drops_one_quarantined_since(
        dbt_world: DbtWorld, built_now: Built, tmp_path: Path):
    # email_events anti-joins only the days with more as-of events than stored ones: an event of an old day, loaded
    # after that day was built, changes its day's count and is found by the next incremental run. The count compare
    # holds because every stored event is an as-of one: an event the raw gate quarantines after it was stored is
    # deleted by the next run (as a full build would leave it out).
    path, state = dbt_world.copy(tmp_path / "warehouse.duckdb"), tmp_path / "dbt"
    warehouse = Warehouse(path, lock_timeout=60)
    with warehouse.writer() as con:
        late = con.execute("select * from raw.klaviyo_events where updated_at < ? order by updated_at, record_id "
                           "limit 3", [dbt_world.now - timedelta(days=60)]).fetchall()
        con.execute("create table main.late_events as select * from raw.klaviyo_events where record_id in "
                    "(select unnest(?))", [[row[0] for row in late]])
        con.execute("delete from raw.klaviyo_events where record_id in (select record_id from main.late_events)")
    build(dbt_world.now, duckdb_path=path, state_dir=state, quiet=True, select="+email_events",
          exclude=list(WITHOUT_TESTS))
    with warehouse.writer() as con:
        con.execute("insert into raw.klaviyo_events select * from main.late_events")
        con.execute("drop table main.late_events")
        quarantined_id, quarantined_updated_at = con.execute(
            "select event_id, updated_at from marts.email_events where updated_at < ? order by event_id limit 1",
            [dbt_world.now - timedelta(days=20)]).fetchone()
        con.execute("insert into raw._quarantine (table_name, record_id, updated_at, reason, value, suite, run_id, "
                    "as_of, quarantined_at) values ('raw.klaviyo_events', ?, ?, 'a test', '', 'raw', 'test', ?, ?)",
                    [quarantined_id, quarantined_updated_at, dbt_world.now, dbt_world.now])
    build(dbt_world.now, duckdb_path=path, state_dir=state, quiet=True, selector="hourly")

    with warehouse.reader() as con:
        built = incremental_snapshot(con, ["email_events"], dbt_world.now)
        found = con.execute("select count(*) from marts.email_events where event_id in (select unnest(?))",
                            [[row[0] for row in late]]).fetchone()[0]
    with Warehouse(built_now.path).reader() as con:
        fresh = incremental_snapshot(con, ["email_events"], dbt_world.now)
    fresh["email_events"] = [row for row in fresh["email_events"] if row[0] != quarantined_id]
    assert len(late) == 3 and found == 3
    assert quarantined_id not in {row[0] for row in built["email_events"]}
    problems = differences(fresh, built)
    assert not problems, "\n".join(problems)


def mart_tables(con, as_of: datetime) -> dict[str, list[tuple]]:
    """Every table in schema marts (customer_features: as_of's date only)."""
    tables = [name for (name,) in con.execute("select table_name from information_schema.tables "
                                              "where table_schema = 'marts' order by 1").fetchall()]
    assert {"orders", "customers", "churn_labels", "order_lines", "email_events"} <= set(tables)
    return incremental_snapshot(con, tables, as_of)


def test_no_timestamp_anywhere_is_after_as_of(as_of_runs: AsOfRuns):
    later = []
    with Warehouse(as_of_runs.path).reader() as con:
        columns = con.execute(
            "select table_schema, table_name, column_name, data_type from information_schema.columns "
            "where table_schema in ('staging', 'intermediate', 'marts') "
            "and (data_type like 'TIMESTAMP%' or data_type = 'DATE') order by 1, 2, 3").fetchall()
        assert len(columns) > 20
        for schema, table, column, kind in columns:
            if (schema, table, column) in FUTURE_BY_DESIGN:
                continue
            limit = as_of_runs.t1.date() if kind == "DATE" else as_of_runs.t1
            (newest,) = con.execute(f'select max("{column}") from "{schema}"."{table}"').fetchone()
            if newest is not None and newest > limit:
                later.append(f"{schema}.{table}.{column}: {newest}")
    assert not later, f"values after as_of {as_of_runs.t1.isoformat()}: {later}"


def test_the_past_state_is_the_worlds_state_at_as_of(dbt_world: DbtWorld, as_of_runs: AsOfRuns):
    world, t1 = dbt_world.world, int(as_of_runs.t1.timestamp())
    # the world really changed after T1, so a leak would show: orders were refunded or cancelled, customers ordered
    then, now = order_truth(world, t1), order_truth(world, world.now)
    changed_orders = [order_id for order_id, state in then.items() if now[order_id] != state]
    spend_then, spend_now = person_orders_truth(world, t1), person_orders_truth(world, world.now)
    changed_people = [p for p in spend_now if spend_then.get(p) != spend_now[p]]
    assert len(changed_orders) >= 5 and len(changed_people) >= 50, (len(changed_orders), len(changed_people))
    with Warehouse(as_of_runs.path).reader() as con:
        assert_staging_holds_latest_versions(con, world, t1)
        assert_one_customer_per_person(con, world, t1)
        assert_orders_match_world(con, world, t1)
        assert_consent_matches_world(con, world, t1)


def test_churn_labels_are_the_orders_in_the_horizon(dbt_world: DbtWorld, as_of_runs: AsOfRuns):
    with Warehouse(as_of_runs.path).reader() as con:
        assert_churn_labels_match_world(con, dbt_world.world, as_of_runs.t1)
