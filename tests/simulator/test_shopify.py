"""Shopify GraphQL Admin API over real HTTP: paging truth (windows, ties), cost and throttling, bulk operations,
errors, determinism, data-level faults and the official SDK."""

from __future__ import annotations

import json
import math
import time

import httpx
import numpy as np
import pytest
import shopify

from simulator.shopify import API_VERSION
from simulator.state import TOKENS
from simulator.world import iso

ENDPOINT = f"/admin/api/{API_VERSION}/graphql.json"
AUTH = {"X-Shopify-Access-Token": TOKENS["shopify"]}
WORLD = {"customers": 3000, "seed": 11}

PAGE = """query Page($first: Int!, $after: String, $query: String, $sort: %(sort)s, $reverse: Boolean) {
  %(field)s(first: $first, after: $after, query: $query, sortKey: $sort, reverse: $reverse) {
    edges { cursor node { id updatedAt } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""
SORT_TYPES = {"customers": "CustomerSortKeys", "orders": "OrderSortKeys", "products": "ProductSortKeys"}


def client(sim) -> httpx.Client:
    return httpx.Client(base_url=sim.url, headers=AUTH, timeout=60)


def gql(c: httpx.Client, query: str, variables: dict | None = None) -> dict:
    r = c.post(ENDPOINT, json={"query": query, "variables": variables or {}})
    assert r.status_code == 200, r.text
    return r.json()


def read_all(c: httpx.Client, field: str, query: str | None = None, sort: str = "UPDATED_AT",
             reverse: bool = False, first: int = 250) -> list[list[dict]]:
    """Every page of a top-level connection, following endCursor."""
    text = PAGE % {"field": field, "sort": SORT_TYPES[field]}
    pages, after = [], None
    while True:
        body = gql(c, text, {"first": first, "after": after, "query": query, "sort": sort, "reverse": reverse})
        assert "errors" not in body, body["errors"]
        conn = body["data"][field]
        pages.append([edge["node"] for edge in conn["edges"]])
        if not conn["pageInfo"]["hasNextPage"]:
            return pages
        assert conn["pageInfo"]["endCursor"] == conn["edges"][-1]["cursor"]
        after = conn["pageInfo"]["endCursor"]


def versions(pages: list[list[dict]]) -> list[tuple[str, str]]:
    return [(n["id"], n["updatedAt"]) for page in pages for n in page]


# ---- paging truth ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "sort"), [("customers", "UPDATED_AT"), ("orders", "UPDATED_AT"),
                                             ("products", "UPDATED_AT"), ("customers", "ID"),
                                             ("orders", "PROCESSED_AT")])
def test_paging_returns_every_record_existing_at_the_clock_exactly_once(simulator, field, sort):
    sim = simulator(rate_limits=False, **WORLD)
    world = sim.state.world
    with client(sim) as c:
        got = versions(read_all(c, field, sort=sort))
    assert len(got) == len(set(got))
    assert set(got) == world.truth_versions(field, world.now)


def test_reverse_paging_and_updated_at_order(simulator):
    sim = simulator(rate_limits=False, **WORLD)
    world = sim.state.world
    with client(sim) as c:
        got = versions(read_all(c, "products", sort="UPDATED_AT", reverse=True))
    assert set(got) == world.truth_versions("products", world.now)
    stamps = [u for _, u in got]
    assert stamps == sorted(stamps, reverse=True)


@pytest.mark.parametrize("field", ["customers", "orders"])
def test_updated_at_window_matches_truth(simulator, field):
    sim = simulator(rate_limits=False, **WORLD)
    world = sim.state.world
    _, updated = world.index(field, world.now)
    start, end = int(updated[len(updated) // 3]), int(updated[2 * len(updated) // 3])
    with client(sim) as c:
        got = versions(read_all(c, field, query=f"updated_at:>='{iso(start)}' AND updated_at:<'{iso(end)}'"))
        # the same window with the other comparators and double quotes
        alt = versions(read_all(c, field, query=f'updated_at:>"{iso(start - 1)}" updated_at:<="{iso(end - 1)}"'))
    truth = world.truth_versions(field, world.now, start, end)
    assert truth and set(got) == truth and len(got) == len(truth)
    assert set(alt) == truth


def test_created_at_window(simulator):
    sim = simulator(rate_limits=False, **WORLD)
    world = sim.state.world
    rows, _ = world.index("customers", world.now)
    created = world.customers.created_at[rows]
    start, end = int(sorted(created)[100]), int(sorted(created)[700])
    with client(sim) as c:
        got = versions(read_all(c, "customers", query=f"created_at:>='{iso(start)}' created_at:<'{iso(end)}'",
                                sort="CREATED_AT"))
    expected = {world.record_id("customers", int(r)) for r, t in zip(rows, created, strict=True) if start <= t < end}
    assert {i for i, _ in got} == expected


def test_ties_larger_than_a_page_page_through_without_loss(simulator):
    sim = simulator(rate_limits=False, tie_burst_size=600, **WORLD)
    world = sim.state.world
    _, updated = world.index("customers", world.now)
    values, counts = np.unique(updated, return_counts=True)
    tie, size = int(values[counts.argmax()]), int(counts.max())
    assert size > 2 * 250  # the burst (minus members deleted since) spans several pages
    with client(sim) as c:
        everything = versions(read_all(c, "customers"))
        burst = versions(read_all(c, "customers", query=f"updated_at:>='{iso(tie)}' AND updated_at:<='{iso(tie)}'",
                                  first=100))
    assert len(everything) == len(set(everything))
    assert set(everything) == world.truth_versions("customers", world.now)
    assert len(burst) == size and set(burst) == world.truth_versions("customers", world.now, tie, tie + 1)


def test_unquoted_timestamps_are_cut_at_the_colon_as_on_shopify(simulator):
    sim = simulator(rate_limits=False, **WORLD)
    with client(sim) as c:
        body = gql(c, '{ customers(first: 1, query: "updated_at:>=2026-01-01T10:20:30Z") { nodes { id } } }')
    search = body["extensions"]["search"][0]
    assert search["parsed"]["and"][0] == {"field": "updated_at", "range_gte": "2026-01-01T10:00:00+00:00"}
    assert search["warnings"] == [{"field": "20", "message": "Invalid search field for this query.",
                                   "code": "invalid_field"}]


# ---- shapes ------------------------------------------------------------------------------------------------
def test_order_shape_money_and_nested_objects(simulator):
    sim = simulator(rate_limits=False, **WORLD)
    world = sim.state.world
    with client(sim) as c:
        body = gql(c, """{ orders(first: 50, sortKey: ID, query: "financial_status:partially_refunded") { nodes {
            id legacyResourceId name email displayFinancialStatus displayFulfillmentStatus processedAt
            totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { currencyCode } }
            totalRefundedSet { shopMoney { amount } }
            customer { id } shippingAddress { countryCodeV2 city }
            lineItems(first: 10) { nodes { id quantity currentQuantity sku variant { id price product { id } } } }
            refunds { id createdAt refundLineItems(first: 5) { nodes { quantity restockType lineItem { id } } } }
        } } }""")
    nodes = body["data"]["orders"]["nodes"]
    assert nodes
    for node in nodes:
        o = world.orders.order_id.tolist().index(int(node["legacyResourceId"]))
        state = world.order_at(o, world.now)
        assert node["id"] == world.record_id("orders", o) and node["name"] == state["name"]
        assert node["displayFinancialStatus"] == "PARTIALLY_REFUNDED"
        assert node["totalPriceSet"]["shopMoney"] == {"amount": decimal(state["total_cents"]), "currencyCode": "USD"}
        assert node["totalRefundedSet"]["shopMoney"]["amount"] == decimal(state["refunded_cents"])
        assert node["processedAt"] == iso(state["created_at"])
        [refund] = node["refunds"]
        [refund_line] = refund["refundLineItems"]["nodes"]
        refunded = next(li for li in node["lineItems"]["nodes"] if li["id"] == refund_line["lineItem"]["id"])
        assert refunded["currentQuantity"] == 0 and refund_line["quantity"] == refunded["quantity"]
        assert refund_line["restockType"] == "RETURN"


def decimal(cents: int) -> str:
    """Shopify's Decimal text: '228.2', '12.34', '0.0'."""
    whole, frac = divmod(cents, 100)
    return f"{whole}." + (f"{frac:02d}".rstrip("0") or "0")


