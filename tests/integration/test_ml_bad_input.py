"""Bad input to the customer models: a clear error naming what is wrong (or a documented degenerate result), never a
crash inside scikit-learn or scipy, and nothing written to ml.* or the model registry on failure.

The warehouse here is a real DuckDB file whose marts are written directly (the shapes dbt builds), so each case
states exactly the data it feeds; the models run with building disabled, as they would on a warehouse that has
the snapshots already.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml import io, training
from ml.errors import ModelInputError
from ml.registry import Registry
from tailor.warehouse import Warehouse

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
TEXT_COLUMNS = {"engagement_level"}


def _features(customers: list[str], as_of: datetime, rng: np.random.Generator, constant: bool = False) -> pd.DataFrame:
    n = len(customers)
    data: dict[str, object] = {"customer_id": customers, "as_of_date": as_of.date(), "as_of_at": as_of}
    for column in training.FEATURE_COLUMNS:
        if column in TEXT_COLUMNS:
            data[column] = ["engaged"] * n if constant else rng.choice(["engaged", "lapsed", "never_engaged"], n)
        elif column.endswith(("rate", "rate_90d", "share")):
            data[column] = np.full(n, 0.2) if constant else rng.uniform(0, 1, n)
        else:
            data[column] = np.full(n, 3.0) if constant else rng.poisson(5, n).astype(float)
    if not constant:  # every customer here has ordered (the labelled ones must have, by their labels' definition)
        data["order_count"] = np.asarray(data["order_count"]) + 1
    return pd.DataFrame(data)


def _orders(customers: list[str], as_of: datetime, days: int, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for customer in customers:
        for _ in range(int(rng.integers(1, 5))):
            rows.append({"customer_id": customer, "ordered_at": as_of - timedelta(days=float(rng.uniform(0, days))),
                         "is_cancelled": False, "net_sales_amount": float(rng.uniform(10, 90))})
    return pd.DataFrame(rows)


class Shop:
    def __init__(self, data_dir: Path):
        self.warehouse = Warehouse(data_dir / "warehouse.duckdb")

    def write(self, features: pd.DataFrame | None, orders: pd.DataFrame) -> None:
        with self.warehouse.writer() as con:
            con.execute("create schema if not exists marts")
            if features is not None:
                con.register("features_frame", features)
                con.execute("create or replace table marts.customer_features as select * from features_frame")
            con.register("orders_frame", orders)
            con.execute("create or replace table marts.orders as select customer_id, "
                        "cast(ordered_at as timestamptz) as ordered_at, is_cancelled, net_sales_amount "
                        "from orders_frame")

    def ml_tables(self) -> dict[str, int]:
        with self.warehouse.reader() as con:
            return {name: con.execute(f"select count(*) from ml.{name}").fetchone()[0] for (name,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'ml'").fetchall()}


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Shop:
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("TAILOR_DUCKDB_PATH", raising=False)
    (tmp_path / "data").mkdir()
    return Shop(tmp_path / "data")


def _young_shop(shop: Shop, customers: int = 300, **features: object) -> list[str]:
    """A shop 120 days old: too young for a labelled churn window, so only features as of AS_OF are needed."""
    rng = np.random.default_rng(3)
    ids = [f"c{i:04d}" for i in range(customers)]
    shop.write(_features(ids, AS_OF, rng, **features), _orders(ids, AS_OF, 120, rng))
    return ids


def _nothing_written(shop: Shop) -> None:
    assert all(count == 0 for name, count in shop.ml_tables().items() if name != "churn_label_snapshot_runs")
    assert Registry().history() == []


def test_a_young_shop_trains_with_bgnbd_alone_and_says_so(shop: Shop) -> None:
    _young_shop(shop)
    result = training.train(AS_OF, allow_build=False, say=lambda _: None)
    assert result.promoted and result.models.churn_model == "bgnbd"
    assert any("BG/NBD P(alive) serves alone" in note for note in result.notes)
    scored = training.score(AS_OF, allow_build=False, say=lambda _: None)
    assert scored.customers == 300
    buyers = scored.scores["churn_probability"].notna()
    assert scored.scores.loc[buyers, "churn_probability"].between(0, 1).all()
    # buyers (order_count > 0 in their features) have a purchase history to project; the others none
    assert (scored.scores["expected_orders_12m"].notna() == buyers).all()


def test_a_missing_feature_column_is_named(shop: Shop) -> None:
    _young_shop(shop)
    with shop.warehouse.writer() as con:
        con.execute("alter table marts.customer_features drop column open_rate_90d")
    with pytest.raises(ModelInputError, match=r"marts.customer_features has no column open_rate_90d"):
        training.train(AS_OF, allow_build=False, say=lambda _: None)
    _nothing_written(shop)


def test_an_empty_feature_table_names_the_missing_snapshot(shop: Shop) -> None:
    ids = _young_shop(shop)
    with shop.warehouse.writer() as con:
        con.execute("delete from marts.customer_features")
    assert ids
    with pytest.raises(ModelInputError, match=r"lacks the snapshots as of 2026-06-01T00:00:00Z.*python -m tailor build"):
        training.train(AS_OF, allow_build=False, say=lambda _: None)
    _nothing_written(shop)


def test_no_orders_at_all(shop: Shop) -> None:
    rng = np.random.default_rng(1)
    shop.write(_features(["c1", "c2"], AS_OF, rng), pd.DataFrame(
        {"customer_id": pd.Series([], dtype=str), "ordered_at": pd.Series([], dtype="datetime64[ns, UTC]"),
         "is_cancelled": pd.Series([], dtype=bool), "net_sales_amount": pd.Series([], dtype=float)}))
    with pytest.raises(ModelInputError, match=r"marts.orders is missing or empty"):
        training.train(AS_OF, allow_build=False, say=lambda _: None)
    _nothing_written(shop)


def test_one_customer_cannot_fit_bgnbd(shop: Shop) -> None:
    _young_shop(shop, customers=1)
    with pytest.raises(ModelInputError, match=r"repeat purchase"):
        training.train(AS_OF, allow_build=False, say=lambda _: None)
    _nothing_written(shop)


def test_constant_features_give_one_segment(shop: Shop) -> None:
    _young_shop(shop, constant=True)
    result = training.train(AS_OF, allow_build=False, say=lambda _: None)
    assert len(result.segments) == 1, result.segments
    training.score(AS_OF, allow_build=False, say=lambda _: None)
    scores = io.read_scores(shop.warehouse, AS_OF.date())
    assert scores["segment_id"].nunique() == 1 and len(scores) == 300


@pytest.mark.parametrize("churned", [True, False], ids=["all-churned", "none-churned"])
def test_labels_of_a_single_class_leave_bgnbd_serving(shop: Shop, churned: bool) -> None:
    rng = np.random.default_rng(5)
    ids = [f"c{i:04d}" for i in range(300)]
    validation, training_at = training.snapshot_times(AS_OF, 90)
    snapshots = [*training_at, validation, AS_OF]
    shop.write(pd.concat([_features(ids, moment, rng) for moment in snapshots], ignore_index=True),
               _orders(ids, training_at[0], 200, rng))
    io.ensure_tables(shop.warehouse)
    with shop.warehouse.writer() as con:
        for moment in [*training_at, validation]:
            labels = pd.DataFrame({"customer_id": ids, "as_of_date": moment.date(), "as_of_at": moment,
                                   "churn_horizon_days": 90, "days_since_last_order": 10, "orders_in_horizon": 0,
                                   "next_order_at": None, "is_churned": churned})
            con.register("labels_frame", labels)
            con.execute("insert into ml.churn_label_snapshots select customer_id, as_of_date, as_of_at, "
                        "churn_horizon_days, days_since_last_order, orders_in_horizon, "
                        "cast(next_order_at as timestamptz), is_churned from labels_frame")
            con.execute("insert into ml.churn_label_snapshot_runs values (?, ?, 90, 300)", [moment.date(), moment])
    result = training.train(AS_OF, allow_build=False, say=lambda _: None)
    assert result.models.churn_model == "bgnbd" and result.churn_metrics.empty
    examples = 300 * len(training_at)
    kind = f"{examples} churned and 0 retained" if churned else f"0 churned and {examples} retained"
    assert any(kind in note for note in result.notes), result.notes


def test_scoring_without_a_production_model(shop: Shop) -> None:
    _young_shop(shop)
    with pytest.raises(ModelInputError, match=r"no customer model promoted as of 2026-06-01T00:00:00\+00:00: train one"):
        training.score(AS_OF, allow_build=False, say=lambda _: None)
    _nothing_written(shop)



def test_repeated_keys_are_refused_and_keyed_tables_lose_their_primary_key(shop: Shop) -> None:
    """The per-customer ml tables have no primary key (a write replaces a date; its rows are checked instead): a
    batch that repeats (customer_id, rank) is refused with nothing written, and a table an earlier version made with
    the key is rebuilt without it, its rows kept."""
    day, version = AS_OF.date(), "v1"
    row = {"customer_id": "c1", "as_of_date": day, "model_version": version, "rank": 1, "product_id": "p1",
           "score": 0.5, "reason": "viewed"}
    with shop.warehouse.writer() as con:  # as before this change: the key, and a day already written
        con.execute("create schema ml")
        con.execute(f"create table {io.RECOMMENDATIONS} (customer_id varchar not null, as_of_date date not null, "
                    "model_version varchar not null, rank integer not null, product_id varchar not null, "
                    "score double, reason varchar not null, primary key (customer_id, as_of_date, model_version, rank))")
        con.execute(f"insert into {io.RECOMMENDATIONS} values ('c0', date '2026-05-31', 'v1', 1, 'p9', null, 'bestseller')")

    repeated = pd.DataFrame([row, {**row, "product_id": "p2"}])
    with pytest.raises(ModelInputError, match=r"rows for ml.customer_recommendations repeat \(customer_id, rank\) = "
                                              r"\('c1', 1\) for 2026-06-01 / v1"):
        io.write_personalization(shop.warehouse, io.RECOMMENDATIONS, [repeated], day, version)
    with shop.warehouse.reader() as con:
        assert con.execute("select count(*) from duckdb_constraints() where table_name = 'customer_recommendations' "
                           "and constraint_type = 'PRIMARY KEY'").fetchone()[0] == 0
        assert con.execute(f"select customer_id, as_of_date from {io.RECOMMENDATIONS}").fetchall() == [
            ("c0", datetime(2026, 5, 31).date())]

    assert io.write_personalization(shop.warehouse, io.RECOMMENDATIONS, [pd.DataFrame([row])], day, version) == 1
    assert io.write_personalization(shop.warehouse, io.RECOMMENDATIONS, [pd.DataFrame([row])], day, version) == 1
    assert len(io.read_personalization(shop.warehouse, io.RECOMMENDATIONS, day)) == 1  # replaced, not added


def test_labels_that_repeat_a_customer_are_not_kept(shop: Shop) -> None:
    """ml.churn_label_snapshots has no primary key either: keep_labels refuses a churn_labels table that repeats a
    customer, and keeps nothing of it."""
    label = {"customer_id": "c1", "as_of_date": AS_OF.date(), "as_of_at": AS_OF, "churn_horizon_days": 90,
             "days_since_last_order": 10, "orders_in_horizon": 0, "next_order_at": None, "is_churned": True}
    with shop.warehouse.writer() as con:
        con.execute("create schema marts")
        con.register("labels_frame", pd.DataFrame([label, {**label, "is_churned": False}]))
        con.execute("create table marts.churn_labels as select * exclude (next_order_at), "
                    "cast(next_order_at as timestamptz) as next_order_at from labels_frame")
    with pytest.raises(ModelInputError, match="marts.churn_labels repeats customer c1"):
        io.keep_labels(shop.warehouse, AS_OF)
    assert io.label_snapshots(shop.warehouse) == {}
    _nothing_written(shop)
