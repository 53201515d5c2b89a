"""HubSpot CRM v3 contacts over real HTTP: paging truth, search windows and the 10,000 cap, auth, rate limits,
data-level faults, determinism and the official SDK."""

from __future__ import annotations

import httpx
import pytest

from simulator.hubspot import BURST_LIMIT, DEFAULT_PROPERTIES, SEARCH_PER_SECOND
from simulator.state import TOKENS
from simulator.world import DAY, iso

AUTH = {"Authorization": f"Bearer {TOKENS['hubspot']}"}
CONTACTS = "/crm/v3/objects/contacts"
SEARCH = f"{CONTACTS}/search"


def client(sim) -> httpx.Client:
    return httpx.Client(base_url=sim.url, headers=AUTH, timeout=30)


def truth_time(value: str) -> str:
    """HubSpot's '2026-01-02T03:04:05.000Z' -> the ground truth's '2026-01-02T03:04:05Z'."""
    assert value.endswith(".000Z"), value
    return value[:-5] + "Z"


def list_pages(c: httpx.Client, **params) -> list[list[dict]]:
    pages, after = [], None
    while True:
        r = c.get(CONTACTS, params={**params, **({"after": after} if after else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body["results"])
        after = body.get("paging", {}).get("next", {}).get("after")
        if not after:
            return pages


def search_pages(c: httpx.Client, body: dict) -> list[list[dict]]:
    pages, after = [], None
    while True:
        r = c.post(SEARCH, json={**body, **({"after": after} if after else {})})
        assert r.status_code == 200, r.text
        data = r.json()
        pages.append(data["results"])
        after = data.get("paging", {}).get("next", {}).get("after")
        if not after:
            return pages


def versions(pages: list[list[dict]]) -> list[tuple[str, str]]:
    return [(r["id"], truth_time(r["updatedAt"])) for page in pages for r in page]


def window(start: int, end: int | None = None) -> list[dict]:
    filters = [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(start * 1000)}]
    if end is not None:
        filters.append({"propertyName": "lastmodifieddate", "operator": "LT", "value": iso(end)})
    return [{"filters": filters}]


ASCENDING = [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]


@pytest.mark.parametrize("ties", [0, 600])
def test_list_returns_every_contact_existing_at_the_clock_once(simulator, ties):
    sim = simulator(customers=2000, rate_limits=False, tie_burst_size=ties)
    world = sim.state.world
    got = versions(list_pages(client(sim), limit=100))
    assert len(got) == len(set(got))
    assert set(got) == world.truth_versions("contacts", world.now)
    ids = [int(i) for i, _ in got]
    assert ids == sorted(ids)


def test_list_archived_contacts(simulator):
    sim = simulator(customers=2000, rate_limits=False)
    world, contacts = sim.state.world, sim.state.world.contacts
    archived = {str(int(contacts.contact_id[k])) for k in range(contacts.n)
                if contacts.created_at[k] <= world.now and contacts.archived_at[k] <= world.now}
    pages = list_pages(client(sim), limit=100, archived="true")
    results = [r for page in pages for r in page]
    assert archived and {r["id"] for r in results} == archived
    assert all(r["archived"] is True and r["archivedAt"].endswith("Z") for r in results)


def test_contact_properties_default_and_selected(simulator):
    sim = simulator(customers=500, rate_limits=False)
    c = client(sim)
    first = c.get(CONTACTS, params={"limit": 1}).json()["results"][0]
    assert sorted(first["properties"]) == sorted(DEFAULT_PROPERTIES)
    assert first["properties"]["hs_object_id"] == first["id"]
    assert first["archived"] is False and "archivedAt" not in first
    selected = ["email", "phone", "lifecyclestage", "hs_lead_status", "hubspot_owner_id", "date_of_birth", "city",
                "country", "zip", "no_such_property"]
    one = c.get(CONTACTS, params=[("limit", "1"), ("properties", ",".join(selected[:5])),
                                  ("properties", ",".join(selected[5:]))]).json()["results"][0]
    assert set(one["properties"]) == set(selected) - {"no_such_property"}
    k = int(next(i for i in range(sim.state.world.contacts.n)
                 if str(int(sim.state.world.contacts.contact_id[i])) == one["id"]))
    expected = sim.state.world.contact_at(k, sim.state.world.now)
    assert one["properties"]["email"] == expected["email"]  # served as typed, padding and case included
    read = c.get(f"{CONTACTS}/{one['id']}", params={"properties": "email"}).json()
    assert read["id"] == one["id"] and read["properties"] == {"email": expected["email"]}
    missing = c.get(f"{CONTACTS}/1")
    assert missing.status_code == 404 and missing.json()["category"] == "OBJECT_NOT_FOUND"


@pytest.mark.parametrize("ties", [0, 600])
def test_search_pages_through_an_updated_window_exactly_once(simulator, ties):
    sim = simulator(customers=2000, rate_limits=False, tie_burst_size=ties)
    world = sim.state.world
    start, end = world.now - 90 * DAY, world.now - DAY // 2  # holds the mass update a day before now
    pages = search_pages(client(sim), {"filterGroups": window(start, end), "sorts": ASCENDING, "limit": 200,
                                       "properties": ["email", "lastmodifieddate"]})
    got = versions(pages)
    truth = world.truth_versions("contacts", world.now, start, end)
    assert len(got) == len(set(got)) and set(got) == truth
    assert [u for _, u in got] == sorted(u for _, u in got)
    if ties:  # more records share one second than a page holds
        assert max(sum(1 for _, u in got if u == x) for _, x in set(got)) > 200


def test_search_total_sorting_and_filters(simulator):
    sim = simulator(customers=1000, rate_limits=False)
    world, c = sim.state.world, client(sim)
    start = world.now - 120 * DAY
    body = {"filterGroups": window(start), "limit": 50,
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}]}
    first = c.post(SEARCH, json=body).json()
    assert first["total"] == len(world.truth_versions("contacts", world.now, start))
    stamps = [r["updatedAt"] for r in first["results"]]
    assert stamps == sorted(stamps, reverse=True)
    assert sorted(first["results"][0]["properties"]) == sorted(DEFAULT_PROPERTIES)
    # EQ on email matches however the address was typed into the CRM
    contact = world.contact_at(int(world.index("contacts", world.now)[0][0]), world.now)
    found = c.post(SEARCH, json={"filterGroups": [{"filters": [
        {"propertyName": "email", "operator": "EQ", "value": contact["email"].strip().upper()}]}]}).json()
    assert str(contact["contact_id"]) in {r["id"] for r in found["results"]}
    # BETWEEN on createdate is inclusive; OR across groups; ids ascending by default
    created = contact["created_at"] * 1000
    either = c.post(SEARCH, json={"limit": 200, "filterGroups": [
        {"filters": [{"propertyName": "createdate", "operator": "BETWEEN", "value": created, "highValue": created}]},
        {"filters": [{"propertyName": "hs_object_id", "operator": "LT", "value": "51000000010"}]}]}).json()
    ids = [int(r["id"]) for r in either["results"]]
    assert contact["contact_id"] in ids and ids == sorted(ids)


