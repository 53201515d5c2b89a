"""KlaviyoExtractor against the simulator over real HTTP: profile and event windows equal the ground truth
under every fault profile and through a 600-profile tie; payloads carry consent and the metric name; pacing
keeps 429s away; a revoked key fails fast without leaking."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

import pytest

from simulator import catalog
from simulator.state import TOKENS
from simulator.world import DAY
from tailor.sources import Credentials, Progress, Window
from tailor.sources.http import AuthError, RetryPolicy
from tailor.sources.klaviyo import KlaviyoExtractor
from tests.integration.lakekit import FAST, at, version

CONN = "klaviyo_test"
# A window per entity holding a few thousand versions of a 2,000-customer world, and the profiles' tie burst.
SPAN = {"profiles": 120 * DAY, "events": 5 * DAY}


def extractor(sim, *, paced: bool = False, **options) -> KlaviyoExtractor:
    credentials = Credentials(CONN, sim.url, TOKENS["klaviyo"])
    if paced:  # real waits: the pacing itself is under test
        return KlaviyoExtractor(credentials, policy=RetryPolicy(timeout=10.0), **options)
    return KlaviyoExtractor(credentials, policy=FAST, sleep=lambda seconds: None, **options)


def read(ex: KlaviyoExtractor, entity: str, start: int, end: int, progress: Progress | None = None):
    return [version(r) for r in ex.extract(entity, Window(at(start), at(end)), progress)]


@pytest.mark.parametrize("faults", ["none", "flaky", "hostile"])
@pytest.mark.parametrize("entity", ["profiles", "events"])
def test_window_equals_truth(simulator, faults, entity):
    sim = simulator(customers=2000, faults=faults, rate_limits=False)
    world = sim.state.world
    start, end = world.now - SPAN[entity], world.now
    ex = extractor(sim, profiles_page_size=20, events_page_size=50)
    progress = Progress()
    first = read(ex, entity, start, end, progress)
    now = sim.state.now()
    assert len(first) == len(set(first)), "duplicates within one extraction"
    if faults == "none":
        assert first and sorted(first) == sorted(world.truth_versions(entity, now, start, end))
    if faults == "hostile":
        assert progress.retries > 0  # 429s, 5xx, timeouts and truncated bodies were met and survived
    # profiles edited mid-read moved to the clock, out of this window: the next window has them
    later = read(ex, entity, end, now + 1)
    assert len(later) == len(set(later))
    truth = world.truth_versions(entity, now, start, now + 1)
    assert truth - set(first) - set(later) == set(), "versions missed by both reads"
    touched = {world.profile_id(q) for q in world.touched("profiles")} if entity == "profiles" else set()
    assert {i for i, _ in set(first) - truth} <= touched, "versions that never existed"


@pytest.mark.parametrize("entity", ["profiles", "events"])
def test_every_page_edited_and_repeated(simulator, entity):
    sim = simulator(customers=2000, faults="midread=1.0,duplicates=0.5,429=0.2,5xx=0.1,truncated=0.1",
                    rate_limits=False)
    world = sim.state.world
    start, end = world.now - SPAN[entity], world.now
    ex = extractor(sim, profiles_page_size=20, events_page_size=50)
    first = read(ex, entity, start, end)
    now = sim.state.now()
    assert len(first) == len(set(first))
    if entity == "profiles":
        assert len(world.touched("profiles")) > 20
    truth = world.truth_versions(entity, now, start, now + 1)
    assert truth - set(first) - set(read(ex, entity, end, now + 1)) == set()


def test_tie_burst_of_600_profiles_on_one_second(simulator):
    sim = simulator(customers=2000, tie_burst_size=600, rate_limits=False)
    world = sim.state.world
    start, end = world.now - 2 * DAY, world.now
    truth = world.truth_versions("profiles", sim.state.now(), start, end)
    assert max(Counter(u for _, u in truth).values()) >= 550
    ex, progress = extractor(sim), Progress()
    got = read(ex, "profiles", start, end, progress)
    assert len(got) == len(set(got)) and set(got) == truth
    # one request per page of 100, none read twice; a request the tests' one-second timeout cut short on a busy
    # machine is retried, and only that retry adds to the requests sent
    assert progress.pages == -(-len(truth) // 100)
    assert ex.requests_sent == progress.pages + progress.retries


def test_profile_window_bounds_are_exact(simulator):
    """Profiles filter only with greater-than/less-than: a version exactly at the start is in, one exactly at
    the end is out."""
    sim = simulator(customers=2000, rate_limits=False)
    world = sim.state.world
    _, updated = world.index("profiles", sim.state.now())
    start, end = int(updated[len(updated) // 2]), int(updated[len(updated) * 3 // 4])
    got = read(extractor(sim), "profiles", start, end)
    truth = world.truth_versions("profiles", sim.state.now(), start, end)
    assert sorted(got) == sorted(truth)
    stamps = {u for _, u in got}
    assert at(start).strftime("%Y-%m-%dT%H:%M:%SZ") in stamps
    assert at(end).strftime("%Y-%m-%dT%H:%M:%SZ") not in stamps


def test_payloads_carry_consent_and_the_metric_name(simulator):
    sim = simulator(customers=500, rate_limits=False)
    world = sim.state.world
    ex = extractor(sim)
    profiles = list(ex.extract("profiles", Window(at(world.now - 365 * DAY), at(world.now))))
    consent = Counter(p.payload["attributes"]["subscriptions"]["email"]["marketing"]["consent"] for p in profiles)
    assert consent["SUBSCRIBED"] > 0 and set(consent) <= {"SUBSCRIBED", "UNSUBSCRIBED", "NEVER_SUBSCRIBED"}
    events = list(ex.extract("events", Window(at(world.now - 30 * DAY), at(world.now))))
    assert events
    for event in events:
        metric_id = event.payload["relationships"]["metric"]["data"]["id"]
        (metric,) = event.payload["included"]
        assert metric["type"] == "metric" and metric["id"] == metric_id
        assert metric["attributes"]["name"] in catalog.METRICS
        assert event.updated_at == datetime.fromisoformat(event.payload["attributes"]["datetime"])
    assert len({e.payload["included"][0]["attributes"]["name"] for e in events}) > 3  # every metric, not one


def throttled(caplog) -> int:
    return sum("throttled (429)" in r.getMessage() for r in caplog.records if r.name == "tailor.sources.http")


@pytest.mark.slow
@pytest.mark.parametrize(("entity", "page_size", "span"), [("profiles", 1, 50 * DAY), ("events", 10, 2 * DAY)],
                         ids=["profiles", "events"])
def test_pacing_keeps_429s_away(simulator, caplog, entity, page_size, span):
    """One-profile pages are quick enough to outrun the profiles' burst limit (75/s) unpaced."""
    sim = simulator(customers=2000, rate_limits=True)
    world = sim.state.world
    start, end = world.now - span, world.now
    ex = extractor(sim, paced=True, profiles_page_size=page_size, events_page_size=page_size)
    progress = Progress()
    with caplog.at_level(logging.INFO, logger="tailor.sources.http"):
        got = read(ex, entity, start, end, progress)
    assert set(got) == world.truth_versions(entity, sim.state.now(), start, end)
    assert ex.requests_sent > 100
    if entity == "profiles":
        assert progress.rate_waits > 0  # the pacer held requests back
    assert throttled(caplog) <= 1


def test_revoked_key_fails_fast_naming_the_connection(simulator, caplog):
    sim = simulator(customers=300, faults="revoked", rate_limits=False)
    world = sim.state.world
    for entity in ("profiles", "events"):
        ex = extractor(sim)
        progress = Progress()
        with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as raised:
            list(ex.extract(entity, Window(at(world.now - DAY), at(world.now)), progress))
        message = str(raised.value)
        assert CONN in message and "401" in message
        assert ex.requests_sent == 1 and progress.retries == 0
        assert TOKENS["klaviyo"] not in message and TOKENS["klaviyo"] not in caplog.text


def test_token_never_logged(simulator, caplog):
    sim = simulator(customers=500, faults="hostile", rate_limits=False)
    world = sim.state.world
    ex = extractor(sim, profiles_page_size=10, events_page_size=50)
    with caplog.at_level(logging.DEBUG):
        for entity in ("profiles", "events"):
            assert list(ex.extract(entity, Window(at(world.now - 30 * DAY), at(world.now))))
    assert any("retry" in r.getMessage() for r in caplog.records)  # faults were met and logged
    assert TOKENS["klaviyo"] not in caplog.text and "pk_simulator" not in caplog.text
