"""The simulator's command line: a working serve/world, and one clear message with exit code 2 for bad input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from simulator.cli import live_anchor
from simulator.world import DAY, World, WorldConfig, iso, parse_time
from tailor.airflow.local import free_port

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simulator", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def assert_usage_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_fault_profile():
    assert_usage_error(run_cli("serve", "--faults", "nasty"), "unknown fault profile 'nasty'", "hostile")


def test_unknown_fault_flag_and_bad_share():
    assert_usage_error(run_cli("serve", "--faults", "flaky,teapot=1"), "unknown fault flag 'teapot'")
    assert_usage_error(run_cli("serve", "--faults", "429=3"), "within 0..1")


def test_bad_date():
    assert_usage_error(run_cli("serve", "--now", "2026-13-45", "--port", str(free_port())), "--now", "2026-13-45")


def test_bad_input_is_reported_before_a_busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = str(sock.getsockname()[1])
        assert_usage_error(run_cli("serve", "--now", "yesterday", "--port", port), "--now")


def test_port_in_use():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert_usage_error(run_cli("serve", "--port", str(port)), f"port {port}", "in use")


def test_missing_transactions_file(tmp_path):
    missing = tmp_path / "nope.csv"
    assert_usage_error(run_cli("serve", "--transactions", str(missing), "--port", str(free_port())), str(missing))


def test_malformed_transactions_file(tmp_path):
    bad = tmp_path / "orders.csv"
    bad.write_text("who,when\nalice,yesterday\n")
    assert_usage_error(run_cli("world", "--transactions", str(bad), "--out", str(tmp_path / "w")), str(bad))
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(bytes(range(256)) * 40)
    assert_usage_error(run_cli("world", "--transactions", str(garbage), "--out", str(tmp_path / "w")), str(garbage))


def test_world_command_writes_the_world(tmp_path):
    result = run_cli("world", "--seed", "4", "--customers", "300", "--out", str(tmp_path / "w"))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    world = World.build(WorldConfig(seed=4, customers=300))
    assert manifest["counts"]["orders"] == world.orders.n
    assert pq.read_table(tmp_path / "w" / "events.parquet").num_rows == world.events.n
    emails = pq.read_table(tmp_path / "w" / "persons.parquet").column("email").to_pylist()
    assert emails[:5] == [world.person_email(p) for p in range(5)]


@contextmanager
def serving(*args: str) -> Iterator[tuple[str, dict, list[str]]]:
    """Run `serve` on a free port: yields (url, its first health, a list that holds its stdout lines once it
    has been stopped)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "serve", "--port", str(port), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{url}/_simulator/health", timeout=1).json()
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"simulator did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
                time.sleep(0.2)
        yield url, health, out
    finally:
        proc.terminate()
        stdout, _ = proc.communicate(timeout=10)
        out.extend(stdout.splitlines())


def test_serve_without_now_is_live_and_says_how_to_rebuild_its_world():
    before = time.time()
    with serving("--customers", "200", "--seed", "9") as (url, health, out):
        after = time.time()
        time.sleep(1.1)
        later = httpx.get(f"{url}/_simulator/health", timeout=5).json()
    assert health["seed"] == 9 and health["customers"] == 200 and health["rate_limits"] is True
    assert health["clock_mode"] == "live"
    anchor = health["world_now"]
    assert anchor in (live_anchor(before), live_anchor(after))
    assert int(before) - 1 <= parse_time(health["clock"]) <= int(time.time())
    assert parse_time(later["clock"]) > parse_time(health["clock"])
    assert health["end"] == iso(parse_time(anchor) + 365 * DAY)
    assert health["start"] == iso(parse_time(anchor) - 730 * DAY)
    assert any(f"--seed 9 --customers 200 --now {anchor} --live" in line for line in out), out


def test_serve_with_now_is_pinned():
    with serving("--customers", "200", "--now", "2026-03-04T05:06:07Z") as (url, health, out):
        time.sleep(1.1)
        later = httpx.get(f"{url}/_simulator/health", timeout=5).json()
    assert health["clock_mode"] == "pinned" and health["clock"] == later["clock"] == "2026-03-04T05:06:07Z"
    assert health["world_now"] == "2026-03-04T05:06:07Z" and health["end"] == "2026-04-03T05:06:07Z"
    assert any("clock pinned at 2026-03-04T05:06:07Z" in line for line in out), out


def test_serve_live_over_a_given_anchor_from_a_given_clock():
    with serving("--customers", "200", "--now", "2026-03-04T05:00:00Z", "--live", "--clock-start",
                 "2026-05-01T00:00:00Z", "--future-days", "90", "--faults", "silent=klaviyo") as (url, health, out):
        pass
    assert health["clock_mode"] == "live" and health["world_now"] == "2026-03-04T05:00:00Z"
    assert 0 <= parse_time(health["clock"]) - parse_time("2026-05-01T00:00:00Z") < 60
    assert health["end"] == "2026-06-02T05:00:00Z"
    assert health["faults"]["silent"] == ["klaviyo"] and health["faults_spec"] == "silent=klaviyo"
    assert any("--future-days 90 --now 2026-03-04T05:00:00Z --live" in line for line in out), out


@pytest.mark.parametrize(("args", "fragments"), [
    (("--now", "2026-11-01T00:00:00Z", "--clock-start", "2026-11-02T00:00:00Z"), ("--clock-start", "live")),
    (("--clock-start", "tomorrow"), ("--clock-start", "'tomorrow'")),
    (("--future-days", "-1"), ("--future-days", "-1")),
    (("--now", "2020-01-01T00:00:00Z", "--live"), ("live clock", "outside the world's timeline")),
    (("--clock-start", "2001-01-01T00:00:00Z"), ("2001-01-01T00:00:00Z", "outside the world's timeline")),
    (("--faults", "silent=myspace"), ("--faults", "unknown vendor 'myspace'")),
])
def test_bad_clock_and_fault_combinations(args, fragments):
    assert_usage_error(run_cli("serve", "--port", str(free_port()), *args), *fragments)


def test_live_anchor_is_the_wall_clock_floored_to_the_hour():
    assert live_anchor(parse_time("2026-12-02T16:59:59Z") + 0.9) == "2026-12-02T16:00:00Z"
    assert live_anchor(parse_time("2026-12-02T17:00:00Z")) == "2026-12-02T17:00:00Z"
