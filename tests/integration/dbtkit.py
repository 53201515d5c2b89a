"""Helpers for the dbt tests: copy raw.* from a DuckDB warehouse into a fresh Postgres database and reach Postgres;
read a built warehouse (incremental marts' content, snapshots to compare); the simulator's ground truth in the
marts' terms, and the assertions the dbt tests share.

The Postgres connection settings are the dbt profile's (TAILOR_PG_HOST/PORT/USER/PASSWORD, default
postgres@127.0.0.1:5432 with trust auth), so a database made here is the one `dbt build --target postgres` reads
when TAILOR_PG_DBNAME names it.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import psycopg2
from psycopg2 import sql

from simulator.world import CONSENT_NAMES, DAY
from tailor.warehouse import Warehouse
from tests.postgres import checked_identifier, pg_settings, recreate_database

# DuckDB column type -> the Postgres type raw.* has there (payload JSON becomes jsonb).
_PG_TYPES = {
    "VARCHAR": "text",
    "JSON": "jsonb",
    "BOOLEAN": "boolean",
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "DOUBLE": "double precision",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "TIMESTAMP": "timestamp",
    "DATE": "date",
}
# The control tables' keys, as in tailor.warehouse.
_PRIMARY_KEYS = {"_batches": ("batch_id", "checksum"), "_watermarks": ("source", "entity")}
_NULL = r"\N"
# dbt_project.yml's vars
CHURN_HORIZON_DAYS = 90
RFM_WINDOW_DAYS = 365


def copy_raw_to_postgres(duckdb_path: Path, dbname: str) -> dict[str, int]:
    """(Re)create the Postgres database `dbname` with schema raw holding a copy of every raw.* table of the DuckDB
    file (read-only): same columns, payload as jsonb, the control tables with their keys. Returns rows per table.

    Each table travels as CSV through a temp file: DuckDB's COPY TO, then Postgres's COPY FROM STDIN.
    """
    recreate_database(dbname)
    copied: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="tailor-raw-") as scratch:
        files: dict[str, tuple[list[tuple[str, str]], Path]] = {}
        with Warehouse(duckdb_path, lock_timeout=60).reader() as duck:
            tables = [name for (name,) in duck.execute(
                "select table_name from information_schema.tables where table_schema = 'raw' "
                "and table_type = 'BASE TABLE' order by 1").fetchall()]
            for table in tables:
                columns = duck.execute(
                    "select column_name, data_type from information_schema.columns "
                    "where table_schema = 'raw' and table_name = ? order by ordinal_position", [table]).fetchall()
                target = Path(scratch) / f"{checked_identifier(table)}.csv"
                select = ", ".join(checked_identifier(name) for name, _ in columns)
                duck.execute(f"copy (select {select} from raw.{table}) to '{target}' "
                             f"(format csv, header false, nullstr '{_NULL}')")
                files[table] = ([(name, _pg_type(table, name, kind)) for name, kind in columns], target)
        pg = psycopg2.connect(**pg_settings(dbname))
        try:
            with pg, pg.cursor() as cur:
                cur.execute("create schema raw")
                for table, (columns, path) in files.items():
                    definition = [sql.SQL("{} {} not null").format(sql.Identifier(name), sql.SQL(kind))
                                  for name, kind in columns]
                    if table in _PRIMARY_KEYS:
                        definition.append(sql.SQL("primary key ({})").format(
                            sql.SQL(", ").join(map(sql.Identifier, _PRIMARY_KEYS[table]))))
                    cur.execute(sql.SQL("create table raw.{} ({})").format(
                        sql.Identifier(table), sql.SQL(", ").join(definition)))
                    with path.open() as stream:
                        cur.copy_expert(sql.SQL("copy raw.{} from stdin with (format csv, null {})").format(
                            sql.Identifier(table), sql.Literal(_NULL)).as_string(cur), stream)
                    copied[table] = cur.rowcount
            pg.autocommit = True
            with pg.cursor() as cur:
                cur.execute("analyze")
        finally:
            pg.close()
    return copied


def _pg_type(table: str, column: str, duckdb_type: str) -> str:
    try:
        return _PG_TYPES[duckdb_type]
    except KeyError:
        raise ValueError(f"raw.{table}.{column} has type {duckdb_type}, which has no Postgres mapping here") from None


# --- reading a built warehouse ----------------------------------------------------------------------------------


def manifest_models(state_dir: Path) -> dict[str, dict]:
    """Model name -> its manifest node, from the manifest.json of the last build that used `state_dir`."""
    manifest = json.loads((state_dir / "target" / "manifest.json").read_text())
    return {node["name"]: node for node in manifest["nodes"].values() if node["resource_type"] == "model"}


def incremental_models(state_dir: Path, hourly: bool = False) -> list[str]:
    """The incremental models a pipeline build makes (the feed's, tagged feed, are built after scoring only); with
    hourly, those of the hourly build only (not tagged daily)."""
    left_out = {"feed", "daily"} if hourly else {"feed"}
    return sorted(name for name, node in manifest_models(state_dir).items()
                  if node["config"]["materialized"] == "incremental" and not left_out & set(node.get("tags", [])))


def normalized(value: object) -> object:
    """A cell comparable across builds and adapters: floats to 9 significant digits (parallel aggregation order
    moves the last bits), Decimals as they are, timestamps in UTC."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value
    return value


def table_rows(con, schema: str, table: str, where: str = "") -> list[tuple]:
    """Every row of schema.table (optionally filtered), normalized and sorted: a table's content to compare."""
    columns = [name for (name,) in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
        "order by ordinal_position", [schema, table]).fetchall()]
    select = ", ".join(f'"{name}"' for name in columns)
    rows = con.execute(f'select {select} from "{schema}"."{table}" {where}').fetchall()
    return sorted((tuple(normalized(v) for v in row) for row in rows), key=repr)


