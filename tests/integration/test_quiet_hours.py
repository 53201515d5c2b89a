"""The gate over 48 simulated hours of a 1,000-person live world: no false failure; with one source made to return
nothing (the simulator's fault flags), the gate fails within the hours documented in expectations/raw.yml.

Every hour is run as the hourly DAG runs it: the simulator's clock moves to the interval's end, each (source, entity)
extracts pipeline.next_window of the interval with the lookback, the batches load, and the whole raw gate runs as of
the interval's end. A 1,000-person shop leaves most of its streams empty in many hours (the quiet hours of the issue
"gates that know a quiet hour"), and its Klaviyo events come in campaign bursts: none of that may fail the gate.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from simulator.faults import parse_faults
from simulator.server import start_in_thread
from simulator.state import TOKENS, SimState
from simulator.world import WorldConfig
from tailor import quality, sources
from tailor.lake import Lake
from tailor.pipeline import extract_window, load_batches, next_window
from tailor.sources import Credentials, build_extractor
from tailor.sources.http import RetryPolicy
from tailor.warehouse import Warehouse
from tests.conftest import world_for

HOUR = timedelta(hours=1)
LOOKBACK = timedelta(minutes=15)  # TAILOR_LOOKBACK_MINUTES' default
QUIET_HOURS = 48
# expectations/raw.yml, "How long a silent stream takes to fail": a 1,000-person shop's Klaviyo events (~3/h outside
# campaign sends, dispersion ~2.5) fail after ~8 silent hours at alpha = 0.0001; the bound leaves room for the
# estimate's noise. A source fails with its fastest stream.
SILENT_BOUND_HOURS = 12


class Shop:
    """A fresh install against a pinned simulator, run hour by hour as the hourly DAG would run it."""

    def __init__(self, state: SimState, url: str, root: Path):
        self.state, self.url = state, url
        self.lake = Lake.from_url(str(root / "lake"))
        self.warehouse = Warehouse(root / "warehouse.duckdb", lock_timeout=60)
        policy = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, timeout=30.0)
        self.extractors = {source: build_extractor(source, Credentials(f"{source}_default", url, TOKENS[source]),
                                                   **({"http_policy": policy} if source == "shopify"
                                                      else {"policy": policy}))
                           for source in sources.entities()}
        self.empty_batches = 0
        self.gate_seconds: list[float] = []

    def run(self, interval_end: datetime) -> quality.GateReport:
        """One hourly run for [interval_end - 1 h, interval_end): extract and load every stream, then the gate."""
        self.state.set_now(int(interval_end.timestamp()))
        refs = []
        for source, entities in sources.entities().items():
            for entity in entities:
                window = next_window(self.warehouse, source, entity, interval_end - HOUR, interval_end,
                                     interval_end, LOOKBACK)
                ref = extract_window(self.extractors[source], entity, window, self.lake)
                self.empty_batches += ref.records == 0
                refs.append(ref)
        load_batches(self.warehouse, self.lake, refs)
        started = time.monotonic()
        # no Data Docs: a third of a small shop's gate, and not what this test is about (test_quality_raw.py)
        report = quality.run_gate("raw", interval_end, self.warehouse, raise_on_failure=False, data_docs=False)
        self.gate_seconds.append(time.monotonic() - started)
        return report


def failures(report: quality.GateReport) -> str:
    return "\n".join(outcome.describe() for outcome in report.failures)


def test_quiet_hours_pass_and_a_silent_source_fails_within_the_bound(tmp_path, monkeypatch):
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TAILOR_QUARANTINE_MAX_SHARE", raising=False)
    world = world_for(WorldConfig(customers=1_000, seed=7))
    handle = start_in_thread(SimState(world=world, faults=parse_faults("none"), rate_limits=False))  # pinned
    try:
        shop = Shop(handle.state, handle.url, tmp_path)
        installed = datetime.fromtimestamp(world.now, UTC)
        first = shop.run(installed)  # no watermark yet: the first run lands the whole history
        assert first.success, failures(first)

        for hour in range(1, QUIET_HOURS + 1):
            report = shop.run(installed + hour * HOUR)
            assert report.success, f"hour {hour}: a false failure\n{failures(report)}"
        assert shop.empty_batches >= QUIET_HOURS  # quiet hours did happen: empty windows the gate let pass

        switched = httpx.post(f"{handle.url}/_simulator/faults", json={"faults": "silent=klaviyo"}, timeout=10)
        assert switched.status_code == 200, switched.text
        silent_since = installed + QUIET_HOURS * HOUR
        for hour in range(1, SILENT_BOUND_HOURS + 1):
            report = shop.run(silent_since + hour * HOUR)
            if not report.success:
                break
        else:
            pytest.fail(f"the gate still passed {SILENT_BOUND_HOURS} hours after Klaviyo went silent")
        (failed,) = report.failures
        assert (failed.asset, failed.column) == ("extract_volume", "silence")
        message = str(quality.GateFailed(report))
        assert "'klaviyo/" in message and "where" in message and "were expected: P = " in message
        seconds = sorted(shop.gate_seconds)
        print(f"\nKlaviyo silent from {silent_since:%Y-%m-%dT%H:%MZ}: the gate failed after {hour} hour(s):\n{message}"
              f"\nthe whole gate, {len(seconds)} runs: median {seconds[len(seconds) // 2]:.2f} s, max {seconds[-1]:.2f} s")
    finally:
        handle.stop()
