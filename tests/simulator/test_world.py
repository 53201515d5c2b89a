"""The synthetic world: deterministic, consistent over time, and shaped like a real shop."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import catalog
from simulator.world import DAY, NEVER, SPAM_COMPLAINT, SUBSCRIBED, World, WorldConfig, iso, parse_time

CONFIG = WorldConfig(seed=11, customers=3_000)


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(CONFIG)


def test_same_seed_gives_identical_world_and_other_seed_differs(world):
    again = World.build(CONFIG)
    other = World.build(WorldConfig(seed=12, customers=3_000))
    for name in ("created_at", "total_cents", "line_product", "line_quantity"):
        assert np.array_equal(getattr(world.orders, name), getattr(again.orders, name))
    assert np.array_equal(world.events.time, again.events.time)
    assert [world.profile_id(i) for i in range(50)] == [again.profile_id(i) for i in range(50)]
    assert world.orders.n != other.orders.n or not np.array_equal(world.orders.created_at, other.orders.created_at)


def test_world_at_t_holds_exactly_what_existed_then(world):
    t = world.now - 200 * DAY
    rows, updated = world.index("orders", t)
    assert len(rows) == int(np.count_nonzero(world.orders.created_at <= t))
    assert (world.orders.created_at[rows] <= t).all()
    assert (updated <= t).all() and (np.diff(updated) >= 0).all()
    # a customer's view at t counts only the orders placed by then
    c = int(np.argmax(np.diff(world.customers.order_offsets)))
    state = world.customer_at(c, t)
    mine = world.customers.order_index[world.customers.order_offsets[c]:world.customers.order_offsets[c + 1]]
    assert state["orders_count"] == int(np.count_nonzero(world.orders.created_at[mine] <= t))
    assert state["updated_at"] <= t
    # deleted records are gone after their deletion and present before it
    deleted = np.flatnonzero(world.customers.deleted_at != NEVER)
    assert len(deleted)
    d = int(deleted[0])
    at = int(world.customers.deleted_at[d])
    assert world.visible("customers", at - 1)[d] and not world.visible("customers", at)[d]


def test_later_versions_change_updated_at_and_content(world):
    o = int(np.flatnonzero(world.orders.refund_at != NEVER)[0])
    before = world.order_at(o, int(world.orders.refund_at[o]) - 1)
    after = world.order_at(o, int(world.orders.refund_at[o]))
    assert before["refunds"] == [] and after["refunds"][0]["amount_cents"] > 0
    assert after["updated_at"] == int(world.orders.refund_at[o]) > before["updated_at"]
    assert after["financial_status"] in ("partially_refunded", "refunded")


def test_touch_adds_a_version_visible_only_from_then_on():
    world = World.build(WorldConfig(seed=3, customers=200))
    rows, _ = world.index("contacts", world.now)
    k = int(rows[0])
    world.touch("contacts", k, world.now)
    assert world.contact_at(k, world.now)["updated_at"] == world.now
    assert world.contact_at(k, world.now - 1)["updated_at"] < world.now
    assert world.index("contacts", world.now)[0][-1] == k  # it moved to the end of the updated_at order


def test_money_reconciles_to_the_cent(world):
    o = world.orders
    line_net = o.line_unit_price_cents * o.line_quantity - o.line_discount_cents
    per_order = np.add.reduceat(line_net, o.line_offsets[:-1])
    assert np.array_equal(per_order, o.subtotal_cents - o.discount_cents)
    assert np.array_equal(o.total_cents, o.subtotal_cents - o.discount_cents + o.shipping_cents + o.tax_cents)
    refunded = o.refund_at != NEVER
    assert (o.refunded_cents[refunded] <= o.total_cents[refunded]).all()


def test_orders_respect_catalog_and_churn(world):
    o, p = world.orders, world.products
    line_order = np.repeat(np.arange(o.n), np.diff(o.line_offsets))
    t = o.created_at[line_order]
    assert (p.created_at[o.line_product] <= t).all(), "a line sold a product before it existed"
    assert (p.archived_at[o.line_product] > t).all(), "a line sold an archived product"
    churn = world.persons.churn_at[o.person]
    assert (o.created_at < churn).all(), "an order after its customer's churn date"


def test_tie_bursts_put_many_records_on_one_second():
    world = World.build(WorldConfig(seed=5, customers=2_000, tie_burst_size=300))
    for entity in ("customers", "orders", "contacts", "profiles"):
        _, updated = world.index(entity, world.now)
        _, counts = np.unique(updated, return_counts=True)
        # a few members are edited again after the mass update, the rest still share its second
        assert counts.max() >= 270, entity


def test_shape_is_that_of_a_real_shop(world):
    n = CONFIG.customers
    assert 3.6 <= world.orders.n / n <= 4.4
    assert 9 <= len(world.orders.line_id) / n <= 11
    metrics = np.bincount(world.events.metric, minlength=len(catalog.METRICS))
    received, opened, clicked = metrics[0], metrics[1], metrics[2]
    assert 20 <= metrics[:6].sum() / n <= 35, "email events per customer"
    assert 0.15 <= opened / received <= 0.40
    assert 0.005 <= clicked / received <= 0.05
    consent = {world.consent_at(q, world.now) for q in range(world.profiles.n)}
    assert consent == {0, 1, 2, 3, 4} or {SUBSCRIBED, SPAM_COMPLAINT} <= consent
    assert (world.persons.churn_at != NEVER).mean() > 0.3
    # every metric the simulator claims to serve occurs
    assert (metrics > 0).all()


def test_preferred_hour_shows_in_opens(world):
    """The latent preferred hour must be recoverable from the data (what the send-time model learns)."""
    opened = world.events.metric == 1
    prof = world.events.profile[opened]
    person = world.profiles.person[prof]
    local_hour = ((world.events.time[opened] // 3600) + world.persons.tz_offset[person]) % 24
    assert np.mean(local_hour == world.persons.preferred_hour[person]) > 0.4


def test_ground_truth_windows_and_traits(world):
    start, end = world.now - 30 * DAY, world.now - 10 * DAY
    window = world.truth_versions("orders", world.now, start, end)
    assert window and all(iso(start) <= updated < iso(end) for _, updated in window)
    traits = world.traits()
    assert len(traits) == CONFIG.customers
    churned = [t for t in traits if t["churn_at"]]
    assert churned and all(parse_time(t["churn_at"]) >= parse_time(t["created_at"]) for t in churned)
    assert {t["kind"] for t in traits} == {"account", "guest", "lead"}


def test_lifecycle_stage_follows_orders_and_churn(world):
    o = world.orders
    p = int(np.bincount(o.person).argmax())  # the most frequent buyer
    placed = np.sort(o.created_at[o.person == p])
    assert world.lifecycle_stage(p, int(placed[0]) - 1) in ("prospect", "churned")
    if world.persons.churn_at[p] > placed[1]:
        assert world.lifecycle_stage(p, int(placed[0])) == "new"
        assert world.lifecycle_stage(p, int(placed[1])) == "repeat"
    churned = int(np.flatnonzero(world.persons.churn_at != NEVER)[0])
    assert world.lifecycle_stage(churned, int(world.persons.churn_at[churned])) == "churned"
