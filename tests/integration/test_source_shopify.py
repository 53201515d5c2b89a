"""The Shopify extractor against the simulator over real HTTP: exact windows under faults, bulk = paged, deletions,
cost pacing, revoked tokens, secrets kept out of logs, and payloads that follow the selection."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from datetime import datetime

import httpx
import pytest

from simulator.faults import Faults
from simulator.shopify import API_VERSION
from simulator.state import TOKENS
from simulator.world import iso
from tailor.sources import Credentials, Progress, RecordVersion, Window
from tailor.sources.http import AuthError, RetryPolicy, SourceError
from tailor.sources.shopify import ShopifyExtractor, ShopifyPacer
from tests.integration.lakekit import at

TOKEN = TOKENS["shopify"]
CONN_ID = "shopify_test"
ENTITIES = ("customers", "orders", "products")
# Requests time out well before the simulator's slow answers (3 s) and are retried; retry waits stay tiny.
FAST_POLICY = RetryPolicy(attempts=8, base_delay=0.01, max_delay=0.05, timeout=1.0)


def fast_sleep(seconds: float) -> None:
    """Waits that are not the point of a test are cut short (Retry-After, bulk polling)."""
    time.sleep(min(seconds, 0.05))


def extractor(sim, **options) -> ShopifyExtractor:
    options = {"bulk_threshold": None, "http_policy": FAST_POLICY, "sleep": fast_sleep,
               "bulk_poll_interval": 0.1, **options}
    return ShopifyExtractor(Credentials(CONN_ID, sim.url, TOKEN), **options)


def keys(records: list[RecordVersion]) -> list[tuple[str, str]]:
    """(record_id, updatedAt ISO) of the live versions, in order yielded."""
    return [(r.record_id, r.payload["updatedAt"]) for r in records if not r.is_deleted]


def key_of(record: RecordVersion) -> tuple[str, str, bool]:
    return record.record_id, record.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ"), record.is_deleted


def assert_no_duplicates(found: list[tuple[str, str]]) -> None:
    repeated = [k for k, n in Counter(found).items() if n > 1]
    assert not repeated, f"{len(repeated)} versions yielded twice, e.g. {repeated[:3]}"


# ---- exact windows under every fault profile -------------------------------------------------------------------
@pytest.mark.parametrize("entity", ENTITIES)
@pytest.mark.parametrize("faults", ["none", "flaky", "hostile"])
def test_window_versions_equal_truth_under_faults(simulator, faults, entity):
    """Exactness: each window yields every version once, and nothing else.

    With mid-read updates a record the read has not reached yet gets a new version at the clock while the window
    is read; it leaves the window and belongs to the later one. So W1 = [now-200d, now-6h) and the later
    W2 = [now-6h, now+1s) are read one after the other, and after both the ground truth is evaluated: the union of
    the two outputs must equal the truth over [now-200d, now+1s), with no version yielded twice (within or across
    windows). Without faults W1 alone equals the truth as it was before reading.
    """
    sim = simulator(customers=1200, seed=21, faults=faults, rate_limits=False)
    world = sim.state.world
    now = world.now
    start, mid, end = now - 200 * 86_400, now - 6 * 3600, now + 1
    truth_before = world.truth_versions(entity, now, start, mid)
    ex = extractor(sim)
    progress = Progress()
    first = list(ex.extract(entity, Window(at(start), at(mid)), progress))
    second = list(ex.extract(entity, Window(at(mid), at(end)), progress))
    got_first, got_second = keys(first), keys(second)
    assert_no_duplicates(got_first + got_second)
    truth_after = world.truth_versions(entity, now, start, end)
    assert set(got_first) | set(got_second) == truth_after
    assert set(got_first) == world.truth_versions(entity, now, start, mid)
    assert all(start <= r.updated_at.timestamp() < mid for r in first)
    assert progress.records == len(first) + len(second)
    if faults == "none":
        # exact and never throttled; a retry can still happen on a loaded machine (a read that timed out: twice in
        # full CI runs), and the versions must be exact all the same
        assert set(got_first) == truth_before and ex.throttled_responses == 0
    else:
        # the mass update (more records at one second than a page holds) lies in W1 and paged exactly
        ties = Counter(u for _, u in got_first).most_common(1)[0][1]
        assert ties > 250 or entity == "products"
    if faults == "hostile":
        assert progress.retries > 0  # transport faults were met and retried


def test_hostile_faults_exercise_duplicates_and_mid_read_edits(simulator):
    """The hostile run above is exact *because* of dedupe and keyset paging: show that those faults fired."""
    sim = simulator(customers=1200, seed=21, faults="hostile", rate_limits=False)
    world = sim.state.world
    ex = extractor(sim)
    window = Window(at(world.now - 200 * 86_400), at(world.now + 1))
    got = keys(list(ex.extract("orders", window)))
    assert_no_duplicates(got)
    assert set(got) == world.truth_versions("orders", world.now, world.now - 200 * 86_400, world.now + 1)
    assert ex.duplicates_dropped > 0  # pages repeated a record of the previous page
    assert world.touched("orders")  # records were edited mid-read and still came out exactly once


# ---- bulk operations --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("entity", ENTITIES)
def test_bulk_yields_the_same_versions_and_payloads_as_paging(simulator, entity):
    sim = simulator(customers=1200, seed=21, rate_limits=False)
    world = sim.state.world
    window = Window(at(world.now - 200 * 86_400), at(world.now))
    paged_ex, bulk_ex = extractor(sim), extractor(sim, bulk_threshold=0)
    paged = {key_of(r): r for r in paged_ex.extract(entity, window)}
    bulk = list(bulk_ex.extract(entity, window))
    assert paged_ex.last_path == "paged" and bulk_ex.last_path == "bulk"
    assert_no_duplicates(keys(bulk))
    assert set(keys(bulk)) == world.truth_versions(entity, world.now, world.now - 200 * 86_400, world.now)
    by_key = {key_of(r): r for r in bulk}
    assert by_key.keys() == paged.keys()
    for key, record in paged.items():  # byte for byte, key order included
        assert json.dumps(by_key[key].payload) == json.dumps(record.payload), key
    if entity == "orders":  # what the bulk query cannot carry was filled in
        refunded = [r.payload for r in bulk if r.payload["refunds"]]
        assert refunded and all(f["refundLineItems"] for p in refunded for f in p["refunds"])
        assert all(p["lineItems"] for p in (r.payload for r in bulk))


def test_bulk_threshold_picks_the_path_from_the_count(simulator):
    sim = simulator(customers=600, seed=21, rate_limits=False)
    world = sim.state.world
    window = Window(at(world.now - 90 * 86_400), at(world.now))
    size = len(world.truth_versions("customers", world.now, world.now - 90 * 86_400, world.now))
    at_threshold, below = extractor(sim, bulk_threshold=size), extractor(sim, bulk_threshold=size + 1)
    a, b = keys(list(at_threshold.extract("customers", window))), keys(list(below.extract("customers", window)))
    assert at_threshold.last_path == "bulk" and below.last_path == "paged"
    assert sorted(a) == sorted(b) and len(a) == size


def test_bulk_under_hostile_faults_is_exact(simulator):
    sim = simulator(customers=800, seed=4, faults="hostile", rate_limits=False)
    world = sim.state.world
    ex = extractor(sim, bulk_threshold=0)
    window = Window(at(world.now - 365 * 86_400), at(world.now))
    got = keys(list(ex.extract("orders", window)))
    assert ex.last_path == "bulk"
    assert_no_duplicates(got)
    assert set(got) == world.truth_versions("orders", world.now, world.now - 365 * 86_400, world.now)


def test_bulk_waits_for_a_free_slot_when_the_limit_is_reached(simulator):
    sim = simulator(customers=300, seed=21, rate_limits=False)
    sim.state.vendor_state["shopify"].bulk.min_seconds = 1.0  # every operation runs at least a second
    world = sim.state.world
    run = ("mutation($q: String!) { bulkOperationRunQuery(query: $q) { bulkOperation { id } "
           "userErrors { code } } }")
    with httpx.Client(base_url=sim.url, headers={"X-Shopify-Access-Token": TOKEN}) as c:
        for _ in range(5):  # another app's operations fill all five slots
            body = c.post(f"/admin/api/{API_VERSION}/graphql.json",
                          json={"query": run, "variables": {"q": "{ products { edges { node { id } } } }"}}).json()
            assert body["data"]["bulkOperationRunQuery"]["userErrors"] == []
    progress = Progress()
    ex = extractor(sim, bulk_threshold=0, sleep=time.sleep, bulk_poll_interval=0.2, bulk_poll_max=0.5)
    window = Window(at(world.now - 365 * 86_400), at(world.now))
    got = keys(list(ex.extract("customers", window, progress)))
    assert progress.rate_waits > 0  # LIMIT_REACHED was waited out
    assert set(got) == world.truth_versions("customers", world.now, world.now - 365 * 86_400, world.now)


def test_failed_bulk_operation_raises_with_its_error_code(simulator):
    sim = simulator(customers=300, seed=21, rate_limits=False)
    shutil.rmtree(sim.state.files_dir)  # the operation cannot write its result: Shopify reports FAILED
    ex = extractor(sim, bulk_threshold=0)
    window = Window(at(sim.state.world.now - 30 * 86_400), at(sim.state.world.now))
    with pytest.raises(SourceError, match=r"ended FAILED with error code INTERNAL_SERVER_ERROR") as info:
        list(ex.extract("customers", window))
    assert CONN_ID in str(info.value)


# ---- deletions ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bulk_threshold", [None, 0])
def test_deletions_in_the_window_come_as_deleted_versions(simulator, bulk_threshold):
    sim = simulator(customers=1200, seed=21, rate_limits=False)
    world = sim.state.world
    start, end = world.now - 300 * 86_400, world.now + 1
    ex = extractor(sim, bulk_threshold=bulk_threshold)
    for entity in ("customers", "products"):
        expected = {world.record_id(entity, int(i)): iso(int(getattr(world, entity).deleted_at[i]))
                    for i in world.deleted_between(entity, start, end)}
        assert expected, f"the world has no {entity} deleted in the window"
        records = list(ex.extract(entity, Window(at(start), at(end))))
        deleted = [r for r in records if r.is_deleted]
        assert {r.record_id: r.payload["createdAt"] for r in deleted} == expected
        assert all(r.updated_at == datetime.fromisoformat(r.payload["createdAt"]) for r in deleted)
        assert all(r.payload["action"] == "destroy" and r.payload["subjectId"] == r.record_id for r in deleted)
        assert not {r.record_id for r in records if not r.is_deleted} & expected.keys()
    orders = list(ex.extract("orders", Window(at(start), at(end))))
    assert not any(r.is_deleted for r in orders)


# ---- rate limits ------------------------------------------------------------------------------------------------
def test_pacing_keeps_a_steady_extraction_free_of_throttling(simulator):
    """With the Standard plan's bucket (2000 points, 100/s), customers then ~2500 orders cost more than the
    bucket holds: the pacer has to wait, and waits just enough that Shopify never answers THROTTLED."""
    sim = simulator(customers=3000, seed=5, rate_limits=True)
    world = sim.state.world
    _, updated = world.index("orders", world.now)
    order_start = int(updated[-2500])
    progress = Progress()
    ex = ShopifyExtractor(Credentials(CONN_ID, sim.url, TOKEN), bulk_threshold=None)
    customers = keys(list(ex.extract("customers", Window(at(0), at(world.now + 1)), progress)))
    orders = keys(list(ex.extract("orders", Window(at(order_start), at(world.now + 1)), progress)))
    assert set(customers) == world.truth_versions("customers", world.now, 0, world.now + 1)
    assert set(orders) == world.truth_versions("orders", world.now, order_start, world.now + 1)
    assert progress.rate_waits > 0  # the bucket ran low: pacing had to act
    assert ex.throttled_responses <= 1


def test_pacer_waits_for_the_bucket_to_hold_the_next_querys_cost():
    now = [100.0]
    pacer = ShopifyPacer(clock=lambda: now[0], margin_points=0, margin_seconds=0)
    assert pacer.wait_before(500) == 0.0  # nothing known yet
    body = {"extensions": {"cost": {"requestedQueryCost": 541, "actualQueryCost": 178, "throttleStatus": {
        "maximumAvailable": 2000.0, "currentlyAvailable": 300, "restoreRate": 100.0}}}}
    pacer.observe(httpx.Response(200), body)
    assert pacer.wait_before(541) == pytest.approx(2.41)  # (541 - 300) / 100
    assert pacer.wait_before(100) == pytest.approx(2.41 + 1.0)  # the first request's points are reserved
    now[0] += 60
    assert pacer.wait_before(541) == 0.0  # a minute later the bucket is full again


def test_page_size_shrinks_when_a_selection_costs_more_than_shopify_allows(simulator, caplog):
    """A richer selection can price a page of 250 above the 1000-point cap (MAX_COST_EXCEEDED): the page size is
    halved until Shopify accepts it, and the window still comes out whole."""
    sim = simulator(customers=300, seed=21, rate_limits=False)
    world = sim.state.world
    heavy = "heavyLines: lineItems(first: 250) { nodes { id product { id } variant { id product { id } } } }"
    ex = extractor(sim, extra_fields={"orders": [heavy]})
    window = Window(at(world.now - 365 * 86_400), at(world.now))
    with caplog.at_level(logging.WARNING):
        records = list(ex.extract("orders", window))
    assert "exceeds 1000 points, page size now 125" in caplog.text
    assert set(keys(records)) == world.truth_versions("orders", world.now, world.now - 365 * 86_400, world.now)
    assert all(r.payload["heavyLines"]["nodes"] for r in records)  # an extra field comes back as Shopify sent it


# ---- credentials and secrets ------------------------------------------------------------------------------------
def test_revoked_token_fails_fast_naming_the_connection(simulator, caplog):
    caplog.set_level(logging.DEBUG)
    sim = simulator(customers=300, seed=21, faults="revoked", rate_limits=False)
    progress = Progress()
    ex = ShopifyExtractor(Credentials(CONN_ID, sim.url, TOKEN))  # default policy: a retry storm would show
    with pytest.raises(AuthError, match=f"connection '{CONN_ID}'") as info:
        list(ex.extract("customers", Window(at(0), at(sim.state.world.now)), progress))
    assert "HTTP 401" in str(info.value) and "Invalid API key or access token" in str(info.value)
    assert ex.requests_sent == 1 and progress.retries == 0
    assert TOKEN not in str(info.value) and TOKEN not in caplog.text


def test_token_never_reaches_logs_or_errors(simulator, caplog):
    caplog.set_level(logging.DEBUG)
    sim = simulator(customers=300, seed=3, faults="hostile", rate_limits=False)
    ex = extractor(sim, bulk_threshold=0)
    window = Window(at(sim.state.world.now - 365 * 86_400), at(sim.state.world.now))
    list(ex.extract("orders", window))
    ex.http_policy = RetryPolicy(attempts=1, timeout=1.0)
    errors = []
    for entity in ENTITIES:  # failures carry messages too
        sim.state.faults = Faults(rate_5xx=1.0)
        with pytest.raises(SourceError) as info:
            list(ex.extract(entity, window))
        errors.append(str(info.value))
    assert "retry" in caplog.text.lower()  # the run logged its retries...
    assert TOKEN not in caplog.text  # ...without the token
    assert all(TOKEN not in message and CONN_ID in message for message in errors)
    assert TOKEN not in repr(ex.credentials)


# ---- payloads follow the selection ------------------------------------------------------------------------------
@pytest.mark.parametrize("bulk_threshold", [None, 0])
def test_fields_added_or_removed_flow_through_as_returned(simulator, bulk_threshold):
    sim = simulator(customers=600, seed=21, rate_limits=False)
    world = sim.state.world
    window = Window(at(world.now - 120 * 86_400), at(world.now))
    base = extractor(sim, bulk_threshold=bulk_threshold)
    changed = extractor(sim, bulk_threshold=bulk_threshold,
                        extra_fields={"customers": ["note", "canDelete"], "orders": ["closed"]},
                        without_fields={"customers": ["tags", "locale"], "orders": ["lineItems", "refunds"]})
    for entity, added, removed in (("customers", {"note", "canDelete"}, {"tags", "locale"}),
                                   ("orders", {"closed"}, {"lineItems", "refunds"})):
        before = {(r.record_id, r.payload["updatedAt"]): r.payload for r in base.extract(entity, window)
                  if not r.is_deleted}
        after = {(r.record_id, r.payload["updatedAt"]): r.payload for r in changed.extract(entity, window)
                 if not r.is_deleted}
        assert before.keys() == after.keys() and before
        for key, payload in after.items():
            assert set(payload) == (set(before[key]) - removed) | added
            assert all(payload[k] == before[key][k] for k in set(payload) - added)
    with pytest.raises(ValueError, match="updatedAt cannot be dropped"):
        extractor(sim, without_fields={"customers": ["updatedAt"]})
