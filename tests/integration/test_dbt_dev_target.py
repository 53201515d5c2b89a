"""The dbt `dev` target and the raw snapshot it reads, with real DuckDB files, real dbt (the `dbt` command, as a data
engineer runs it) and real other processes holding the warehouse:

- `dbt build --target dev` runs while another process holds the warehouse and loads a batch into it: both succeed,
  and the dev file's marts equal the production build's for the same as_of;
- publishing a snapshot is an atomic swap (a reader of the old one keeps reading it), the incremental publish
  equals a full copy, and a publisher killed mid-write leaves the old snapshot intact and its temp file is swept;
- without a snapshot, a dev build fails with one line saying how to publish one;
- a hand-run production `dbt build` on a locked warehouse prints one line naming the holder, not a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from tailor.lake import Lake
from tailor.pipeline import extract_window, load_batches
from tailor.snapshot import publish_raw_snapshot
from tailor.sources import Window
from tailor.transform import BuildFailed, build
from tailor.warehouse import Warehouse
from tests.integration import dbt_fixtures
from tests.integration.dbt_fixtures import Built, DbtWorld
from tests.integration.dbtkit import differences, mart_tables
from tests.integration.lakekit import T0, ListExtractor, raw_snapshot, versions

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")  # the venv's dbt command

dbt_world = dbt_fixtures.dbt_world  # the session's loaded world (built once, shared with the other dbt tests)
built_now = dbt_fixtures.built_now  # the project built on the warehouse (target duckdb) as of the world's clock

# Another process holding the warehouse: opens a writer, loads every batch of the lake given (if any) into it, says
# so, and keeps the writer (and the file lock) until a line arrives on its stdin.
HOLDER = """
import sys
from tailor.lake import Lake
from tailor.raw import insert_batch
from tailor.warehouse import Warehouse

warehouse = Warehouse(sys.argv[1], lock_timeout=60)
lake = Lake.from_url(sys.argv[2]) if len(sys.argv) > 2 else None
with warehouse.writer() as con:
    rows = 0
    for ref in lake.batches() if lake else []:
        with lake.verified_file(ref) as data:
            rows += insert_batch(con, ref, data).rows_inserted
    print(f"holding {rows}", flush=True)
    sys.stdin.readline()
"""

NEW_CUSTOMERS = 50


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TAILOR_")}
    env.update({"TAILOR_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1", **extra})
    return env


def _dbt(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`cd dbt_project && dbt <args>`, dbt's target/ and logs/ under tmp_path."""
    return subprocess.run([str(DBT), *args, "--target-path", str(tmp_path / "dbt" / "target"), "--log-path",
                           str(tmp_path / "dbt" / "logs")], cwd=PROJECT, env=env, capture_output=True, text=True,
                          timeout=900)


def _hold(path: Path, lake_dir: Path | None = None) -> tuple[subprocess.Popen, int]:
    """Start a process holding the warehouse at `path` (after loading the lake's batches into it)."""
    args = [sys.executable, "-c", HOLDER, str(path)] + ([str(lake_dir)] if lake_dir else [])
    holder = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = holder.stdout.readline().strip()
    assert line.startswith("holding "), f"the holder did not start: {line!r}"
    return holder, int(line.split()[1])


def _release(holder: subprocess.Popen) -> None:
    if holder.poll() is None:
        holder.stdin.write("\n")
        holder.stdin.flush()
    assert holder.wait(timeout=60) == 0


def _land_new_customers(lake_dir: Path) -> None:
    """One Shopify customers batch of NEW_CUSTOMERS customers the world does not have, in a lake at lake_dir."""
    records = versions(NEW_CUSTOMERS, start=T0 + timedelta(hours=1), first=9_000_000)
    extract_window(ListExtractor("shopify", {"customers": records}), "customers",
                   Window(T0, T0 + timedelta(days=1)), Lake.from_url(str(lake_dir)))


def _count(path: Path, table: str) -> int:
    with Warehouse(path, lock_timeout=60).reader() as con:
        return con.execute(f"select count(*) from raw.{table}").fetchone()[0]


