"""Klaviyo's API over real HTTP: cursor paging truth, filters, include, consent, bulk import, auth, revision,
rate limits, data-level faults, determinism and the official SDK."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from simulator.klaviyo import (
    BULK_IMPORT_MAX_PROFILE_BYTES,
    BULK_IMPORT_MAX_PROFILES,
    METRIC_IDS,
    RATE_LIMITS,
    REVISION,
    klaviyo_time,
)
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


# ---- bulk import: per-profile failures, import-errors, faults -------------------------------------------------------
def _submit_and_complete(c: httpx.Client, profiles: list[dict]) -> dict:
    """POST a job of these profile resources, poll it to completion: the job's attributes (and id)."""
    body = {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": profiles}}}}
    posted = c.post("/api/profile-bulk-import-jobs", json=body)
    assert posted.status_code == 202, posted.text
    job_id = posted.json()["data"]["id"]
    before = c.get(f"/api/profile-bulk-import-jobs/{job_id}/import-errors")
    assert before.status_code == 200 and before.json()["data"] == []  # nothing is known before it completes
    for _ in range(2):
        job = c.get(f"/api/profile-bulk-import-jobs/{job_id}").json()["data"]
    assert job["attributes"]["status"] == "complete"
    return {"id": job_id, **job["attributes"]}


def _error_pages(c: httpx.Client, job_id: str, **params) -> list[dict]:
    return pages(c, f"/api/profile-bulk-import-jobs/{job_id}/import-errors", **params)


def _mixed_profiles() -> tuple[list[dict], dict[int, str]]:
    """250 profiles of which some fail, and the title each failing index gets."""
    profiles = [{"type": "profile", "attributes": {"email": f"bulk{i}@example.com", "external_id": str(i),
                                                   "properties": {"n": i}}} for i in range(250)]
    bad = {}
    for i in (3, 57, 58, 199):
        profiles[i]["attributes"]["email"] = f"not-an-email-{i}"
        bad[i] = "Invalid email address."
    profiles[120]["attributes"]["properties"]["notes"] = "x" * (BULK_IMPORT_MAX_PROFILE_BYTES + 1)
    bad[120] = "Profile too large."
    profiles[200] = {"type": "person", "attributes": {"email": "bulk200@example.com"}}
    bad[200] = "Invalid input."
    profiles[201]["attributes"]["properties"] = "not an object"
    bad[201] = "Invalid input."
    return profiles, bad


def test_import_errors_list_every_failed_profile_by_pointer(simulator):
    sim = simulator(customers=300, rate_limits=False)
    c = client(sim)
    profiles, bad = _mixed_profiles()
    job = _submit_and_complete(c, profiles)
    assert (job["total_count"], job["completed_count"], job["failed_count"]) == (250, 250 - len(bad), len(bad))
    bodies = _error_pages(c, job["id"], **{"page[size]": 2})
    assert [len(b["data"]) for b in bodies] == [2, 2, 2, 1]
    errors = [e for body in bodies for e in body["data"]]
    assert len({e["id"] for e in errors}) == len(errors) == len(bad)
    for error in errors:
        assert error["type"] == "import-error" and set(error) == {"type", "id", "attributes"}
        attributes = error["attributes"]
        assert set(attributes) == {"code", "title", "detail", "source", "original_payload"}
        index = int(attributes["source"]["pointer"].removeprefix("/data/attributes/profiles/data/"))
        assert attributes["title"] == bad[index] and attributes["code"] == "invalid" and attributes["detail"]
        assert attributes["original_payload"] == profiles[index]["attributes"]
    pointers = [e["attributes"]["source"]["pointer"] for e in errors]
    assert pointers == [f"/data/attributes/profiles/data/{i}" for i in sorted(bad)]  # in request order
    by_index = {int(p.rsplit("/", 1)[1]): e["attributes"]["detail"] for p, e in zip(pointers, errors, strict=True)}
    assert "'not-an-email-3'" in by_index[3] and "100KB" in by_index[120]
    # the good ones were imported, the bad ones not
    for i, expect in ((0, 1), (3, 0), (120, 0), (249, 1)):
        found = c.get("/api/profiles", params={"filter": f'equals(email,"bulk{i}@example.com")'}).json()["data"]
        assert len(found) == expect, i
    # default page size 20 (one page here), sparse fieldsets, bad page sizes and cursors, unknown jobs
    single = c.get(f"/api/profile-bulk-import-jobs/{job['id']}/import-errors/")
    assert len(single.json()["data"]) == len(bad) and single.json()["links"]["next"] is None
    sparse = c.get(f"/api/profile-bulk-import-jobs/{job['id']}/import-errors",
                   params={"fields[import-error]": "detail,source.pointer"}).json()["data"][0]["attributes"]
    assert set(sparse) == {"detail", "source"}
    for params in ({"page[size]": 101}, {"page[size]": 0}, {"fields[import-error]": "email"},
                   {"page[cursor]": "bm90LWEtY3Vyc29y"}):
        refused = c.get(f"/api/profile-bulk-import-jobs/{job['id']}/import-errors", params=params)
        assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == "invalid", params
    other = _submit_and_complete(c, [{"type": "profile", "attributes": {"email": "x"}}])
    foreign = httpx.URL(bodies[0]["links"]["next"]).params["page[cursor]"]
    assert c.get(f"/api/profile-bulk-import-jobs/{other['id']}/import-errors",
                 params={"page[cursor]": foreign}).status_code == 400
    assert c.get("/api/profile-bulk-import-jobs/01ZZZZZZZZZZZZZZZZZZZZZZZZ/import-errors").status_code == 404
    relationship = c.get(f"/api/profile-bulk-import-jobs/{job['id']}").json()["data"]["relationships"]
    assert relationship["import-errors"]["links"]["related"].endswith(f"/api/profile-bulk-import-jobs/{job['id']}"
                                                                       "/import-errors/")


def test_import_errors_through_the_official_sdk(simulator):
    from klaviyo_api import KlaviyoAPI

    sim = simulator(customers=300, rate_limits=False)
    c = client(sim)
    profiles, bad = _mixed_profiles()
    job = _submit_and_complete(c, profiles)
    api = KlaviyoAPI(TOKENS["klaviyo"], max_retries=0, test_host=sim.url)
    polled = api.Profiles.get_bulk_import_profiles_job(job["id"])
    assert polled.data.attributes.failed_count == len(bad)
    seen, cursor = [], None
    while True:
        page = api.Profiles.get_errors_for_bulk_import_profiles_job(job["id"], page_size=4, page_cursor=cursor)
        seen += [(e.attributes.source.pointer, e.attributes.title) for e in page.data]
        if not page.links.next:
            break
        cursor = httpx.URL(page.links.next).params["page[cursor]"]
    assert seen == [(f"/data/attributes/profiles/data/{i}", bad[i]) for i in sorted(bad)]


def test_listing_the_jobs_reads_every_status_at_once(simulator):
    """GET /api/profile-bulk-import-jobs: oldest first (or newest, sort=-created_at), cursor-paged, filtered on status,
    sparse fields; a listing moves every running job one step, as a poll of each would."""
    from klaviyo_api import KlaviyoAPI

    assert RATE_LIMITS["get_bulk_import_profiles_jobs"] == (10, 150)
    sim = simulator(customers=300, rate_limits=False)
    c = client(sim)
    done = _submit_and_complete(c, [{"type": "profile", "attributes": {"email": "listed0@example.com"}}])

    def body(i: int) -> dict:
        return {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": [
            {"type": "profile", "attributes": {"email": f"listed{i}@example.com"}}]}}}}

    running = [c.post("/api/profile-bulk-import-jobs", json=body(i)).json()["data"]["id"] for i in (1, 2, 3)]
    listed = c.get("/api/profile-bulk-import-jobs").json()["data"]  # oldest first
    assert [j["id"] for j in listed] == [done["id"], *running]
    assert [j["attributes"]["status"] for j in listed] == ["complete"] + ["processing"] * 3  # one step each
    assert all(j["type"] == "profile-bulk-import-job" and j["attributes"]["total_count"] == 1 for j in listed)
    newest = c.get("/api/profile-bulk-import-jobs", params={"sort": "-created_at", "page[size]": 100}).json()
    assert [j["id"] for j in newest["data"]] == [*reversed(running), done["id"]] and newest["links"]["next"] is None
    assert {j["attributes"]["status"] for j in newest["data"]} == {"complete"}  # the second step: all done
    for sort in ("created_at", "-created_at"):
        paged = pages(c, "/api/profile-bulk-import-jobs", **{"page[size]": 3, "sort": sort})
        assert [[j["id"] for j in b["data"]] for b in paged] == (
            [[done["id"], *running[:2]], running[2:]] if sort == "created_at" else
            [list(reversed(running)), [done["id"]]])
    sparse = c.get("/api/profile-bulk-import-jobs", params={"fields[profile-bulk-import-job]": "status,failed_count"})
    assert set(sparse.json()["data"][0]["attributes"]) == {"status", "failed_count"}
    for params in ({"filter": 'equals(status,"complete")'}, {"filter": 'any(status,["complete","queued"])'}):
        assert len(c.get("/api/profile-bulk-import-jobs", params=params).json()["data"]) == 4, params
    assert c.get("/api/profile-bulk-import-jobs", params={"filter": 'equals(status,"queued")'}).json()["data"] == []
    for params in ({"page[size]": 101}, {"sort": "total_count"}, {"filter": 'equals(status,"done")'},
                   {"filter": 'equals(id,"x")'}, {"fields[profile-bulk-import-job]": "email"},
                   {"page[cursor]": "bm90LWEtY3Vyc29y"}):
        refused = c.get("/api/profile-bulk-import-jobs", params=params)
        assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == "invalid", params
    api = KlaviyoAPI(TOKENS["klaviyo"], max_retries=0, test_host=sim.url)
    first = api.Profiles.get_bulk_import_profiles_jobs(sort="-created_at", page_size=3,
                                                      filter='equals(status,"complete")')
    assert [j.id for j in first.data] == list(reversed(running)) and first.links.next


