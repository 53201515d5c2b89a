"""Shops replayed from transactions files (an order-line export, the simulator's --transactions mode) train and score
end to end, the customer and the personalization models: one with two years of history, and one too young for a
labelled churn window, where BG/NBD serves alone (and the recommenders serve unvalidated)."""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ml import config, io, personalization, training
from simulator.world import World, WorldConfig
from tests.integration.mlkit import Shop, quiet, use_data_dir

pytestmark = pytest.mark.slow


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tailor-ml-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _transactions(path: Path, customers: int, days: int, seed: int) -> Path:
    """A shop's order-line export: customers buying at their own rates over `days` days, some stopping."""
    rng = np.random.default_rng(seed)
    end = datetime(2025, 6, 1, tzinfo=UTC)
    start = end - timedelta(days=days)
    products = [(f"P{i}", f"Product {i}", ["Home", "Coffee", "Garden", "Toys"][i % 4], round(3 + 2.5 * i, 2))
                for i in range(24)]
    rows, order = [], 0
    for c in range(customers):
        first = start + timedelta(days=float(rng.uniform(0, days * 0.8)))
        rate = rng.gamma(0.8, 1 / 40)  # orders per day
        stop = first + timedelta(days=float(rng.exponential(days / 2)))
        t = first
        while t < min(stop, end):
            order += 1
            for _ in range(int(rng.integers(1, 4))):
                pid, title, category, price = products[int(rng.integers(0, len(products)))]
                rows.append([f"customer{c}@example.com", f"O{order}", t.strftime("%Y-%m-%d %H:%M:%S"), pid, title,
                             int(rng.integers(1, 4)), price, category, "EUR", "Germany"])
            t += timedelta(days=float(rng.exponential(1 / rate)) + 1)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Customer", "Order_ID", "ordered_at", "product_id", "Product_Title", "quantity",
                         "unit_price", "Category", "currency", "Country"])
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(("days", "labelled"), [(540, True), (150, False)], ids=["two-years", "too-young"])
def test_a_shop_replayed_from_transactions_trains_and_scores(days: int, labelled: bool, root: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = _transactions(root / f"transactions-{days}.csv", customers=500, days=days, seed=days)
    world = World.from_transactions(str(path), WorldConfig(customers=500, seed=5))
    now = datetime.fromtimestamp(world.now, UTC)
    shop = Shop(world, root / f"tx-{days}", [now])
    use_data_dir(monkeypatch, root / "data")
    monkeypatch.setattr(config, "TRAINING_SNAPSHOTS", 2)  # end to end, not how much: four dbt builds fewer
    warehouse = shop.install(root / "data")
    result = training.train(now, say=quiet)
    assert result.promoted
    if labelled:
        assert len(result.churn_metrics) == 3 and not result.notes
    else:
        assert result.churn_metrics.empty and result.models.churn_model == "bgnbd"
        assert any("no usable labelled churn window" in note for note in result.notes)
    training.score(now, say=quiet)
    scores = io.read_scores(warehouse, now.date(), "v1")
    assert len(scores) > 400 and scores["churn_probability"].notna().sum() > 400
    assert scores["expected_orders_12m"].notna().all() == (scores["churn_probability"].notna().all())

    personalized = personalization.train(now, say=quiet)
    assert personalized.recommendations_promoted and personalized.send_times_promoted
    print(f"recommenders on the replayed shop:\n{personalized.rec_metrics.round(4).to_string()}\n"
          f"send times:\n{personalized.send_metrics.round(4).to_string()}")
    assert personalized.recipe.candidate in personalization.RECOMMENDERS
    listed = personalization.score(now, say=quiet)
    lists = io.read_personalization(warehouse, io.RECOMMENDATIONS, now.date(), listed.recommendations_version)
    sizes = lists.groupby("customer_id").size()
    # 24 products: a customer who bought most of them has fewer than 10 left to be shown
    assert lists["customer_id"].nunique() == len(scores) and sizes.max() == 10 and (sizes == 10).mean() > 0.9
    assert listed.send_time_rows == len(scores)
