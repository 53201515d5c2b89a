"""Customer segments for email marketers: k-means over `marts.customer_features`, named in plain words.

A marketer targets "high value, active, highly engaged" or "lapsing bargain hunters", not cluster 3, and expects
a segment to keep its id from one run to the next so campaigns and reports keep pointing at the same people. So:

- one scikit-learn Pipeline (`make_segment_pipeline`): nulls imputed with what they mean, log1p of skewed counts
  and money, StandardScaler, KMeans; fitted on a fixed-seed sample (1M customers in seconds), then everyone is
  assigned;
- k chosen in a range by silhouette on a fixed-seed sample; inertia and its elbow reported beside it;
- clusters under `min_share` of the customers folded into their nearest neighbour (a segment too small to mail);
- names from each segment's medians placed in the population's own distribution (no tuned thresholds);
- ids kept across refits by matching profiles to the previous model (Hungarian algorithm).

Degenerate data (fewer than `k_range[0]` distinct customer profiles, e.g. every feature constant) is not an error:
the result is one segment, "all customers", with a note in `segments`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn import config_context
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from ml.errors import ModelInputError

SEGMENT_FEATURES: tuple[str, ...] = (
    "days_since_last_order",
    "order_count",
    "net_sales_amount",
    "avg_order_value_amount",
    "discount_rate",
    "return_rate",
    "tenure_days",
    "open_rate_90d",
    "click_rate_90d",
    "sends_90d",
    "product_views_90d",
    "cart_adds_90d",
    "top_category_share",
    "orders_trend_90d",
)

# What a null means, per nullable column. "max": never ordered sorts with the longest-lapsed buyers; "zero": no orders
# means no order value, no discounts, no returns; "median": no evidence either way (no sends says nothing about how
# someone would engage, `sends_90d` = 0 already marks them), so the typical value keeps them from forming a fake pole.
_NULL_MEANS: dict[str, str] = {
    "days_since_last_order": "max",
    "avg_order_value_amount": "zero",
    "discount_rate": "zero",
    "return_rate": "zero",
    "tenure_days": "median",
    "open_rate_90d": "median",
    "click_rate_90d": "median",
    "top_category_share": "median",
}
# Never null in the mart: a null there is an upstream bug, reported rather than guessed over.
_NEVER_NULL: tuple[str, ...] = tuple(name for name in SEGMENT_FEATURES if name not in _NULL_MEANS)
# Counts, days and money are heavy-tailed: without the log a few big spenders would be the whole story.
# Signed (sign * log1p|x|) because net sales can go below zero after refunds and the orders trend often does.
_LOG_FEATURES: frozenset[str] = frozenset({
    "days_since_last_order", "order_count", "net_sales_amount", "avg_order_value_amount", "tenure_days",
    "sends_90d", "product_views_90d", "cart_adds_90d", "orders_trend_90d",
})

ALL_CUSTOMERS = "all customers"
_N_INIT = 4
_SILHOUETTE_CHUNK_MB = 64
_ASSIGN_CHUNK = 200_000  # rows per predict call: bounds the transient copies the pipeline makes on 1M customers

# Naming: a segment median's mid-rank in the population; terciles split high / mid / low.
_HIGH, _LOW = 2 / 3, 1 / 3
_NEW_TENURE = 1 / 4  # "new" only for the youngest quarter: it replaces the recency word, so it must be clear-cut
_BARGAIN = 3 / 4
# Traits that tell apart two segments whose names coincide: (word when higher, word when lower).
_TRAITS: dict[str, tuple[str, str]] = {
    "order_count": ("frequent buyers", "infrequent buyers"),
    "avg_order_value_amount": ("big baskets", "small baskets"),
    "net_sales_amount": ("bigger spenders", "smaller spenders"),
    "return_rate": ("frequent returners", "rare returners"),
    "product_views_90d": ("active browsers", "rare browsers"),
    "cart_adds_90d": ("cart builders", "few cart adds"),
    "top_category_share": ("category loyal", "broad shoppers"),
    "orders_trend_90d": ("buying more", "buying less"),
    "tenure_days": ("long-standing", "recent sign-ups"),
    "days_since_last_order": ("less recent", "more recent"),
    "open_rate_90d": ("more opens", "fewer opens"),
    "click_rate_90d": ("more clicks", "fewer clicks"),
}


class NullImputer(TransformerMixin, BaseEstimator):
    """Fill each feature's nulls with what a null means for it (see `_NULL_MEANS`); the values are learned in fit."""

    def __init__(self, features: tuple[str, ...] = SEGMENT_FEATURES) -> None:
        self.features = features

    def fit(self, X: np.ndarray, y: object = None) -> NullImputer:
        X = np.asarray(X, dtype=float)
        fills = []
        for j, name in enumerate(self.features):
            observed = X[:, j][~np.isnan(X[:, j])]
            rule = _NULL_MEANS.get(name, "zero")
            if rule == "zero" or observed.size == 0:  # a column with no values at all: any constant will do
                fills.append(0.0)
            elif rule == "max":
                fills.append(float(observed.max()))
            else:
                fills.append(float(np.median(observed)))
        self.fill_values_ = np.array(fills)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "fill_values_")
        X = np.array(X, dtype=float, copy=True)
        for j, fill in enumerate(self.fill_values_):
            np.copyto(X[:, j], fill, where=np.isnan(X[:, j]))
        return X