def test_search_past_ten_thousand_results_is_refused_as_hubspot_does(simulator):
    sim = simulator(customers=16_000, rate_limits=False)
    world, c = sim.state.world, client(sim)
    body = {"filterGroups": window(world.start - DAY), "sorts": ASCENDING, "limit": 200, "properties": ["email"]}
    seen, after = [], None
    while True:
        r = c.post(SEARCH, json={**body, **({"after": after} if after is not None else {})})
        if r.status_code != 200:
            break
        data = r.json()
        seen += [row["id"] for row in data["results"]]
        after = data["paging"]["next"]["after"]
    assert data["total"] > 10_000
    assert len(seen) == len(set(seen)) == 10_000 and after == "10000"
    assert r.status_code == 400
    error = r.json()
    assert error["status"] == "error" and error["category"] == "VALIDATION_ERROR"
    assert error["correlationId"] and "10000" in error["message"]


def test_search_validation_errors(simulator):
    c = client(simulator(rate_limits=False))
    for body in ({"limit": 201}, {"sorts": ASCENDING * 2},
                 {"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "SOON"}]}]},
                 {"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GT",
                                                 "value": "yesterday"}]}]}):
        r = c.post(SEARCH, json=body)
        assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR", body
    assert c.get(CONTACTS, params={"limit": 101}).status_code == 400


def test_unauthorized(simulator):
    sim = simulator(rate_limits=False)
    for headers in ({}, {"Authorization": "Bearer pat-na1-wrong"}, {"Authorization": TOKENS["hubspot"]}):
        r = httpx.get(f"{sim.url}{CONTACTS}", headers=headers)
        assert r.status_code == 401
        body = r.json()
        assert body["status"] == "error" and body["category"] == "INVALID_AUTHENTICATION"
        assert body["message"].startswith("Authentication credentials not found")


