"""The `silent` fault: a vendor answers every data read with no records (HTTP 200, well-formed empty pages), as
when a permission scope or a filter silently broke, while the other vendors serve as usual; and the faults of
a running simulator switched at runtime through POST /_simulator/faults."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from simulator.faults import VENDORS, Faults, FaultSpecError, parse_faults
from simulator.klaviyo import REVISION
from simulator.shopify import API_VERSION
from simulator.state import TOKENS

SHOPIFY = {"X-Shopify-Access-Token": TOKENS["shopify"]}
HUBSPOT = {"Authorization": f"Bearer {TOKENS['hubspot']}"}
KLAVIYO = {"Authorization": f"Klaviyo-API-Key {TOKENS['klaviyo']}", "revision": REVISION,
           "Accept": "application/vnd.api+json"}
GRAPHQL = f"/admin/api/{API_VERSION}/graphql.json"
WORLD = {"customers": 500, "seed": 17}

NEWEST = """{ customers(first: 1, reverse: true, sortKey: UPDATED_AT) { edges { node { id } } pageInfo { hasNextPage } }
  orders(first: 5, sortKey: UPDATED_AT) { edges { node { id } } pageInfo { hasNextPage endCursor } }
  products(first: 5) { nodes { id } }
  events(first: 5) { edges { node { id } } }
  customersCount { count } ordersCount { count } productsCount { count } }"""
BULK = """mutation($q: String!) { bulkOperationRunQuery(query: $q) { bulkOperation { id status } userErrors { message } } }"""
POLL = """query($id: ID!) { bulkOperation(id: $id) { status objectCount rootObjectCount url errorCode } }"""


def gql(sim, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(sim.url + GRAPHQL, json={"query": query, "variables": variables or {}}, headers=SHOPIFY,
                          timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def shopify_reads(sim, gid: str) -> dict:
    """How many records each kind of Shopify read returns."""
    data = gql(sim, NEWEST)
    node = gql(sim, "query($id: ID!) { node(id: $id) { id } }", {"id": gid})["node"]
    return {"customers": len(data["customers"]["edges"]), "orders": len(data["orders"]["edges"]),
            "products": len(data["products"]["nodes"]), "events": len(data["events"]["edges"]),
            "counts": sum(data[k]["count"] for k in ("customersCount", "ordersCount", "productsCount")),
            "node": int(node is not None)}


def hubspot_reads(sim, contact_id: str) -> dict:
    listed = httpx.get(sim.url + "/crm/v3/objects/contacts", params={"limit": 5}, headers=HUBSPOT)
    newest = httpx.post(sim.url + "/crm/v3/objects/contacts/search", headers=HUBSPOT, json={
        "limit": 1, "sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}]})
    one = httpx.get(sim.url + f"/crm/v3/objects/contacts/{contact_id}", headers=HUBSPOT)
    assert listed.status_code == newest.status_code == 200
    assert one.status_code in (200, 404)
    return {"list": len(listed.json()["results"]), "search": len(newest.json()["results"]),
            "total": newest.json()["total"], "by_id": int(one.status_code == 200)}


def klaviyo_reads(sim, profile_id: str) -> dict:
    profiles = httpx.get(sim.url + "/api/profiles", params={"page[size]": 5}, headers=KLAVIYO)
    newest = httpx.get(sim.url + "/api/profiles", params={"sort": "-updated", "page[size]": 1}, headers=KLAVIYO)
    events = httpx.get(sim.url + "/api/events", params={"sort": "-datetime"}, headers=KLAVIYO)
    one = httpx.get(sim.url + f"/api/profiles/{profile_id}", headers=KLAVIYO)
    assert profiles.status_code == newest.status_code == events.status_code == 200
    assert one.status_code in (200, 404)
    for page in (profiles, newest, events):
        assert "links" in page.json()
    return {"profiles": len(profiles.json()["data"]), "newest": len(newest.json()["data"]),
            "events": len(events.json()["data"]), "by_id": int(one.status_code == 200),
            "more": int(events.json()["links"]["next"] is not None)}


def reads(sim) -> dict[str, dict]:
    world, t = sim.state.world, sim.state.world.now
    return {"shopify": shopify_reads(sim, world.record_id("customers", int(world.index("customers", t)[0][0]))),
            "hubspot": hubspot_reads(sim, world.record_id("contacts", int(world.index("contacts", t)[0][0]))),
            "klaviyo": klaviyo_reads(sim, world.record_id("profiles", int(world.index("profiles", t)[0][0])))}


def set_faults(sim, spec: str) -> httpx.Response:
    return httpx.post(sim.url + "/_simulator/faults", json={"faults": spec})


def test_parse_silent_and_spec_round_trip():
    assert parse_faults("silent=klaviyo").silent == {"klaviyo"}
    both = parse_faults("flaky,silent=klaviyo+HubSpot")
    assert both.silent == {"klaviyo", "hubspot"} and both.rate_429 == 0.03
    assert parse_faults(both.spec()) == both
    assert parse_faults("revoked,429=0.25").spec() == "429=0.25,revoked"
    assert Faults().spec() == "none" and Faults().as_json()["silent"] == []
    for bad, message in (("silent=", "joined by '+'"), ("silent=klaviyo+", "joined by '+'"),
                         ("silent=mailchimp", "unknown vendor 'mailchimp'")):
        with pytest.raises(FaultSpecError, match=re.escape(message)):
            parse_faults(bad)


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_silent_vendor_returns_nothing_while_the_others_serve(simulator, vendor):
    sim = simulator(faults=f"silent={vendor}", rate_limits=False, **WORLD)
    got = reads(sim)
    assert set(got[vendor].values()) == {0}, got[vendor]
    for other in VENDORS:
        if other != vendor:
            assert all(got[other].values()), (other, got[other])
    faults = httpx.get(sim.url + "/_simulator/health").json()
    assert faults["faults"]["silent"] == [vendor] and faults["faults_spec"] == f"silent={vendor}"


def test_silent_switched_at_runtime(simulator):
    sim = simulator(rate_limits=False, **WORLD)
    served = reads(sim)
    assert all(all(v.values()) for v in served.values())
    switched = set_faults(sim, "silent=klaviyo+hubspot")
    assert switched.status_code == 200
    assert switched.json()["faults"]["silent"] == ["hubspot", "klaviyo"]
    assert switched.json()["faults_spec"] == "silent=hubspot+klaviyo"
    got = reads(sim)
    assert set(got["hubspot"].values()) == set(got["klaviyo"].values()) == {0}
    assert got["shopify"] == served["shopify"]
    health = httpx.get(sim.url + "/_simulator/health").json()
    assert health["faults"]["silent"] == ["hubspot", "klaviyo"] and health["faults_spec"] == "silent=hubspot+klaviyo"
    # other faults switch the same way, and back to none the vendors serve what they served before
    assert set_faults(sim, "429=1.0").status_code == 200
    assert httpx.get(sim.url + "/crm/v3/objects/contacts", headers=HUBSPOT).status_code == 429
    assert set_faults(sim, "none").status_code == 200
    assert reads(sim) == served


def test_bad_fault_spec_at_runtime_is_a_400_and_changes_nothing(simulator):
    sim = simulator(faults="silent=shopify", rate_limits=False, **WORLD)
    for spec, message in (("silent=myspace", "unknown vendor 'myspace'"), ("nasty", "unknown fault profile"),
                          ("429=2", "within 0..1")):
        response = set_faults(sim, spec)
        assert response.status_code == 400
        assert message in response.json()["detail"]
    assert set_faults(sim, "").status_code == 200  # an empty spec is no faults, as on the command line
    assert httpx.post(sim.url + "/_simulator/faults", json={}).status_code == 422
    assert set_faults(sim, "silent=shopify").status_code == 200
    assert httpx.get(sim.url + "/_simulator/health").json()["faults"]["silent"] == ["shopify"]


def test_ties_are_kept_from_the_built_world(simulator):
    sim = simulator(faults="none", rate_limits=False, **WORLD)
    response = set_faults(sim, "flaky").json()
    assert response["faults"]["tie_burst_size"] == 0 and "ties" in response["note"]
    assert "note" not in set_faults(sim, "silent=hubspot").json()


def test_silent_shopify_bulk_operation_finds_nothing(simulator):
    sim = simulator(faults="silent=shopify", rate_limits=False, **WORLD)
    started = gql(sim, BULK, {"q": "{ customers { edges { node { id updatedAt } } } }"})["bulkOperationRunQuery"]
    assert started["userErrors"] == []
    deadline = time.monotonic() + 30
    while True:
        op = gql(sim, POLL, {"id": started["bulkOperation"]["id"]})["bulkOperation"]
        if op["status"] not in ("CREATED", "RUNNING"):
            break
        assert time.monotonic() < deadline, op
        time.sleep(0.1)
    # as on Shopify, a bulk query that matches nothing completes with no objects and no file
    assert op == {"status": "COMPLETED", "objectCount": "0", "rootObjectCount": "0", "url": None, "errorCode": None}
    created = gql(sim, "{ currentBulkOperation { createdAt } }")["currentBulkOperation"]["createdAt"]
    assert created == httpx.get(sim.url + "/_simulator/health").json()["clock"]  # stamped by the clock


def test_writes_to_a_silent_klaviyo_land_and_show_once_it_speaks_again(simulator):
    sim = simulator(faults="silent=klaviyo", rate_limits=False, **WORLD)
    body = {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": [
        {"type": "profile", "attributes": {"email": "quiet.import@example.com"}}]}}}}
    job = httpx.post(sim.url + "/api/profile-bulk-import-jobs", json=body, headers=KLAVIYO)
    assert job.status_code == 202
    for _ in range(2):
        status = httpx.get(sim.url + f"/api/profile-bulk-import-jobs/{job.json()['data']['id']}", headers=KLAVIYO)
    assert status.json()["data"]["attributes"]["status"] == "complete"

    def imported() -> list:
        return httpx.get(sim.url + "/api/profiles", headers=KLAVIYO,
                         params={"filter": 'equals(email,"quiet.import@example.com")'}).json()["data"]

    assert imported() == []
    set_faults(sim, "none")
    assert len(imported()) == 1