class SignedLog1p(TransformerMixin, BaseEstimator):
    """sign(x) * log1p(|x|) on the skewed features (`_LOG_FEATURES`); rates and shares pass through."""

    def __init__(self, features: tuple[str, ...] = SEGMENT_FEATURES) -> None:
        self.features = features

    def fit(self, X: np.ndarray, y: object = None) -> SignedLog1p:
        self.columns_ = np.array([j for j, name in enumerate(self.features) if name in _LOG_FEATURES], dtype=int)
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "columns_")
        X = np.array(X, dtype=float, copy=True)
        part = X[:, self.columns_]
        X[:, self.columns_] = np.sign(part) * np.log1p(np.abs(part))
        return X


# A refit keeps the previous model's k unless another k's silhouette is better by more than this: the silhouette of
# a 10,000-customer sample moves by 0.01-0.02 from one day's data to the next, so a smaller gain is noise.
STABLE_SILHOUETTE_SLACK = 0.03


def make_segment_pipeline(k: int, seed: int, features: tuple[str, ...] = SEGMENT_FEATURES) -> Pipeline:
    """The segmentation pipeline: impute -> signed log1p -> standardize -> KMeans(k). Input: a float array whose
    columns are `features` in order (`SegmentModel.assign` builds it from a DataFrame)."""
    return Pipeline([
        ("impute", NullImputer(features)),
        ("log", SignedLog1p(features)),
        ("scale", StandardScaler()),
        ("kmeans", KMeans(n_clusters=k, n_init=_N_INIT, random_state=seed)),
    ])


@dataclass
class SegmentModel:
    """A fitted segmentation. `segments` has one row per segment id: segment_id, segment_name, customers, share,
    buyer_share (ordered at least once), emailed_share (sends_90d > 0), the median of each feature over the members
    in original units (nulls skipped: a segment of non-buyers has no median recency), and a note (merged tiny
    clusters, the degenerate one-segment case). In the degenerate case chosen_k = elbow_k = 1, silhouette_by_k is
    empty and inertia_by_k holds k = 1 only. `features` are the columns `assign` reads, in the pipeline's order."""

    pipeline: Pipeline
    features: tuple[str, ...]
    cluster_to_segment: dict[int, int]
    segments: pd.DataFrame
    chosen_k: int
    silhouette_by_k: dict[int, float]
    inertia_by_k: dict[int, float]
    elbow_k: int
    seed: int

    def assign(self, features: pd.DataFrame) -> pd.Series:
        """Segment id (int64) per customer, on the input's index and in its order."""
        _check_frame(features, self.features)
        # Predict in index order so a row's result cannot depend on where the caller put it.
        try:
            order = _index_order(features.index)
        except TypeError:  # an index that cannot be sorted: the caller's order is as good as any
            order = np.arange(len(features))
        labels = np.empty(len(features), dtype=np.int64)
        labels[order] = _predict(self.pipeline, _feature_matrix(features, self.features, order))
        lookup = np.full(max(self.cluster_to_segment) + 1, -1, dtype=np.int64)
        for cluster, segment in self.cluster_to_segment.items():
            lookup[cluster] = segment
        return pd.Series(lookup[labels], index=features.index, name="segment_id", dtype="int64")

    def names(self) -> dict[int, str]:
        return {int(row.segment_id): str(row.segment_name) for row in self.segments.itertuples()}