def test_import_errors_rate_limit_and_duplicates_fault(simulator):
    assert RATE_LIMITS["get_errors_for_bulk_import_profiles_job"] == (10, 150)
    sim = simulator(customers=300, rate_limits=False, faults="duplicates=1.0")
    c = client(sim)
    profiles = [{"type": "profile", "attributes": {"email": f"nobody{i}"}} for i in range(30)]
    job = _submit_and_complete(c, profiles)
    bodies = _error_pages(c, job["id"], **{"page[size]": 10})
    for previous, body in zip(bodies, bodies[1:], strict=False):
        assert body["data"][0]["id"] == previous["data"][-1]["id"]
    ids = [e["id"] for body in bodies for e in body["data"]]
    (whole,) = _error_pages(client(sim), job["id"], **{"page[size]": 100})
    assert set(ids) == {e["id"] for e in whole["data"]} and len(whole["data"]) == 30
    assert len(ids) - len(set(ids)) == len(bodies) - 1
    limited = client(simulator(customers=300, rate_limits=True))
    job = _submit_and_complete(limited, profiles[:1])
    answers = [limited.get(f"/api/profile-bulk-import-jobs/{job['id']}/import-errors") for _ in range(10)]
    assert [a.status_code for a in answers[:9]] == [200] * 9  # one was used by _submit_and_complete
    assert answers[0].headers["RateLimit-Limit"] == "150"
    assert answers[-1].status_code == 429 and int(answers[-1].headers["Retry-After"]) >= 1


