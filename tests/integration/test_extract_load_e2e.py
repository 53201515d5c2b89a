"""The CLI end to end against the simulator over HTTP: a killed extraction re-runs to exactly the truth, and
the credentials appear nowhere in what Tailor writes."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from simulator.state import TOKENS
from simulator.world import DAY, iso
from tailor.raw import raw_table, raw_tables
from tailor.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[2]


def tailor(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tailor", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def environment(sim_url: str, data: Path) -> dict:
    return {**os.environ, "TAILOR_SIMULATOR_URL": sim_url, "TAILOR_DATA_DIR": str(data),
            "TAILOR_LOOKBACK_MINUTES": "0"}


def raw_versions(data: Path, source: str, entity: str) -> list[tuple[str, str]]:
    with Warehouse(data / "warehouse.duckdb").reader() as con:
        return con.execute(f"select record_id, strftime(updated_at at time zone 'UTC', '%Y-%m-%dT%H:%M:%SZ') "
                           f"from {raw_table(source, entity)} where not is_deleted").fetchall()


def test_extraction_killed_mid_paging_then_rerun_is_exact(simulator, tmp_path):
    # rate limits on: the orders extraction paces itself for seconds, so the kill lands mid-paging
    sim = simulator(customers=3_000, seed=31, rate_limits=True)
    world = sim.state.world
    start, end = world.now - 120 * DAY, world.now
    env = environment(sim.url, tmp_path / "data")
    window = ("--source", "shopify", "--entity", "orders", "--start", iso(start), "--end", iso(end))
    proc = subprocess.Popen([sys.executable, "-m", "tailor", "extract", *window], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    for line in proc.stdout:  # wait until pages are flowing, then kill without warning
        if "records," in line and "pages" in line or time.monotonic() > deadline:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    lake = tmp_path / "data" / "lake"
    assert not list(lake.rglob("*.manifest.json")), "a killed extraction published a batch"
    assert tailor(env, "load").returncode == 0  # nothing to load is not an error

    rerun = tailor(env, "extract", *window)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    loaded = tailor(env, "load")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    rows = raw_versions(tmp_path / "data", "shopify", "orders")
    assert len(rows) == len(set(rows))
    assert set(rows) == world.truth_versions("orders", world.now, start, end)


def test_tokens_appear_nowhere_in_lake_warehouse_or_output(simulator, tmp_path):
    sim = simulator(customers=400, seed=32, rate_limits=False)
    env = environment(sim.url, tmp_path / "data")
    extracted = tailor(env, "extract", "--start", iso(sim.state.world.now - 30 * DAY), "--end", iso(sim.state.world.now))
    loaded = tailor(env, "load")
    assert extracted.returncode == 0, extracted.stdout + extracted.stderr
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    secrets = [token.encode() for token in TOKENS.values()]
    output = (extracted.stdout + extracted.stderr + loaded.stdout + loaded.stderr).encode()
    files = list((tmp_path / "data").rglob("*"))
    assert any(f.suffix == ".gz" for f in files)
    for path in files:
        if not path.is_file():
            continue
        content = path.read_bytes()
        if path.suffix == ".gz":
            content = gzip.decompress(content)
        for secret in secrets:
            assert secret not in content, f"a token is in {path}"
    for secret in secrets:
        assert secret not in output
    # the DuckDB file compresses strings, so ask it too
    with Warehouse(tmp_path / "data" / "warehouse.duckdb").reader() as con:
        for source, entity in raw_tables():
            for token in TOKENS.values():
                hits = con.execute(f"select count(*) from {raw_table(source, entity)} "
                                   "where contains(payload::varchar, ?)", [token]).fetchone()[0]
                assert hits == 0, f"a token is in {raw_table(source, entity)}"


def test_cli_on_an_s3_lake_takes_its_keys_from_aws_default_alone(simulator, tmp_path):
    """Outside Airflow the same AIRFLOW_CONN_AWS_DEFAULT configures S3: no AWS_* variables, no endpoint variable."""
    import json

    from tests.integration.lakekit import moto_s3

    sim = simulator(customers=300, seed=5, rate_limits=False)
    world = sim.state.world
    window = ("--start", iso(world.now - 3 * DAY), "--end", iso(world.now))
    with moto_s3() as url:
        aws = json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                          "extra": {"region_name": "us-east-1", "endpoint_url": os.environ["TAILOR_S3_ENDPOINT_URL"]}})
        env = {k: v for k, v in environment(sim.url, tmp_path / "data").items()
               if not k.startswith("AWS_") and k != "TAILOR_S3_ENDPOINT_URL"}
        env.update({"AIRFLOW_CONN_AWS_DEFAULT": aws, "TAILOR_LAKE_URL": url})
        for step in (("extract", "--source", "hubspot", *window), ("load",)):
            result = tailor(env, *step)
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        assert url in result.stdout  # the load read its batches from the bucket
    truth = world.truth_versions("contacts", world.now, world.now - 3 * DAY, world.now)
    assert set(raw_versions(tmp_path / "data", "hubspot", "contacts")) == truth
    assert truth
