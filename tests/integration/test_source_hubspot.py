"""HubSpotExtractor against the simulator over real HTTP: windows equal the ground truth under every fault
profile, past the 10,000-result search cap, through a 600-contact tie, across edits made mid-read; archived
contacts arrive as deletes; pacing keeps 429s away; a revoked token fails fast without leaking."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime

import pytest

from simulator.state import TOKENS
from simulator.world import DAY
from tailor.sources import Credentials, Progress, RecordVersion, Window
from tailor.sources.http import AuthError, RetryPolicy
from tailor.sources.hubspot import EPOCH, HubSpotExtractor
from tests.integration.lakekit import FAST, at, version

CONN = "hubspot_test"


def extractor(sim, *, paced: bool = False, **options) -> HubSpotExtractor:
    credentials = Credentials(CONN, sim.url, TOKENS["hubspot"])
    if paced:  # real waits: the pacing itself is under test
        return HubSpotExtractor(credentials, policy=RetryPolicy(timeout=10.0), **options)
    return HubSpotExtractor(credentials, policy=FAST, sleep=lambda seconds: None, **options)


def upserts(records: list[RecordVersion]) -> list[tuple[str, str]]:
    return [version(r) for r in records if not r.is_deleted]


def clock(sim) -> int:
    return sim.state.now()


def assert_complete_across_edits(sim, ex: HubSpotExtractor, start: int, end: int, first: list[tuple[str, str]]):
    """`first` was read for [start, end) while records may have been edited (moving to the clock): together
    with a read of [end, clock + 1s) it holds every version the truth now has in [start, clock + 1s), and it
    holds nothing but versions that existed (current ones, or earlier ones of records edited since)."""
    world, now = sim.state.world, clock(sim)
    assert len(first) == len(set(first)), "duplicates within one extraction"
    later = upserts(list(ex.extract("contacts", Window(at(end), at(now + 1)))))
    assert len(later) == len(set(later))
    truth = world.truth_versions("contacts", now, start, now + 1)
    assert truth - set(first) - set(later) == set(), "versions missed by both reads"
    touched = {str(int(world.contacts.contact_id[k])) for k in world.touched("contacts")}
    assert {i for i, _ in set(first) - truth} <= touched, "versions that never existed"


@pytest.mark.parametrize("faults", ["none", "flaky", "hostile"])
def test_search_window_equals_truth(simulator, faults):
    sim = simulator(customers=2000, faults=faults, rate_limits=False)
    world = sim.state.world
    start, end = world.now - 120 * DAY, world.now  # holds the profile's tie burst (1-1.5 days before now)
    ex = extractor(sim, search_page_size=50)
    progress = Progress()
    first = upserts(list(ex.extract("contacts", Window(at(start), at(end)), progress)))
    if faults == "none":
        assert first and sorted(first) == sorted(world.truth_versions("contacts", clock(sim), start, end))
    if faults == "hostile":
        assert progress.retries > 0  # 429s, 5xx, timeouts and truncated bodies were met and survived
    assert_complete_across_edits(sim, ex, start, end, first)


@pytest.mark.parametrize("faults", ["none", "flaky", "hostile"])
def test_full_load_equals_truth(simulator, faults):
    """A window from the epoch reads the list endpoint (ordered by id, where mid-read edits and duplicate
    records are served) and keeps the versions in the window."""
    sim = simulator(customers=2000, faults=faults, rate_limits=False)
    world = sim.state.world
    end = world.now - 10 * DAY
    ex = extractor(sim, list_page_size=25)
    progress = Progress()
    records = list(ex.extract("contacts", Window(EPOCH, at(end)), progress))
    first = upserts(records)
    if faults == "none":
        assert sorted(first) == sorted(world.truth_versions("contacts", clock(sim), 0, end))
    if faults == "hostile":
        assert progress.retries > 0 and world.touched("contacts")  # the faults did happen
    assert_complete_across_edits(sim, ex, 0, end, first)


def test_full_load_with_every_page_edited_and_repeated(simulator):
    sim = simulator(customers=2000, faults="midread=1.0,duplicates=0.5,429=0.2,5xx=0.1,truncated=0.1",
                    rate_limits=False)
    world = sim.state.world
    end = world.now
    ex = extractor(sim, list_page_size=25)
    first = upserts(list(ex.extract("contacts", Window(EPOCH, at(end)))))
    assert len(world.touched("contacts")) > 20
    assert_complete_across_edits(sim, ex, 0, end, first)


def test_more_than_ten_thousand_contacts_in_one_window(simulator, caplog):
    sim = simulator(customers=20_000, rate_limits=False)
    world = sim.state.world
    start, end = world.start - DAY, world.now + 1
    truth = world.truth_versions("contacts", clock(sim), start, end)
    assert len(truth) > 10_000
    ex = extractor(sim)
    with caplog.at_level(logging.INFO):
        got = upserts(list(ex.extract("contacts", Window(at(start), at(end)))))
    assert len(got) == len(set(got)) and set(got) == truth  # a 400 past the cap would have raised
    assert f"{len(truth)} contacts modified" in caplog.text  # the search's own total saw them all
    assert ex.requests_sent < len(truth) / 200 + 10


@pytest.mark.parametrize("page_size", [200, 30])
def test_tie_burst_of_600_contacts_on_one_second(simulator, page_size):
    sim = simulator(customers=2000, tie_burst_size=600, rate_limits=False)
    world = sim.state.world
    start, end = world.now - 2 * DAY, world.now
    truth = world.truth_versions("contacts", clock(sim), start, end)
    assert max(Counter(u for _, u in truth).values()) >= 550  # most of the burst is still the latest version
    ex = extractor(sim, search_page_size=page_size, deletes=False)
    got = upserts(list(ex.extract("contacts", Window(at(start), at(end)))))
    assert len(got) == len(set(got)) and set(got) == truth
    # the tie is read once by id (plus the main pages around it): no loop, no re-reading page after page
    assert ex.requests_sent <= 2 * (len(truth) // page_size + 2)


def test_more_contacts_on_one_second_than_search_can_page(simulator):
    """10,500 contacts share one lastmodifieddate: no window split can separate them, offset paging would
    hit the 10,000 cap; the id keyset reads them all."""
    sim = simulator(customers=20_000, tie_burst_size=10_500, rate_limits=False)
    world = sim.state.world
    start, end = world.now - 2 * DAY, world.now
    truth = world.truth_versions("contacts", clock(sim), start, end)
    assert max(Counter(u for _, u in truth).values()) > 10_000
    ex = extractor(sim, deletes=False)
    got = upserts(list(ex.extract("contacts", Window(at(start), at(end)))))
    assert len(got) == len(set(got)) and set(got) == truth
    assert ex.requests_sent <= len(truth) // 200 + 5


@pytest.mark.parametrize("window_reaches_clock", [False, True])
def test_edits_between_pages_miss_nothing(simulator, window_reaches_clock):
    """Contacts ahead of the read are edited between pages (what shifts offsets in offset paging)."""
    sim = simulator(customers=2000, tie_burst_size=600, rate_limits=False)
    world = sim.state.world
    now = clock(sim)
    start, end = now - 120 * DAY, (now + 1 if window_reaches_clock else now)
    rows, updated = world.index("contacts", now)
    ahead = [int(k) for k, u in zip(rows, updated, strict=True) if start <= u < now]
    ex = extractor(sim, search_page_size=40, deletes=False)
    first, edited = [], 0
    for n, record in enumerate(ex.extract("contacts", Window(at(start), at(end))), 1):
        first.append(version(record))
        if n % 40 == 0:  # after each page's worth, edit a contact the read has not reached yet
            read = {int(i) for i, _ in first}
            pending = [k for k in ahead if int(world.contacts.contact_id[k]) not in read]
            if pending:
                world.touch("contacts", pending[len(pending) // 2], now)
                edited += 1
    assert edited >= 10
    if window_reaches_clock:  # the edited contacts moved inside the window: this read has their new versions
        assert set(first) >= world.truth_versions("contacts", now, start, end)
    assert_complete_across_edits(sim, ex, start, end, first)


def test_archived_contacts_are_deletes_at_their_archived_time(simulator):
    sim = simulator(customers=2000, rate_limits=False)
    world, contacts = sim.state.world, sim.state.world.contacts
    start, end = world.start, world.now
    expected = {(str(int(contacts.contact_id[k])), datetime.fromtimestamp(int(contacts.archived_at[k]), UTC)
                 .strftime("%Y-%m-%dT%H:%M:%SZ")) for k in world.deleted_between("contacts", start, end)}
    assert len(expected) >= 5
    for window in (Window(at(start), at(end)), Window(EPOCH, at(end))):  # incremental and full load
        records = list(extractor(sim).extract("contacts", window))
        deletes = [r for r in records if r.is_deleted]
        assert sorted(version(r) for r in deletes) == sorted(expected)
        assert all(r.payload["archived"] is True and r.payload["archivedAt"] for r in deletes)
        assert not {r.record_id for r in deletes} & {r.record_id for r in records if not r.is_deleted}


def test_payload_carries_every_property_staging_reads(simulator):
    sim = simulator(customers=300, rate_limits=False)
    world = sim.state.world
    record = next(iter(extractor(sim).extract("contacts", Window(at(world.now - 365 * DAY), at(world.now)))))
    assert {"email", "firstname", "lastname", "phone", "lifecyclestage", "hs_lead_status", "hubspot_owner_id",
            "createdate", "lastmodifieddate", "date_of_birth", "city", "country", "zip",
            "hs_object_id"} <= set(record.payload["properties"])
    assert record.payload["id"] == record.record_id and record.updated_at.tzinfo is not None


def throttled(caplog) -> int:
    return sum("throttled (429)" in r.getMessage() for r in caplog.records if r.name == "tailor.sources.http")


@pytest.mark.slow
def test_search_pacing_stays_under_five_per_second(simulator, caplog):
    sim = simulator(customers=2000, rate_limits=True)
    world = sim.state.world
    start, end = world.start - DAY, world.now + 1
    ex = extractor(sim, paced=True, search_page_size=40, deletes=False)
    progress = Progress()
    with caplog.at_level(logging.INFO, logger="tailor.sources.http"):
        got = upserts(list(ex.extract("contacts", Window(at(start), at(end)), progress)))
    assert set(got) == world.truth_versions("contacts", clock(sim), start, end)
    assert ex.requests_sent > 25 and progress.rate_waits > 0  # more requests than 5/s allows at once
    assert throttled(caplog) <= 1


@pytest.mark.slow
def test_list_pacing_follows_the_ten_secondly_headers(simulator, caplog):
    sim = simulator(customers=2000, rate_limits=True)
    world = sim.state.world
    ex = extractor(sim, paced=True, list_page_size=10)
    with caplog.at_level(logging.INFO, logger="tailor.sources.http"):
        records = list(ex.extract("contacts", Window(EPOCH, at(world.now + 1))))
    assert set(upserts(records)) == world.truth_versions("contacts", clock(sim))
    assert ex.requests_sent > 120  # past the 100-per-10-seconds burst
    assert throttled(caplog) <= 1


def test_revoked_token_fails_fast_naming_the_connection(simulator, caplog):
    sim = simulator(customers=300, faults="revoked", rate_limits=False)
    ex = extractor(sim)
    progress = Progress()
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as raised:
        list(ex.extract("contacts", Window(at(sim.state.world.now - DAY), at(sim.state.world.now)), progress))
    message = str(raised.value)
    assert CONN in message and "401" in message
    assert ex.requests_sent == 1 and progress.retries == 0
    assert TOKENS["hubspot"] not in message and TOKENS["hubspot"] not in caplog.text


def test_token_never_logged(simulator, caplog):
    sim = simulator(customers=500, faults="hostile", rate_limits=False)
    world = sim.state.world
    with caplog.at_level(logging.DEBUG):
        records = list(extractor(sim, search_page_size=20, list_page_size=20).extract(
            "contacts", Window(at(world.now - 365 * DAY), at(world.now))))
    assert records and any("retry" in r.getMessage() for r in caplog.records)  # faults were met and logged
    assert TOKENS["hubspot"] not in caplog.text
    assert "pat-na1" not in caplog.text