def test_customer_shape_consent_and_tags_follow_versions(simulator):
    sim = simulator(rate_limits=False, **WORLD)
    world = sim.state.world
    query = """query($id: ID!) { customer(id: $id) { id updatedAt tags numberOfOrders amountSpent { amount }
        defaultEmailAddress { emailAddress marketingState } emailMarketingConsent { marketingState } } }"""
    rows, _ = world.index("customers", world.now)
    c_index = int(rows[0])
    gid = world.record_id("customers", c_index)
    with client(sim) as c:
        before = gql(c, query, {"id": gid})["data"]["customer"]
        world.touch("customers", c_index, world.now)
        after = gql(c, query, {"id": gid})["data"]["customer"]
    state = world.customer_at(c_index, world.now)
    assert before["defaultEmailAddress"]["emailAddress"] == state["email"]
    assert before["numberOfOrders"] == str(state["orders_count"])
    assert after["updatedAt"] == iso(world.now) and after["tags"] != before["tags"]


def test_deleted_records_vanish_and_are_reported_as_events(simulator):
    sim = simulator(rate_limits=False, **WORLD)
    world = sim.state.world
    now = world.now
    since = now - 365 * 86_400  # events are kept for a year
    deleted_products = {world.record_id("products", int(i))
                        for i in world.deleted_between("products", since + 1, now + 1)}
    deleted_customers = {world.record_id("customers", int(i))
                         for i in world.deleted_between("customers", since + 1, now + 1)}
    assert deleted_products and deleted_customers
    events = """query($after: String, $q: String) { events(first: 250, after: $after, query: $q) {
        nodes { action ... on BasicEvent { subjectId subjectType } } pageInfo { hasNextPage endCursor } } }"""
    with client(sim) as c:
        seen, after = [], None
        while True:
            conn = gql(c, events, {"after": after, "q": "action:destroy"})["data"]["events"]
            seen += conn["nodes"]
            if not conn["pageInfo"]["hasNextPage"]:
                break
            after = conn["pageInfo"]["endCursor"]
        legacy = gql(c, "{ deletionEvents(first: 250, subjectTypes: [PRODUCT]) { nodes { subjectId } } }")
        live = {i for i, _ in versions(read_all(c, "customers"))}
    assert {e["subjectId"] for e in seen if e["subjectType"] == "PRODUCT"} == deleted_products
    assert {e["subjectId"] for e in seen if e["subjectType"] == "CUSTOMER"} == deleted_customers
    assert {e["subjectId"] for e in legacy["data"]["deletionEvents"]["nodes"]} == deleted_products
    assert not live & deleted_customers


