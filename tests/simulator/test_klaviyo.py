"""Klaviyo's API over real HTTP: cursor paging truth, filters, include, consent, bulk import, auth, revision,
rate limits, data-level faults, determinism and the official SDK."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from simulator.klaviyo import BULK_IMPORT_MAX_PROFILES, METRIC_IDS, RATE_LIMITS, REVISION, klaviyo_time
from simulator.state import TOKENS
from simulator.world import DAY, iso

HEADERS = {"Authorization": f"Klaviyo-API-Key {TOKENS['klaviyo']}", "revision": REVISION,
           "Accept": "application/vnd.api+json"}


def client(sim) -> httpx.Client:
    return httpx.Client(base_url=sim.url, headers=HEADERS, timeout=60)


def truth_time(value: str) -> str:
    """Klaviyo's '2026-01-02T03:04:05+00:00' -> the ground truth's '2026-01-02T03:04:05Z'."""
    assert value.endswith("+00:00"), value
    return value[:-6] + "Z"


def pages(c: httpx.Client, path: str, **params) -> list[dict]:
    """Every page of a collection, following links.next."""
    out, url = [], path
    while url:
        r = c.get(url, params=params if url == path else None)
        assert r.status_code == 200, r.text
        out.append(r.json())
        url = out[-1]["links"]["next"]
    return out


def profile_versions(bodies: list[dict]) -> list[tuple[str, str]]:
    return [(p["id"], truth_time(p["attributes"]["updated"])) for body in bodies for p in body["data"]]


def event_versions(bodies: list[dict]) -> list[tuple[str, str]]:
    return [(e["id"], truth_time(e["attributes"]["datetime"])) for body in bodies for e in body["data"]]


@pytest.mark.parametrize(("ties", "sort"), [(0, "updated"), (600, "updated"), (600, "-updated"), (600, None)])
def test_profiles_page_every_profile_existing_at_the_clock_once(simulator, ties, sort):
    sim = simulator(customers=2000, rate_limits=False, tie_burst_size=ties)
    world = sim.state.world
    bodies = pages(client(sim), "/api/profiles", **{"page[size]": 100, **({"sort": sort} if sort else {})})
    got = profile_versions(bodies)
    assert len(got) == len(set(got)) and set(got) == world.truth_versions("profiles", world.now)
    stamps = [u for _, u in got]
    if sort:
        assert stamps == sorted(stamps, reverse=sort.startswith("-"))
    if ties:  # the mass update puts more profiles on one second than a page holds
        assert max(stamps.count(u) for u in set(stamps)) > 100


def test_profiles_updated_window_filter(simulator):
    sim = simulator(customers=2000, rate_limits=False)
    world = sim.state.world
    start, end = world.now - 100 * DAY, world.now - 10 * DAY
    bodies = pages(client(sim), "/api/profiles", sort="updated", **{
        "page[size]": 50, "filter": f"greater-than(updated,{iso(start)}),less-than(updated,{iso(end)})"})
    got = profile_versions(bodies)
    assert set(got) == world.truth_versions("profiles", world.now, start + 1, end) and len(got) == len(set(got))
    anded = pages(client(sim), "/api/profiles", sort="updated", **{
        "page[size]": 100, "filter": f"and(greater-than(updated,{iso(start)}),less-than(updated,{iso(end)}))"})
    assert profile_versions(anded) == got


def test_profile_filters_by_email_and_id(simulator):
    sim = simulator(customers=500, rate_limits=False)
    world, c = sim.state.world, client(sim)
    q = int(world.index("profiles", world.now)[0][0])
    profile = world.profile_at(q, world.now)
    by_email = c.get("/api/profiles", params={"filter": f'equals(email,"{profile["email"].upper()}")'}).json()
    assert [p["id"] for p in by_email["data"]] == [profile["profile_id"]]
    attributes = by_email["data"][0]["attributes"]
    assert attributes["external_id"] == profile["external_id"]
    assert attributes["location"]["timezone"] == profile["timezone"]
    if profile["birth_date"]:
        assert attributes["properties"]["birthday"] == profile["birth_date"]
    by_id = c.get("/api/profiles", params={"filter": f"any(id,['{profile['profile_id']}','01ZZZZZZZZZZZZZZZZZZZZZZZZ'])"})
    assert [p["id"] for p in by_id.json()["data"]] == [profile["profile_id"]]
    one = c.get(f"/api/profiles/{profile['profile_id']}/")
    assert one.status_code == 200 and one.json()["data"]["attributes"]["email"] == profile["email"]
    assert "subscriptions" not in one.json()["data"]["attributes"]
    sparse = c.get("/api/profiles", params={"fields[profile]": "email,updated", "page[size]": 3}).json()
    assert all(set(p["attributes"]) == {"email", "updated"} for p in sparse["data"])
    missing = c.get("/api/profiles/01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "not_found"


def test_filter_operators_follow_the_pinned_reference(simulator):
    c = client(simulator(rate_limits=False))
    refused = c.get("/api/profiles", params={"filter": "greater-or-equal(updated,2024-01-01T00:00:00Z)"})
    assert refused.status_code == 400
    error = refused.json()["errors"][0]
    assert error["code"] == "invalid" and error["source"] == {"parameter": "filter"}
    assert "greater-or-equal" in error["detail"]
    for params in ({"page[size]": 101}, {"sort": "shoe_size"}, {"filter": "equals(email"},
                   {"page[cursor]": "not-a-cursor"}):
        r = c.get("/api/profiles", params=params)
        assert r.status_code == 400 and r.json()["errors"][0]["status"] == 400, params
    assert c.get("/api/events", params={"page[size]": 1001}).status_code == 400


def test_events_page_every_event_once(simulator):
    sim = simulator(customers=1500, rate_limits=False)
    world = sim.state.world
    got = event_versions(pages(client(sim), "/api/events", **{"page[size]": 1000}))
    assert len(got) == len(set(got)) and set(got) == world.truth_versions("events", world.now)
    start, end = world.now - 20 * DAY, world.now - 5 * DAY
    window = f"greater-or-equal(datetime,{iso(start)}),less-than(datetime,{iso(end)})"
    newest_first = event_versions(pages(client(sim), "/api/events", sort="-datetime",
                                        **{"filter": window, "page[size]": 500}))
    assert set(newest_first) == world.truth_versions("events", world.now, start, end)
    assert len(newest_first) == len(set(newest_first))
    assert [u for _, u in newest_first] == sorted((u for _, u in newest_first), reverse=True)


def test_events_filter_by_metric_and_profile(simulator):
    sim = simulator(customers=500, rate_limits=False)
    world, c = sim.state.world, client(sim)
    events = world.events
    e = int(np.searchsorted(events.time, world.now - 30 * DAY))
    q, m = int(events.profile[e]), int(events.metric[e])
    expected = {world.event_id(int(i)) for i in np.flatnonzero((events.profile == q) & (events.metric == m)
                                                                & (events.time <= world.now))}
    filtered = f'equals(profile_id,"{world.profile_id(q)}"),equals(metric_id,"{METRIC_IDS[m]}")'
    got = [x["id"] for body in pages(c, "/api/events", filter=filtered, **{"page[size]": 7}) for x in body["data"]]
    assert expected and len(got) == len(set(got)) and set(got) == expected


def test_events_include_metric_and_profile(simulator):
    sim = simulator(customers=500, rate_limits=False)
    c = client(sim)
    body = c.get("/api/events", params={"include": "metric,profile", "page[size]": 50, "sort": "-datetime"}).json()
    included = {(x["type"], x["id"]): x for x in body["included"]}
    for event in body["data"]:
        for kind in ("metric", "profile"):
            ref = event["relationships"][kind]["data"]
            assert (ref["type"], ref["id"]) in included
    assert len(included) == len(body["included"])
    metric = next(x for x in body["included"] if x["type"] == "metric")
    assert metric["attributes"]["name"] in [m["attributes"]["name"] for m in c.get("/api/metrics").json()["data"]]
    email_event = next(e for e in pages(c, "/api/events", **{"page[size]": 1000})[0]["data"]
                       if "Campaign Name" in e["attributes"]["event_properties"])
    assert email_event["attributes"]["timestamp"] > 0 and email_event["attributes"]["uuid"]
    onsite = body["data"][0]["attributes"]["event_properties"]
    assert "ProductID" in onsite or "Campaign Name" in onsite


def test_metrics_have_stable_ids(simulator):
    first = client(simulator(customers=500, seed=1, rate_limits=False)).get("/api/metrics").json()
    second = client(simulator(customers=500, seed=2, rate_limits=False)).get("/api/metrics").json()
    assert [m["id"] for m in first["data"]] == [m["id"] for m in second["data"]] == list(METRIC_IDS)
    assert first["links"]["next"] is None


def test_consent_maps_every_state_of_the_timeline(simulator):
    sim = simulator(customers=2000, rate_limits=False)
    world, c = sim.state.world, client(sim)
    pr, now = world.profiles, world.now
    exists = pr.created_at <= now
    suppressed = (pr.bounced_at <= now) | (pr.spam_at <= now) | (pr.unsubscribed_at <= now)
    cases = {
        "subscribed": exists & (pr.subscribed_at <= now) & ~suppressed,
        "never_subscribed": exists & (pr.subscribed_at > now) & ~suppressed,
        "unsubscribed": exists & (pr.unsubscribed_at <= now) & (pr.bounced_at > now) & (pr.spam_at > now),
        "bounced": exists & (pr.bounced_at <= now),
        "spam_complaint": exists & (pr.spam_at <= now),
    }
    expected = {"subscribed": ("SUBSCRIBED", True, []), "never_subscribed": ("NEVER_SUBSCRIBED", True, []),
                "unsubscribed": ("UNSUBSCRIBED", False, ["UNSUBSCRIBE"]),
                "bounced": ("SUBSCRIBED", False, ["HARD_BOUNCE"]),
                "spam_complaint": ("UNSUBSCRIBED", False, ["SPAM_COMPLAINT"])}
    for name, mask in cases.items():
        q = int(np.flatnonzero(mask)[0])
        r = c.get(f"/api/profiles/{world.profile_id(q)}", params={"additional-fields[profile]": "subscriptions"})
        marketing = r.json()["data"]["attributes"]["subscriptions"]["email"]["marketing"]
        consent, can_receive, reasons = expected[name]
        assert marketing["consent"] == consent, name
        assert marketing["can_receive_email_marketing"] is can_receive, name
        assert [s["reason"] for s in marketing["suppression"]] == reasons, name
        if reasons:
            column = {"UNSUBSCRIBE": pr.unsubscribed_at, "HARD_BOUNCE": pr.bounced_at,
                      "SPAM_COMPLAINT": pr.spam_at}[reasons[0]]
            assert marketing["suppression"][0]["timestamp"] == klaviyo_time(column[q])
        if consent == "SUBSCRIBED":
            assert marketing["consent_timestamp"] == klaviyo_time(pr.subscribed_at[q])
        if consent == "NEVER_SUBSCRIBED":
            assert marketing["consent_timestamp"] is None


def _import_body(profiles: list[dict]) -> dict:
    return {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": [
        {"type": "profile", "attributes": attributes} for attributes in profiles]}}}}


def test_bulk_import_lifecycle_makes_properties_visible(simulator):
    sim = simulator(customers=500, rate_limits=False)
    world, c = sim.state.world, client(sim)
    rows = world.index("profiles", world.now)[0]
    known = [world.profile_at(int(q), world.now) for q in rows[:2]]
    posted = c.post("/api/profile-bulk-import-jobs", json=_import_body([
        {"email": known[0]["email"].upper(), "properties": {"favorite_color": "green"}},
        {"email": known[1]["email"], "first_name": "Renamed", "location": {"city": "Oslo"}},
        {"email": "new.person@example.com", "properties": {"source": "import"}},
        {"phone_number": "+15550000000"},
    ]))
    assert posted.status_code == 202, posted.text
    job = posted.json()["data"]
    assert job["type"] == "profile-bulk-import-job" and job["attributes"]["status"] == "queued"
    assert job["attributes"]["total_count"] == 4
    statuses = []
    for _ in range(2):
        polled = c.get(f"/api/profile-bulk-import-jobs/{job['id']}").json()["data"]["attributes"]
        statuses.append(polled["status"])
    assert statuses == ["processing", "complete"]
    assert (polled["completed_count"], polled["failed_count"]) == (3, 1) and polled["completed_at"]
    clock = klaviyo_time(sim.state.now())

    def by_email(email: str) -> dict:
        data = c.get("/api/profiles", params={"filter": f'equals(email,"{email}")'}).json()["data"]
        assert len(data) == 1, email
        return data[0]

    first = by_email(known[0]["email"])
    assert first["attributes"]["properties"]["favorite_color"] == "green"
    assert first["attributes"]["updated"] == clock != klaviyo_time(known[0]["updated_at"])
    second = by_email(known[1]["email"])
    assert second["attributes"]["first_name"] == "Renamed" and second["attributes"]["location"]["city"] == "Oslo"
    created = by_email("new.person@example.com")
    assert created["attributes"]["properties"] == {"source": "import"}
    assert created["attributes"]["created"] == clock
    newest = c.get("/api/profiles", params={"sort": "-updated", "page[size]": 3}).json()["data"]
    assert {p["id"] for p in newest} == {first["id"], second["id"], created["id"]}
    everyone = profile_versions(pages(c, "/api/profiles", **{"page[size]": 100}))
    assert len(everyone) == len(world.truth_versions("profiles", world.now)) + 1
    assert (created["id"], truth_time(clock)) in everyone


def test_bulk_import_limits(simulator):
    c = client(simulator(rate_limits=False))
    too_many = c.post("/api/profile-bulk-import-jobs", json=_import_body(
        [{"email": f"p{i}@example.com"} for i in range(BULK_IMPORT_MAX_PROFILES + 1)]))
    assert too_many.status_code == 400
    error = too_many.json()["errors"][0]
    assert error["code"] == "invalid" and str(BULK_IMPORT_MAX_PROFILES) in error["detail"]
    assert error["source"] == {"pointer": "/data/attributes/profiles/data"}
    padding = "x" * 90_000
    too_big = c.post("/api/profile-bulk-import-jobs", content=json.dumps(_import_body(
        [{"email": f"p{i}@example.com", "properties": {"notes": padding}} for i in range(60)])),
        headers={"Content-Type": "application/vnd.api+json"})
    assert too_big.status_code == 413
    assert too_big.json()["errors"][0]["status"] == 413 and "5MB" in too_big.json()["errors"][0]["detail"]
    unknown = c.get("/api/profile-bulk-import-jobs/01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    assert unknown.status_code == 404


def test_revision_header_is_required(simulator):
    sim = simulator(rate_limits=False)
    for revision in (None, "yesterday", "2099-01-15", "2026-02-30"):
        headers = {k: v for k, v in HEADERS.items() if k != "revision"}
        if revision:
            headers["revision"] = revision
        r = httpx.get(f"{sim.url}/api/profiles", headers=headers)
        assert r.status_code == 400, revision
        assert r.headers["content-type"].startswith("application/vnd.api+json")
        error = r.json()["errors"][0]
        assert error["status"] == 400 and error["code"] == "invalid" and error["source"] == {"parameter": "revision"}
        assert error["id"] and error["title"] and error["detail"]
    assert httpx.get(f"{sim.url}/api/profiles", headers={**HEADERS, "revision": "2025-07-15"}).status_code == 200


def test_unauthorized(simulator):
    sim = simulator(rate_limits=False)
    missing = httpx.get(f"{sim.url}/api/profiles", headers={"revision": REVISION})
    assert missing.status_code == 401 and missing.json()["errors"][0]["code"] == "not_authenticated"
    for auth in ("Klaviyo-API-Key pk_wrong", f"Bearer {TOKENS['klaviyo']}"):
        wrong = httpx.get(f"{sim.url}/api/events", headers={"revision": REVISION, "Authorization": auth})
        assert wrong.status_code == 401 and wrong.json()["errors"][0]["code"] == "authentication_failed"


def test_rate_limit_429_with_retry_after(simulator):
    c = client(simulator(rate_limits=True))
    burst, steady = RATE_LIMITS["get_metrics"]
    responses = [c.get("/api/metrics") for _ in range(burst + 1)]
    assert all(r.status_code == 200 for r in responses[:burst])
    assert responses[0].headers["RateLimit-Limit"] == str(steady)
    assert [int(r.headers["RateLimit-Remaining"]) for r in responses[:3]] == [steady - 1, steady - 2, steady - 3]
    assert 0 < int(responses[0].headers["RateLimit-Reset"]) <= 60
    limited = responses[-1]
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    error = limited.json()["errors"][0]
    assert error["code"] == "throttled" and error["status"] == 429
    assert error["detail"].startswith("Request was throttled. Expected available in")
    assert c.get("/api/profiles").status_code == 200  # each endpoint has its own limits


def test_duplicates_fault_repeats_the_previous_page_last_record(simulator):
    sim = simulator(customers=500, rate_limits=False, faults="duplicates=1.0")
    c = client(sim)
    for path, size in (("/api/profiles", 50), ("/api/events", 500)):
        bodies = pages(c, path, **{"page[size]": size})
        assert len(bodies) > 2
        for previous, body in zip(bodies, bodies[1:], strict=False):
            assert body["data"][0]["id"] == previous["data"][-1]["id"]
        ids = [x["id"] for body in bodies for x in body["data"]]
        assert len(ids) - len(set(ids)) == len(bodies) - 1


def test_mid_read_updates_fault_edits_profiles_not_yet_returned(simulator):
    sim = simulator(customers=1000, rate_limits=False, faults="midread=1.0")
    world = sim.state.world
    clock = iso(sim.state.now())
    bodies = pages(client(sim), "/api/profiles", sort="updated", **{"page[size]": 50})
    got = profile_versions(bodies)
    truth = world.truth_versions("profiles", world.now)
    edited = {v for v in got if v[1] == clock}
    assert edited and edited == {v for v in truth if v[1] == clock}
    assert len(got) == len(set(got)) and set(got) == truth


def test_same_seed_same_bodies_and_different_seed_differs(simulator):
    def bodies(sim) -> list[str]:
        c = client(sim)
        out = []
        for path, params in (("/api/profiles", {"additional-fields[profile]": "subscriptions", "sort": "-updated"}),
                             ("/api/events", {"include": "metric,profile", "page[size]": 100}),
                             ("/api/metrics", {})):
            first = c.get(path, params=params)
            out.append(first.text)
            if first.json()["links"]["next"]:
                out.append(c.get(first.json()["links"]["next"]).text)
        out.append(c.get("/api/profiles", params={"page[size]": 0}).text)  # an error object and its id
        return [body.replace(sim.url, "http://simulator") for body in out]

    first = bodies(simulator(customers=500, seed=21, rate_limits=False))
    again = bodies(simulator(customers=500, seed=21, rate_limits=False))
    other = bodies(simulator(customers=500, seed=22, rate_limits=False))
    assert first == again
    assert first[0] != other[0] and first[2] != other[2]


def test_official_sdk_pages_profiles_and_events(simulator):
    from klaviyo_api import KlaviyoAPI

    sim = simulator(customers=500, rate_limits=False)
    world = sim.state.world
    api = KlaviyoAPI(TOKENS["klaviyo"], max_retries=0, test_host=sim.url)
    seen, cursor = [], None
    while True:
        page = api.Profiles.get_profiles(page_size=100, sort="updated", page_cursor=cursor,
                                         additional_fields_profile=["subscriptions"])
        seen += [(p.id, iso(int(p.attributes.updated.timestamp()))) for p in page.data]
        if not page.links.next:
            break
        cursor = httpx.URL(page.links.next).params["page[cursor]"]
    assert set(seen) == world.truth_versions("profiles", world.now) and len(seen) == len(set(seen))
    start = world.now - 10 * DAY
    events, cursor = [], None
    while True:
        page = api.Events.get_events(filter=f"greater-or-equal(datetime,{iso(start)})", page_cursor=cursor,
                                     include=["metric"], page_size=500)
        events += [(e.id, iso(int(e.attributes.datetime_.timestamp()))) for e in page.data]
        if not page.links.next:
            break
        cursor = httpx.URL(page.links.next).params["page[cursor]"]
    assert set(events) == world.truth_versions("events", world.now, start) and len(events) == len(set(events))
