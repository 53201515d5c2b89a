"""raw.* at a benchmark size, for the stages that start from a loaded warehouse (dbt, gate).

The base is the S world (10,000 customers), served by the simulator (rate limits off: limits are the extract stage's
subject), extracted through Tailor's own connectors over HTTP and loaded by Tailor's loader, so later stages parse
exactly the payloads production lands; plus the next hour's batches in a lake, for incremental runs. The Parquet
export would be cheaper but is the world's own vendor-neutral shape: turning it into raw.* would mean writing the
vendors' renderers a second time, and a misreading would hide in both.

M and L replicate the base (`replicate_raw`): copy k of every person-level record gets its ids and emails rewritten
the same way everywhere they occur (Shopify GIDs and legacy ids, Klaviyo external ids, profile ULIDs and event ids,
HubSpot ids, a "+rk" before each email's @), so copies are distinct people who link up across sources exactly like
the originals, with the same payload shapes and sizes. Products stay one shared catalog. The next hour is replicated
the same way into a lake of its own (`hour_at_size`), so an hourly load at L lands 100 times the S hour's changes.
Extracting an L world over HTTP would take hours and measure the simulator.

Everything is made once per seed (and size) under the bench dir, in a spawned process so that its memory is not
counted as a stage's, and reused.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.context import Context

BASE_SIZE = "S"
# The incremental run's new data: this much more of the world's timeline, extracted like an hourly run.
NEW_DATA_SECONDS = 3_600


def base_inputs(bench_dir: Path, seed: int) -> tuple[Path, Path, datetime]:
    """(the base warehouse file, the lake holding the next hour's batches, the world's clock) for the S world."""
    root = bench_dir / f"raw-{BASE_SIZE}-seed{seed}"
    marker = root / "built.json"
    if not marker.exists():
        maker = multiprocessing.get_context("spawn").Process(target=_make_base, args=(seed, str(root)))
        maker.start()
        maker.join()
        if maker.exitcode != 0 or not marker.exists():
            raise RuntimeError(f"making the benchmark's raw.* under {root} failed (exit code {maker.exitcode})")
    now = datetime.fromisoformat(json.loads(marker.read_text())["now"])
    return root / "warehouse.duckdb", root / "hour", now


def base_world_config(seed: int):
    """The world every size's raw.* comes from: the S world (M and L replicate it)."""
    from bench.context import SIZES
    from simulator.world import WorldConfig

    return WorldConfig(seed=seed, customers=SIZES[BASE_SIZE], products=20_000)  # 20k products at every size