def test_burst_limit_answers_429_with_rate_limit_headers(simulator):
    c = client(simulator(rate_limits=True))
    responses = [c.get(CONTACTS, params={"limit": 1}) for _ in range(BURST_LIMIT + 1)]
    assert all(r.status_code == 200 for r in responses[:BURST_LIMIT])
    first = responses[0].headers
    assert first["X-HubSpot-RateLimit-Max"] == str(BURST_LIMIT)
    assert first["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert first["X-HubSpot-RateLimit-Remaining"] == str(BURST_LIMIT - 1)
    assert int(first["X-HubSpot-RateLimit-Daily-Remaining"]) < int(first["X-HubSpot-RateLimit-Daily"])
    limited = responses[-1]
    assert limited.status_code == 429 and limited.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    body = limited.json()
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["status"] == "error" and body["correlationId"]


def test_search_has_its_own_per_second_limit(simulator):
    c = client(simulator(rate_limits=True))
    responses = [c.post(SEARCH, json={"limit": 1}) for _ in range(SEARCH_PER_SECOND + 1)]
    assert [r.status_code for r in responses[:SEARCH_PER_SECOND]] == [200] * SEARCH_PER_SECOND
    assert "X-HubSpot-RateLimit-Remaining" not in responses[0].headers
    assert responses[-1].status_code == 429
    assert responses[-1].json()["policyName"] == "SECONDLY"
    assert c.get(CONTACTS).status_code == 200  # the burst limit is counted apart


def test_duplicates_fault_repeats_the_last_record_of_the_previous_page(simulator):
    sim = simulator(customers=1000, rate_limits=False, faults="duplicates=1.0")
    c = client(sim)
    for pages in (list_pages(c, limit=50),
                  search_pages(c, {"filterGroups": window(0), "sorts": ASCENDING, "limit": 50})):
        assert len(pages) > 2
        for previous, page in zip(pages, pages[1:], strict=False):
            assert page[0]["id"] == previous[-1]["id"]
        ids = [r["id"] for page in pages for r in page]
        assert len(ids) - len(set(ids)) == len(pages) - 1


def test_mid_read_updates_fault_edits_records_not_yet_returned(simulator):
    sim = simulator(customers=1000, rate_limits=False, faults="midread=1.0")
    world, c = sim.state.world, client(sim)
    clock = iso(sim.state.now())
    pages = search_pages(c, {"filterGroups": window(world.now - 200 * DAY), "sorts": ASCENDING, "limit": 100})
    got = versions(pages)
    truth = world.truth_versions("contacts", world.now, world.now - 200 * DAY)
    edited = {v for v in got if v[1] == clock}
    assert edited and edited == {v for v in truth if v[1] == clock}  # served once each, at the new version
    assert len(got) == len(set(got)) and set(got) == truth


def test_same_seed_same_bodies_and_different_seed_differs(simulator):
    def bodies(sim) -> list[str]:
        c = client(sim)
        out = []
        r = c.get(CONTACTS, params={"limit": 20, "properties": "email,phone,lifecyclestage"})
        out.append(r.text)
        out.append(c.get(CONTACTS, params={"limit": 20, "after": r.json()["paging"]["next"]["after"]}).text)
        for after in (0, 30):
            out.append(c.post(SEARCH, json={"filterGroups": window(0), "sorts": ASCENDING, "limit": 30,
                                            "after": after}).text)
        out.append(c.post(SEARCH, json={"limit": 300}).text)  # an error body, with its correlation id
        return [body.replace(sim.url, "http://simulator") for body in out]

    first = bodies(simulator(customers=500, seed=11, rate_limits=False))
    again = bodies(simulator(customers=500, seed=11, rate_limits=False))
    other = bodies(simulator(customers=500, seed=12, rate_limits=False))
    assert first == again
    assert all(a != b for a, b in zip(first[:4], other[:4], strict=True))


def test_official_sdk_pages_contacts_and_searches(simulator):
    from hubspot import HubSpot
    from hubspot.crm.contacts import PublicObjectSearchRequest

    sim = simulator(customers=500, rate_limits=False)
    world = sim.state.world
    api = HubSpot(access_token=TOKENS["hubspot"], host=sim.url)
    seen, after = [], None
    while True:
        page = api.crm.contacts.basic_api.get_page(limit=100, after=after, properties=["email", "lifecyclestage"])
        seen += [(r.id, r.updated_at) for r in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert {(i, iso(int(u.timestamp()))) for i, u in seen} == world.truth_versions("contacts", world.now)
    start = world.now - 60 * DAY
    found, after = [], None
    while True:
        request = PublicObjectSearchRequest(filter_groups=window(start), sorts=ASCENDING, limit=100,
                                            after=after, properties=["email"])
        result = api.crm.contacts.search_api.do_search(public_object_search_request=request)
        found += [(r.id, iso(int(r.updated_at.timestamp()))) for r in result.results]
        if result.paging is None:
            break
        after = result.paging.next.after
    assert result.total == len(found)
    assert set(found) == world.truth_versions("contacts", world.now, start)
