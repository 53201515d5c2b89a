"""Each connector's cheap probe, Extractor.newest(entity, before), against the simulator over real HTTP: the updated_at
of the entity's most recently updated record strictly before `before`, as the ground truth has it (one request, a
page of one sorted newest first). And what extract_window does with it: an empty extraction of a window in which the
source shows a record raises SourceSilent before anything is landed; an empty window the source confirms lands as
an empty batch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from simulator.state import TOKENS
from simulator.world import DAY
from tailor import sources
from tailor.lake import Lake
from tailor.pipeline import extract_window
from tailor.sources import Credentials, Progress, RecordVersion, Window, build_extractor
from tailor.sources.http import RetryPolicy, SourceError, SourceSilent
from tests.integration.lakekit import at

WORLD = {"customers": 300, "seed": 11}
FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01, timeout=5.0)
STREAMS = sources.streams()


def extractor(sim, source: str):
    options = {"http_policy": FAST} if source == "shopify" else {"policy": FAST}
    return build_extractor(source, Credentials(f"{source}_test", sim.url, TOKENS[source]), **options)


def truth_newest(world, entity: str, t: int, before: int) -> int | None:
    """The latest updated_at below `before` among the records an API read at clock t can return."""
    rows, updated = world.index(entity, t)
    below = updated[updated < before]
    return int(below.max()) if len(below) else None


@pytest.mark.parametrize(("source", "entity"), STREAMS)
def test_newest_is_the_latest_update_strictly_before(simulator, source, entity):
    sim = simulator(rate_limits=False, **WORLD)
    world, t = sim.state.world, sim.state.now()
    ex = extractor(sim, source)
    sent = ex.requests_sent

    newest = truth_newest(world, entity, t, t + 1)
    assert newest is not None
    assert ex.newest(entity, at(t + 1)) == at(newest)
    # strictly before: asked for `before` = that very update, the probe answers the update before it
    assert ex.newest(entity, at(newest)) == at(truth_newest(world, entity, t, newest))
    middle = t - 30 * DAY
    assert ex.newest(entity, at(middle)) == at(truth_newest(world, entity, t, middle))
    assert ex.newest(entity, at(world.start - DAY)) is None  # nothing before the shop existed
    assert ex.requests_sent - sent == 4  # one request each, whatever the shop's size

    with pytest.raises(ValueError, match="no entity"):
        ex.newest("widgets", at(t))


def broken(ex):
    """The extractor with a read that silently returns nothing (a filter or scope that broke), probe intact."""

    class Broken(type(ex)):
        def extract(self, entity: str, window: Window, progress: Progress | None = None) -> Iterator[RecordVersion]:
            return iter(())

    ex.__class__ = Broken
    return ex


@pytest.mark.parametrize(("source", "entity"), [("shopify", "orders"), ("hubspot", "contacts"),
                                                 ("klaviyo", "profiles"), ("klaviyo", "events")])
def test_an_empty_extract_of_a_window_with_records_fails_before_landing(simulator, tmp_path, source, entity):
    sim = simulator(rate_limits=False, **WORLD)
    world, t = sim.state.world, sim.state.now()
    lake = Lake.from_url(str(tmp_path / "lake"))
    newest = truth_newest(world, entity, t, t)
    window = Window(at(newest) - timedelta(hours=1), at(newest) + timedelta(seconds=1))

    with pytest.raises(SourceSilent) as raised:
        extract_window(broken(extractor(sim, source)), entity, window, lake)
    error = raised.value
    assert isinstance(error, SourceError)
    assert (error.source, error.entity, error.window, error.newest) == (source, entity, window, at(newest))
    message = str(error)
    assert f"{source}/{entity}" in message and "returned no records" in message
    assert window.start.strftime("%Y-%m-%dT%H:%M:%SZ") in message and at(newest).strftime("%H:%M:%SZ") in message
    assert lake.batches() == []  # nothing landed, so nothing loads and no watermark moves

    # the same read of a window the source confirms as empty (its newest record is older) lands an empty batch
    quiet = Window(at(newest) + timedelta(seconds=1), at(newest) + timedelta(seconds=2))
    ref = extract_window(broken(extractor(sim, source)), entity, quiet, lake)
    assert ref.records == 0 and [b.batch_id for b in lake.batches()] == [ref.batch_id]


def test_a_silent_vendor_confirms_its_own_silence(simulator, tmp_path):
    """A vendor that shows nothing at all (the simulator's silent fault) answers the probe with nothing either, so
    the extract lands empty batches: catching that is the raw gate's volume check (tests/integration/
    test_quiet_hours.py)."""
    sim = simulator(rate_limits=False, faults="silent=klaviyo", **WORLD)
    t = sim.state.now()
    lake = Lake.from_url(str(tmp_path / "lake"))
    ex = extractor(sim, "klaviyo")
    for entity in ("profiles", "events"):
        assert ex.newest(entity, at(t)) is None
        assert extract_window(ex, entity, Window(at(t - DAY), at(t)), lake).records == 0
