"""Churn probability over the horizon: a blend of calibrated gradient boosting and logistic regression, and the two
baselines a skeptic would propose, all scored on the same later window.

Candidates (each gives P(no order in (T, T + h]) for a customer with an order at or before T):
- boosting_blend: purchase and engagement features of customer_features, and BG/NBD's P(alive), P(no order) and
  expected orders at the same as-of -> the average of two probabilities: shallow gradient boosting (Platt-calibrated
  on folds) and a logistic regression on signed-log, standardized features. On the few thousand labelled
  customers of a small shop the trees alone overfit the training windows; the linear half steadies them, and the
  blend ranked the simulated worlds' true churn above either half and both baselines (issue notes).
- recency_rule: days since the last order alone, through a logistic link so it is a probability too; its ranking is
  exactly the rule "the longer since the last order, the likelier gone".
- bgnbd: BG/NBD fitted on the order history up to T (ml.bgnbd): P(alive) and the Poisson rate give the probability of
  no purchase over the horizon. It needs no labels, so it also serves when the history is too short to hold one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from ml.errors import ModelInputError

PURCHASE_FEATURES = (
    "tenure_days", "order_count", "net_sales_amount", "avg_order_value_amount", "discount_rate", "return_rate",
    "days_since_first_order", "days_since_last_order", "inter_purchase_days_mean", "inter_purchase_days_stddev",
    "orders_30d", "revenue_30d", "orders_90d", "revenue_90d", "orders_365d", "revenue_365d", "orders_prior_90d",
    "revenue_prior_90d", "orders_trend_90d", "revenue_trend_90d", "top_category_share", "categories_purchased",
)
ENGAGEMENT_FEATURES = (
    "sends_30d", "sends_90d", "opens_30d", "opens_90d", "clicks_30d", "clicks_90d", "unsubscribes_90d",
    "open_rate_90d", "click_rate_90d", "days_since_last_engaged", "product_views_30d", "product_views_90d",
    "cart_adds_30d", "cart_adds_90d", "open_abandoned_carts", "categories_interacted",
)
CATEGORICAL_FEATURES = ("engagement_level",)
CHURN_FEATURES = PURCHASE_FEATURES + ENGAGEMENT_FEATURES + CATEGORICAL_FEATURES
# Derived in the pipeline (so training and scoring compute them alike): how overdue the next order is.
DERIVED_FEATURES = ("days_since_last_order_per_gap",)
# BG/NBD's view of the customer at the same as-of (fitted on the orders up to it), stacked into the boosting model:
# the trees then start from the buy-till-you-die baseline and learn what engagement and baskets add to it.
BGNBD_FEATURES = ("bgnbd_p_alive", "bgnbd_p_no_order", "bgnbd_expected_orders")

CANDIDATES = ("boosting_blend", "recency_rule", "bgnbd")
SIMPLEST_FIRST = ("recency_rule", "bgnbd", "boosting_blend")


def _derive(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    gap = pd.to_numeric(out["inter_purchase_days_mean"], errors="coerce").astype(float)
    since = pd.to_numeric(out["days_since_last_order"], errors="coerce").astype(float)
    out["days_since_last_order_per_gap"] = since / gap.where(gap > 0)
    return out


def _signed_log(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return np.sign(values) * np.log1p(np.abs(values))


def _logit(values: np.ndarray) -> np.ndarray:
    values = np.clip(np.asarray(values, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(values / (1 - values))


def _linear_pipeline() -> Pipeline:
    """Logistic regression on signed-log counts and amounts (heavy tails), BG/NBD's probabilities as logits, medians
    for the missing (with an indicator: no order gap yet, never emailed), standardized."""
    def scaled(transform: object, indicate: bool) -> Pipeline:
        return Pipeline([("shape", FunctionTransformer(transform)),
                         ("impute", SimpleImputer(strategy="median", add_indicator=indicate, keep_empty_features=True)),
                         ("scale", StandardScaler())])

    encode = ColumnTransformer(
        [("numeric", scaled(_signed_log, True), list(PURCHASE_FEATURES + ENGAGEMENT_FEATURES + DERIVED_FEATURES)),
         ("bgnbd_probabilities", scaled(_logit, False), ["bgnbd_p_alive", "bgnbd_p_no_order"]),
         ("bgnbd_orders", scaled(_signed_log, False), ["bgnbd_expected_orders"]),
         ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(CATEGORICAL_FEATURES))])
    return Pipeline([("encode", encode), ("model", LogisticRegression(C=0.3, max_iter=2000))])


def _boosting_pipeline(seed: int) -> Pipeline:
    """Shallow trees on the raw features (nulls stay NaN: the trees route them), Platt-calibrated on 3 folds' held-out
    predictions. One model refitted on every example scores, not the ensemble of the fold models: a third of the trees
    to evaluate, a minute less at a million customers, for the same validation figures."""
    numeric = list(PURCHASE_FEATURES + ENGAGEMENT_FEATURES + DERIVED_FEATURES + BGNBD_FEATURES)
    encode = ColumnTransformer(
        [("numeric", "passthrough", numeric),
         ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(CATEGORICAL_FEATURES))],
        verbose_feature_names_out=False)
    boosting = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, max_depth=3, min_samples_leaf=60,
                                              l2_regularization=1.0, early_stopping=True, validation_fraction=0.15,
                                              n_iter_no_change=20, random_state=seed)
    calibrated = CalibratedClassifierCV(boosting, method="sigmoid", cv=3, ensemble=False)
    return Pipeline([("encode", encode), ("model", calibrated)])


def make_churn_pipeline(seed: int) -> Pipeline:
    """Features -> the boosting_blend candidate: calibrated gradient boosting and logistic regression, averaged."""
    blend = VotingClassifier([("boosting", _boosting_pipeline(seed)), ("linear", _linear_pipeline())], voting="soft")
    return Pipeline([("derive", FunctionTransformer(_derive, validate=False)), ("blend", blend)])


def make_recency_pipeline() -> Pipeline:
    """The recency rule as a probability: logistic in log(1 + days since the last order)."""
    return Pipeline([
        ("recency", ColumnTransformer([("days", FunctionTransformer(np.log1p), ["days_since_last_order"])])),
        ("model", LogisticRegression()),
    ])


def training_examples(features: pd.DataFrame, labels: pd.DataFrame, as_of_date: object) -> tuple[pd.DataFrame, np.ndarray]:
    """Features of the labelled customers at one snapshot and their labels (1 = churned), in customer order.

    Raises ModelInputError when a labelled customer has no feature row (the two were built for different times)."""
    if labels.empty:
        return features.iloc[0:0], np.zeros(0, dtype=int)
    missing = labels.index.difference(features.index)
    if len(missing):
        raise ModelInputError(f"{len(missing)} customers labelled as of {as_of_date} have no features that date "
                              f"(e.g. {missing[0]}): rebuild both for the same as-of time")
    rows = features.loc[labels.index]
    return rows, labels["is_churned"].to_numpy(dtype=bool).astype(int)


def check_trainable(y: np.ndarray, minimum: int, where: str) -> str | None:
    """Why these labels cannot train a classifier (None if they can): too few of either class."""
    if len(y) == 0:
        return f"no labelled customers {where}"
    churned = int(y.sum())
    stayed = len(y) - churned
    if min(churned, stayed) < minimum:
        return (f"{churned} churned and {stayed} retained customers {where}: a classifier needs at least {minimum} "
                "of each")
    return None


@dataclass(frozen=True)
class ChurnMetrics:
    candidate: str
    roc_auc: float
    pr_auc: float
    brier: float
    customers: int
    churn_rate: float

    def as_dict(self) -> dict[str, float | str | int]:
        return dict(self.__dict__)


def score_metrics(candidate: str, y_true: np.ndarray, churn_probability: np.ndarray,
                  is_probability: bool = True) -> ChurnMetrics:
    """ROC-AUC, PR-AUC (average precision, churned = positive) and Brier score (probabilities only); NaN where
    undefined (one class)."""
    y_true = np.asarray(y_true, dtype=int)
    churn_probability = np.asarray(churn_probability, dtype=float)
    if len(y_true) != len(churn_probability):
        raise ModelInputError(f"{candidate}: {len(churn_probability)} scores for {len(y_true)} labels")
    if np.isnan(churn_probability).any():
        raise ModelInputError(f"{candidate}: {int(np.isnan(churn_probability).sum())} scores are NaN")
    both = len(np.unique(y_true)) == 2
    return ChurnMetrics(
        candidate=candidate,
        roc_auc=float(roc_auc_score(y_true, churn_probability)) if both else math.nan,
        pr_auc=float(average_precision_score(y_true, churn_probability)) if both else math.nan,
        brier=float(brier_score_loss(y_true, churn_probability)) if len(y_true) and is_probability else math.nan,
        customers=len(y_true),
        churn_rate=float(y_true.mean()) if len(y_true) else math.nan,
    )


def winner(metrics: list[ChurnMetrics], margin: float) -> ChurnMetrics:
    """The candidate to serve: the simplest whose validation ROC-AUC is within `margin` of the best (config: 0, so the
    best serves and only an exact tie goes to the simpler). Simplest first: the recency rule, BG/NBD, the blend."""
    usable = [m for m in metrics if not math.isnan(m.roc_auc)]
    if not usable:
        raise ModelInputError("no churn candidate has a validation ROC-AUC (the validation window holds one class)")
    best = max(m.roc_auc for m in usable)
    simplicity = {name: rank for rank, name in enumerate(SIMPLEST_FIRST)}
    close = [m for m in usable if m.roc_auc >= best - margin]
    return min(close, key=lambda m: simplicity.get(m.candidate, len(SIMPLEST_FIRST)))
