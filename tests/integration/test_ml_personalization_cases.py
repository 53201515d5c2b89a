"""Recommendations and send times on purpose-built shops: every list leaves out what it must (bought, unpublished or
archived, out of stock as of T), and the edge cases have documented results: a customer with no history, a catalogue
of one product, a customer in an unknown timezone, a shop without email engagement, a shop without products.

The warehouse is a real DuckDB file whose marts are written directly (the shapes dbt builds), so each case states
exactly what it feeds; the models run with building disabled and MLflow on a local store, as in production.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from ml import io, personalization
from tailor.warehouse import Warehouse
from tests.integration.mlkit import quiet, use_data_dir

AS_OF = datetime(2026, 6, 3, 12, tzinfo=UTC)
VALIDATION_AT = personalization.validation_as_of(AS_OF)


@dataclass
class Catalogue:
    """What a purpose-built shop holds; `write` puts it into the marts the models read."""

    products: list[dict] = field(default_factory=list)
    customers: dict[str, dict] = field(default_factory=dict)  # id -> timezone, top_category, rfm_segment
    interactions: list[tuple[str, str, str, datetime]] = field(default_factory=list)  # customer, product, kind, at
    engagements: list[tuple[str, str, datetime]] = field(default_factory=list)  # customer, opened|clicked, at

    def product(self, product_id: str, category: str, *, available: bool = True, repeat_rate: float | None = 0.0,
                created_at: datetime = AS_OF - timedelta(days=400)) -> None:
        self.products.append({"product_id": product_id, "product_category": category, "is_available": available,
                              "repeat_purchase_rate": repeat_rate, "created_at": created_at,
                              "product_title": f"Title of {product_id}", "product_url": None, "image_url": None,
                              "price_amount": 10.0, "as_of_at": AS_OF})

    def customer(self, customer_id: str, *, timezone: str | None = "Europe/London", top_category: str | None = None,
                 segment: str = "loyal") -> None:
        self.customers[customer_id] = {"timezone": timezone, "top_category": top_category, "rfm_segment": segment}

    def write(self, warehouse: Warehouse) -> None:
        ids = sorted(self.customers)
        features = pd.concat([pd.DataFrame({
            "customer_id": ids, "as_of_date": at.date(), "as_of_at": at,
            "top_category": [self.customers[c]["top_category"] for c in ids],
            "rfm_segment": [self.customers[c]["rfm_segment"] for c in ids]}) for at in (VALIDATION_AT, AS_OF)])
        purchases = [(c, at) for c, _, kind, at in self.interactions if kind == "purchase"]
        orders = pd.DataFrame({"customer_id": [c for c, _ in purchases], "ordered_at": [at for _, at in purchases],
                               "is_cancelled": False, "net_sales_amount": 10.0})
        interactions = pd.DataFrame(self.interactions, columns=["customer_id", "product_id", "interaction",
                                                                "occurred_at"]).assign(as_of_at=AS_OF)
        events = pd.DataFrame(self.engagements, columns=["customer_id", "event_type", "occurred_at"])
        customers = pd.DataFrame({"customer_id": ids, "timezone": [self.customers[c]["timezone"] for c in ids]})
        frames = {"customer_features": features, "orders": orders, "products": pd.DataFrame(self.products),
                  "customer_product_interactions": interactions, "email_events": events, "customers": customers}
        timestamps = ("as_of_at", "ordered_at", "occurred_at", "created_at")
        types = {"as_of_date": "date", **dict.fromkeys(timestamps, "timestamptz")}
        with warehouse.writer() as con:
            con.execute("create schema if not exists marts")
            for name, frame in frames.items():
                con.register("frame", frame)
                casts = ", ".join(f"cast({c} as {types.get(c, 'varchar' if frame[c].dtype == object else 'double')})"
                                  f" as {c}" if c in types or frame[c].dtype == object else c for c in frame.columns)
                con.execute(f"create or replace table marts.{name} as select {casts} from frame")
                con.unregister("frame")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_data_dir(monkeypatch, tmp_path)
    return tmp_path


def _run(data_dir: Path, shop: Catalogue) -> tuple[personalization.TrainResult, pd.DataFrame, pd.DataFrame]:
    warehouse = Warehouse(data_dir / "warehouse.duckdb")
    shop.write(warehouse)
    result = personalization.train(AS_OF, warehouse=warehouse, allow_build=False, say=quiet)
    scored = personalization.score(AS_OF, warehouse=warehouse, allow_build=False, say=quiet)
    lists = io.read_personalization(warehouse, io.RECOMMENDATIONS, AS_OF.date(), scored.recommendations_version)
    hours = io.read_personalization(warehouse, io.SEND_TIMES, AS_OF.date(), scored.send_times_version)
    return result, lists, hours


def _basket_shop() -> Catalogue:
    """Twelve products in three categories bought in pairs by 40 customers (a quarter of them with the two unavailable
    products), and four customers to check:
    buyer (bought p01, not replenishable, and p02, replenishable), browser (viewed p05), newcomer (no history, likes
    Tea) and far (no history, no category, in a timezone nobody knows)."""
    shop = Catalogue()
    for k in range(12):
        category = ("Coffee", "Tea", "Cocoa")[k % 3]
        shop.product(f"p{k:02d}", category, repeat_rate=0.5 if k == 2 else 0.0)
    shop.product("p90", "Coffee", available=False)  # archived or unpublished as of T
    shop.product("p91", "Tea", available=False)  # out of stock as of T
    start = AS_OF - timedelta(days=300)
    for c in range(40):
        customer = f"c{c:02d}"
        shop.customer(customer, timezone=("America/New_York", "Europe/Paris", "Asia/Tokyo")[c % 3])
        basket = [f"p{(c % 6) * 2:02d}", f"p{(c % 6) * 2 + 1:02d}"] + (["p90", "p91"] if c % 4 == 0 else [])
        for step, product in enumerate(basket):
            when = start + timedelta(days=c * 7 + step)
            shop.interactions.append((customer, product, "purchase", when))
        # and a later purchase in the validation window, new to the customer
        later = f"p{(c * 5 + 3) % 12:02d}"
        shop.interactions.append((customer, later, "purchase", VALIDATION_AT + timedelta(days=5 + c % 20)))
        for day in range(6):
            shop.engagements.append((customer, "opened", start + timedelta(days=day * 40, hours=c % 24)))
    shop.customer("buyer", top_category="Coffee")
    shop.interactions += [("buyer", "p01", "purchase", AS_OF - timedelta(days=10)),
                          ("buyer", "p02", "purchase", AS_OF - timedelta(days=9))]
    shop.customer("browser")
    shop.interactions.append(("browser", "p05", "view", AS_OF - timedelta(days=2)))
    shop.customer("newcomer", top_category="Tea")
    shop.customer("far", timezone="Mars/Olympus_Mons")
    shop.engagements.append(("far", "opened", AS_OF - timedelta(days=3, hours=-5)))
    return shop


def test_every_list_leaves_out_what_it_must_and_stays_full(data_dir: Path) -> None:
    shop = _basket_shop()
    result, lists, _ = _run(data_dir, shop)
    assert set(result.rec_metrics["candidate"]) == set(personalization.RECOMMENDERS)
    assert not lists["product_id"].isin(["p90", "p91"]).any(), "an unavailable product was recommended"
    available = {f"p{k:02d}": ("Coffee", "Tea", "Cocoa")[k % 3] for k in range(12)}
    bought: dict[str, set[str]] = {}
    for customer, product, kind, _ in shop.interactions:
        if kind == "purchase" and product != "p02":  # p02 is replenishable: it may come back
            bought.setdefault(customer, set()).add(product)
    for customer in shop.customers:
        rows = lists[lists["customer_id"] == customer]
        assert not set(rows["product_id"]) & bought.get(customer, set()), f"{customer} got back what they bought"
        # a full list whenever the catalogue allows: 10, or every available product not bought, in rank order
        assert len(rows) == min(10, len(set(available) - bought.get(customer, set()))), customer
        assert rows["rank"].tolist() == list(range(1, len(rows) + 1))
        # at most 4 of 10 from one category, the cap relaxed only when nothing else is left
        if len(rows) == 10:
            assert rows["product_id"].map(available).value_counts().max() <= 4, customer


def test_customers_without_history_get_best_sellers(data_dir: Path) -> None:
    _, lists, _ = _run(data_dir, _basket_shop())
    newcomer = lists[lists["customer_id"] == "newcomer"]
    assert set(newcomer["reason"]) <= {"category_bestseller", "bestseller"}
    assert newcomer["reason"].iloc[0] == "category_bestseller"
    assert newcomer.head(4)["product_id"].isin(["p01", "p04", "p07", "p10"]).all(), "Tea first for a Tea lover"
    assert set(lists.loc[lists["customer_id"] == "far", "reason"]) == {"bestseller"}
    # the browser bought nothing: nothing of theirs is "bought together"
    assert "bought_together" not in set(lists.loc[lists["customer_id"] == "browser", "reason"])


def test_a_catalogue_of_one_product_gives_lists_of_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_data_dir(monkeypatch, tmp_path)
    shop = Catalogue()
    shop.product("only", "Coffee")
    for c in range(5):
        shop.customer(f"c{c}")
        shop.interactions.append((f"c{c}", "only", "view", AS_OF - timedelta(days=c + 1)))
    shop.interactions.append(("c0", "only", "purchase", AS_OF - timedelta(days=200)))
    _, lists, hours = _run(tmp_path, shop)
    assert "c0" not in set(lists["customer_id"]), "c0 bought the only product: nothing is left to recommend"
    assert lists.groupby("customer_id").size().tolist() == [1, 1, 1, 1]
    assert set(lists["product_id"]) == {"only"}
    # no engagements anywhere: everyone is sent at the default local hour, at a low confidence
    assert len(hours) == 5 and (hours["send_hour_local"] == 10).all() and (hours["confidence"] < 0.5).all()


def test_unknown_timezone_is_read_as_utc_and_flagged(data_dir: Path) -> None:
    _, _, hours = _run(data_dir, _basket_shop())
    far = hours[hours["customer_id"] == "far"].iloc[0]
    assert far["timezone"] == "UTC" and not far["timezone_known"]
    assert far["send_hour_local"] == far["send_hour_utc"]
    tokyo = hours[hours["customer_id"] == "c02"].iloc[0]
    assert tokyo["timezone"] == "Asia/Tokyo" and tokyo["timezone_known"]
    assert (tokyo["send_hour_utc"] - tokyo["send_hour_local"]) % 24 == 15  # JST is UTC+9
    assert hours["customer_id"].is_unique and len(hours) == 44