def warehouse_at_size(bench_dir: Path, size: str, seed: int) -> tuple[Path, Path, int, datetime]:
    """(a warehouse holding raw.* at `size`, the next hour's lake, the replication factor, the world's clock); the
    hour's batches are S-sized: replicate them after loading with replicate_raw(path, factor, their batch ids)."""
    from bench.context import SIZES

    base, hour, now = base_inputs(bench_dir, seed)
    factor = max(1, SIZES[size] // SIZES[BASE_SIZE])
    if factor == 1:
        return base, hour, 1, now
    root = bench_dir / f"raw-{size}-seed{seed}"
    if not (root / "built.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        shutil.copyfile(base, root / "warehouse.duckdb")
        rows = replicate_raw(root / "warehouse.duckdb", factor)
        (root / "built.json").write_text(json.dumps({"factor": factor, "rows_added": rows, "now": now.isoformat()}))
    return root / "warehouse.duckdb", hour, factor, now


def _make_base(seed: int, root_dir: str) -> None:
    from datetime import UTC, timedelta

    import httpx

    from bench.context import SIZES
    from bench.serving import served
    from simulator.state import TOKENS
    from simulator.world import World
    from tailor import sources
    from tailor.lake import Lake
    from tailor.pipeline import BEGINNING, extract_window, load_batches
    from tailor.sources import Credentials, Window, build_extractor
    from tailor.warehouse import Warehouse

    root = Path(root_dir)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    world = World.build(base_world_config(seed))
    now = datetime.fromtimestamp(world.now, UTC)
    later = now + timedelta(seconds=NEW_DATA_SECONDS)
    with served(world, rate_limits=False) as url:
        for clock, window, lake_dir in ((now, Window(BEGINNING, now + timedelta(seconds=1)), root / "history"),
                                        (later, Window(now + timedelta(seconds=1), later + timedelta(seconds=1)),
                                         root / "hour")):
            # the API at clock t serves the world as of t, versions up to and including t
            httpx.post(f"{url}/_simulator/clock", json={"now": clock.strftime("%Y-%m-%dT%H:%M:%SZ")}).raise_for_status()
            lake = Lake.from_url(str(lake_dir))
            for source, entities in sources.entities().items():
                extractor = build_extractor(source, Credentials(f"bench {source}", url, TOKENS[source]))
                for entity in entities:
                    extract_window(extractor, entity, window, lake)
    load_batches(Warehouse(root / "warehouse.duckdb"), Lake.from_url(str(root / "history")))
    shutil.rmtree(root / "history")
    (root / "built.json").write_text(json.dumps({"now": now.isoformat(), "customers": SIZES[BASE_SIZE]}))


_SHOPIFY_GID = r"gid://shopify/(Customer|Order|LineItem|Refund|RefundLineItem|MailingAddress|BasicEvent)/"
_KLAVIYO_ULID = "(01[0-9A-HJKMNP-TV-Z]{24})"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _regex(expr: str, pattern: str, replacement: str) -> str:
    return f"regexp_replace({expr}, {_sql_text(pattern)}, {_sql_text(replacement)}, 'g')"


def _text(expr: str, old: str, new: str) -> str:
    return f"replace({expr}, {_sql_text(old)}, {_sql_text(new)})"


def _replica_sql(table: str, k: int) -> tuple[str, str]:
    """(record_id expression, payload text expression) of copy k of a raw table's row."""
    tag = f"9{k:02d}"
    payload = _text("payload::varchar", "@", f"+r{k}@")
    if table in ("shopify_customers", "shopify_orders"):
        payload = _text(payload, '"legacyResourceId":"', f'"legacyResourceId":"{tag}')
        return (_regex("record_id", _SHOPIFY_GID, rf"gid://shopify/\1/{tag}"),
                _regex(payload, _SHOPIFY_GID, rf"gid://shopify/\1/{tag}"))
    if table == "hubspot_contacts":
        payload = _text(_text(payload, '"id":"', f'"id":"{tag}'), '"hs_object_id":"', f'"hs_object_id":"{tag}')
        return f"'{tag}' || record_id", payload
    if table == "klaviyo_profiles":
        payload = _text(payload, '"external_id":"', f'"external_id":"{tag}')
        return _regex("record_id", _KLAVIYO_ULID, rf"\1R{k:02d}"), _regex(payload, _KLAVIYO_ULID, rf"\1R{k:02d}")
    if table == "klaviyo_events":
        payload = f"replace(payload::varchar, '\"' || record_id || '\"', '\"' || record_id || 'E{k:02d}\"')"
        return f"record_id || 'E{k:02d}'", _regex(payload, _KLAVIYO_ULID, rf"\1R{k:02d}")
    raise ValueError(f"no replication rule for raw.{table}")


REPLICATED_TABLES = ("shopify_customers", "shopify_orders", "hubspot_contacts", "klaviyo_profiles", "klaviyo_events")


def replicate_raw(path: Path, factor: int, batch_ids: list[str] | None = None) -> int:
    """Add copies 1..factor-1 of raw.* rows (those of `batch_ids`, default all) to the warehouse at `path`, and scale
    the batches' counts in raw._batches to match (volume checks compare them); returns the rows added."""
    from tailor.warehouse import Warehouse

    added = 0
    chosen = " and batch_id in (select unnest(?))" if batch_ids is not None else ""
    params = [batch_ids] if batch_ids is not None else []
    with Warehouse(path).writer() as con:
        con.execute("set enable_progress_bar = false")
        for table in REPLICATED_TABLES:
            original = f"raw.{table}"
            con.execute(f"create temp table originals as select * from {original} where true{chosen}", params)  # noqa: S608 fixed names
            for k in range(1, factor):
                record_id, payload = _replica_sql(table, k)
                added += con.execute(f"insert into {original} select {record_id}, updated_at, ({payload})::json, "  # noqa: S608
                                     "is_deleted, batch_id, extracted_at from originals").fetchone()[0]
            con.execute("drop table originals")
            con.execute(f"update raw._batches set records = records * {int(factor)}, "  # noqa: S608 an int
                        f"rows_inserted = rows_inserted * {int(factor)} where source || '_' || entity = ?{chosen}",
                        [table, *params])
        con.execute("checkpoint")
    return added


# Beside a warehouse lent from the cache: what raw.* held when it was lent, so that it can be given back as it was.
_LENT = "lent-from-cache.json"


def fresh_build_warehouse(ctx: Context) -> tuple[Path, int, bool]:
    """(the warehouse file a build stage builds into, the replication factor, whether it is the cached file itself):
    raw.* of the size's world, nothing built; a copy of the cache, or at L (41 GB, no room for a copy) the cached
    file lent (lend_from_cache), which the run gives back when it ends (return_to_cache)."""
    run_dir = ctx.work_dir / "dbt-run"
    return_to_cache(run_dir / "warehouse.duckdb")  # lent to a run that stopped before giving it back
    source, _, factor, _ = warehouse_at_size(ctx.work_dir.parent, ctx.size, ctx.seed)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    path = run_dir / "warehouse.duckdb"
    marker = source.parent / "built.json"
    in_place = shutil.disk_usage(run_dir).free <= 3 * source.stat().st_size
    if not in_place:
        shutil.copyfile(source, path)  # the builds write into it: a fresh copy per run
    else:
        marker_text = marker.read_text()
        marker.unlink()
        shutil.move(source, path)
        lend_from_cache(path, source, marker_text)
    return path, factor, in_place


def lend_from_cache(path: Path, cache_path: Path, marker_text: str) -> None:
    """Record what the cached warehouse, moved to `path` to be built in place (no room for a copy at L), holds of
    raw.*'s control tables: its batches, watermarks and quarantine as of now. return_to_cache gives it back."""
    from datetime import UTC

    from tailor.warehouse import Warehouse

    with Warehouse(path).reader() as con:
        batches = con.execute("select batch_id, checksum from raw._batches").fetchall()
        watermarks = con.execute("select source, entity, watermark, updated_at from raw._watermarks").fetchall()
    (path.parent / _LENT).write_text(json.dumps({
        "cache": str(cache_path), "marker": marker_text, "lent_at": datetime.now(UTC).isoformat(),
        "batches": batches, "watermarks": [(s, e, w.isoformat(), u.isoformat()) for s, e, w, u in watermarks]}))


def return_to_cache(path: Path) -> Path | None:
    """Give a warehouse lent by lend_from_cache back to the cache as raw.* was then: the batches loaded since (the
    hourly stage's hour) deleted, watermarks and quarantine as they were, every built schema dropped. So the next run
    at the size starts from the same raw.* without replicating it again (40 minutes at L). Returns the cache's path,
    or None when `path` was not lent."""
    from tailor.warehouse import Warehouse

    lent = path.parent / _LENT
    if not lent.exists():
        return None
    record = json.loads(lent.read_text())
    with Warehouse(path).writer() as con:
        con.execute("create temp table kept_batches (batch_id varchar, checksum varchar)")
        con.executemany("insert into kept_batches values (?, ?)", record["batches"])
        tables = [name for (name,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw' "
            "and table_name not like '\\_%' escape '\\'").fetchall()]
        for table in tables:
            con.execute(f"delete from raw.{table} where batch_id not in (select batch_id from kept_batches)")  # noqa: S608 catalog names
        con.execute("delete from raw._batches where (batch_id, checksum) not in "
                    "(select (batch_id, checksum) from kept_batches)")
        con.execute("delete from raw._watermarks")
        con.executemany("insert into raw._watermarks values (?, ?, ?, ?)", record["watermarks"])
        con.execute("delete from raw._quarantine where quarantined_at > ?", [record["lent_at"]])
        for (schema,) in con.execute("select schema_name from information_schema.schemata "
                                     "where catalog_name = current_database() and schema_name not in ('raw', 'main')"
                                     ).fetchall():
            con.execute(f'drop schema "{schema}" cascade')
        con.execute("checkpoint")
    cache = Path(record["cache"])
    shutil.move(path, cache)
    (cache.parent / "built.json").write_text(record["marker"])
    lent.unlink()
    return cache


def hour_at_size(bench_dir: Path, size: str, seed: int) -> tuple[Path, datetime]:
    """(a lake holding the next hour's batches at `size`, the world's clock): the S hour's batches with copies
    1..factor-1 of their person-level records added exactly as replicate_raw adds them to raw.*, so the hour's new
    people are the replicated world's, and a load of it measures what an hourly load at that size reads and writes.
    Made once per size and seed."""
    from bench.context import SIZES

    _, hour, now = base_inputs(bench_dir, seed)
    factor = max(1, SIZES[size] // SIZES[BASE_SIZE])
    if factor == 1:
        return hour, now
    root = bench_dir / f"hour-{size}-seed{seed}"
    if not (root / "built.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        records = _replicate_lake(hour, root / "lake", root / "scratch.duckdb", factor)
        (root / "scratch.duckdb").unlink()
        (root / "built.json").write_text(json.dumps({"factor": factor, "records": records, "now": now.isoformat()}))
    return root / "lake", now


def _replicate_lake(source_dir: Path, target_dir: Path, scratch: Path, factor: int) -> int:
    """Load the lake at source_dir into a scratch warehouse, replicate it there, and land each batch's rows again
    (same window, so the same batch id) in the lake at target_dir; returns the records landed."""
    from tailor.lake import Lake
    from tailor.pipeline import load_batches
    from tailor.sources import RecordVersion
    from tailor.warehouse import Warehouse

    source = Lake.from_url(str(source_dir))
    load_batches(Warehouse(scratch), source)
    replicate_raw(scratch, factor)
    target, landed = Lake.from_url(str(target_dir)), 0
    with Warehouse(scratch).reader() as con:
        for ref in source.batches():
            rows = con.execute(f"select record_id, updated_at, payload::varchar, is_deleted "  # noqa: S608 checked names
                               f"from raw.{ref.source}_{ref.entity} where batch_id = ? order by record_id, updated_at",
                               [ref.batch_id]).fetchall()
            records = (RecordVersion(record_id, updated_at, json.loads(payload), is_deleted)
                       for record_id, updated_at, payload, is_deleted in rows)
            landed += target.write_batch(ref.source, ref.entity, ref.window, records, ref.extracted_at).records
    return landed