def fit_segments(
    features: pd.DataFrame,
    *,
    k_range: tuple[int, int] = (3, 8),
    seed: int = 7,
    min_share: float = 0.02,
    sample_size: int = 100_000,
    silhouette_sample: int = 10_000,
    previous: SegmentModel | None = None,
) -> SegmentModel:
    """Fit segments on per-customer features (index = customer_id, columns include `SEGMENT_FEATURES`).

    k is the one in `k_range` with the best silhouette (ties: the smaller k); `elbow_k` is the inertia curve's elbow
    (largest distance to the chord), for reference. Clusters holding less than `min_share` of the customers are merged
    into the cluster with the nearest centroid (scaled space), repeatedly, smallest first.

    Ids: without `previous`, 0..n-1 by descending median net sales. With `previous`, the segments are matched to the
    previous model's by the Hungarian algorithm on the distance between their median profiles, both pushed through
    the NEW model's preprocessing (so no scaled centroids need to be stored, and a change of scale between runs is
    accounted for); a matched segment keeps the previous id, the others get new ids above the previous maximum.

    Same input and seed give the same model whatever the row order (rows are sorted by customer_id before sampling).
    Raises ModelInputError for an empty frame, a missing, non-numeric or infinite-valued column, nulls in a column
    the mart never leaves null, duplicate customer ids, or fewer than k_range[0] + 1 customers. Fewer than k_range[0]
    distinct profiles (e.g. all features constant) give a one-segment model, "all customers", noted in `segments`.
    """
    k_min, k_max = k_range
    if not 2 <= k_min <= k_max:
        raise ValueError(f"k_range must be (k_min, k_max) with 2 <= k_min <= k_max, got {k_range}")
    if not 0 <= min_share < 1:
        raise ValueError(f"min_share must be in [0, 1), got {min_share}")
    if sample_size < k_min + 1 or silhouette_sample < 2:
        raise ValueError(f"sample_size ({sample_size}) must be > k_min and silhouette_sample ({silhouette_sample}) >= 2")

    feature_names = SEGMENT_FEATURES
    _check_frame(features, feature_names)
    if features.index.has_duplicates:
        dupes = features.index[features.index.duplicated()].unique()
        raise ModelInputError(f"customer features: {len(dupes)} customer ids appear more than once in the index "
                              f"(e.g. {list(dupes[:3])}); one row per customer is expected")
    try:
        order = _index_order(features.index)
    except TypeError as error:
        raise ModelInputError(f"customer features: the customer_id index cannot be sorted ({error})") from error
    # Rows in customer_id order: the sample, and so the model, cannot depend on the order the rows came in.
    values = _feature_matrix(features, feature_names, order)
    n = len(values)
    if n < k_min + 1:
        raise ModelInputError(f"customer features: {n} customer(s), too few to try {k_min} segments "
                              f"(k_range starts at {k_min}; at least {k_min + 1} customers are needed)")

    rng = np.random.default_rng(seed)
    sample_rows = np.sort(rng.choice(n, size=sample_size, replace=False)) if n > sample_size else np.arange(n)
    sample = values[sample_rows]
    # One thread for KMeans and BLAS: on this project's 2-core machines, shared with other tasks and test workers,
    # their threads bought nothing at 1M customers (12.9 s vs 12.4 s) and spin-waits made small fits up to 5x slower.
    with threadpool_limits(limits=1):
        return _fit(values, sample, feature_names, k_range=k_range, seed=seed, min_share=min_share,
                    silhouette_sample=silhouette_sample, previous=previous)


