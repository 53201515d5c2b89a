"""The simulator's command line: a working serve/world, and one clear message with exit code 2 for bad input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from simulator.world import World, WorldConfig

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def test_serve_answers_over_http():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "serve", "--port", str(port), "--customers", "200",
                             "--seed", "9"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_simulator/health", timeout=1).json()
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"simulator did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
                time.sleep(0.2)
        assert health["seed"] == 9 and health["customers"] == 200 and health["rate_limits"] is True
    finally:
        proc.terminate()
        proc.wait(timeout=10)