def mart_tables(path: Path) -> dict[str, list[tuple]]:
    """Every table of schema marts in the DuckDB file at `path`, as table_rows gives it: two builds to compare."""
    with Warehouse(path, lock_timeout=60).reader() as con:
        tables = [name for (name,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' order by 1").fetchall()]
        return {table: table_rows(con, "marts", table) for table in tables}


def incremental_snapshot(con, models: list[str], as_of: datetime) -> dict[str, list[tuple]]:
    """What a full refresh as of `as_of` must reproduce, per incremental model (a mart, or a base table in schema
    base): its rows, or, for a table that keeps one snapshot per as-of date (it has an as_of_date column), the rows of
    as_of's date."""
    snapshot = {}
    for model in models:
        (schema,) = con.execute("select table_schema from information_schema.tables where table_name = ? "
                                "and table_schema in ('base', 'marts')", [model]).fetchone()
        columns = {name for (name,) in con.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
            [schema, model]).fetchall()}
        where = f"where as_of_date = date '{as_of.astimezone(UTC).date().isoformat()}'" if "as_of_date" in columns else ""
        snapshot[model] = table_rows(con, schema, model, where)
    return snapshot


def as_of_models(snapshot: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """The snapshot without the base layer (base_* tables: every raw version loaded, whatever as_of is), i.e. what
    depends on as_of only, not on how much of raw.* was loaded."""
    return {model: rows for model, rows in snapshot.items() if not model.startswith("base_")}


def differences(expected: dict[str, list[tuple]], actual: dict[str, list[tuple]], limit: int = 3) -> list[str]:
    """Per table, what differs between two snapshots (a few rows of each side), empty when equal."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table, []), actual.get(table, [])
        if want == got:
            continue
        want_set, got_set = set(want), set(got)
        missing = [row for row in want if row not in got_set]
        extra = [row for row in got if row not in want_set]
        problems.append(f"{table}: {len(want)} rows expected, {len(got)} built; {len(missing)} missing, e.g. "
                        f"{missing[:limit]}; {len(extra)} unexpected, e.g. {extra[:limit]}")
    return problems


# --- the simulator's ground truth, in the marts' terms -----------------------------------------------------------


def person_of_record(world) -> dict[tuple[str, str], int]:
    """(crosswalk source, source_record_id) -> the world's person, for every record a crosswalk may hold."""
    index: dict[tuple[str, str], int] = {}
    for c in range(world.customers.n):
        index[("shopify_customer", world.record_id("customers", c))] = int(world.customers.person[c])
    for k in range(world.contacts.n):
        index[("hubspot_contact", world.record_id("contacts", k))] = int(world.contacts.person[k])
    for q in range(world.profiles.n):
        index[("klaviyo_profile", world.profile_id(q))] = int(world.profiles.person[q])
    for p in range(world.persons.n):
        index[("shopify_guest_email", world.person_email(p))] = p
    return index


def persons_known_at(world, t: int) -> set[int]:
    """Persons with a record existing at t in any source (an account, a contact, a profile or an order)."""
    known = set(world.customers.person[world.visible("customers", t)].tolist())
    known |= set(world.contacts.person[world.visible("contacts", t)].tolist())
    known |= set(world.profiles.person[world.visible("profiles", t)].tolist())
    known |= set(world.orders.person[world.orders.created_at <= t].tolist())
    return {int(p) for p in known}


@dataclass(frozen=True)
class OrderTruth:
    """An order as the world has it at t, in marts.orders' terms (money in the shop's currency, to the cent): Shopify's
    net sales are gross sales (the lines' subtotal) - discounts - returns (the refunded lines' subtotal after their
    discount, of the refunds made by t), no shipping, no tax; 0 when the order was cancelled by t."""

    person: int
    ordered_at: int  # epoch seconds
    is_cancelled: bool
    gross_sales_amount: Decimal
    discounts_amount: Decimal
    returns_amount: Decimal
    net_sales_amount: Decimal
    shipping_amount: Decimal
    tax_amount: Decimal
    total_amount: Decimal  # as placed, shipping and tax included
    refunded_amount: Decimal  # money refunded by t (the simulator refunds a line's net: no tax, no shipping)
    current_total_amount: Decimal  # 0 when cancelled, else total - refunded


# marts.orders' columns that OrderTruth holds (same names), compared order by order
ORDER_FIGURES = ("ordered_at", "is_cancelled", "gross_sales_amount", "discounts_amount", "returns_amount",
                 "net_sales_amount", "shipping_amount", "tax_amount", "total_amount", "refunded_amount",
                 "current_total_amount")


def _money(cents: int) -> Decimal:
    return Decimal(int(cents)) / 100


def order_truth(world, t: int) -> dict[str, OrderTruth]:
    """Order GID -> the order at t, for every order placed (created) by t."""
    orders = world.orders
    truth = {}
    for o in np.flatnonzero(orders.created_at <= t):
        cancelled = bool(orders.cancelled_at[o] <= t)
        refunded = int(orders.refunded_cents[o]) if orders.refund_at[o] <= t else 0
        subtotal, discount, total = int(orders.subtotal_cents[o]), int(orders.discount_cents[o]), int(orders.total_cents[o])
        truth[world.record_id("orders", int(o))] = OrderTruth(
            person=int(orders.person[o]), ordered_at=int(orders.created_at[o]), is_cancelled=cancelled,
            gross_sales_amount=_money(subtotal), discounts_amount=_money(discount), returns_amount=_money(refunded),
            net_sales_amount=_money(0 if cancelled else subtotal - discount - refunded),
            shipping_amount=_money(orders.shipping_cents[o]), tax_amount=_money(orders.tax_cents[o]),
            total_amount=_money(total), refunded_amount=_money(refunded),
            current_total_amount=_money(0 if cancelled else total - refunded))
    return truth


def person_orders_truth(world, t: int) -> dict[int, tuple[int, Decimal]]:
    """Person -> (orders placed by t and not cancelled by t, their net sales at t)."""
    totals: dict[int, tuple[int, Decimal]] = {}
    for order in order_truth(world, t).values():
        if order.is_cancelled:
            continue
        count, net_sales = totals.get(order.person, (0, Decimal("0.00")))
        totals[order.person] = (count + 1, net_sales + order.net_sales_amount)
    return totals


@dataclass(frozen=True)
class CustomerOrdersTruth:
    """A customer's non-cancelled orders at t, in marts.customers' terms."""

    order_count: int
    last_order_at: int | None  # epoch seconds
    net_sales_amount: Decimal


@dataclass(frozen=True)
class RfmTruth:
    """A customer's non-cancelled orders in the RFM window (t - window, t], in marts.customer_rfm's terms."""

    last_order_at: int
    recency_days: int  # whole days of 24 hours from last_order_at to t, rounded down (tailor.whole_days_between)
    frequency: int
    monetary_amount: Decimal  # their net sales at t


def customer_orders_truth(orders: dict[str, OrderTruth], customer_of_order: dict[str, str]) -> dict[str, CustomerOrdersTruth]:
    """customer_id -> their orders' truth, the orders grouped by `customer_of_order` (the customer_id each order is
    attributed to); only customers with a non-cancelled order."""
    truth: dict[str, CustomerOrdersTruth] = {}
    for order_id, order in orders.items():
        if order.is_cancelled:
            continue
        customer_id = customer_of_order[order_id]
        before = truth.get(customer_id, CustomerOrdersTruth(0, None, Decimal("0.00")))
        truth[customer_id] = CustomerOrdersTruth(
            order_count=before.order_count + 1,
            last_order_at=max(before.last_order_at or order.ordered_at, order.ordered_at),
            net_sales_amount=before.net_sales_amount + order.net_sales_amount)
    return truth


def rfm_truth(orders: dict[str, OrderTruth], customer_of_order: dict[str, str], t: int,
              window_days: int = RFM_WINDOW_DAYS) -> dict[str, RfmTruth]:
    """customer_id -> recency, frequency and monetary value at t of their non-cancelled orders placed in
    (t - window_days, t] (the orders grouped as in customer_orders_truth); only customers with such an order."""
    window_start = t - window_days * DAY
    in_window = {order_id: order for order_id, order in orders.items() if window_start < order.ordered_at <= t}
    return {customer_id: RfmTruth(last_order_at=summary.last_order_at, recency_days=(t - summary.last_order_at) // DAY,
                                  frequency=summary.order_count, monetary_amount=summary.net_sales_amount)
            for customer_id, summary in customer_orders_truth(in_window, customer_of_order).items()}


def churn_truth(world, t: int, horizon_days: int = CHURN_HORIZON_DAYS) -> dict[int, bool]:
    """Person -> churned at t, for every person with an order placed by t and not cancelled by t (churn_labels'
    population): churned when they placed no order in (t, t + horizon] that was not cancelled by t + horizon."""
    orders, end = world.orders, t + horizon_days * DAY
    population: set[int] = set()
    came_back: set[int] = set()
    for o in range(orders.n):
        person, created, cancelled = int(orders.person[o]), int(orders.created_at[o]), int(orders.cancelled_at[o])
        if created <= t < cancelled:
            population.add(person)
        if t < created <= end < cancelled:
            came_back.add(person)
    return {person: person not in came_back for person in population}


def versions_truth(world, entity: str, t: int) -> set[tuple[str, int]]:
    """(record id, epoch seconds of its latest version at or before t) of every record existing at t."""
    rows, updated = world.index(entity, t)
    return {(world.record_id(entity, int(i)), int(u)) for i, u in zip(rows, updated, strict=True)}


# --- assertions shared by the dbt tests --------------------------------------------------------------------

# staging model, its key column, and the simulator entity it holds
STAGING_ENTITIES = (("stg_shopify__customers", "shopify_customer_id", "customers"),
                    ("stg_shopify__orders", "order_id", "orders"),
                    ("stg_shopify__products", "product_id", "products"),
                    ("stg_hubspot__contacts", "hubspot_contact_id", "contacts"),
                    ("stg_klaviyo__profiles", "klaviyo_profile_id", "profiles"))


def customer_of_person(con, world) -> dict[int, set[str]]:
    """Person -> the customer_ids the crosswalk gives their records."""
    index = person_of_record(world)
    found: dict[int, set[str]] = defaultdict(set)
    unknown = []
    for source, record_id, customer_id in con.execute(
            "select source, source_record_id, customer_id from marts.customer_identity_crosswalk").fetchall():
        person = index.get((source, record_id))
        if person is None:
            unknown.append((source, record_id))
        else:
            found[person].add(customer_id)
    assert not unknown, f"crosswalk rows that are no record of the world: {unknown[:5]}"
    return found


def assert_staging_holds_latest_versions(con, world, t: int) -> None:
    """Staging has exactly the records existing at t, each in its latest version at or before t."""
    for model, key, entity in STAGING_ENTITIES:
        built = {(record_id, int(epoch)) for record_id, epoch in con.execute(
            f"select {key}, epoch(updated_at) from staging.{model}").fetchall()}
        truth = versions_truth(world, entity, t)
        assert built == truth, (f"staging.{model}: {len(built - truth)} versions not in the world at t, e.g. "
                                f"{sorted(built - truth)[:3]}; {len(truth - built)} missing, e.g. {sorted(truth - built)[:3]}")


def assert_order_rows_match_world(con, world, t: int) -> dict[str, OrderTruth]:
    """marts.orders holds exactly the orders placed by t, each with ORDER_FIGURES as the world has them at t (money
    to the cent). Returns the world's orders at t."""
    truth = order_truth(world, t)
    columns = ", ".join(f"cast(epoch({name}) as bigint)" if name == "ordered_at" else name for name in ORDER_FIGURES)
    rows = con.execute(f"select order_id, {columns} from marts.orders").fetchall()
    built = {order_id: tuple(figures) for order_id, *figures in rows}
    assert len(built) == len(rows), f"marts.orders: {len(rows)} rows, {len(built)} distinct order_id"
    missing, extra = sorted(set(truth) - set(built)), sorted(set(built) - set(truth))
    assert not missing and not extra, (f"marts.orders: {len(extra)} orders not placed by t, e.g. {extra[:3]}; "
                                       f"{len(missing)} of the world's missing, e.g. {missing[:3]}")
    wrong = []
    for order_id, order in truth.items():
        expected = tuple(getattr(order, name) for name in ORDER_FIGURES)
        if built[order_id] != expected:
            differing = {name: (got, want) for name, got, want in zip(ORDER_FIGURES, built[order_id], expected,
                                                                      strict=True) if got != want}
            wrong.append((order_id, differing))
    assert not wrong, f"{len(wrong)} orders differ from the world at t ({{column: (built, world)}}): {wrong[:5]}"
    return truth


def assert_orders_match_world(con, world, t: int) -> None:
    """Orders (net sales: after discounts and returns, 0 when cancelled) and, per person, order count and net sales,
    to the cent."""
    assert_order_rows_match_world(con, world, t)
    people = customer_of_person(con, world)
    per_person = person_orders_truth(world, t)
    rows = {customer_id: (count or 0, net_sales if net_sales is not None else Decimal("0.00"))
            for customer_id, count, net_sales
            in con.execute("select customer_id, order_count, net_sales_amount from marts.customers").fetchall()}
    wrong = []
    for person, customer_ids in people.items():
        (customer_id,) = customer_ids
        expected = per_person.get(person, (0, Decimal("0.00")))
        if rows[customer_id] != expected:
            wrong.append((person, customer_id, rows[customer_id], expected))
    assert not wrong, f"{len(wrong)} customers' (order_count, net_sales_amount) differ from the world: {wrong[:5]}"
    built_total, true_total = sum(count for count, _ in rows.values()), sum(count for count, _ in per_person.values())
    assert built_total == true_total, f"customers' order_count adds up to {built_total}, the world's to {true_total}"


def assert_churn_labels_match_world(con, world, as_of: datetime, horizon_days: int = CHURN_HORIZON_DAYS) -> int:
    """marts.churn_labels as of `as_of`: one label per person of the population (churn_truth), is_churned as the
    world's orders in (as_of, as_of + horizon] say, both classes present. Returns how many labels."""
    truth = churn_truth(world, int(as_of.timestamp()), horizon_days)
    people = customer_of_person(con, world)
    person_of = {next(iter(ids)): person for person, ids in people.items()}
    labels = {customer_id: (bool(churned), labelled_as_of, horizon) for customer_id, churned, labelled_as_of, horizon
              in con.execute("select customer_id, is_churned, as_of_at, churn_horizon_days "
                             "from marts.churn_labels").fetchall()}
    assert labels, f"no churn label as of {as_of.isoformat()}"
    assert {labelled_as_of for _, labelled_as_of, _ in labels.values()} == {as_of}
    assert {horizon for _, _, horizon in labels.values()} == {horizon_days}
    labelled = {person_of[customer_id] for customer_id in labels}
    assert labelled == set(truth), (f"{len(labelled - set(truth))} labelled persons not in the population, e.g. "
                                    f"{sorted(labelled - set(truth))[:5]}; {len(set(truth) - labelled)} unlabelled, "
                                    f"e.g. {sorted(set(truth) - labelled)[:5]}")
    wrong = [(person_of[customer_id], churned) for customer_id, (churned, _, _) in labels.items()
             if churned != truth[person_of[customer_id]]]
    assert not wrong, (f"{len(wrong)} labels (person, is_churned) differ from the world's orders in "
                       f"(T, T + {horizon_days} days]: {wrong[:5]}")
    churned = sum(churned for churned, _, _ in labels.values())
    assert 0 < churned < len(labels), "both classes occur"
    return len(labels)


def assert_consent_matches_world(con, world, t: int) -> int:
    """email_consent_state per person: their Klaviyo profile's consent at t (suppressions included); never_subscribed
    for a person who never had a profile. Returns how many persons were checked."""
    people = customer_of_person(con, world)
    states = dict(con.execute("select customer_id, email_consent_state from marts.customers").fetchall())
    marketable = dict(con.execute("select customer_id, is_email_marketable from marts.customers").fetchall())
    live_profiles = world.visible("profiles", t)
    wrong, checked = [], 0
    for person, (customer_id,) in ((p, ids) for p, ids in people.items()):
        q = int(world.profile_of_person[person])
        if q >= 0 and live_profiles[q]:
            expected = CONSENT_NAMES[world.consent_at(q, t)]
        elif q < 0:
            expected = "never_subscribed"
        else:
            continue  # the profile was deleted by t: the other sources' last word decides (DECISIONLOG.md)
        checked += 1
        if states[customer_id] != expected:
            wrong.append((person, customer_id, states[customer_id], expected))
        if marketable[customer_id] and states[customer_id] != "subscribed":
            wrong.append((person, customer_id, "marketable while", states[customer_id]))
    assert not wrong, f"{len(wrong)} persons' consent differs from the world: {wrong[:5]}"
    return checked


def assert_one_customer_per_person(con, world, t: int) -> None:
    people = customer_of_person(con, world)
    split = {person: ids for person, ids in people.items() if len(ids) != 1}
    assert not split, f"{len(split)} persons have several customer_ids: {list(split.items())[:5]}"
    owners: dict[str, list[int]] = defaultdict(list)
    for person, (customer_id,) in people.items():
        owners[customer_id].append(person)
    shared = {customer_id: persons for customer_id, persons in owners.items() if len(persons) > 1}
    assert not shared, f"{len(shared)} customer_ids merge different persons: {list(shared.items())[:5]}"
    assert set(people) == persons_known_at(world, t), "persons with a record at as_of and persons in the crosswalk differ"
    customers = {customer_id for (customer_id,) in con.execute("select customer_id from marts.customers").fetchall()}
    assert customers == set(owners), "marts.customers and the crosswalk's customer_ids differ"