def _fit(values: np.ndarray, sample: np.ndarray, feature_names: tuple[str, ...], *, k_range: tuple[int, int],
         seed: int, min_share: float, silhouette_sample: int, previous: SegmentModel | None) -> SegmentModel:
    """fit_segments past the checks: `values` are everyone's features in customer_id order, `sample` the fit rows."""
    k_min, k_max = k_range
    n = len(values)
    pipeline = make_segment_pipeline(k_min, seed, feature_names)
    scaled = pipeline[:-1].fit_transform(sample)
    distinct = len(pd.DataFrame(scaled).drop_duplicates())

    silhouette_by_k: dict[int, float] = {}
    inertia_by_k: dict[int, float] = {}
    note = ""
    if distinct < k_min:
        note = (f"degenerate: only {distinct} distinct customer profile(s), fewer than k_range[0] = {k_min}; "
                f"one segment for everyone")
        kmeans = clone(pipeline[-1]).set_params(n_clusters=1).fit(scaled)
        inertia_by_k[1] = float(kmeans.inertia_)
        chosen_k = elbow_k = 1
    else:
        fitted: dict[int, KMeans] = {}
        for k in range(k_min, min(k_max, distinct) + 1):  # more clusters than distinct points: empty clusters
            fitted[k] = clone(pipeline[-1]).set_params(n_clusters=k).fit(scaled)
            inertia_by_k[k] = float(fitted[k].inertia_)
            try:
                # Small distance chunks: the default 1 GB ones cost memory and, here, time (fresh pages per chunk).
                with config_context(working_memory=_SILHOUETTE_CHUNK_MB):
                    silhouette_by_k[k] = float(silhouette_score(
                        scaled, fitted[k].labels_, sample_size=min(silhouette_sample, len(scaled)), random_state=seed))
            except ValueError:  # the silhouette sample drew a single cluster: no score for this k
                pass
        chosen_k = max(silhouette_by_k, key=lambda k: (silhouette_by_k[k], -k)) if silhouette_by_k else k_min
        elbow_k = _elbow(inertia_by_k)
        kmeans = fitted[chosen_k]
        if previous is not None:
            chosen_k, kmeans = _stay_close(previous, pipeline, scaled, chosen_k, kmeans, silhouette_by_k)
    pipeline.set_params(kmeans=kmeans)

    labels = _predict(pipeline, values)
    groups = _merge_tiny(labels, kmeans.cluster_centers_, min_share)
    group_of = np.array([groups[label] for label in range(kmeans.n_clusters)])
    profiles = _profiles(values, group_of[labels], feature_names)
    merged = {g: sorted(label for label, target in groups.items() if target == g) for g in profiles.index}
    counts = np.bincount(labels, minlength=kmeans.n_clusters)
    notes = {g: note or _merge_note(members, g, counts, n) for g, members in merged.items()}

    group_to_id = _segment_ids(profiles, pipeline, feature_names, previous)
    population = pd.DataFrame(sample, columns=list(feature_names))
    names = {g: ALL_CUSTOMERS for g in profiles.index} if note else _name_segments(profiles, population)

    segments = profiles.assign(segment_id=[group_to_id[g] for g in profiles.index],
                               segment_name=[names[g] for g in profiles.index],
                               note=[notes[g] for g in profiles.index])
    head = ["segment_id", "segment_name", "customers", "share", "buyer_share", "emailed_share"]
    segments = segments[head + list(feature_names) + ["note"]].sort_values("segment_id").reset_index(drop=True)
    return SegmentModel(
        pipeline=pipeline,
        features=feature_names,
        cluster_to_segment={label: group_to_id[groups[label]] for label in range(kmeans.n_clusters)},
        segments=segments,
        chosen_k=chosen_k,
        silhouette_by_k=silhouette_by_k,
        inertia_by_k=inertia_by_k,
        elbow_k=elbow_k,
        seed=seed,
    )


