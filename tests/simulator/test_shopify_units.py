"""Shopify simulator internals without HTTP: the search syntax, the bulk state builders against the world's own
state methods, cursor paging edge cases, lookups and the render budget of a page."""

from __future__ import annotations

import time

import numpy as np
import pytest

from simulator.shopify import listing, runtime_for, search
from simulator.shopify.states import BulkStates
from simulator.state import SimState
from simulator.world import World, WorldConfig, iso


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(WorldConfig(customers=1500, seed=21))


def rt(world: World):
    return runtime_for(SimState(world=world, rate_limits=False))


# ---- search syntax ----------------------------------------------------------------------------------------
def evaluate(text: str, columns: dict[str, np.ndarray], now: int = 10**9):
    fields = {name: search.FieldSpec("time" if name.endswith("_at") else "int" if name == "id" else "text",
                                     lambda col=col: col) for name, col in columns.items()}
    return search.evaluate(search.parse(text), fields, len(next(iter(columns.values()))), now)


def test_search_comparators_connectives_and_quotes():
    t = np.array([100, 200, 300, 400], dtype=np.int64) + 1_700_000_000
    cols = {"updated_at": t, "id": np.array([1, 2, 3, 4]), "status": np.array(["open", "closed", "open", "x"])}
    assert evaluate(f"updated_at:>='{iso(t[1])}' updated_at:<'{iso(t[3])}'", cols).mask.tolist() == [0, 1, 1, 0]
    assert evaluate(f'updated_at:>"{iso(t[1])}" AND updated_at:<="{iso(t[3])}"', cols).mask.tolist() == [0, 0, 1, 1]
    assert evaluate("id:1 OR id:>=4", cols).mask.tolist() == [1, 0, 0, 1]
    assert evaluate("NOT status:open", cols).mask.tolist() == [0, 1, 0, 1]
    assert evaluate("-status:open (id:2 OR id:4)", cols).mask.tolist() == [0, 1, 0, 1]
    assert evaluate("", cols).mask is None


def test_search_reports_unknown_fields_and_colon_cut_values():
    cols = {"updated_at": np.array([0, 10**10], dtype=np.int64)}
    result = evaluate("updated_at:>=2026-01-01T10:20:30Z", cols)
    assert result.warnings == [{"field": "20", "message": search.INVALID_FIELD, "code": "invalid_field"}]
    cut = search.parse("updated_at:>=2026-01-01T10:20:30Z").children[0]
    assert search.parse_time(cut, 0) == (1767261600, 1767261600 + 3600)  # 2026-01-01T10:00Z, an hour
    assert evaluate("nonsense:1", cols).mask is None
    assert search.parse_time(search.Term("created_at", "=", "2026-01-01", False), 0)[1] - 1767225600 == 86_400


# ---- bulk state builders --------------------------------------------------------------------------------------
def test_bulk_states_equal_the_worlds_state_methods(world):
    t = world.now
    rows, _ = world.index("orders", t)
    world.touch("orders", int(rows[3]), t)  # touched records count their runtime versions too
    states = BulkStates(world, t)
    for o in world.index("orders", t)[0].tolist():
        assert states.order(o) == world.order_at(o, t)
    for c in world.index("customers", t)[0].tolist():
        assert states.customer(c) == world.customer_at(c, t)
    earlier = BulkStates(world, t - 200 * 86_400)
    for o in world.index("orders", t - 200 * 86_400)[0].tolist()[:500]:
        assert earlier.order(o) == world.order_at(o, t - 200 * 86_400)


# ---- paging ---------------------------------------------------------------------------------------------------
def test_cursor_paging_forward_backward_and_reverse():
    ids = np.arange(1, 11, dtype=np.int64)
    keys = np.array([5, 5, 5, 6, 6, 7, 8, 8, 8, 9], dtype=np.int64)
    view = listing.Listing(np.arange(10), keys, ids, "time", {"id": ids})
    first = listing.page(view, first=4, last=None, after=None, before=None, reverse=False)
    assert first.positions.tolist() == [0, 1, 2, 3] and first.has_next and not first.has_previous
    nxt = listing.page(view, first=4, last=None, after=view.cursor(3), before=None, reverse=False)
    assert nxt.positions.tolist() == [4, 5, 6, 7] and nxt.has_previous
    back = listing.page(view, first=None, last=3, after=None, before=view.cursor(4), reverse=False)
    assert back.positions.tolist() == [1, 2, 3]
    rev = listing.page(view, first=3, last=None, after=None, before=None, reverse=True)
    assert rev.positions.tolist() == [9, 8, 7]
    rev2 = listing.page(view, first=3, last=None, after=view.cursor(7), before=None, reverse=True)
    assert rev2.positions.tolist() == [6, 5, 4]
    dup = listing.page(view, first=4, last=None, after=view.cursor(3), before=None, reverse=False,
                       repeat_previous=True)
    assert dup.positions.tolist() == [3, 4, 5, 6]
    with pytest.raises(listing.CursorError):
        listing.page(view, first=1, last=None, after="not-a-cursor", before=None, reverse=False)


