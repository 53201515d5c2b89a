"""The customer and personalization models end to end on a simulator world extracted over real HTTP, loaded and built
with real dbt, with MLflow on a local store: training and scoring against the world's future and its latent tastes,
promotion, determinism and stable segment ids, no look past the training as-of, and the CLI. (Shops replayed from
transactions files: test_ml_replayed.py; purpose-built shops for the lists' exclusions and edge cases:
test_ml_personalization_cases.py.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score, average_precision_score, roc_auc_score

from ml import churn, config, io, personalization, training
from ml.registry import Registry
from simulator import catalog
from simulator.model import NEVER
from simulator.world import World, WorldConfig
from tailor.transform import WITHOUT_TESTS, build
from tailor.warehouse import Warehouse
from tests.integration.dbtkit import customer_of_person
from tests.integration.mlkit import Shop, quiet, use_data_dir

pytestmark = pytest.mark.slow

CUSTOMERS = 1500
SEED = 31
DAY = 86_400


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tailor-ml-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def shop(root: Path) -> Shop:
    """A shop whose world runs 400 days past its clock: the truth to check scores against is the future."""
    world = World.build(WorldConfig(customers=CUSTOMERS, seed=SEED, future_days=400))
    now = datetime.fromtimestamp(world.now, UTC)
    return Shop(world, root / "shop", [now - timedelta(days=150), now])


@dataclass
class Trained:
    """The shop installed in a data dir, trained (v1, promoted) and scored as of its clock."""

    data_dir: Path
    warehouse: Warehouse
    result: training.TrainResult
    scored: training.ScoreResult
    personalized: personalization.TrainResult
    listed: personalization.ScoreResult


@pytest.fixture(scope="module")
def trained(shop: Shop, root: Path) -> Iterator[Trained]:
    with pytest.MonkeyPatch.context() as patch:
        data_dir = root / "trained"
        use_data_dir(patch, data_dir)
        warehouse = shop.install(data_dir)
        result = training.train(shop.now, say=quiet)
        scored = training.score(shop.now, say=quiet)
        personalized = personalization.train(shop.now, say=quiet)
        listed = personalization.score(shop.now, say=quiet)
        yield Trained(data_dir, warehouse, result, scored, personalized, listed)


@pytest.fixture
def in_trained(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> Trained:
    use_data_dir(monkeypatch, trained.data_dir)
    return trained


def _truth(shop: Shop, warehouse: Warehouse, as_of: datetime, horizon_days: int) -> pd.DataFrame:
    """Per customer that is one person of the world: their latent archetype (never buys / gone / alive, frequent or
    occasional, engaged or not), and for a buyer by as_of: latent churn by the horizon's end, whether they ordered in
    the horizon, and their orders over the next 365 days — from the world, which the warehouse never saw past as_of."""
    world, t = shop.world, int(as_of.timestamp())
    persons = world.persons
    with warehouse.reader() as con:
        customer_ids = customer_of_person(con, world)
    orders = world.orders
    live = orders.cancelled_at > t
    rates = persons.purchase_rate[persons.purchase_rate > 0]
    frequent = float(np.median(rates)) if len(rates) else 0.0
    rows = []
    for person, ids in customer_ids.items():
        if len(ids) != 1:
            continue
        rate, gone = persons.purchase_rate[person], persons.churn_at[person] <= t
        archetype = "never buys" if rate == 0 else (
            f"{'gone' if gone else 'alive'} {'frequent' if rate >= frequent else 'occasional'} "
            f"{'engaged' if persons.engagement[person] >= 0.5 else 'quiet'}")
        row = {"customer_id": next(iter(ids)), "archetype": archetype, "is_buyer": False}
        mine = orders.person == person
        if (mine & (orders.created_at <= t) & live).any():
            later = mine & (orders.created_at > t) & (orders.cancelled_at == NEVER)
            row.update(is_buyer=True,
                       latent_churned=bool(persons.churn_at[person] <= t + horizon_days * DAY),
                       no_order_in_horizon=not bool((later & (orders.created_at <= t + horizon_days * DAY)).any()),
                       orders_365d=int((later & (orders.created_at <= t + 365 * DAY)).sum()))
        rows.append(row)
    return pd.DataFrame(rows).set_index("customer_id")


def test_train_then_score_beats_baselines_against_the_worlds_truth(shop: Shop, in_trained: Trained) -> None:
    warehouse, result, scored, data_dir = in_trained.warehouse, in_trained.result, in_trained.scored, in_trained.data_dir
    assert result.promoted and result.candidate.model_version == "v1", result.reason
    assert set(result.churn_metrics["candidate"]) == {"boosting_blend", "recency_rule", "bgnbd"}
    assert Path(result.report_path).is_file() and Path(result.report_path).parent == data_dir / "reports"
    scores = io.read_scores(warehouse, shop.now.date(), "v1")
    features = io.read_features(warehouse, shop.now.date(), ["order_count"])
    assert len(scores) == len(features) == scored.customers
    buyers = scores.set_index("customer_id").join(features)
    assert buyers.loc[buyers["order_count"] > 0, "churn_probability"].between(0, 1).all()
    assert buyers.loc[buyers["order_count"] == 0, "churn_probability"].isna().all()
    assert scores["segment_name"].nunique() == scores["segment_id"].nunique() >= 2

    # against the world: every churn candidate of the bundle, the served one included, on the customers it knows
    world = _truth(shop, warehouse, shop.now, 90).join(buyers, how="inner")
    ari = adjusted_rand_score(world["archetype"], world["segment_id"])
    truth = world[world["is_buyer"] & (world["order_count"] > 0)]
    models = result.models
    frame = io.read_features(warehouse, shop.now.date(), list(training.FEATURE_COLUMNS)).loc[truth.index]
    summary = training.clv.from_features(frame)
    table = {}
    for name in ("served", *models.churn_pipelines, "bgnbd"):
        values = (truth["churn_probability"] if name == "served"
                  else models.churn_probability(frame, summary, shop.now, candidate=name))
        table[name] = {target: (round(roc_auc_score(truth[target].astype(bool), values), 4),
                                round(average_precision_score(truth[target].astype(bool), values), 4))
                       for target in ("latent_churned", "no_order_in_horizon")}
    print(f"churn vs the world (ROC-AUC, PR-AUC), served {models.churn_model}: {table}")
    print(f"segments vs the latent archetypes: adjusted Rand index {ari:.3f} over {len(world)} customers")
    # the world's true churn (gone by the horizon's end, whether or not an order was due): the served score ranks it
    # above both baselines, by ROC-AUC and by PR-AUC
    for metric in (0, 1):
        baseline = max(table[name]["latent_churned"][metric] for name in ("recency_rule", "bgnbd"))
        assert table["served"]["latent_churned"][metric] > baseline, table
    # the observed outcome the models learn from (no order in the horizon, in a window later than the validation one)
    # is mostly an occasional buyer's silence, which BG/NBD models by construction: the served score ranks with it
    observed = table["served"]["no_order_in_horizon"][0]
    assert observed > 0.8 and observed >= max(table[b]["no_order_in_horizon"][0] for b in ("recency_rule", "bgnbd")) - 0.05
    assert ari > 0.05
    mae = float(np.mean(np.abs(truth["expected_orders_12m"].fillna(0) - truth["orders_365d"])))
    naive = float(np.mean(np.abs(frame["orders_365d"] - truth["orders_365d"])))
    print(f"CLV orders over the next 365 days vs the world: MAE model {mae:.3f}, last year's orders {naive:.3f}")
    deciles = pd.qcut(truth["expected_orders_12m"].rank(method="first"), 10, labels=False)
    print(truth.groupby(deciles)[["expected_orders_12m", "orders_365d"]].mean().round(2).to_string())
    assert mae < naive


def _persons(shop: Shop, warehouse: Warehouse) -> pd.DataFrame:
    """Per customer that is one person of the world: their favourite category (highest latent taste), preferred
    local reading hour and timezone."""
    persons = shop.world.persons
    names = np.array([category.name for category in catalog.CATEGORIES], dtype=object)
    with warehouse.reader() as con:
        customer_ids = customer_of_person(con, shop.world)
    rows = [{"customer_id": next(iter(ids)), "favourite": names[int(np.argmax(persons.taste[person]))],
             "preferred_hour": int(persons.preferred_hour[person]), "true_timezone": shop.world._timezone(person)}
            for person, ids in customer_ids.items() if len(ids) == 1]
    return pd.DataFrame(rows).set_index("customer_id")


def test_recommendations_and_send_times_beat_baselines_and_find_the_worlds_tastes(shop: Shop,
                                                                                   in_trained: Trained) -> None:
    warehouse, result, listed = in_trained.warehouse, in_trained.personalized, in_trained.listed
    assert result.recommendations_promoted and result.send_times_promoted
    metrics = result.rec_metrics.set_index("candidate")
    print(f"recommenders on new-to-customer purchases of ({result.recipe.validation_as_of}, {shop.now}]:\n"
          f"{metrics.round(4).to_string()}")
    print(f"send times on later engagements:\n{result.send_metrics.round(4).to_string()}")
    print(f"hit rate by history:\n{result.rec_by_history.round(4).to_string()}")
    served = metrics.loc[result.recipe.candidate]
    assert served["served"] and result.recipe.candidate != "popularity"
    for key in ("hit_rate", "recall"):
        assert served[key] > metrics.loc["popularity", key], metrics
    send = result.send_metrics.set_index("method")["hit_share"]
    assert send["model"] > send["shop_hour"], send

    lists = io.read_personalization(warehouse, io.RECOMMENDATIONS, shop.now.date(), listed.recommendations_version)
    hours = io.read_personalization(warehouse, io.SEND_TIMES, shop.now.date(), listed.send_times_version)
    customers = io.read_features(warehouse, shop.now.date(), ["order_count"])
    assert set(hours["customer_id"]) == set(customers.index) and hours["customer_id"].is_unique
    assert set(lists["customer_id"]) == set(customers.index), "every customer gets a list"
    assert (lists.groupby("customer_id").size() == 10).all(), "lists are full: the catalogue allows it"
    products = io.read_products(warehouse).set_index("product_id")
    assert products.loc[lists["product_id"], "is_available"].all()

    # the latent favourite category is over-represented in the lists against chance (its share of the catalogue)
    truth = _persons(shop, warehouse)
    listed_categories = lists.join(products["category"], on="product_id").join(truth, on="customer_id", how="inner")
    in_favourite = (listed_categories["category"] == listed_categories["favourite"]).groupby(
        listed_categories["customer_id"]).mean()
    available = products[products["is_available"]]["category"].value_counts(normalize=True)
    chance = truth.loc[in_favourite.index, "favourite"].map(available).fillna(0)
    print(f"favourite category in the lists: {in_favourite.mean():.3f} of items; chance {chance.mean():.3f}")
    assert in_favourite.mean() > 1.5 * chance.mean()

    # send hours against each customer's true preferred hour, for customers with 5+ engagements in a known zone
    judged = hours[(hours["engagements"] >= 5) & hours["timezone_known"]].join(truth, on="customer_id", how="inner")
    distance = (judged["send_hour_local"] - judged["preferred_hour"]).abs()
    distance = np.minimum(distance, 24 - distance)
    print(f"send hour vs the true preferred hour over {len(judged)} customers with 5+ engagements: "
          f"exact {(distance == 0).mean():.3f}, within 1 h {(distance <= 1).mean():.3f}")
    assert len(judged) >= 50 and (distance <= 1).mean() > 0.5


def test_same_inputs_same_scores_and_one_more_day_keeps_segment_ids(shop: Shop, in_trained: Trained) -> None:
    warehouse, first = in_trained.warehouse, in_trained.result
    # trained again on the same warehouse: the same models, so rejected (no better by the margin)
    again = training.train(shop.now, say=quiet)
    assert not again.promoted and "does not beat" in again.reason
    assert Registry().production().model_version == first.candidate.model_version
    twice = training.train(shop.now, say=quiet)  # the very same inputs as `again`, production v1 included
    scores = {}
    for result in (first, again, twice):
        version = result.candidate.model_version
        if version != first.candidate.model_version:
            training.score(shop.now, model_version=version, say=quiet)
        scores[version] = io.read_scores(warehouse, shop.now.date(), version).drop(columns="model_version")
    one, two, three = scores.values()
    pd.testing.assert_frame_equal(two, three)  # same inputs and seed: identical scores and segment ids
    segment_columns = ["segment_id", "segment_name"]  # a refit starts from production's segments
    pd.testing.assert_frame_equal(one.drop(columns=segment_columns), two.drop(columns=segment_columns))
    assert (one["segment_id"] == two["segment_id"]).mean() > 0.95

    later = shop.now + timedelta(days=1)
    next_day = training.train(later, say=quiet)
    training.score(later, model_version=next_day.candidate.model_version, say=quiet)
    moved = io.read_scores(warehouse, later.date(), next_day.candidate.model_version).set_index("customer_id")
    kept = one.set_index("customer_id")["segment_id"].reindex(moved.index) == moved["segment_id"]
    assert kept.mean() > 0.9, f"only {kept.mean():.1%} of customers kept their segment id a day later"

    # the first models scoring a day later: the drift of every feature and of the score, stored with the scores
    drifted = training.score(later, model_version=first.candidate.model_version, say=quiet)
    with warehouse.reader() as con:
        recorded = con.execute("select kind, count(*) from ml.model_monitoring where as_of_date = ? and "
                               "model_version = ? group by kind order by kind",
                               [later.date(), first.candidate.model_version]).fetchall()
    assert recorded == [("feature", len(churn.CHURN_FEATURES)), ("score", 1)]
    assert (drifted.drift["psi"] > 0).any() and not drifted.needs_retraining, drifted.drift.head()


def test_training_for_a_past_date_never_reads_later_data(shop: Shop, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Train and score as of T (an earlier extract run, so every record existing at T has a version at or before
    it); then delete every record version after T from raw.* and do it again on a fresh install: same scores."""
    past = shop.now - timedelta(days=150)
    monkeypatch.setattr(config, "TRAINING_SNAPSHOTS", 2)  # what is read, not how much: two dbt builds fewer per run
    runs = {}
    for name in ("whole", "cut"):
        data_dir = tmp_path / name
        use_data_dir(monkeypatch, data_dir)
        data_dir.mkdir()
        shutil.copyfile(shop.raw, data_dir / "warehouse.duckdb")
        if name == "cut":
            con = duckdb.connect(str(data_dir / "warehouse.duckdb"))
            tables = [t for (t,) in con.execute("select table_name from information_schema.tables where "
                                                "table_schema = 'raw' and table_name not like '\\_%' escape '\\'")
                      .fetchall()]
            removed = sum(con.execute(f"delete from raw.{t} where updated_at > ?", [past]).fetchone()[0]
                          for t in tables)
            con.close()
            assert removed > 1000
        build(past, duckdb_path=data_dir / "warehouse.duckdb", state_dir=data_dir / "dbt", quiet=True,
              exclude=list(WITHOUT_TESTS))
        result = training.train(past, say=quiet)
        training.score(past, say=quiet)
        personalized = personalization.train(past, say=quiet)
        personalization.score(past, say=quiet)
        warehouse = Warehouse(data_dir / "warehouse.duckdb")
        runs[name] = (result, io.read_scores(warehouse, past.date(), "v1"), personalized,
                      *(io.read_personalization(warehouse, table, past.date(), "v1")
                        for table in (io.RECOMMENDATIONS, io.SEND_TIMES)))
    pd.testing.assert_frame_equal(runs["whole"][1], runs["cut"][1])
    pd.testing.assert_frame_equal(runs["whole"][0].churn_metrics, runs["cut"][0].churn_metrics)
    pd.testing.assert_frame_equal(runs["whole"][2].rec_metrics, runs["cut"][2].rec_metrics)
    pd.testing.assert_frame_equal(runs["whole"][2].send_metrics, runs["cut"][2].send_metrics)
    for table in (3, 4):  # the lists and the send hours
        assert len(runs["whole"][table]) > 300
        pd.testing.assert_frame_equal(runs["whole"][table], runs["cut"][table])