def _stay_close(previous: SegmentModel, pipeline: Pipeline, scaled: np.ndarray, chosen_k: int, kmeans: KMeans,
                silhouette_by_k: dict[int, float]) -> tuple[int, KMeans]:
    """Keep last run's clustering where the data still supports it: its k when that k's silhouette is within
    STABLE_SILHOUETTE_SLACK of the best, and k-means started from its centroids (carried into this run's scale)
    rather than from random seeds. A day's more data then moves a few customers across a border instead of
    redrawing the borders: marketers' segments stay the same people."""
    old_kmeans = previous.pipeline[-1]
    old_k = int(old_kmeans.n_clusters)
    if old_k not in silhouette_by_k or silhouette_by_k[old_k] < silhouette_by_k[chosen_k] - STABLE_SILHOUETTE_SLACK:
        return chosen_k, kmeans
    in_log_units = previous.pipeline.named_steps["scale"].inverse_transform(old_kmeans.cluster_centers_)
    start = pipeline.named_steps["scale"].transform(in_log_units)
    warm = KMeans(n_clusters=old_k, init=start, n_init=1, random_state=kmeans.random_state).fit(scaled)
    return old_k, warm


def _check_frame(features: object, names: tuple[str, ...]) -> None:
    if not isinstance(features, pd.DataFrame):
        raise ModelInputError(f"customer features must be a pandas DataFrame, got {type(features).__name__}")
    if features.empty:
        raise ModelInputError("customer features: the frame is empty (0 customers); nothing to segment")
    missing = [name for name in names if name not in features.columns]
    if missing:
        raise ModelInputError(f"customer features: missing required column(s) {', '.join(missing)} "
                              f"(expected the columns of marts.customer_features)")


def _feature_matrix(features: pd.DataFrame, names: tuple[str, ...], order: np.ndarray) -> np.ndarray:
    """The features as one float array (NaN for nulls), rows taken in `order`, after the checks that name the
    offending column. Built column by column so a million customers cost one copy, not two."""
    _check_frame(features, names)
    values = np.empty((len(features), len(names)), dtype=float)
    for j, name in enumerate(names):
        column = features[name]
        if pd.api.types.is_bool_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
            values[:, j] = column.to_numpy(dtype=float, na_value=np.nan)[order]
        elif column.dtype == object:  # e.g. Decimal values from a database driver
            try:
                values[:, j] = pd.to_numeric(column, errors="raise").to_numpy(dtype=float, na_value=np.nan)[order]
            except (ValueError, TypeError) as error:
                raise ModelInputError(f"customer features: column {name} is not numeric ({error})") from error
        else:
            raise ModelInputError(f"customer features: column {name} is not numeric (dtype {column.dtype})")
        for problem, bad in (("infinite", np.isinf(values[:, j])),
                             ("null", np.isnan(values[:, j]) if name in _NEVER_NULL else None)):
            if bad is not None and bad.any():
                example = features.index[order[np.argmax(bad)]]
                never = "; marts.customer_features never leaves it null" if problem == "null" else ""
                raise ModelInputError(f"customer features: column {name} has {int(bad.sum())} {problem} value(s) "
                                      f"(e.g. customer {example!r}){never}")
    return values


def _index_order(index: pd.Index) -> np.ndarray:
    """Positions that sort the rows by customer_id (TypeError for an index of mixed, unorderable types)."""
    return np.asarray(index.argsort(), dtype=np.intp)


def _predict(pipeline: Pipeline, values: np.ndarray) -> np.ndarray:
    if len(values) == 0:
        return np.empty(0, dtype=np.int64)
    return np.concatenate([pipeline.predict(values[start:start + _ASSIGN_CHUNK])
                           for start in range(0, len(values), _ASSIGN_CHUNK)]).astype(np.int64)


def _elbow(inertia_by_k: dict[int, float]) -> int:
    """Kneedle-style elbow: the k farthest from the chord joining the curve's ends, both axes scaled to [0, 1]."""
    ks = np.array(sorted(inertia_by_k), dtype=float)
    if len(ks) < 3:
        return int(ks[0])
    inertia = np.array([inertia_by_k[int(k)] for k in ks])
    span = inertia.max() - inertia.min()
    if span <= 0:
        return int(ks[0])
    x = (ks - ks[0]) / (ks[-1] - ks[0])
    y = (inertia - inertia.min()) / span
    # Distance to the chord from (x0, y0) to (x1, y1), up to a constant factor.
    distance = np.abs((y[-1] - y[0]) * x - (x[-1] - x[0]) * y + x[-1] * y[0] - y[-1] * x[0])
    return int(ks[int(np.argmax(distance))])