def test_cursor_survives_the_record_at_it_moving_away():
    ids = np.arange(1, 6, dtype=np.int64)
    view = listing.Listing(np.arange(5), np.array([1, 2, 3, 4, 5]), ids, "time", {"id": ids})
    cursor = view.cursor(2)
    moved = view.subset(np.array([True, True, False, True, True]))  # record 3 was edited and left
    rest = listing.page(moved, first=10, last=None, after=cursor, before=None, reverse=False)
    assert rest.positions.tolist() == [2, 3]


# ---- lookups, counts, render budget ---------------------------------------------------------------------------------
def test_node_lookups_counts_and_customer_orders(world):
    runtime = rt(world)
    c = int(world.index("customers", world.now)[0][-1])
    gid = world.record_id("customers", c)
    body = runtime.handle("""query($id: ID!) { node(id: $id) { __typename ... on Customer { id
        orders(first: 50, sortKey: CREATED_AT) { nodes { id customer { id } } } } }
        customersCount { count precision } ordersCount(limit: 5) { count precision }
        nodes(ids: [$id, "gid://shopify/Customer/1"]) { id } }""", {"id": gid}, None)
    data = body["data"]
    assert data["node"]["id"] == gid and data["node"]["__typename"] == "Customer"
    expected = world.customer_at(c, world.now)["orders_count"]
    assert len(data["node"]["orders"]["nodes"]) == expected
    assert all(o["customer"]["id"] == gid for o in data["node"]["orders"]["nodes"])
    assert data["customersCount"] == {"count": world.truth_count("customers", world.now), "precision": "EXACT"}
    assert data["ordersCount"] == {"count": 5, "precision": "AT_LEAST"}
    assert data["nodes"] == [{"id": gid}, None]


def test_a_page_of_250_orders_with_line_items_renders_within_budget(world):
    runtime = rt(world)
    query = """query($after: String) { orders(first: 250, after: $after, sortKey: UPDATED_AT) { edges { cursor node {
        id name email createdAt updatedAt displayFinancialStatus displayFulfillmentStatus tags
        totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
        subtotalPriceSet { shopMoney { amount } } totalRefundedSet { shopMoney { amount } }
        customer { id } shippingAddress { city provinceCode countryCodeV2 zip }
        lineItems(first: 50) { nodes { id name sku quantity currentQuantity variant { id price }
            originalUnitPriceSet { shopMoney { amount } } discountedTotalSet { shopMoney { amount } } } }
        refunds { id createdAt totalRefundedSet { shopMoney { amount } } }
    } } pageInfo { hasNextPage endCursor } } }"""
    runtime.handle(query, {}, None)  # builds the sorted listing once per clock value
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        body = runtime.handle(query, {}, None)
        best = min(best, time.perf_counter() - started)
    assert len(body["data"]["orders"]["edges"]) == 250
    assert best < 0.3, f"a page took {best * 1000:.0f} ms"


def test_nested_connections_page_by_cursor(world):
    runtime = rt(world)
    o = next(i for i in world.index("orders", world.now)[0].tolist()
             if len(world.order_at(i, world.now)["lines"]) >= 3)
    gid = world.record_id("orders", o)
    query = """query($id: ID!, $first: Int, $last: Int, $after: String, $before: String, $reverse: Boolean) {
        order(id: $id) { lineItems(first: $first, last: $last, after: $after, before: $before, reverse: $reverse) {
            edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage } } } }"""

    def page(**variables):
        return runtime.handle(query, {"id": gid, **variables}, None)["data"]["order"]["lineItems"]

    every = [e["node"]["id"] for e in page(first=250)["edges"]]
    one = page(first=1)
    two = page(first=1, after=one["edges"][0]["cursor"])
    assert [e["node"]["id"] for e in one["edges"] + two["edges"]] == every[:2]
    assert one["pageInfo"] == {"hasNextPage": True, "hasPreviousPage": False}
    assert two["pageInfo"]["hasPreviousPage"]
    assert [e["node"]["id"] for e in page(last=1)["edges"]] == every[-1:]
    assert [e["node"]["id"] for e in page(first=250, reverse=True)["edges"]] == every[::-1]
    assert [e["node"]["id"] for e in page(last=5, before=one["edges"][0]["cursor"])["edges"]] == []
    bad = runtime.handle(query, {"id": gid, "first": 1, "after": "bm9wZQ=="}, None)
    assert bad["errors"][0]["message"] == "Invalid cursor for current pagination sort."


def test_introspection_is_served(world):
    body = rt(world).handle("{ __schema { queryType { name } mutationType { name } } }", {}, None)
    assert body["data"] == {"__schema": {"queryType": {"name": "QueryRoot"}, "mutationType": {"name": "Mutation"}}}
