"""Transport faults and the control API, over real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

from simulator.faults import PROFILES, FaultSpecError, parse_faults
from simulator.state import TOKENS
from simulator.world import DAY, iso

HUBSPOT = {"Authorization": f"Bearer {TOKENS['hubspot']}"}
CONTACTS = "/crm/v3/objects/contacts?limit=5"


def test_parse_profiles_and_flags():
    assert parse_faults("none") == PROFILES["none"]
    hostile = parse_faults("hostile,429=0.5,revoked")
    assert hostile.rate_429 == 0.5 and hostile.revoked_token and hostile.rate_5xx == PROFILES["hostile"].rate_5xx
    assert parse_faults("ties=700").tie_burst_size == 700
    with pytest.raises(FaultSpecError, match="slow_seconds"):
        parse_faults("slow_seconds=fast")


def test_every_request_throttled_with_the_vendors_body(simulator):
    sim = simulator(faults="429=1.0")
    response = httpx.get(sim.url + CONTACTS, headers=HUBSPOT)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()  # a vendor-shaped JSON body, not an empty one
    # the control API is never faulted
    assert httpx.get(sim.url + "/_simulator/health").status_code == 200


def test_server_errors_slow_and_truncated(simulator):
    assert httpx.get(simulator(faults="5xx=1.0").url + CONTACTS, headers=HUBSPOT).status_code in (500, 502, 503)
    slow = simulator(faults="slow=1.0,slow_seconds=1.0")
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(slow.url + CONTACTS, headers=HUBSPOT, timeout=0.3)
    truncated = httpx.get(simulator(faults="truncated=1.0").url + CONTACTS, headers=HUBSPOT)
    assert truncated.status_code == 200
    assert int(truncated.headers["content-length"]) == len(truncated.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.content)


def test_revoked_token_answers_401_to_the_documented_token(simulator):
    sim = simulator(faults="revoked")
    assert httpx.get(sim.url + CONTACTS, headers=HUBSPOT).status_code == 401


def test_fault_sequence_is_deterministic_and_retries_get_fresh_draws(simulator):
    def statuses(url: str) -> list[int]:
        return [httpx.get(url + f"/crm/v3/objects/contacts?limit={1 + i % 3}", headers=HUBSPOT).status_code
                for i in range(40)]

    first = statuses(simulator(faults="429=0.3,5xx=0.2", rate_limits=False, seed=5).url)
    second = statuses(simulator(faults="429=0.3,5xx=0.2", rate_limits=False, seed=5).url)
    other = statuses(simulator(faults="429=0.3,5xx=0.2", rate_limits=False, seed=6).url)
    assert first == second
    assert first != other
    assert 200 in first and 429 in first and any(s >= 500 for s in first)


def test_clock_moves_the_world(simulator):
    sim = simulator(rate_limits=False)
    world = sim.state.world
    before = httpx.get(sim.url + "/_simulator/summary").json()
    ahead = httpx.post(sim.url + "/_simulator/clock", json={"advance_seconds": 7 * DAY}).json()
    assert ahead["clock"] == iso(world.now + 7 * DAY)
    after = httpx.get(sim.url + "/_simulator/summary").json()
    assert after["records"]["orders"] > before["records"]["orders"]
    assert after["records"]["orders"] == world.truth_count("orders", world.now + 7 * DAY)
    assert httpx.post(sim.url + "/_simulator/clock", json={"now": "not a date"}).status_code == 400
    assert httpx.post(sim.url + "/_simulator/clock", json={}).status_code == 400
