"""Orders of any size parse whole: a wholesale shop (its order-line export replayed by the simulator) with orders of 1,
250, 1,000 and 5,000 lines, extracted over HTTP and built with dbt, has every line of every order in the base table
and in marts.order_lines, with the file's quantities and amounts. (DuckDB's json_each cost memory quadratic in the
lines of an order: a 1,000-line order ran out of a 3 GB budget. The cost per line is measured by `make bench --stages
baskets`, not here.)"""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from simulator.world import World, WorldConfig
from tailor import transform
from tailor.warehouse import Warehouse
from tests.integration.dbt_fixtures import extract_and_load

LINES_PER_ORDER = (1, 1, 250, 1_000, 5_000)


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tailor-baskets-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _export(path: Path) -> list[tuple[int, int, Decimal]]:
    """The order-line export; returns (lines, total quantity, total amount) per order."""
    orders = []
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer", "order_id", "ordered_at", "product_id", "product_title", "quantity",
                         "unit_price", "currency", "country"])
        placed = datetime(2025, 3, 3, 10, tzinfo=UTC)
        for number, lines in enumerate(LINES_PER_ORDER):
            quantity, amount = 0, Decimal(0)
            for line in range(lines):
                units, price = 1 + line % 7, Decimal(f"{1 + line % 40}.25")
                writer.writerow([f"buyer{number % 2}@wholesale.example", f"W{number}",
                                 (placed + timedelta(days=9 * number)).strftime("%Y-%m-%d %H:%M:%S"),
                                 f"SKU{line:05d}", f"Item {line}", units, price, "EUR", "Germany"])
                quantity, amount = quantity + units, amount + units * price
            orders.append((lines, quantity, amount))
    return orders


def test_every_line_of_orders_up_to_5000_lines_is_parsed(root: Path) -> None:
    expected = _export(root / "transactions.csv")
    world = World.from_transactions(str(root / "transactions.csv"), WorldConfig(seed=3))
    assert world.report["rows_used"] == sum(LINES_PER_ORDER), world.report
    now = datetime.fromtimestamp(world.now, UTC)
    warehouse = Warehouse(root / "warehouse.duckdb")
    extract_and_load(world, warehouse, root / "lake", [now])
    transform.build(now, duckdb_path=warehouse.path, state_dir=root / "dbt", full_refresh=True)

    with warehouse.reader() as con:
        parsed = Counter(dict(con.execute(
            "select order_id, count(*) from base.base_shopify__order_line_versions group by order_id").fetchall()))
        marts = con.execute("select count(*), sum(quantity), sum(gross_line_amount) from marts.order_lines "
                            "group by order_id").fetchall()
    assert sorted(parsed.values()) == sorted(lines for lines, _, _ in expected)
    assert sorted(marts) == sorted(expected)
