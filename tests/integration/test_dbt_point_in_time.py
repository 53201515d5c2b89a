"""Point-in-time truth from any extract (issue 11): a new install extracts a shop's history once, at its clock C, so
raw.* holds each record's latest version only, and an order placed before T but changed since (fulfilled, refunded,
cancelled) has no version at or before T. Built as of T on that one extract, the marts must still be the world's
state at T: such an order comes from its earliest loaded version reduced to T (a refund counts only when made by T,
a cancellation only when made by T).

For T = C - 7, 31 and 120 days, checked against the simulator's ground truth at T: marts.orders (each order's
figures to the cent), marts.customers and marts.customer_rfm (per customer_id, the orders grouped as Tailor
attributed them: identity resolution is test_dbt_build's and test_dbt_as_of's business). And the same world extracted
at each T before C as well (dbt_world: versions as they happened) gives the same marts as of T, row for row.
churn_labels on the one extract as of C - 90 days (the latest as-of whose horizon the orders load has reached) are
the world's orders in the horizon.

Every build is made once per process (dbt_fixtures.build_as_of) and shared by the tests here and, for dbt_world as of
C - 120 days, with test_dbt_as_of. They build only the marts checked here and their parents, without dbt's tests
(about 5 s instead of 20 s on this world): the whole project and its tests run in test_dbt_build and test_dbt_as_of.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

import numpy as np
import pytest

from simulator.world import NEVER
from tailor.warehouse import Warehouse
from tests.integration import dbt_fixtures
from tests.integration.dbt_fixtures import Built, DbtWorld
from tests.integration.dbtkit import (
    CHURN_HORIZON_DAYS,
    ORDER_FIGURES,
    CustomerOrdersTruth,
    RfmTruth,
    assert_churn_labels_match_world,
    assert_order_rows_match_world,
    customer_orders_truth,
    differences,
    normalized,
    order_truth,
    rfm_truth,
)

dbt_world = dbt_fixtures.dbt_world  # extracted at C - 120, C - 31, C - 7 days and at C
one_extract_world = dbt_fixtures.one_extract_world  # the same world extracted once, at C

POINTS_IN_TIME_DAYS = (7, 31, 120)  # T = C - this many days; dbt_world has an extract run at each (EARLIER_RUNS_DAYS)
at_each_t = pytest.mark.parametrize("days", POINTS_IN_TIME_DAYS, ids=[f"C-{days}d" for days in POINTS_IN_TIME_DAYS])

# The marts checked here, with their parents (dbt selection syntax)
MARTS_CHECKED = "+orders +customers +customer_rfm +churn_labels"

# What must be the same whichever extracts raw.* holds, per mart: key columns, then the values compared.
SAME_FROM_ANY_EXTRACT = {
    "orders": ("order_id", "customer_id", *ORDER_FIGURES),
    "customers": ("customer_id", "order_count", "last_order_at", "net_sales_amount"),
    "customer_rfm": ("customer_id", "last_order_at", "recency_days", "frequency", "monetary_amount"),
}


def built_on_one_extract(world: DbtWorld, days: int) -> Built:
    return dbt_fixtures.build_as_of(world, world.days_before_now(days), select=MARTS_CHECKED)


def epoch(t) -> int:
    return int(t.timestamp())


@at_each_t
def test_the_one_extract_has_no_version_at_t_of_orders_changed_since(one_extract_world: DbtWorld, days: int):
    # the premise: under "the latest version at or before T" these orders would be missing at T
    t = one_extract_world.days_before_now(days)
    placed = set(order_truth(one_extract_world.world, epoch(t)))
    with Warehouse(one_extract_world.raw_path).reader() as con:
        (versions, orders) = con.execute("select count(*), count(distinct record_id) from raw.shopify_orders").fetchone()
        later_only = {record_id for (record_id,) in con.execute(
            "select record_id from raw.shopify_orders group by record_id having min(updated_at) > ?", [t]).fetchall()}
    assert versions == orders, "one extract: one version per order"
    assert len(placed & later_only) > 0, f"no order placed by T has only versions after T: T = {t.isoformat()}"


@at_each_t
def test_orders_are_the_worlds_orders_at_t(one_extract_world: DbtWorld, days: int):
    world, built = one_extract_world.world, built_on_one_extract(one_extract_world, days)
    t = epoch(built.as_of)
    with Warehouse(built.path).reader() as con:
        # exactly the orders placed by T, none missing, none extra; cancelled, returns, net sales... to the cent
        assert_order_rows_match_world(con, world, t)
        sales = {order_id: Sales(*figures) for order_id, *figures in con.execute(
            "select order_id, gross_sales_amount, discounts_amount, returns_amount, net_sales_amount "
            "from marts.orders").fetchall()}
    # both kinds of refunded order occur at T, so the comparison above was not vacuous: refunded after T (their one
    # loaded version holds the refund, which must not count at T) and refunded by T (net of it)
    orders = world.orders
    placed = orders.created_at <= t
    refunded_later = [world.record_id("orders", int(o)) for o in np.flatnonzero(
        placed & (orders.refund_at > t) & (orders.refund_at != NEVER))]
    refunded_by_t = [world.record_id("orders", int(o)) for o in np.flatnonzero(placed & (orders.refund_at <= t))]
    assert refunded_later and refunded_by_t, (len(refunded_later), len(refunded_by_t))
    not_in_full = [(order_id, sales[order_id]) for order_id in refunded_later
                   if sales[order_id].returns != 0 or sales[order_id].net != sales[order_id].after_discounts]
    not_net_of_refund = [(order_id, sales[order_id]) for order_id in refunded_by_t
                         if sales[order_id].returns <= 0
                         or sales[order_id].net != sales[order_id].after_discounts - sales[order_id].returns]
    assert not not_in_full, f"orders refunded after T not counted in full at T: {not_in_full[:5]}"
    assert not not_net_of_refund, f"orders refunded by T not net of the refund: {not_net_of_refund[:5]}"


class Sales(NamedTuple):
    gross: Decimal
    discounts: Decimal
    returns: Decimal
    net: Decimal

    @property
    def after_discounts(self) -> Decimal:
        return self.gross - self.discounts


@at_each_t
def test_customers_and_rfm_are_the_worlds_at_t(one_extract_world: DbtWorld, days: int):
    world, built = one_extract_world.world, built_on_one_extract(one_extract_world, days)
    t = epoch(built.as_of)
    orders = order_truth(world, t)
    with Warehouse(built.path).reader() as con:
        customer_of_order = dict(con.execute("select order_id, customer_id from marts.orders").fetchall())
        assert_unique(con, "customers", "customer_id")
        assert_unique(con, "customer_rfm", "customer_id")
        customers = {customer_id: CustomerOrdersTruth(count, last_order_at, net_sales)
                     for customer_id, count, last_order_at, net_sales in con.execute(
                         "select customer_id, order_count, cast(epoch(last_order_at) as bigint), net_sales_amount "
                         "from marts.customers").fetchall()}
        rfm = {customer_id: RfmTruth(last_order_at, recency, frequency, monetary)
               for customer_id, last_order_at, recency, frequency, monetary in con.execute(
                   "select customer_id, cast(epoch(last_order_at) as bigint), recency_days, frequency, monetary_amount "
                   "from marts.customer_rfm").fetchall()}
    assert set(customer_of_order) == set(orders)  # test_orders_are_the_worlds_orders_at_t says which differ
    unattributed = sorted(order_id for order_id, customer_id in customer_of_order.items() if customer_id is None)
    assert not unattributed, f"{len(unattributed)} orders have no customer_id: {unattributed[:5]}"

    expected = customer_orders_truth(orders, customer_of_order)
    unknown = sorted(set(expected) - set(customers))
    assert not unknown, f"{len(unknown)} customer_ids of marts.orders are not in marts.customers: {unknown[:5]}"
    no_orders = CustomerOrdersTruth(0, None, Decimal("0.00"))
    wrong = [(customer_id, built_row, expected.get(customer_id, no_orders))
             for customer_id, built_row in customers.items() if built_row != expected.get(customer_id, no_orders)]
    assert not wrong, f"{len(wrong)} of {len(customers)} customers differ (built, world): {wrong[:5]}"

    expected_rfm = rfm_truth(orders, customer_of_order, t)
    assert len(expected_rfm) > 50
    missing, extra = sorted(set(expected_rfm) - set(rfm)), sorted(set(rfm) - set(expected_rfm))
    assert not missing and not extra, (f"customer_rfm: {len(missing)} customers with an order in the window missing, "
                                       f"e.g. {missing[:3]}; {len(extra)} without one, e.g. {extra[:3]}")
    wrong = [(customer_id, rfm[customer_id], truth) for customer_id, truth in expected_rfm.items()
             if rfm[customer_id] != truth]
    assert not wrong, f"{len(wrong)} of {len(rfm)} customers' RFM differ (built, world): {wrong[:5]}"


@at_each_t
def test_an_extract_at_t_too_gives_the_same_marts(dbt_world: DbtWorld, one_extract_world: DbtWorld, days: int):
    # dbt_world holds each record's version as of T (an extract ran then), the one extract only later versions.
    # A record deleted (archived) between T and C is unknown at T in the one extract: it has no version there but its
    # deletion, or none at all (Shopify and Klaviyo serve no deleted record). That changes the crosswalk (one HubSpot
    # contact as of C - 31 days in this world), not these marts: a person's customer_id is a key of their email, which
    # their other records carry too, and no person known at T had only records deleted by C (their customers row,
    # without orders, would be missing from the one-extract build).
    extracted_at_t = dbt_fixtures.build_as_of(dbt_world, dbt_world.earlier_run(days), select=MARTS_CHECKED)
    extracted_once = built_on_one_extract(one_extract_world, days)
    assert extracted_at_t.as_of == extracted_once.as_of
    with Warehouse(extracted_at_t.path).reader() as con:
        expected = mart_rows(con)
    with Warehouse(extracted_once.path).reader() as con:
        actual = mart_rows(con)
    assert all(len(rows) > 100 for rows in expected.values()), {mart: len(rows) for mart, rows in expected.items()}
    problems = differences(expected, actual)
    assert not problems, "extracted at T (expected) vs once at C (built):\n" + "\n".join(problems)


def assert_unique(con, mart: str, key: str) -> None:
    (rows, keys) = con.execute(f"select count(*), count(distinct {key}) from marts.{mart}").fetchone()
    assert rows == keys, f"marts.{mart}: {rows} rows, {keys} distinct {key}"


def mart_rows(con) -> dict[str, list[tuple]]:
    """SAME_FROM_ANY_EXTRACT's columns of each mart, normalized and sorted."""
    rows = {}
    for mart, columns in SAME_FROM_ANY_EXTRACT.items():
        select = ", ".join(f'"{column}"' for column in columns)
        rows[mart] = sorted((tuple(normalized(value) for value in row)
                             for row in con.execute(f"select {select} from marts.{mart}").fetchall()), key=repr)
    return rows


@pytest.mark.parametrize("days", [CHURN_HORIZON_DAYS, 120], ids=["C-horizon", "C-120d"])
def test_churn_labels_on_the_one_extract_are_the_orders_in_the_horizon(one_extract_world: DbtWorld, days: int):
    # as of C - horizon, T + horizon is the clock: observable because the orders load reached it (its watermark),
    # whatever the latest order version loaded is
    built = built_on_one_extract(one_extract_world, days)
    with Warehouse(built.path).reader() as con:
        labels = assert_churn_labels_match_world(con, one_extract_world.world, built.as_of)
    assert labels > 50