def test_dev_build_runs_on_the_snapshot_while_a_load_holds_the_warehouse(dbt_world: DbtWorld, built_now: Built,
                                                                          tmp_path: Path):
    warehouse = Warehouse(dbt_world.copy(tmp_path / "warehouse.duckdb"), lock_timeout=60)
    snapshot = publish_raw_snapshot(warehouse, tmp_path / "snapshots" / "raw_snapshot.duckdb")
    assert snapshot.path == tmp_path / "snapshots" / "raw_snapshot.duckdb"
    assert not snapshot.incremental and snapshot.tables["shopify_orders"] == _count(warehouse.path, "shopify_orders")
    assert {"_batches", "_watermarks", "_quarantine", "shopify_customers", "klaviyo_events"} <= set(snapshot.tables)
    customers = snapshot.tables["shopify_customers"]
    _land_new_customers(tmp_path / "lake")

    holder, loaded = _hold(warehouse.path, tmp_path / "lake")  # a load holding the production file
    try:
        assert loaded == NEW_CUSTOMERS
        started = time.monotonic()
        dev = _dbt(tmp_path, _env(tmp_path), "build", "--target", "dev", "--vars",
                   f'{{"as_of": "{built_now.as_of.astimezone(UTC).isoformat()}"}}')
        assert holder.poll() is None, "the holder let go of the warehouse before the dev build ended"
    finally:
        _release(holder)
    assert dev.returncode == 0, dev.stdout[-5000:] + dev.stderr[-2000:]
    assert "Completed successfully" in dev.stdout
    print(f"dev build: {time.monotonic() - started:.1f} s while another process held the warehouse")

    # the load committed in the warehouse; the snapshot (and so the dev build) still has the raw layer of before
    assert _count(warehouse.path, "shopify_customers") == customers + NEW_CUSTOMERS
    assert _count(snapshot.path, "shopify_customers") == customers
    dev_marts, prod_marts = mart_tables(tmp_path / "dev.duckdb"), mart_tables(built_now.path)
    assert len(prod_marts) >= 10 and set(dev_marts) == set(prod_marts)
    assert all(prod_marts[name] for name in prod_marts if name != "churn_labels")  # real content to compare
    problems = differences(prod_marts, dev_marts)
    assert not problems, "the dev build's marts differ from the production build's:\n" + "\n".join(problems)


def test_a_snapshot_swap_is_atomic_for_readers_and_adds_only_new_rows(dbt_world: DbtWorld, tmp_path: Path):
    warehouse = Warehouse(dbt_world.copy(tmp_path / "warehouse.duckdb"), lock_timeout=60)
    folder = tmp_path / "snapshots"
    first = publish_raw_snapshot(warehouse, folder / "raw_snapshot.duckdb")
    before = first.tables["shopify_customers"]
    _land_new_customers(tmp_path / "lake")

    with Warehouse(first.path).reader() as old:  # a dev build's view of the snapshot, open across the swap
        assert old.execute("select count(*) from raw.shopify_customers").fetchone()[0] == before
        load_batches(warehouse, Lake.from_url(str(tmp_path / "lake")))
        second = publish_raw_snapshot(warehouse, folder / "raw_snapshot.duckdb")
        # the reader still reads the old file, whole: every payload of the table, not a cached count
        assert old.execute("select count(*), sum(length(payload::varchar)) > 0 from raw.shopify_customers"
                           ).fetchone() == (before, True)
        assert old.execute("select count(*) from raw._batches").fetchone()[0] == first.tables["_batches"]
    assert second.incremental and second.appended and second.rows_written < first.rows_written
    assert second.tables["shopify_customers"] == before + NEW_CUSTOMERS == _count(second.path, "shopify_customers")
    assert second.lock_seconds < second.seconds
    assert sorted(path.name for path in folder.iterdir()) == [".raw_snapshot.duckdb.lock", "raw_snapshot.duckdb"]

    # the snapshot built up incrementally holds exactly what a full copy holds, which is the warehouse's raw.*
    full = publish_raw_snapshot(warehouse, tmp_path / "full" / "raw_snapshot.duckdb", full=True)
    assert not full.incremental and full.tables == second.tables
    incremental_rows, full_rows = raw_snapshot(Warehouse(second.path)), raw_snapshot(Warehouse(full.path))
    assert incremental_rows == full_rows == raw_snapshot(warehouse)


def test_a_snapshot_of_another_raw_layer_is_replaced_whole(dbt_world: DbtWorld, tmp_path: Path):
    # a snapshot left from another warehouse (or a raw layer loaded again from scratch) is not a prefix of this one
    other = Warehouse(tmp_path / "other" / "warehouse.duckdb", lock_timeout=60)
    _land_new_customers(tmp_path / "lake")
    load_batches(other, Lake.from_url(str(tmp_path / "lake")))
    publish_raw_snapshot(other, tmp_path / "snapshots" / "raw_snapshot.duckdb")
    warehouse = Warehouse(dbt_world.copy(tmp_path / "warehouse.duckdb"), lock_timeout=60)
    snapshot = publish_raw_snapshot(warehouse, tmp_path / "snapshots" / "raw_snapshot.duckdb")
    assert not snapshot.incremental
    assert raw_snapshot(Warehouse(snapshot.path)) == raw_snapshot(warehouse)