def test_the_cli_scores_and_evaluates_with_production(shop: Shop, in_trained: Trained) -> None:
    stamp = shop.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    scored = subprocess.run([sys.executable, "-m", "ml", "score", "--as-of", stamp, "--no-build"],
                            capture_output=True, text=True, check=False, timeout=600)
    assert scored.returncode == 0, scored.stderr
    assert "wrote" in scored.stdout and "segments scored" in scored.stdout
    assert scored.stdout.count("ml: customer ") == 3 and "send at" in scored.stdout, scored.stdout
    for name in in_trained.result.segments["segment_name"]:
        assert name in scored.stdout
    evaluation = training.evaluate(shop.now, say=quiet)
    assert list(evaluation.metrics["customers"].unique()) == [evaluation.metrics["customers"].iloc[0]]
    assert evaluation.metrics["roc_auc"].between(0.5, 1).all(), evaluation.metrics
    checked = personalization.evaluate(shop.now, say=quiet)
    served = in_trained.personalized.recipe.candidate
    assert list(checked.rec_metrics["candidate"]) == [served, "popularity"]
    # production's recipe refitted on the same window as its training's validation: the same figures
    pd.testing.assert_frame_equal(
        checked.rec_metrics.reset_index(drop=True),
        in_trained.personalized.rec_metrics.set_index("candidate").loc[[served, "popularity"]].reset_index()
        .drop(columns="served"))
    assert list(checked.send_metrics["method"]) == ["model", "shop_hour", "historical_mode"]
    bad = subprocess.run([sys.executable, "-m", "ml", "score", "--as-of", "yesterday"], capture_output=True,
                         text=True, check=False, timeout=600)
    assert bad.returncode == 2 and "yesterday" in bad.stderr