# ---- cost and throttling -----------------------------------------------------------------------------------
def test_requested_cost_follows_shopifys_rules(simulator):
    sim = simulator(rate_limits=False, **WORLD)
    with client(sim) as c:
        # measured on live shops: 250 orders with lineItems(first: 250) { nodes { id } } cost 156
        heavy = gql(c, "{ orders(first: 250) { nodes { id lineItems(first: 250) { nodes { id } } } } }")
        small = gql(c, """{ customers(first: 10) { edges { node { id amountSpent { amount }
            defaultAddress { city } lastOrder { id } } } pageInfo { hasNextPage } } }""")
    mult = lambda n: math.floor(2 * math.log(max(2, n)))  # noqa: E731
    assert heavy["extensions"]["cost"]["requestedQueryCost"] == 2 + mult(250) * (1 + 2 + mult(250) * 1) == 156
    # connection 2 + multiplier x (node 1 + defaultAddress 1 + lastOrder 1); money and pageInfo are free
    assert small["extensions"]["cost"]["requestedQueryCost"] == 2 + mult(10) * 3
    cost = small["extensions"]["cost"]
    assert cost["actualQueryCost"] <= cost["requestedQueryCost"]
    assert cost["throttleStatus"] == {"maximumAvailable": 2000.0, "currentlyAvailable": 2000 - cost["actualQueryCost"],
                                      "restoreRate": 100.0}