def _merge_tiny(labels: np.ndarray, centers: np.ndarray, min_share: float) -> dict[int, int]:
    """k-means label -> group (the smallest label of the group). The smallest group under min_share joins the group
    holding the nearest other centroid, until none is under it; ties go to the smaller label, for determinism."""
    k = len(centers)
    group = {label: label for label in range(k)}
    counts = np.bincount(labels, minlength=k).astype(float)
    total = counts.sum()
    distance = np.linalg.norm(centers[:, None, :] - centers[None, :, :], axis=2)
    while len(set(group.values())) > 1:
        sizes = {g: counts[[lab for lab in range(k) if group[lab] == g]].sum() for g in set(group.values())}
        smallest = min(sizes, key=lambda g: (sizes[g], g))
        if sizes[smallest] / total >= min_share:
            break
        inside = [lab for lab in range(k) if group[lab] == smallest]
        outside = [lab for lab in range(k) if group[lab] != smallest]
        nearest = min(outside, key=lambda lab: (distance[inside, lab].min(), lab))
        target = group[nearest]
        new_group = min(target, smallest)
        for lab in range(k):
            if group[lab] in (target, smallest):
                group[lab] = new_group
    return group


def _merge_note(members: list[int], group: int, counts: np.ndarray, total: int) -> str:
    absorbed = [lab for lab in members if lab != group] if len(members) > 1 else []
    if not absorbed:
        return ""
    parts = ", ".join(f"{lab} ({counts[lab] / total:.1%})" for lab in absorbed)
    return f"k-means clusters {', '.join(map(str, members))} merged: tiny cluster(s) {parts} folded in"


def _profiles(values: np.ndarray, groups: np.ndarray, names: tuple[str, ...]) -> pd.DataFrame:
    """Per group: size, share, buyer and emailed shares, and the median of every feature in original units."""
    frame = pd.DataFrame(values, columns=list(names), copy=False)
    grouped = frame.groupby(groups, sort=True)
    profiles = grouped.median()
    profiles.insert(0, "customers", grouped.size().astype("int64"))
    profiles.insert(1, "share", profiles["customers"] / len(values))
    profiles.insert(2, "buyer_share", (frame["order_count"] > 0).groupby(groups, sort=True).mean())
    profiles.insert(3, "emailed_share", (frame["sends_90d"] > 0).groupby(groups, sort=True).mean())
    return profiles


