"""The baskets stage: the cost of parsing order lines against the number of lines per order.

A wholesale shop's orders carry hundreds or thousands of lines. For each basket size (1, 250, 1,000 and 5,000 lines
per order) the stage writes an order-line export with the same number of lines in all (a transactions file, the
simulator's real-history mode), serves the shop it makes, extracts and loads it through Tailor's connectors over
HTTP, then times a full dbt build. The base model that unnests the lines (base_shopify__order_line_versions) must cost
the same per line at every size, and the whole build must stay small (the stage's peak RSS covers every build).
"""

from __future__ import annotations

import csv
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.context import Context, StageResult

BASKET_SIZES = (1, 250, 1_000, 5_000)
LINES_PER_SIZE = {"S": 20_000, "M": 100_000, "L": 200_000}
LINE_MODEL = "base_shopify__order_line_versions"
_FIRST_DAY = datetime(2025, 1, 6, 9, tzinfo=UTC)


def write_transactions(path: Path, lines_per_order: int, total_lines: int) -> Path:
    """An order-line export (the columns World.from_transactions reads): orders of `lines_per_order` distinct
    products each, `total_lines` lines in all, spread over a year among 50 customers."""
    orders = max(1, total_lines // lines_per_order)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer", "order_id", "ordered_at", "product_id", "product_title", "quantity",
                         "unit_price", "category", "currency", "country"])
        for order in range(orders):
            placed = _FIRST_DAY + timedelta(hours=order * 8_760 / orders)
            customer = f"buyer{order % 50}@wholesale.example"
            for line in range(lines_per_order):
                product = (order * 7 + line) % max(lines_per_order, 500)
                writer.writerow([customer, f"W{order:06d}", placed.strftime("%Y-%m-%d %H:%M:%S"), f"SKU{product:05d}",
                                 f"Wholesale item {product}", 1 + line % 12, f"{2 + product % 90}.50",
                                 ("Hardware", "Paper", "Food", "Garden")[product % 4], "EUR", "Germany"])
    return path


def baskets(ctx: Context) -> StageResult:
    """Per basket size: lines parsed, the line model's seconds and microseconds per line, the full build's seconds."""
    import httpx

    from bench.serving import served
    from simulator.state import TOKENS
    from simulator.world import World, WorldConfig
    from tailor import sources, transform
    from tailor.lake import Lake
    from tailor.pipeline import BEGINNING, extract_window, load_batches
    from tailor.sources import Credentials, Window, build_extractor
    from tailor.warehouse import Warehouse

    total_lines = LINES_PER_SIZE[ctx.size]
    root = ctx.work_dir / "baskets"
    details, timed, line_seconds = {}, 0.0, {}
    for size in BASKET_SIZES:
        folder = root / f"lines-{size}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        world = World.from_transactions(write_transactions(folder / "transactions.csv", size, total_lines),
                                        WorldConfig(seed=ctx.seed))
        now = datetime.fromtimestamp(world.now, UTC)
        lake, warehouse = Lake.from_url(str(folder / "lake")), Warehouse(folder / "warehouse.duckdb")
        with served(world, rate_limits=False) as url:
            httpx.post(f"{url}/_simulator/clock", json={"now": now.strftime("%Y-%m-%dT%H:%M:%SZ")}).raise_for_status()
            for source, entities in sources.entities().items():
                extractor = build_extractor(source, Credentials(f"bench {source}", url, TOKENS[source]))
                for entity in entities:
                    extract_window(extractor, entity, Window(BEGINNING, now + timedelta(seconds=1)), lake)
        load_batches(warehouse, lake)
        started = time.perf_counter()
        build = transform.build(now, duckdb_path=warehouse.path, state_dir=folder / "dbt", full_refresh=True,
                                quiet=True)
        seconds = time.perf_counter() - started
        timed += seconds
        with warehouse.reader() as con:
            lines = con.execute(f"select count(*) from base.{LINE_MODEL}").fetchone()[0]  # noqa: S608 constant
        line_seconds[size] = next(node.seconds for node in build.nodes if node.unique_id.endswith(f".{LINE_MODEL}"))
        details[f"lines_per_order_{size}"] = (f"{lines:,} lines; line model {line_seconds[size]:.2f} s = "
                                              f"{line_seconds[size] / max(lines, 1) * 1e6:.1f} us/line; "
                                              f"full build {seconds:.1f} s")
        shutil.rmtree(folder, ignore_errors=True)
    details["largest_to_smallest_per_line"] = f"{line_seconds[BASKET_SIZES[-1]] / line_seconds[BASKET_SIZES[0]]:.2f}"
    return StageResult(rows=total_lines * len(BASKET_SIZES), unit="order lines", seconds=timed, details=details)