def test_throttled_when_the_bucket_runs_dry_then_restores(simulator):
    sim = simulator(rate_limits=True, **WORLD)
    aliases = " ".join(f"c{k}: customers(first: 250) {{ nodes {{ id }} }}" for k in range(70))
    expensive = "{ " + aliases + " }"
    with client(sim) as c:
        available = []
        for _ in range(10):
            body = gql(c, expensive)
            if "errors" in body:
                break
            assert body["extensions"]["cost"]["requestedQueryCost"] == 70 * 13
            available.append(body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"])
        else:
            pytest.fail("never throttled")
        assert available == sorted(available, reverse=True) and len(available) >= 2
        assert body["errors"] == [{"message": "Throttled", "extensions": {
            "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}]
        assert "data" not in body
        status = body["extensions"]["cost"]["throttleStatus"]
        assert body["extensions"]["cost"]["requestedQueryCost"] == 910
        assert body["extensions"]["cost"]["actualQueryCost"] is None
        assert status["maximumAvailable"] == 2000.0 and status["restoreRate"] == 100.0
        assert status["currentlyAvailable"] < 910
        started = time.monotonic()
        time.sleep(1.0)
        after = gql(c, "{ shop { name } }")["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]
        elapsed = time.monotonic() - started
    restored = after + 1 - status["currentlyAvailable"]
    assert 100 * 0.9 <= restored <= 100 * elapsed + 5


def test_rate_limits_off_never_throttle(simulator):
    sim = simulator(rate_limits=False, **WORLD)
    aliases = " ".join(f"c{k}: customers(first: 250) {{ nodes {{ id }} }}" for k in range(70))
    with client(sim) as c:
        for _ in range(4):
            assert "errors" not in gql(c, "{ " + aliases + " }")


def test_max_cost_exceeded(simulator):
    sim = simulator(rate_limits=True, **WORLD)
    query = """{ orders(first: 250) { nodes { lineItems(first: 250) { nodes { variant { product {
        variants(first: 250) { nodes { id } } } } } } } } }"""
    with client(sim) as c:
        body = gql(c, query)
    # order 1 + lineItems (2 + 11 x (line 1 + variant 1 + product 1 + variants (2 + 11 x 1)))
    cost = 2 + 11 * (1 + 2 + 11 * (1 + 1 + 1 + 2 + 11))
    assert cost > 1000
    [error] = body["errors"]
    assert error["message"].startswith(f"Query cost is {cost}, which exceeds the single query max cost limit (1000).")
    assert error["extensions"] == {"code": "MAX_COST_EXCEEDED", "cost": cost, "maxCost": 1000,
                                   "documentation": "https://shopify.dev/api/usage/rate-limits"}
    assert set(body) == {"errors"}


# ---- errors -------------------------------------------------------------------------------------------------
def test_bad_token_gets_shopifys_401(simulator):
    sim = simulator(rate_limits=False)
    r = httpx.post(sim.url + ENDPOINT, json={"query": "{ shop { name } }"}, headers={"X-Shopify-Access-Token": "nope"})
    assert r.status_code == 401
    assert r.json() == {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
    assert httpx.post(sim.url + ENDPOINT, json={"query": "{ shop { name } }"}).status_code == 401


def test_versions_unknown_field_page_size_and_graphql_content_type(simulator):
    sim = simulator(rate_limits=False)
    with client(sim) as c:
        assert c.post("/admin/api/2026-13/graphql.json", json={"query": "{ shop { name } }"}).status_code == 404
        old = c.post("/admin/api/2024-01/graphql.json", json={"query": "{ shop { name } }"})
        assert old.status_code == 200 and old.headers["x-shopify-api-version"] == API_VERSION
        raw = c.post(ENDPOINT, content="{ shop { currencyCode } }", headers={"Content-Type": "application/graphql"})
        assert raw.json()["data"] == {"shop": {"currencyCode": "USD"}}
        unknown = gql(c, "query Q { customers(first: 1) { nodes { id email } } }")
        too_many = gql(c, "{ customers(first: 251) { nodes { id } } }")
        missing = c.post(ENDPOINT, json={"variables": {}})
    assert unknown == {"errors": [{
        "message": "Field 'email' doesn't exist on type 'Customer'", "locations": [{"line": 1, "column": 44}],
        "path": ["query Q", "customers", "nodes", "email"],
        "extensions": {"code": "undefinedField", "typeName": "Customer", "fieldName": "email"}}]}
    [error] = too_many["errors"]
    assert error["message"] == ("first cannot exceed 250. To query larger amounts of data with fewer limits, "
                                "bulk operations should be used instead.")
    assert error["extensions"] == {"code": "BAD_REQUEST"} and error["path"] == ["customers"]
    assert missing.status_code == 400


def test_transport_fault_bodies(simulator):
    sim = simulator(faults="429=1.0", rate_limits=False)
    r = httpx.post(sim.url + ENDPOINT, json={"query": "{ shop { name } }"}, headers=AUTH)
    assert r.status_code == 429 and float(r.headers["retry-after"]) >= 1
    assert r.headers["retry-after"].endswith(".0") and "errors" in r.json()


# ---- determinism ---------------------------------------------------------------------------------------------
def test_same_seed_same_bytes_different_seed_different(simulator):
    query = """query($after: String) { orders(first: 100, after: $after, sortKey: UPDATED_AT) {
        edges { cursor node { id updatedAt tags totalPriceSet { presentmentMoney { amount currencyCode } }
        lineItems(first: 5) { nodes { sku quantity } } } } pageInfo { endCursor } } }"""

    def bodies(sim) -> list[bytes]:
        out, after = [], None
        with client(sim) as c:
            for _ in range(3):
                r = c.post(ENDPOINT, json={"query": query, "variables": {"after": after}})
                out.append(r.content)
                after = r.json()["data"]["orders"]["pageInfo"]["endCursor"]
        return out

    a = bodies(simulator(rate_limits=False, customers=800, seed=5))
    b = bodies(simulator(rate_limits=False, customers=800, seed=5))
    other = bodies(simulator(rate_limits=False, customers=800, seed=6))
    assert a == b
    assert a[0] != other[0]


# ---- data-level faults -----------------------------------------------------------------------------------------
def test_duplicates_repeat_the_previous_pages_last_record(simulator):
    sim = simulator(faults="duplicates=1.0", rate_limits=False, **WORLD)
    world = sim.state.world
    with client(sim) as c:
        pages = read_all(c, "customers")
    for previous, page in zip(pages, pages[1:], strict=False):
        assert page[0] == previous[-1]
    got = versions(pages)
    assert len(got) == len(set(got)) + len(pages) - 1
    assert set(got) == world.truth_versions("customers", world.now)


def test_mid_read_updates_move_unread_records_out_of_the_window(simulator):
    sim = simulator(faults="midread=1.0", rate_limits=False, **WORLD)
    world = sim.state.world
    now = world.now
    before = world.truth_versions("customers", now, None, now)
    with client(sim) as c:
        pages = read_all(c, "customers", query=f"updated_at:<'{iso(now)}'")
    got = set(versions(pages))
    missing = {i for i, _ in before} - {i for i, _ in got}
    assert len(pages) > 2 and got <= before
    assert len(missing) == len(pages) - 1  # one unread record edited during each follow-up page
    rows, updated = world.index("customers", now)
    now_stamped = {world.record_id("customers", int(r)) for r, u in zip(rows, updated, strict=True) if u == now}
    assert missing <= now_stamped


# ---- bulk operations ---------------------------------------------------------------------------------------------
RUN = """mutation($q: String!, $group: Boolean!) { bulkOperationRunQuery(query: $q, groupObjects: $group) {
    bulkOperation { id status } userErrors { field message code } } }"""
POLL = """query($id: ID!) { bulkOperation(id: $id) { id status errorCode objectCount rootObjectCount fileSize url
    partialDataUrl createdAt completedAt query } }"""


def wait_for(c: httpx.Client, gid: str, timeout: float = 30) -> tuple[dict, set[str]]:
    seen, deadline = set(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = gql(c, POLL, {"id": gid})["data"]["bulkOperation"]
        seen.add(op["status"])
        if op["status"] not in ("CREATED", "RUNNING", "CANCELING"):
            return op, seen
        time.sleep(0.1)
    pytest.fail(f"bulk operation {gid} did not finish")


@pytest.mark.parametrize("group", [False, True])
def test_bulk_query_lifecycle_and_jsonl_equal_to_paged_records(simulator, group):
    sim = simulator(rate_limits=False, customers=800, seed=3)
    bulk_query = """{ orders(query: "updated_at:>='2025-06-01T00:00:00Z'") { edges { node { id name updatedAt
        totalPriceSet { shopMoney { amount } } lineItems(first: 1) { edges { node { id quantity sku } } } } } } }"""
    paged = """query($after: String) { orders(first: 250, after: $after, query: "updated_at:>='2025-06-01T00:00:00Z'") {
        nodes { id name updatedAt totalPriceSet { shopMoney { amount } }
                lineItems(first: 250) { nodes { id quantity sku } } }
        pageInfo { hasNextPage endCursor } } }"""
    with client(sim) as c:
        started = gql(c, RUN, {"q": bulk_query, "group": group})
        payload = started["data"]["bulkOperationRunQuery"]
        assert payload["userErrors"] == [] and payload["bulkOperation"]["status"] == "CREATED"
        assert started["extensions"]["cost"]["requestedQueryCost"] == 10
        gid = payload["bulkOperation"]["id"]
        assert gid.startswith("gid://shopify/BulkOperation/")
        op, seen = wait_for(c, gid)
        current = gql(c, "{ currentBulkOperation { id status } }")["data"]["currentBulkOperation"]
        lines = [json.loads(line) for line in httpx.get(op["url"]).text.splitlines()]
        nodes, after = [], None
        while True:
            conn = gql(c, paged, {"after": after})["data"]["orders"]
            nodes += conn["nodes"]
            if not conn["pageInfo"]["hasNextPage"]:
                break
            after = conn["pageInfo"]["endCursor"]
    assert "RUNNING" in seen and op["status"] == "COMPLETED" and op["errorCode"] is None
    assert current == {"id": gid, "status": "COMPLETED"}
    parents = [{k: v for k, v in n.items() if k != "lineItems"} for n in nodes]
    children = {n["id"]: [{**li, "__parentId": n["id"]} for li in n["lineItems"]["nodes"]] for n in nodes}
    if group:
        expected = [line for p in parents for line in [p, *children[p["id"]]]]
    else:
        expected = parents + [li for p in parents for li in children[p["id"]]]
    assert lines == expected
    assert op["rootObjectCount"] == str(len(parents)) and op["objectCount"] == str(len(expected))
    assert int(op["fileSize"]) > 0 and op["partialDataUrl"] is None and op["completedAt"]


def test_bulk_concurrency_limit_cancel_and_invalid_queries(simulator):
    sim = simulator(rate_limits=False, customers=300, seed=3)
    sim.state.vendor_state["shopify"].bulk.min_seconds = 30
    query = "{ customers { edges { node { id } } } }"
    with client(sim) as c:
        ops = [gql(c, RUN, {"q": query, "group": False})["data"]["bulkOperationRunQuery"] for _ in range(6)]
        invalid = gql(c, RUN, {"q": "{ shop { name } }", "group": False})["data"]["bulkOperationRunQuery"]
        unknown = gql(c, RUN, {"q": "{ customers { edges { node { nope } } } }", "group": False})
        canceled = [gql(c, "mutation($id: ID!) { bulkOperationCancel(id: $id) { bulkOperation { status } "
                           "userErrors { message } } }", {"id": op["bulkOperation"]["id"]})
                    for op in ops[:5]]
        finals = [wait_for(c, op["bulkOperation"]["id"])[0]["status"] for op in ops[:5]]
    assert all(op["userErrors"] == [] for op in ops[:5])
    assert ops[5] == {"bulkOperation": None, "userErrors": [{
        "field": None, "message": "Bulk operations limit reached. Please try again later.", "code": "LIMIT_REACHED"}]}
    assert invalid["bulkOperation"] is None and invalid["userErrors"][0]["code"] == "INVALID"
    assert "doesn't exist on type 'Customer'" in unknown["data"]["bulkOperationRunQuery"]["userErrors"][0]["message"]
    assert all(r["data"]["bulkOperationCancel"]["bulkOperation"]["status"] == "CANCELING" for r in canceled)
    assert finals == ["CANCELED"] * 5


# ---- the official SDK -------------------------------------------------------------------------------------------
def test_official_sdk_graphql_query(simulator):
    sim = simulator(rate_limits=False, **WORLD)
    world = sim.state.world
    port = int(sim.url.rsplit(":", 1)[1])
    # The SDK builds https://<shop>.myshopify.com; its class-level hooks point it at the simulator instead:
    # shop "127" + domain "0.0.1" + port -> http://127.0.0.1:<port>/admin/api/<version>.
    saved = {k: getattr(shopify.Session, k) for k in ("protocol", "myshopify_domain", "port")}
    shopify.Session.setup(protocol="http", myshopify_domain="0.0.1", port=port)
    try:
        session = shopify.Session("127", API_VERSION, TOKENS["shopify"])
        shopify.ShopifyResource.activate_session(session)
        body = json.loads(shopify.GraphQL().execute(
            "query($n: Int!) { customers(first: $n, sortKey: ID) { nodes { id } } }", variables={"n": 5}))
    finally:
        shopify.ShopifyResource.clear_session()
        shopify.Session.setup(**saved)
    ids = [n["id"] for n in body["data"]["customers"]["nodes"]]
    truth = sorted(world.truth_versions("customers", world.now), key=lambda v: int(v[0].rsplit("/", 1)[1]))
    assert ids == [i for i, _ in truth[:5]]
