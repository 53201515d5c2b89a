"""Every choice the models make, in one place: horizons, seeds, training windows, promotion and drift thresholds.

The churn horizon is the dbt project's (`churn_horizon_days` in dbt_project.yml): the labels the models learn from are
built with it, so the models read the same number rather than keeping a copy that could disagree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

import yaml

from tailor import settings

SEED = 7

# Churn: training snapshots every SNAPSHOT_SPACING_DAYS before the validation one; more snapshots, more examples of
# the same horizon, at the cost of one dbt build each the first time a date is needed.
TRAINING_SNAPSHOTS = 6
SNAPSHOT_SPACING_DAYS = 14
# A model needs at least this many labelled customers of each class at a training date; fewer, and BG/NBD serves.
MIN_CLASS_EXAMPLES = 20

# CLV and next order: the prediction horizon, and the shortest back-test window worth reporting.
CLV_HORIZON_DAYS = 365
MIN_BACKTEST_DAYS = 30
# L2 penalty on BG/NBD's log-parameters (per customer's mean log-likelihood).
BGNBD_PENALIZER = 1e-3

# Segments: the range of k searched, and the smallest share a segment may keep before it is merged.
SEGMENT_K_RANGE = (3, 8)
SEGMENT_MIN_SHARE = 0.02

# Choosing among the churn candidates: the simplest within this much validation ROC-AUC of the best serves. Zero: the
# best serves. The validation label (no order in the horizon) is what BG/NBD models by construction, so a near tie there
# hid the blend's better ranking of the simulated worlds' true churn (issue notes): a margin would hand it to BG/NBD.
CANDIDATE_MARGIN = 0.0

# Promotion: the candidate's validation ROC-AUC must beat production's, scored on the same window, by this much.
PROMOTION_METRIC = "churn_roc_auc"
PROMOTION_MARGIN = 0.005
# With no labelled window the CLV back-test decides: the candidate's sales MAE must be lower by this share.
PROMOTION_CLV_MARGIN = 0.01

# Drift (population stability index): per feature and for the churn score's distribution.
PSI_WARN = 0.1
PSI_FAIL = 0.25
PSI_BINS = 10

# Scoring and training read features in batches of this many customers, to bound memory at a million customers.
SCORE_BATCH_ROWS = 250_000
# The churn classifier fits on at most this many labelled examples of all its snapshots together (a fixed-seed sample,
# an equal share per snapshot, drawn as each is read): the trees gain little beyond it, and at a million customers it
# bounds the fit to minutes and ~4 GB.
TRAIN_SAMPLE_ROWS = 300_000


@dataclass(frozen=True)
class Horizons:
    churn_days: int
    clv_days: int = CLV_HORIZON_DAYS


@cache
def _dbt_vars() -> dict:
    path = settings.dbt_project_dir() / "dbt_project.yml"
    return (yaml.safe_load(path.read_text()) or {}).get("vars") or {}


def churn_horizon_days() -> int:
    """The churn horizon in days: dbt_project.yml's `churn_horizon_days` var (the labels' own)."""
    value = _dbt_vars().get("churn_horizon_days")
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"dbt var churn_horizon_days in {settings.dbt_project_dir() / 'dbt_project.yml'} must be a "
                         f"positive whole number of days, got {value!r}")
    return value


def horizons() -> Horizons:
    return Horizons(churn_days=churn_horizon_days())


# --- recommendations and send times (ml/personalization.py) ---------------------------------------------------------

# A list: this many products, at most this share of them from one category; a product the shop's buyers re-buy at
# least this often (marts.products.repeat_purchase_rate: buyers with two or more orders of it / its buyers) may be
# recommended again to a customer who bought it.
REC_LIST_SIZE = 10
REC_MAX_CATEGORY_SHARE = 0.4
REC_REPLENISHABLE_RATE = 0.3
# Interactions weigh 3 (purchase), 2 (cart add) or 1 (view), halved every this many days before the as-of.
REC_HALF_LIFE_DAYS = 90.0
# Implicit ALS: at most this many factors, and no more than one per REC_PRODUCTS_PER_FACTOR products (more factors
# than the catalogue can support fit noise: recommend.ImplicitAls).
REC_ALS_FACTORS = 32
REC_PRODUCTS_PER_FACTOR = 8
# Implicit ALS learns its product factors from at most this many customers (a fixed-seed sample); every customer is
# folded in at scoring. At 1M customers the full sweeps took 105 s of a training.
REC_ALS_FIT_CUSTOMERS = 200_000
# Candidates are judged on at most this many customers with new purchases in the later window (a fixed-seed sample):
# HitRate@10 within about +-0.007 (95%), and a million-customer shop's validation costs what a 100k one's does.
REC_VALIDATION_CUSTOMERS = 20_000
# Lists are computed and written this many customers at a time: the walk's arrays grow with it (at M, 50k: 1.9 GB
# peak; 10k: 0.8 GB, and faster for staying in cache).
REC_BATCH_ROWS = 10_000
# Batches computed at once, on threads: the walk is mostly numpy sorts, which release the GIL. At M on 2 cores the
# lists took 11.5 s on one thread, 8.1 s on two (one batch more held: +0.3 GB peak).
REC_BATCH_THREADS = min(2, os.cpu_count() or 1)
# Promotion: the served recommender's validation Recall@10 must beat production's (refitted on the same window) by
# this much; the send-time model's share of later engagements within +-1 h of its pick likewise.
REC_PROMOTION_METRIC = "rec_recall_at_10"
SEND_PROMOTION_METRIC = "send_hit_share"
PERSONALIZATION_PROMOTION_MARGIN = 0.005

# Send times: a click counts as this many opens; a pick is judged by the later engagements within this many hours.
SEND_CLICK_WEIGHT = 1.0
SEND_TOLERANCE_HOURS = 1
# A shop without any open or click yet: everyone is sent at this local hour (mid-morning, the ESPs' usual default).
SEND_DEFAULT_HOUR_LOCAL = 10
# Customers are shrunk toward the profile of their RFM segment as of the date (marts.customer_features.rfm_segment).
SEND_GROUP_COLUMN = "rfm_segment"