def test_patch_properties_unset_removes_custom_properties(simulator):
    sim = simulator(customers=300, rate_limits=False)
    world, c = sim.state.world, client(sim)
    known = world.profile_at(int(world.index("profiles", world.now)[0][0]), world.now)["email"]
    for email in (known, "unset.me@example.com"):
        _submit_and_complete(c, [{"type": "profile", "attributes": {"email": email,
                                                                    "properties": {"a": 1, "b": 2, "c": 3}}}])
        _submit_and_complete(c, [{"type": "profile", "attributes": {"email": email, "properties": {"c": 4}},
                                  "meta": {"patch_properties": {"unset": ["a", "birthday"]}}}])
        _submit_and_complete(c, [{"type": "profile", "attributes": {"email": email},
                                  "meta": {"patch_properties": {"unset": "b"}}}])
        (found,) = c.get("/api/profiles", params={"filter": f'equals(email,"{email}")'}).json()["data"]
        assert found["attributes"]["properties"] == {"c": 4}, email
    job = _submit_and_complete(c, [{"type": "profile", "attributes": {"email": "x@example.com"},
                                    "meta": {"patch_properties": {"unset": 5}}}])
    assert job["failed_count"] == 1


def test_transport_faults_on_bulk_import_create_no_job(simulator):
    """A 429 or 5xx is decided before the request reaches Klaviyo's surface: a refused POST makes no job, so a
    client retrying until one answer succeeds has made exactly one; polls meet the same faults."""
    sim = simulator(customers=300, rate_limits=False, faults="429=0.4,5xx=0.4")
    c = client(sim)
    surface = sim.state.vendor_state["klaviyo"]
    body = {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": [
        {"type": "profile", "attributes": {"email": "faulted@example.com"}}]}}}}
    statuses = []
    while not statuses or statuses[-1] != 202:
        statuses.append(c.post("/api/profile-bulk-import-jobs", json=body).status_code)
    assert set(statuses) - {202} and set(statuses) <= {202, 429, 500, 502, 503}
    assert len(surface.jobs) == 1
    job_id = next(iter(surface.jobs))
    polls = []
    while not polls or polls[-1] != "complete":
        answer = c.get(f"/api/profile-bulk-import-jobs/{job_id}")
        polls.append(answer.json()["data"]["attributes"]["status"] if answer.status_code == 200 else answer.status_code)
    assert {429, 500, 502, 503} & set(polls) and [p for p in polls if isinstance(p, str)] == ["processing", "complete"]