def test_a_publisher_killed_mid_write_leaves_the_old_snapshot_and_the_next_sweeps_its_litter(dbt_world: DbtWorld,
                                                                                             tmp_path: Path):
    warehouse = Warehouse(dbt_world.copy(tmp_path / "warehouse.duckdb"), lock_timeout=60)
    folder = tmp_path / "snapshots"
    old = publish_raw_snapshot(warehouse, folder / "raw_snapshot.duckdb")
    old_rows = raw_snapshot(Warehouse(old.path))
    _land_new_customers(tmp_path / "lake")

    # The publisher copies the old snapshot into its temp file, then waits for the warehouse, which a load holds:
    # killed there, it dies mid-publish with its temp file written.
    holder, _ = _hold(warehouse.path, tmp_path / "lake")
    try:
        publisher = subprocess.Popen(
            [sys.executable, "-c", "import sys; from tailor.snapshot import publish_raw_snapshot; "
             "from tailor.warehouse import Warehouse; publish_raw_snapshot(Warehouse(sys.argv[1]), sys.argv[2])",
             str(warehouse.path), str(old.path)], cwd=ROOT, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not list(folder.glob(".raw_snapshot.duckdb.*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # past the copy: the temp file is complete and the publisher waits for the lock
        assert publisher.poll() is None, "the publisher did not wait for the warehouse"
        publisher.send_signal(signal.SIGKILL)
        publisher.wait(timeout=30)
    finally:
        _release(holder)
    litter = list(folder.glob(".raw_snapshot.duckdb.*.tmp*"))
    assert litter, "the killed publisher left no temp file: it was not killed mid-publish"
    assert raw_snapshot(Warehouse(old.path)) == old_rows  # the published snapshot is untouched

    new = publish_raw_snapshot(warehouse, folder / "raw_snapshot.duckdb")
    assert not any(path.exists() for path in litter)
    assert sorted(path.name for path in folder.iterdir()) == [".raw_snapshot.duckdb.lock", "raw_snapshot.duckdb"]
    assert new.tables["shopify_customers"] == old.tables["shopify_customers"] + NEW_CUSTOMERS


def test_a_dev_build_without_a_snapshot_says_how_to_publish_one(tmp_path: Path):
    missing = (tmp_path / "snapshots" / "raw_snapshot.duckdb").resolve()
    run = _dbt(tmp_path, _env(tmp_path), "build", "--target", "dev", "--select", "stg_shopify__products")
    output = run.stdout + run.stderr
    assert run.returncode == 2, output[-3000:]
    lines = [line for line in output.splitlines() if "no raw snapshot" in line]
    assert len(lines) == 1, output[-3000:]
    assert f"no raw snapshot at {missing} yet" in lines[0] and "python -m tailor snapshot" in lines[0]
    assert "Traceback" not in output
    assert not (tmp_path / "dev.duckdb").exists()  # nothing was built

    with pytest.raises(BuildFailed, match="python -m tailor snapshot"):  # python -m tailor build says the same
        build("2026-11-01T00:00:00Z", target="dev", duckdb_path=tmp_path / "dev.duckdb",
              env={"TAILOR_RAW_SNAPSHOT_PATH": str(missing)}, state_dir=tmp_path / "dbt", quiet=True)


def test_a_hand_run_build_on_a_held_warehouse_says_who_holds_it_in_one_line(dbt_world: DbtWorld, tmp_path: Path):
    path = dbt_world.copy(tmp_path / "warehouse.duckdb")
    holder, _ = _hold(path)
    try:
        run = _dbt(tmp_path, _env(tmp_path), "build", "--select", "stg_shopify__products")
    finally:
        _release(holder)
    output = run.stdout + run.stderr
    assert run.returncode == 2, output[-3000:]
    assert "Traceback" not in output and "IOException" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if "is in use by another process" in line]
    assert len(lines) == 1, output[-3000:]
    assert f"{path.resolve()} is in use by another process (PID {holder.pid}: {sys.executable} -c" in lines[0]
    assert "wait for it to finish" in lines[0] and "dbt build --target dev" in lines[0]

    # with the warehouse free, the same command builds (the guard does not get in dbt's way)
    again = _dbt(tmp_path, _env(tmp_path), "build", "--select", "+stg_shopify__products")
    assert again.returncode == 0, again.stdout[-3000:]


def test_cli_snapshot_publishes_and_says_when_there_is_nothing_to_publish(dbt_world: DbtWorld, tmp_path: Path):
    empty = subprocess.run([sys.executable, "-m", "tailor", "snapshot"], cwd=ROOT, env=_env(tmp_path),
                           capture_output=True, text=True, timeout=120)
    assert empty.returncode == 1 and f"snapshot: error: no warehouse at {tmp_path / 'warehouse.duckdb'}" in empty.stdout
    dbt_world.copy(tmp_path / "warehouse.duckdb")
    published = subprocess.run([sys.executable, "-m", "tailor", "snapshot"], cwd=ROOT, env=_env(tmp_path),
                               capture_output=True, text=True, timeout=120)
    assert published.returncode == 0, published.stdout + published.stderr
    assert f"snapshot: raw snapshot {tmp_path / 'snapshots' / 'raw_snapshot.duckdb'}: 9 tables" in published.stdout
    assert "full copy" in published.stdout
    again = subprocess.run([sys.executable, "-m", "tailor", "snapshot"], cwd=ROOT, env=_env(tmp_path),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "(incremental, " in again.stdout, again.stdout + again.stderr
