"""Train, score and evaluate the personalization models: top-N products and the send hour for every customer.

    result = train(as_of)        # candidates and baselines on the later window -> MLflow -> promote or reject each
    scored = score(as_of)        # production's models -> ml.customer_recommendations and ml.customer_send_times
    evaluation = evaluate(as_of) # production's models and the baselines on the latest window before as_of

Two registered models, each promoted on its own rule (the customer models' rule: beat production, rescored on the
candidate's window, by a margin): `tailor_recommendations` on Recall@10 and `tailor_send_times` on the share of later
engagements within +-1 h of the pick.

Time. For an as-of T the validation as-of V is the customer models' validation snapshot (training.snapshot_times:
the Monday at least churn-horizon + 1 days before T), so its customer features (segments, affinity categories) are
built once for both. Models are fitted on what happened at or before V and judged on (V, T]; then refitted on
everything at or before T. Everything read is as of T's build: the catalogue at V is T's products created by V (their
status at V itself is not kept), and purchases at or before V are T's view of them (a line refunded after V is gone).

Recommendations are a recipe: the served candidate's name and settings. Scoring refits it on the interactions as of
the scoring time (an item-item table a day old would not know yesterday's products or purchases); the fit is
deterministic, so a version and an as-of give one list. Send times keep their fitted hour prior (per RFM segment and
the shop): scoring applies it to each customer's engagements as of the scoring time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from ml import config, io, recommend, sendtime, snapshots
from ml.errors import ModelInputError
from ml.registry import Candidate, Registry, promotion_decision
from tailor import settings
from tailor.warehouse import Warehouse

Say = Callable[[str], None]

RECOMMENDATIONS_MODEL = "tailor_recommendations"
SEND_TIMES_MODEL = "tailor_send_times"
RECOMMENDERS = ("item_item_bm25", "item_item_cosine", "implicit_als", "category_popularity", "popularity", "hybrid")
BASELINE = "popularity"
# Served when no later window can judge the candidates: it hedges item-item and category popularity with best-sellers.
UNVALIDATED_RECOMMENDER = "hybrid"
HYBRID_PARTS = ("item_item_bm25", "category_popularity", "popularity")
# Customers by how many interactions they had before the as-of: the report's hit rate by history length.
HISTORY_BUCKETS = ((0, 0, "0"), (1, 4, "1-4"), (5, 19, "5-19"), (20, None, "20+"))


def _say(line: str) -> None:
    print(line, flush=True)


def recommendation_registry() -> Registry:
    return Registry(model=RECOMMENDATIONS_MODEL, description="Tailor's product recommendations")


def send_time_registry() -> Registry:
    return Registry(model=SEND_TIMES_MODEL, description="Tailor's send times")


@dataclass
class RecommenderRecipe:
    """The served recommender (a name of RECOMMENDERS) and the list rules: what scoring refits at its as-of."""

    trained_as_of: datetime
    candidate: str
    n: int = config.REC_LIST_SIZE
    max_category_share: float = config.REC_MAX_CATEGORY_SHARE
    replenishable_rate: float = config.REC_REPLENISHABLE_RATE
    half_life_days: float = config.REC_HALF_LIFE_DAYS
    seed: int = config.SEED
    validation_as_of: datetime | None = None
    notes: list[str] = field(default_factory=list)

    def model(self, products: pd.DataFrame, name: str | None = None) -> recommend.Recommender:
        """An unfitted model of this recipe's candidate (or `name`) for the catalogue `products`."""
        name = name or self.candidate
        categories = products.set_index("product_id")["category"]
        if name == "item_item_bm25":
            return recommend.ItemItem(weighting="bm25")
        if name == "item_item_cosine":
            return recommend.ItemItem(weighting="cosine")
        if name == "implicit_als":
            factors = int(min(config.REC_ALS_FACTORS, max(2, len(products) // config.REC_PRODUCTS_PER_FACTOR)))
            return recommend.ImplicitAls(factors=factors, seed=self.seed,
                                         max_fit_customers=config.REC_ALS_FIT_CUSTOMERS)
        if name == "category_popularity":
            return recommend.CategoryPopularity(categories)
        if name == "hybrid":
            return recommend.Hybrid(tuple(self.model(products, part) for part in HYBRID_PARTS))
        if name == "popularity":
            return recommend.Popularity()
        raise ModelInputError(f"no recommender {name!r}: {', '.join(RECOMMENDERS)}")

    def lists(self, interactions: recommend.Interactions, products: pd.DataFrame, affinity: pd.Series, *,
              name: str | None = None, customer_ids: np.ndarray | None = None,
              model: recommend.Recommender | None = None) -> Iterator[pd.DataFrame]:
        """Fit the candidate on `interactions` (unless `model` is it, fitted on them) and yield the lists in batches."""
        model = model or self.model(products, name).fit(interactions)
        return recommend.recommend_batches(
            model, interactions, products, n=self.n, max_category_share=self.max_category_share,
            replenishable_rate=self.replenishable_rate, batch_rows=config.REC_BATCH_ROWS,
            affinity_category=affinity, customer_ids=customer_ids, threads=config.REC_BATCH_THREADS)


@dataclass
class SendTimeModel:
    """The hour prior fitted as of `trained_as_of`: per group of SEND_GROUP_COLUMN and for the shop."""

    trained_as_of: datetime
    prior: sendtime.HourPrior
    group_column: str = config.SEND_GROUP_COLUMN
    click_weight: float = config.SEND_CLICK_WEIGHT
    validation_as_of: datetime | None = None
    notes: list[str] = field(default_factory=list)

    def picks(self, counts: sendtime.HourCounts, groups: pd.Series, as_of: datetime) -> pd.DataFrame:
        return sendtime.pick_send_hours(counts, self.prior, groups, as_of)


# --- reading what the models learn from ------------------------------------------------------------------------------


@dataclass
class _Shop:
    """What one training or scoring run reads, once: everything as of `as_of`."""

    as_of: datetime
    interactions: pd.DataFrame  # customer_id, product_id, kind, occurred_at
    products: pd.DataFrame
    engagements: pd.DataFrame  # customer_id, occurred_at, kind
    timezones: pd.Series

    @classmethod
    def read(cls, warehouse: Warehouse, as_of: datetime) -> _Shop:
        return cls(as_of=as_of, interactions=io.read_interactions(warehouse, as_of),
                   products=io.read_products(warehouse), engagements=io.read_engagements(warehouse, as_of),
                   timezones=io.read_timezones(warehouse))

    def catalogue(self, at: datetime) -> pd.DataFrame:
        """The products that existed at `at` (all of them at the as-of)."""
        return self.products[self.products["created_at"].isna() | (self.products["created_at"] <= at)]

    def interactions_until(self, at: datetime) -> recommend.Interactions:
        return recommend.build_interactions(self.interactions[self.interactions["occurred_at"] <= at], at,
                                            half_life_days=config.REC_HALF_LIFE_DAYS)

    def hour_counts(self, customers: pd.Index, after: datetime | None, until: datetime) -> sendtime.HourCounts:
        """Engagements of `customers` per local hour in (after, until] (everything up to `until` without `after`)."""
        events = self.engagements[self.engagements["customer_id"].isin(customers)]
        keep = events["occurred_at"] <= until
        if after is not None:
            keep &= events["occurred_at"] > after
        zones = self.timezones.reindex(customers)
        return sendtime.local_hour_counts(events[keep], zones.where(zones.notna(), None), until,
                                          click_weight=config.SEND_CLICK_WEIGHT)


def _customer_frame(warehouse: Warehouse, at: datetime) -> pd.DataFrame:
    """Every customer known at `at` with their affinity category and segment (customer_features as of its date)."""
    return io.read_features(warehouse, at.date(), ("top_category", config.SEND_GROUP_COLUMN))


def _affinity(customers: pd.DataFrame) -> pd.Series:
    return customers["top_category"].astype(object).where(customers["top_category"].notna(), None)


def _groups(customers: pd.DataFrame) -> pd.Series:
    column = customers[config.SEND_GROUP_COLUMN]
    return column.astype(object).where(column.notna(), None)


# --- evaluation on a later window ------------------------------------------------------------------------------------


@dataclass
class RecommendationCheck:
    metrics: pd.DataFrame  # candidate, hit_rate, recall, ndcg, coverage, customers
    by_history: pd.DataFrame  # candidate, history, customers, hit_rate


def _check_recommenders(shop: _Shop, customers: pd.DataFrame, recipe: RecommenderRecipe, at: datetime,
                        names: tuple[str, ...], say: Say = _say) -> RecommendationCheck:
    """Each named candidate fitted on the interactions at or before `at` and judged on the new-to-customer purchases
    of the customers known then, in (at, shop.as_of] (of a sample of REC_VALIDATION_CUSTOMERS of them, if more)."""
    interactions = shop.interactions_until(at)
    catalogue = shop.catalogue(at)
    later = shop.interactions[(shop.interactions["occurred_at"] > at) & (shop.interactions["kind"] == "purchase")
                              & shop.interactions["customer_id"].isin(customers.index)]
    evaluated = np.sort(np.asarray(later["customer_id"].unique(), dtype=str))
    if len(evaluated) > config.REC_VALIDATION_CUSTOMERS:
        evaluated = np.sort(np.random.default_rng(recipe.seed).choice(evaluated, config.REC_VALIDATION_CUSTOMERS,
                                                                       replace=False))
        later = later[later["customer_id"].isin(evaluated)]
    history = (shop.interactions[shop.interactions["occurred_at"] <= at].groupby("customer_id", observed=True).size()
               .reindex(evaluated, fill_value=0))
    bucket = pd.Series(pd.cut(history, [low - 0.5 for low, _, _ in HISTORY_BUCKETS] + [np.inf],
                              labels=[label for _, _, label in HISTORY_BUCKETS]).astype(str).to_numpy(),
                       index=history.index)
    affinity = _affinity(customers.loc[customers.index.intersection(pd.Index(evaluated))])
    rows, by_history, fitted = [], [], {}
    for name in names:
        started = time.perf_counter()
        if name == "hybrid" and all(part in fitted for part in HYBRID_PARTS):
            model = recommend.Hybrid(tuple(fitted[part] for part in HYBRID_PARTS)).fit(interactions)
        else:
            model = recipe.model(catalogue, name).fit(interactions)
        fitted[name] = model
        lists = pd.concat(list(recipe.lists(interactions, catalogue, affinity, model=model, customer_ids=evaluated))
                          or [_no_lists()], ignore_index=True)
        scores = recommend.evaluate(lists, later, interactions, k=recipe.n, catalogue_size=max(1, len(catalogue)),
                                    groups=bucket)
        rows.append({"candidate": name, **{key: scores[key] for key in ("hit_rate", "recall", "ndcg", "coverage",
                                                                          "customers")}})
        say(f"ml: recommendations: {name}: HitRate@10 {scores['hit_rate']:.3f}, Recall@10 {scores['recall']:.3f} "
            f"on {scores['customers']:,} customers ({time.perf_counter() - started:.1f} s)")
        for _, _, label in HISTORY_BUCKETS:
            customers_in, hit_rate = scores["hit_rate_by_group"].get(label, (0, float("nan")))
            by_history.append({"candidate": name, "history": label, "customers": customers_in, "hit_rate": hit_rate})
    return RecommendationCheck(pd.DataFrame(rows), pd.DataFrame(by_history))


def _no_lists() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": pd.Series(dtype=str), "rank": pd.Series(dtype=int),
                         "product_id": pd.Series(dtype=str)})


def _check_send_times(shop: _Shop, customers: pd.DataFrame, model: SendTimeModel, at: datetime) -> pd.DataFrame:
    """The model's picks from engagements at or before `at`, against the shop's hour and each customer's raw mode, on
    the engagements in (at, shop.as_of] of the customers known at `at`."""
    history = shop.hour_counts(customers.index, None, at)
    later = shop.hour_counts(customers.index, at, shop.as_of)
    picks = model.picks(history, _groups(customers), at)
    return sendtime.evaluate_send_hours(picks, later, config.SEND_TOLERANCE_HOURS, history=history,
                                        shop_hour=model.prior.shop_hour)


# --- training --------------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    recommendations: Candidate
    send_times: Candidate
    recommendations_promoted: bool
    send_times_promoted: bool
    recommendations_reason: str
    send_times_reason: str
    recipe: RecommenderRecipe
    send_model: SendTimeModel
    rec_metrics: pd.DataFrame  # per candidate (and the popularity baseline) on the validation window
    rec_by_history: pd.DataFrame
    send_metrics: pd.DataFrame  # model, shop_hour, historical_mode on the validation window
    report_path: str
    notes: list[str]
    customers: int
    interactions: int
    products: int
    engagements: int
    seconds: dict[str, float]  # wall time by part: reading, recommendations, send times, logging


class _Clock:
    """Seconds spent per part of a run, for the progress lines and the benchmark."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, part: str) -> None:
        now = time.perf_counter()
        self.seconds[part] = self.seconds.get(part, 0.0) + now - self._last
        self._last = now


def _as_utc(as_of: datetime) -> datetime:
    if as_of.tzinfo is None:
        raise ValueError(f"as-of {as_of.isoformat()} has no timezone: give a UTC time")
    return as_of.astimezone(UTC)


def validation_as_of(as_of: datetime) -> datetime:
    from ml.training import snapshot_times

    return snapshot_times(as_of, config.churn_horizon_days())[0]


def train(as_of: datetime, *, warehouse: Warehouse | None = None, rec_registry: Registry | None = None,
          send_registry: Registry | None = None, allow_build: bool = True, say: Say = _say) -> TrainResult:
    """Validate the recommenders and the send-time model on the window before `as_of`, refit them as of it, log both
    to MLflow and promote each by its rule."""
    as_of = _as_utc(as_of)
    warehouse = warehouse or Warehouse()
    rec_registry = rec_registry or recommendation_registry()
    send_registry = send_registry or send_time_registry()
    notes: list[str] = []
    clock = _Clock()
    validation_at = validation_as_of(as_of)
    history_start = io.first_order_at(warehouse, as_of)
    validated = history_start is not None and history_start < validation_at
    snapshots.prepare(warehouse, as_of, [], featured=[validation_at] if validated else [], allow_build=allow_build,
                      personalization=True, say=say)
    say(f"ml: personalization: reading interactions, the catalogue and engagements as of {as_of.isoformat()}")
    shop = _Shop.read(warehouse, as_of)
    current = _customer_frame(warehouse, as_of)
    if shop.products.empty:
        raise ModelInputError(f"{io.PRODUCTS} has no products as of {as_of.isoformat()}: nothing to recommend")
    clock.lap("reading")

    # --- recommendations: candidates and the popularity baseline on the later window -----------------------------
    recipe = RecommenderRecipe(trained_as_of=as_of, candidate=UNVALIDATED_RECOMMENDER)
    rec_metrics, rec_by_history = pd.DataFrame(), pd.DataFrame()
    before = _customer_frame(warehouse, validation_at) if validated else None
    if before is not None:
        say(f"ml: recommendations: {', '.join(RECOMMENDERS)} fitted on interactions to {validation_at.date()}, "
            f"judged on new-to-customer purchases to {as_of.date()}")
        check = _check_recommenders(shop, before, recipe, validation_at, RECOMMENDERS, say)
        rec_metrics, rec_by_history = check.metrics, check.by_history
    usable = rec_metrics[rec_metrics["customers"] > 0] if len(rec_metrics) else rec_metrics
    if len(usable):
        best = usable.sort_values(["recall", "ndcg"], ascending=False, kind="stable").iloc[0]
        recipe.candidate, recipe.validation_as_of = str(best["candidate"]), validation_at
    else:
        notes.append(f"no new-to-customer purchases between {validation_at.date()} and {as_of.date()} to validate "
                     f"recommenders on: the {UNVALIDATED_RECOMMENDER} recommender serves unvalidated")
        say(f"ml: recommendations: {notes[-1]}")
    rec_metrics = rec_metrics.assign(served=rec_metrics["candidate"] == recipe.candidate) if len(rec_metrics) else (
        rec_metrics)
    clock.lap("recommendations")

    # --- send times: the model against the shop's hour and each customer's raw mode --------------------------------
    send_metrics = pd.DataFrame()
    if before is not None:
        history = shop.hour_counts(before.index, None, validation_at)
        if history.engagements.sum() > 0:
            send_validation = SendTimeModel(trained_as_of=validation_at,
                                            prior=sendtime.fit_prior(history, _groups(before)))
            send_metrics = _check_send_times(shop, before, send_validation, validation_at)
    if send_metrics.empty or not (send_metrics["customers"] > 0).any():
        notes.append(f"no engagements both before and after {validation_at.date()} to validate send times on")
        send_metrics = pd.DataFrame()
    counts_now = shop.hour_counts(current.index, None, as_of)
    if counts_now.engagements.sum() > 0:
        prior = sendtime.fit_prior(counts_now, _groups(current))
    else:
        prior = _default_prior()
        notes.append(f"no email opens or clicks yet: every customer is sent at {config.SEND_DEFAULT_HOUR_LOCAL}:00 "
                     "local time (config.SEND_DEFAULT_HOUR_LOCAL) at low confidence")
    send_model = SendTimeModel(trained_as_of=as_of, prior=prior,
                               validation_as_of=validation_at if len(send_metrics) else None)
    clock.lap("send times")

    # --- promotion, each family on its own rule --------------------------------------------------------------------
    rec_candidate_metrics = _rec_metrics_logged(rec_metrics, recipe.candidate)
    rec_production = rec_registry.production(as_of)
    if rec_production is not None and len(usable):
        say(f"ml: recommendations: production's recipe ({rec_production.bundle.candidate}) on the same window")
        again = _check_recommenders(shop, before, rec_production.bundle, validation_at,
                                    (rec_production.bundle.candidate,), say).metrics.iloc[0]
        rec_promote, rec_reason = promotion_decision(rec_candidate_metrics, {config.REC_PROMOTION_METRIC: again["recall"]},
                                                     metric=config.REC_PROMOTION_METRIC,
                                                     margin=config.PERSONALIZATION_PROMOTION_MARGIN)
    elif rec_production is not None:
        rec_promote, rec_reason = False, "no validation window to compare with production's recommender: it stays"
    else:
        rec_promote, rec_reason = True, "no production recommender yet"
    clock.lap("recommendations")

    send_candidate_metrics = _send_metrics_logged(send_metrics)
    send_production = send_registry.production(as_of)
    if send_production is not None and len(send_metrics):
        production_table = _check_send_times(shop, before, send_production.bundle, validation_at)
        send_promote, send_reason = promotion_decision(
            send_candidate_metrics, {config.SEND_PROMOTION_METRIC: _hit_share(production_table, "model")},
            metric=config.SEND_PROMOTION_METRIC, margin=config.PERSONALIZATION_PROMOTION_MARGIN)
    elif send_production is not None:
        send_promote, send_reason = False, "no validation window to compare with production's send times: they stay"
    else:
        send_promote, send_reason = True, "no production send-time model yet"
    clock.lap("send times")
    recipe.notes, send_model.notes = list(notes), list(notes)

    window = {"as_of": as_of.isoformat(), "validation_as_of": validation_at.isoformat() if validated else ""}
    rec_version = rec_registry.log_candidate(
        bundle=recipe, run_name=f"recommendations-{as_of:%Y%m%dT%H%M%SZ}",
        params={"served_recommender": recipe.candidate, "n": recipe.n, "max_category_share": recipe.max_category_share,
                "replenishable_rate": recipe.replenishable_rate, "half_life_days": recipe.half_life_days,
                "seed": recipe.seed},
        metrics=rec_candidate_metrics, feature_list=["purchase", "cart_add", "view", "top_category"],
        data_window=window, model_card=_rec_card(recipe, rec_metrics, window, rec_reason),
        tags={"tailor.served_recommender": recipe.candidate}, trained_as_of=as_of)
    send_version = send_registry.log_candidate(
        bundle=send_model, run_name=f"send-times-{as_of:%Y%m%dT%H%M%SZ}",
        params={"group_column": send_model.group_column, "click_weight": send_model.click_weight,
                "tolerance_hours": config.SEND_TOLERANCE_HOURS, "shop_hour": send_model.prior.shop_hour,
                "shop_concentration": send_model.prior.shop_concentration},
        metrics=send_candidate_metrics, feature_list=["open_hour_local", "click_hour_local", config.SEND_GROUP_COLUMN],
        data_window=window, model_card=_send_card(send_model, send_metrics, window, send_reason),
        trained_as_of=as_of)

    from ml.report import PersonalizationReport, write_personalization_report

    report = PersonalizationReport(
        title=f"Tailor personalization trained as of {as_of.isoformat()}", as_of=as_of.isoformat(),
        model_versions={"recommendations": rec_version.model_version, "send times": send_version.model_version},
        summary={**window, "served recommender": recipe.candidate, "recommendations": rec_reason,
                 "send times": send_reason},
        rec_metrics=rec_metrics if len(rec_metrics) else None,
        rec_hit_rate_by_history=rec_by_history if len(rec_by_history) else None,
        send_metrics=send_metrics if len(send_metrics) else None,
        send_hour_distribution=_hour_distribution(send_model, counts_now, current, as_of),
        send_prior=send_model.prior.table(), samples=None, notes=notes)
    report_path = write_personalization_report(report, settings.data_dir() / "reports")
    for registry, version in ((rec_registry, rec_version), (send_registry, send_version)):
        registry.log_artifact(version, report_path)
    for registry, version, promote, reason, what in (
            (rec_registry, rec_version, rec_promote, rec_reason, "recommendations"),
            (send_registry, send_version, send_promote, send_reason, "send times")):
        (registry.promote if promote else registry.reject)(version, reason)
        say(f"ml: {what}: {'promoted' if promote else 'rejected'} {version.model_version}: {reason}")
    say(f"ml: personalization report: {report_path}")
    clock.lap("logging")
    return TrainResult(recommendations=rec_version, send_times=send_version, recommendations_promoted=rec_promote,
                       send_times_promoted=send_promote, recommendations_reason=rec_reason,
                       send_times_reason=send_reason, recipe=recipe, send_model=send_model, rec_metrics=rec_metrics,
                       rec_by_history=rec_by_history, send_metrics=send_metrics, report_path=str(report_path),
                       notes=notes, customers=len(current), interactions=len(shop.interactions),
                       products=len(shop.products), engagements=len(shop.engagements), seconds=clock.seconds)


def _default_prior() -> sendtime.HourPrior:
    """The shop's prior without engagements: mostly uniform, with a fifth of the mass on the default hour and its
    neighbours, so every customer is picked at that hour with a low confidence (0.3)."""
    peak = np.zeros(sendtime.HOURS)
    peak[[config.SEND_DEFAULT_HOUR_LOCAL - 1, config.SEND_DEFAULT_HOUR_LOCAL, config.SEND_DEFAULT_HOUR_LOCAL + 1]] = 1 / 3
    mean = 0.8 / sendtime.HOURS + 0.2 * peak
    none = np.zeros(0)
    return sendtime.HourPrior(groups=np.zeros(0, dtype=object), mean=np.zeros((0, sendtime.HOURS)), concentration=none,
                              customers=np.zeros(0, dtype=int), uses_shop_prior=np.zeros(0, dtype=bool),
                              shop_mean=mean, shop_concentration=1.0, shop_customers=0,
                              shop_hour=config.SEND_DEFAULT_HOUR_LOCAL)


def _hit_share(table: pd.DataFrame, method: str) -> float | None:
    row = table[table["method"] == method]
    return float(row["hit_share"].iloc[0]) if len(row) else None


def _rec_metrics_logged(metrics: pd.DataFrame, served: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in metrics.itertuples():
        for key in ("hit_rate", "recall", "ndcg", "coverage"):
            out[f"rec_{row.candidate}_{key}_at_10" if key != "coverage" else f"rec_{row.candidate}_coverage"] = getattr(
                row, key)
        if row.candidate == served:
            out["rec_hit_rate_at_10"], out["rec_recall_at_10"] = row.hit_rate, row.recall
            out["rec_ndcg_at_10"], out["rec_coverage"] = row.ndcg, row.coverage
            out["rec_customers_evaluated"] = row.customers
    return out


def _send_metrics_logged(table: pd.DataFrame) -> dict[str, float]:
    out = {f"send_{row.method}_hit_share": row.hit_share for row in table.itertuples()}
    if len(table):
        out["send_hit_share"] = _hit_share(table, "model")
        out["send_customers_evaluated"] = float(table["customers"].iloc[0])
    return out


def _hour_distribution(model: SendTimeModel, counts: sendtime.HourCounts, customers: pd.DataFrame,
                       as_of: datetime) -> pd.DataFrame:
    picks = model.picks(counts, _groups(customers), as_of)
    pooled = counts.counts.sum(axis=0)
    return pd.DataFrame({"hour": np.arange(sendtime.HOURS),
                         "customers": np.bincount(picks["send_hour_local"], minlength=sendtime.HOURS),
                         "engagement_share": pooled / pooled.sum() if pooled.sum() > 0 else np.zeros(sendtime.HOURS)})


def _markdown(frame: pd.DataFrame) -> str:
    from ml.training import _markdown as table

    return table(frame) if len(frame) else "No validation window."


def _rec_card(recipe: RecommenderRecipe, metrics: pd.DataFrame, window: dict[str, str], reason: str) -> str:
    return "\n".join([
        "# Tailor product recommendations", "", f"Trained as of {recipe.trained_as_of.isoformat()}.", "",
        "## Intended use", f"The top {recipe.n} products to show each customer in a marketing email, with a reason "
        "code per product. Refitted on the interactions as of each scoring time.", "",
        "## Data window", *[f"- {k}: {v}" for k, v in window.items() if v], "",
        "## Candidates on the validation window (new-to-customer purchases)", _markdown(metrics), "",
        f"Served: {recipe.candidate}.", "", "## Promotion", reason, "",
        *(["## Notes", *[f"- {note}" for note in recipe.notes], ""] if recipe.notes else [])])


def _send_card(model: SendTimeModel, metrics: pd.DataFrame, window: dict[str, str], reason: str) -> str:
    return "\n".join([
        "# Tailor send times", "", f"Trained as of {model.trained_as_of.isoformat()}.", "",
        "## Intended use", "The local hour at which to email each customer, from the hours they opened and clicked "
        f"before, shrunk toward their {model.group_column} group's profile.", "",
        "## Data window", *[f"- {k}: {v}" for k, v in window.items() if v], "",
        f"## Later engagements within +-{config.SEND_TOLERANCE_HOURS} h of the pick", _markdown(metrics), "",
        "## Promotion", reason, "",
        *(["## Notes", *[f"- {note}" for note in model.notes], ""] if model.notes else [])])


# --- scoring ---------------------------------------------------------------------------------------------------------


@dataclass
class ScoreResult:
    as_of: datetime
    recommendations_version: str
    send_times_version: str
    customers: int
    recommendation_rows: int
    send_time_rows: int
    seconds: dict[str, float]  # wall time by part: reading, recommendations, send times


def _production(registry: Registry, model_version: str | None, what: str, as_of: datetime) -> tuple[object, str]:
    """The model of `model_version`, else the one in production as of `as_of`, and its label."""
    if model_version is not None:
        return registry.load(model_version), model_version if model_version.startswith("v") else f"v{model_version}"
    production = registry.production(as_of)
    if production is None:
        raise ModelInputError(f"no {what} model promoted as of {as_of.isoformat()}: train one as of that date or "
                              "before (python -m ml train --as-of ...)")
    return production.bundle, production.model_version


def score(as_of: datetime, *, warehouse: Warehouse | None = None, rec_registry: Registry | None = None,
          send_registry: Registry | None = None, recommendations_version: str | None = None,
          send_times_version: str | None = None, allow_build: bool = True, say: Say = _say) -> ScoreResult:
    """Lists and send hours for every customer as of `as_of` with the production models (or the versions named) into
    ml.customer_recommendations and ml.customer_send_times."""
    as_of = _as_utc(as_of)
    warehouse = warehouse or Warehouse()
    clock = _Clock()
    recipe, rec_version = _production(rec_registry or recommendation_registry(), recommendations_version,
                                      "recommendation", as_of)
    send_model, send_version = _production(send_registry or send_time_registry(), send_times_version, "send-time",
                                           as_of)
    snapshots.prepare(warehouse, as_of, [], allow_build=allow_build, say=say, personalization=True)
    shop = _Shop.read(warehouse, as_of)
    customers = _customer_frame(warehouse, as_of)
    if shop.products.empty:
        raise ModelInputError(f"{io.PRODUCTS} has no products as of {as_of.isoformat()}: nothing to recommend")
    clock.lap("reading")
    say(f"ml: recommending {recipe.n} products to {len(customers):,} customers as of {as_of.isoformat()} with "
        f"{rec_version} ({recipe.candidate}, refitted on {len(shop.interactions):,} interactions)")
    interactions = shop.interactions_until(as_of)
    stamp = {"as_of_date": as_of.date(), "model_version": rec_version}
    lists = (batch.assign(**stamp) for batch in recipe.lists(interactions, shop.catalogue(as_of), _affinity(customers),
                                                             customer_ids=customers.index.to_numpy()))
    rec_rows = io.write_personalization(warehouse, io.RECOMMENDATIONS, lists, as_of.date(), rec_version)
    say(f"ml: wrote {rec_rows:,} recommendations to {io.RECOMMENDATIONS} for {as_of.date()} ({rec_version})")
    clock.lap("recommendations")

    counts = shop.hour_counts(customers.index, None, as_of)
    picks = send_model.picks(counts, _groups(customers), as_of)
    picks = picks.assign(as_of_date=as_of.date(), model_version=send_version, timezone_known=counts.timezone_known)
    send_rows = io.write_personalization(warehouse, io.SEND_TIMES, [picks], as_of.date(), send_version)
    say(f"ml: wrote {send_rows:,} send times to {io.SEND_TIMES} for {as_of.date()} ({send_version})")
    clock.lap("send times")
    return ScoreResult(as_of=as_of, recommendations_version=rec_version, send_times_version=send_version,
                       customers=len(customers), recommendation_rows=rec_rows, send_time_rows=send_rows,
                       seconds=clock.seconds)


# --- evaluation of the models in service -----------------------------------------------------------------------------


@dataclass
class Evaluation:
    window_start: datetime
    window_end: datetime
    recommendations_version: str
    send_times_version: str
    rec_metrics: pd.DataFrame
    send_metrics: pd.DataFrame


def evaluate(as_of: datetime, *, warehouse: Warehouse | None = None, rec_registry: Registry | None = None,
             send_registry: Registry | None = None, allow_build: bool = True, say: Say = _say) -> Evaluation:
    """Production's recommender and the popularity baseline, refitted at V, and production's send times against
    the shop's hour and each customer's mode, on (V, as_of] (V: validation_as_of(as_of))."""
    as_of = _as_utc(as_of)
    warehouse = warehouse or Warehouse()
    recipe, rec_version = _production(rec_registry or recommendation_registry(), None, "recommendation", as_of)
    send_model, send_version = _production(send_registry or send_time_registry(), None, "send-time", as_of)
    validation_at = validation_as_of(as_of)
    snapshots.prepare(warehouse, as_of, [], featured=[validation_at], allow_build=allow_build, personalization=True,
                      say=say)
    shop = _Shop.read(warehouse, as_of)
    before = _customer_frame(warehouse, validation_at)
    names = tuple(dict.fromkeys((recipe.candidate, BASELINE)))
    rec_metrics = _check_recommenders(shop, before, recipe, validation_at, names, say).metrics
    send_metrics = _check_send_times(shop, before, send_model, validation_at)
    say(f"ml: evaluated {rec_version} (recommendations) and {send_version} (send times) on "
        f"({validation_at.isoformat()}, {as_of.isoformat()}]")
    return Evaluation(window_start=validation_at, window_end=as_of, recommendations_version=rec_version,
                      send_times_version=send_version, rec_metrics=rec_metrics, send_metrics=send_metrics)