def _segment_ids(profiles: pd.DataFrame, pipeline: Pipeline, names: tuple[str, ...],
                 previous: SegmentModel | None) -> dict[int, int]:
    """Group -> segment id; see fit_segments for the rule."""
    # Descending median net sales, then more buyers, then the group label: a total order, so ids are deterministic.
    by_value = sorted(profiles.index, key=lambda g: (-np.nan_to_num(profiles.at[g, "net_sales_amount"], nan=-np.inf),
                                                     -profiles.at[g, "buyer_share"], g))
    if previous is None:
        return {g: i for i, g in enumerate(by_value)}
    missing = [name for name in names if name not in previous.segments.columns]
    if missing:
        raise ModelInputError(f"previous segment model: its segments lack the profile column(s) {', '.join(missing)}")
    preprocess = pipeline[:-1]
    new = preprocess.transform(profiles[list(names)].to_numpy(dtype=float))
    old = preprocess.transform(previous.segments[list(names)].to_numpy(dtype=float))
    cost = np.linalg.norm(new[:, None, :] - old[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    old_ids = previous.segments["segment_id"].to_numpy()
    ids = {int(profiles.index[r]): int(old_ids[c]) for r, c in zip(rows, cols, strict=True)}
    next_id = int(old_ids.max()) + 1
    for g in by_value:
        if g not in ids:
            ids[g], next_id = next_id, next_id + 1
    return ids


def _mid_rank(population: pd.Series, value: float) -> float:
    """Where value sits in the population's non-null values, 0..1 (ties count half): NaN when either is missing."""
    observed = np.sort(population.dropna().to_numpy())
    if observed.size == 0 or np.isnan(value):
        return float("nan")
    below = np.searchsorted(observed, value, side="left")
    upto = np.searchsorted(observed, value, side="right")
    return float((below + upto) / 2 / observed.size)


def _name_segments(profiles: pd.DataFrame, population: pd.DataFrame) -> dict[int, str]:
    """A name per group from its medians ranked in the population's distribution (the fit sample): value from net
    sales among buyers, lifecycle from tenure then recency among buyers, engagement from open and click rates among
    the emailed, "bargain hunters" for a discount rate in the top quarter among buyers."""
    buyers = population[population["order_count"] > 0]
    names: dict[int, str] = {}
    for g, profile in profiles.iterrows():
        new = _mid_rank(population["tenure_days"], profile["tenure_days"]) <= _NEW_TENURE
        engagement_ranks = [_mid_rank(population[col], profile[col]) for col in ("open_rate_90d", "click_rate_90d")]
        engagement_ranks = [r for r in engagement_ranks if not np.isnan(r)]
        engagement_rank = float(np.mean(engagement_ranks)) if engagement_ranks else float("nan")
        if profile["emailed_share"] < 0.5:
            engagement = "not emailed"
        elif engagement_rank >= _HIGH:
            engagement = "highly engaged"
        elif engagement_rank <= _LOW:
            engagement = "disengaged"
        else:
            engagement = ""
        if profile["buyer_share"] < 0.5:
            parts = ["new non-buyers" if new else "non-buyers", engagement]
        else:
            value_rank = _mid_rank(buyers["net_sales_amount"], profile["net_sales_amount"])
            value = "high value" if value_rank >= _HIGH else "low value" if value_rank <= _LOW else "mid value"
            recency_rank = _mid_rank(buyers["days_since_last_order"], profile["days_since_last_order"])
            if new:
                lifecycle = "new"
            elif recency_rank <= _LOW:
                lifecycle = "active"
            elif recency_rank >= _HIGH:
                lifecycle = "lapsed"
            else:
                lifecycle = "lapsing"
            if _mid_rank(buyers["discount_rate"], profile["discount_rate"]) >= _BARGAIN:
                lifecycle = f"{lifecycle} bargain hunters"
            parts = [value, lifecycle, engagement]
        names[int(g)] = ", ".join(part for part in parts if part)
    return _make_unique(names, profiles, population)


def _make_unique(names: dict[int, str], profiles: pd.DataFrame, population: pd.DataFrame) -> dict[int, str]:
    """Segments sharing a name get the trait that differs most between them ("..., big baskets" vs "..., small
    baskets"); any still alike are numbered " (2)", " (3)" in group order."""
    names = dict(names)
    for name in sorted(set(names.values())):
        alike = sorted(g for g, n in names.items() if n == name)
        if len(alike) < 2:
            continue
        best, best_spread, best_ranks = None, 0.1, {}  # a trait must differ by 10 points of rank to be worth naming
        for feature in _TRAITS:
            ranks = {g: _mid_rank(population[feature], profiles.at[g, feature]) for g in alike}
            if any(np.isnan(r) for r in ranks.values()):
                continue
            spread = max(ranks.values()) - min(ranks.values())
            if spread > best_spread:
                best, best_spread, best_ranks = feature, spread, ranks
        if best is not None:
            middle = float(np.median(list(best_ranks.values())))
            higher, lower = _TRAITS[best]
            for g in alike:
                names[g] = f"{name}, {higher if best_ranks[g] > middle else lower}"
    taken: set[str] = set()
    for g in sorted(names):
        candidate, number = names[g], 1
        while candidate in taken:
            number += 1
            candidate = f"{names[g]} ({number})"
        names[g] = candidate
        taken.add(candidate)
    return names
