"""Per-customer top-N product recommendations for marketing emails, trained on interactions as of T.

A "picked for you" email goes to everyone: browsers who never bought, new sign-ups with no history, wholesale buyers
who reorder the same products every month. So a list is built in three steps:

- `build_interactions`: events up to T -> a sparse customers x products matrix of recency-weighted strength
  (purchase 3, cart add 2, view 1, halved every `half_life_days`), plus what each customer bought and browsed;
- a candidate model scores products for a batch of customers: `ItemItem` (item-item neighbours on BM25-weighted or
  cosine co-occurrence), `ImplicitAls` (Hu, Koren and Volinsky 2008; customers folded in at score time),
  `CategoryPopularity` (the customer's categories x each category's best-sellers), a `Hybrid` averaging several, or
  the `Popularity` baseline;
- `recommend` turns scores into lists of n: business exclusions, a per-category cap, best-seller fills for customers
  the model knows little or nothing about. `evaluate` measures lists on new-to-customer purchases after T.

Scale (1M customers x 10k products): no customers x products matrix is ever dense. Item-item similarity is computed
in blocks of items keeping the top `neighbours` per item; ALS holds customers x factors while fitting and keeps
item factors only; `recommend` scores customers in batches and keeps each one's top candidates. The largest dense
block is one slice of scores, at most `_MAX_DENSE_CELLS` cells, whatever the batch size.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol

import numpy as np
import pandas as pd
from scipy import sparse

from ml.checks import utc_timestamp
from ml.errors import ModelInputError

EVENT_COLUMNS: tuple[str, ...] = ("customer_id", "product_id", "kind", "occurred_at")
PRODUCT_COLUMNS: tuple[str, ...] = ("product_id", "category", "is_available", "repeat_purchase_rate")
RECOMMENDATION_COLUMNS: tuple[str, ...] = ("customer_id", "rank", "product_id", "score", "reason")
DEFAULT_WEIGHTS: Mapping[str, float] = {"purchase": 3.0, "cart_add": 2.0, "view": 1.0}
_BROWSING = ("view", "cart_add")

# A dense block of scores (or of item similarities while fitting) holds at most this many cells: 80 MB in float64
# at any catalogue size (10k products: 1,000 customers per slice).
_MAX_DENSE_CELLS = 10_000_000
# The model's best 5 * n eligible products per customer are considered; a category cap rarely needs more, and past
# them a best-seller is as good a guess as the model's 60th choice.
_CANDIDATES_PER_SLOT = 5
# A block of item similarities is cut to each product's neighbours from its stored entries when they fill at most
# this share of it, else densely (a dense block costs 8 bytes a cell; stored entries about 40 while being cut).
_SPARSE_BLOCK_SHARE = 0.2
# Popularity-based models score at most this many products per category (and the shop): a sparse shortlist instead of
# a dense row per customer. A list takes at most max(1, share * n) products of one category (4 of 10), so a shortlist
# runs short only for a customer who bought nearly all of a category's 64 best-sellers; the fills (the same
# best-seller orders) then take over.
SHORTLIST = 64
# First pass of the list walk: each fill (category, shop) is cut at 3 * n + the customer's excluded products. A
# customer whose list this cannot settle is walked again, exactly, over a longer but still bounded sequence (`_walk`).
_FILL_PER_SLOT = 3
# ALS: interactions and customers per block of the conjugate-gradient step (bounds the nnz x factors temporaries),
# and customers per block of the exact fold-in (bounds the customers x factors^2 normal equations).
_SOLVE_NNZ = 200_000
_SOLVE_ROWS = 100_000
_FOLD_IN_ROWS = 2_048


@dataclass(frozen=True, eq=False)
class Interactions:
    """Customers x products as of `as_of` (UTC). Rows follow `customer_ids`, columns `product_ids` (sorted, unique).

    matrix: recency-weighted strength of every event (float32). bought: 1 where the customer purchased the product at
    or before as_of (int8). purchases: the purchase events' part of `matrix`, the shop's popularity signal (float32).
    browsed: 1 where the customer viewed or cart-added the product (int8). No events: zero customers, zero products."""

    customer_ids: np.ndarray
    product_ids: np.ndarray
    matrix: sparse.csr_matrix
    bought: sparse.csr_matrix
    purchases: sparse.csr_matrix
    browsed: sparse.csr_matrix
    as_of: pd.Timestamp


def build_interactions(events: pd.DataFrame, as_of: datetime, *, weights: Mapping[str, float] | None = None,
                       half_life_days: float = 90.0) -> Interactions:
    """Interactions from events (customer_id, product_id, kind, occurred_at) at or before `as_of`. An event weighs `weights[kind]` (defaults DEFAULT_WEIGHTS; a partial mapping overrides only
    the kinds it names) times 0.5 ** (age_days / half_life_days); a customer x product cell is the sum.

    Empty events (with the columns) give an Interactions with zero customers and zero products: `recommend` then
    serves best-sellers to the customers named in `affinity_category`. Same events in any row order give the same
    matrices to the bit. A timezone-naive as_of or occurred_at is read as UTC (ml.checks). Raises ModelInputError for
    a missing column, a null id or timestamp, an unknown kind, or events after as_of (they would leak the evaluation
    window into training)."""
    kind_weights = _kind_weights(weights)
    if not (isinstance(half_life_days, int | float) and math.isfinite(half_life_days) and half_life_days > 0):
        raise ModelInputError(f"half_life_days must be a positive number of days, got {half_life_days!r}")
    as_of_utc = utc_timestamp("as_of", as_of)
    _check_columns(events, EVENT_COLUMNS, "events")
    if len(events) == 0:
        return _empty_interactions(as_of_utc)
    customers = _ids(events["customer_id"], "events", "customer_id")
    products = _ids(events["product_id"], "events", "product_id")
    kinds = events["kind"]
    unknown = ~kinds.isin(list(kind_weights)).to_numpy()
    if unknown.any():
        names = sorted({repr(kind) for kind in kinds[unknown]})
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ModelInputError(f"events: column kind has {int(unknown.sum())} event(s) of unknown kind {shown} (first "
                              f"at row {events.index[np.argmax(unknown)]!r}); known kinds: "
                              f"{', '.join(sorted(kind_weights))}")
    occurred = _utc_times(events["occurred_at"])
    late = (occurred > as_of_utc).to_numpy()
    if late.any():
        positions = np.flatnonzero(late)
        first = positions[int(occurred.iloc[positions].argmin())]
        raise ModelInputError(
            f"events: {int(late.sum())} event(s) after as_of {as_of_utc.isoformat()}, the first at "
            f"{occurred.iloc[first].isoformat()} (customer {customers.iloc[first]!r}, product {products.iloc[first]!r}, "
            f"row {events.index[first]!r}); interactions are as of T: filter events to occurred_at <= as_of")

    customer_code, customer_ids = pd.factorize(customers, sort=True)
    product_code, product_ids = pd.factorize(products, sort=True)
    age_days = (as_of_utc - occurred).dt.total_seconds().to_numpy(dtype=float) / 86_400.0
    strength = kinds.map(kind_weights).to_numpy(dtype=float) * np.exp2(-age_days / half_life_days)
    is_purchase = (kinds == "purchase").to_numpy()
    is_browse = kinds.isin(_BROWSING).to_numpy()
    # One summation order whatever the events' row order, so sums (and ties between scores) are reproducible.
    order = np.lexsort((strength, product_code, customer_code))
    customer_code, product_code = customer_code[order], product_code[order]
    strength, is_purchase, is_browse = strength[order], is_purchase[order], is_browse[order]
    shape = (len(customer_ids), len(product_ids))
    return Interactions(
        customer_ids=np.asarray(customer_ids, dtype=str),
        product_ids=np.asarray(product_ids, dtype=str),
        matrix=_summed(customer_code, product_code, strength, shape),
        bought=_flags(customer_code[is_purchase], product_code[is_purchase], shape),
        purchases=_summed(customer_code[is_purchase], product_code[is_purchase], strength[is_purchase], shape),
        browsed=_flags(customer_code[is_browse], product_code[is_browse], shape),
        as_of=as_of_utc,
    )


class Recommender(Protocol):
    """What `recommend` needs from a model. `personal` is False for a model that scores everyone alike (its picks are
    reported as best-sellers); a model may name the reason of all its picks in a `pick_reason` class attribute;
    `product_ids_` is set by fit (the interactions' product_ids, columns of `score`)."""

    personal: ClassVar[bool]
    product_ids_: np.ndarray | None

    def fit(self, interactions: Interactions) -> Recommender: ...

    def score(self, rows: sparse.csr_matrix) -> np.ndarray | sparse.spmatrix: ...


@dataclass
class ItemItem:
    """Item-item collaborative filtering: similarity between products from the customers they share, top
    `neighbours` per product kept (sparse); a customer's scores are their interaction row @ similarity.

    "bm25" weights the products x customers matrix as implicit's BM25Recommender does (products are the documents,
    customers the terms, k1 = 1.2, b = 0.75): a strength saturates, a product's many interactions are length-normalised
    and a customer who touched much of the catalogue (a wholesaler) counts less. The idf is Lucene's,
    log(1 + (products - df + 0.5) / (df + 0.5)), not implicit's log(products / (1 + df)): that one reaches 0, or goes
    negative, once a customer touched most of a small catalogue, and a shop of a few dozen products would get no
    links at all. Similarity is the unnormalised dot product, as in implicit. "cosine": plain cosine between the
    products' strength vectors.
    A product is not its own neighbour: a bought replenishable product comes back only through related products."""

    weighting: str = "bm25"
    neighbours: int = 100
    k1: float = 1.2
    b: float = 0.75
    personal: ClassVar[bool] = True
    product_ids_: np.ndarray | None = field(default=None, init=False, repr=False)
    similarity_: sparse.csr_matrix | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.weighting not in ("bm25", "cosine"):
            raise ModelInputError(f"ItemItem: weighting must be 'bm25' or 'cosine', got {self.weighting!r}")
        if not (isinstance(self.neighbours, int) and self.neighbours >= 1):
            raise ModelInputError(f"ItemItem: neighbours must be a positive integer, got {self.neighbours!r}")

    def fit(self, interactions: Interactions) -> ItemItem:
        items = interactions.matrix.T.tocsr().astype(np.float64)
        weighted = _bm25(items, self.k1, self.b) if self.weighting == "bm25" else _unit_rows(items)
        self.similarity_ = _top_neighbours(weighted, self.neighbours)
        self.product_ids_ = interactions.product_ids
        return self

    def score(self, rows: sparse.csr_matrix) -> sparse.csr_matrix:
        _require_fitted(self, self.similarity_)
        return sparse.csr_matrix(rows, dtype=np.float32) @ self.similarity_


@dataclass
class ImplicitAls:
    """Implicit-feedback matrix factorisation (Hu, Koren and Volinsky 2008): preference 1 where a customer interacted,
    confidence 1 + alpha * strength, squared error weighted by confidence plus `regularization` * squared norms.

    Training alternates customer and product solves, each by `cg_steps` conjugate-gradient iterations started from the
    previous sweep's factors (Takacs, Pilaszy and Tikk 2011; implicit's default solver): O(interactions x factors) per
    sweep and vectorised over all rows, where exact solves cost factors^2 per interaction. Only product factors are
    kept. At score time each customer's factors are solved exactly from their row (fold-in: the normal equations
    Y'Y + Y'(C_u - I)Y + reg I, built for a block of customers with one sparse product against precomputed y y'), so
    a customer is scored the same whether or not they were in the training data, and in any batch. So the product
    factors are learnt from at most `max_fit_customers` customers (a fixed-seed sample; None: all): a million
    customers' sweeps took minutes where 200,000 describe the products as well, and everyone is folded in alike.
    `factors` should stay well below the number of products: on a 96-product shop of 8 buying groups, 32 factors
    fit noise (Recall@10 0.79) where 8 find the groups (1.0)."""

    factors: int = 32
    regularization: float = 0.05
    alpha: float = 20.0
    iterations: int = 10
    seed: int = 7
    cg_steps: int = 3
    max_fit_customers: int | None = None
    personal: ClassVar[bool] = True
    product_ids_: np.ndarray | None = field(default=None, init=False, repr=False)
    item_factors_: np.ndarray | None = field(default=None, init=False, repr=False)
    _gram: np.ndarray | None = field(default=None, init=False, repr=False)
    _item_outer: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("factors", "iterations", "cg_steps", "max_fit_customers"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1) and not (name == "max_fit_customers" and value is None):
                raise ModelInputError(f"ImplicitAls: {name} must be a positive integer, got {value!r}")
        for name in ("regularization", "alpha"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ModelInputError(f"ImplicitAls: {name} must be a positive number, got {value!r}")

    def fit(self, interactions: Interactions) -> ImplicitAls:
        strength = interactions.matrix.astype(np.float64)
        rng = np.random.default_rng(self.seed)
        if self.max_fit_customers is not None and strength.shape[0] > self.max_fit_customers:
            strength = strength[np.sort(rng.choice(strength.shape[0], self.max_fit_customers, replace=False))]
        by_product = strength.T.tocsr()
        item_factors = rng.standard_normal((strength.shape[1], self.factors)) * 0.01
        customer_factors = np.zeros((strength.shape[0], self.factors))
        for _ in range(self.iterations):
            customer_factors = _conjugate_gradient(strength, item_factors, customer_factors, self)
            item_factors = _conjugate_gradient(by_product, customer_factors, item_factors, self)
        self.item_factors_ = item_factors
        self._gram = item_factors.T @ item_factors + self.regularization * np.eye(self.factors)
        self._item_outer = (item_factors[:, :, None] * item_factors[:, None, :]).reshape(len(item_factors),
                                                                                    self.factors ** 2)
        self.product_ids_ = interactions.product_ids
        return self

    def score(self, rows: sparse.csr_matrix) -> np.ndarray:
        """Dense scores (rows x products, float32): size the batch accordingly (`recommend` does)."""
        _require_fitted(self, self.item_factors_)
        rows = sparse.csr_matrix(rows, dtype=np.float64)
        customer_factors = np.zeros((rows.shape[0], self.factors))
        for lo, hi in _row_blocks(rows.indptr, _SOLVE_NNZ, _FOLD_IN_ROWS):
            block = rows[lo:hi]
            extra = block.copy()
            extra.data = self.alpha * extra.data  # confidence - 1
            normal = (extra @ self._item_outer).reshape(hi - lo, self.factors, self.factors) + self._gram
            extra.data += 1.0
            target = extra @ self.item_factors_
            customer_factors[lo:hi] = np.linalg.solve(normal, target[..., None])[..., 0]
        # Computed in float64 and stored in float32: the last bits, which the BLAS kernel chosen for a batch's shape
        # may change, are rounded away, so a customer's ranking does not depend on the batch they were scored in.
        return (customer_factors @ self.item_factors_.T).astype(np.float32)


@dataclass
class Popularity:
    """The baseline: every customer gets the products by recency-weighted purchase strength across the shop."""

    personal: ClassVar[bool] = False
    product_ids_: np.ndarray | None = field(default=None, init=False, repr=False)
    popularity_: np.ndarray | None = field(default=None, init=False, repr=False)

    def fit(self, interactions: Interactions) -> Popularity:
        self.popularity_ = _column_sums(interactions.purchases)
        self.product_ids_ = interactions.product_ids
        return self

    def score(self, rows: sparse.csr_matrix) -> sparse.csr_matrix:
        """The SHORTLIST best-sellers for every row (sparse): a list never reaches further down the sales order
        than its exclusions plus its candidates, and past the shortlist the shop's best-seller fill is the same
        order anyway."""
        _require_fitted(self, self.popularity_)
        top = _shortlist(self.popularity_, np.zeros(len(self.popularity_), dtype=np.int64), 1, SHORTLIST)[0]
        top = top[top >= 0]
        top = top[self.popularity_[top] > 0]
        return _repeat_rows(rows.shape[0], top, self.popularity_[top], len(self.popularity_))


@dataclass
class CategoryPopularity:
    """Personal popularity: P(category | customer) x P(product | category). A customer's interaction strength shared
    out over categories, times each product's share of its category's recency-weighted purchases (all-event strength
    breaks ties between products without sales). The simple model of a shop whose customers keep to their categories:
    it knows what a customer likes in kind, not which companions go with what they bought.
    `categories`: product_id -> category; a product it does not name (or a null category) is in a category of its own
    kind, "unknown". Its picks are reported as category best-sellers."""

    categories: pd.Series
    personal: ClassVar[bool] = True
    pick_reason: ClassVar[str] = "category_bestseller"
    product_ids_: np.ndarray | None = field(default=None, init=False, repr=False)
    in_category_: sparse.csr_matrix | None = field(default=None, init=False, repr=False)
    top_: np.ndarray | None = field(default=None, init=False, repr=False)  # categories x SHORTLIST columns (-1: none)
    top_share_: np.ndarray | None = field(default=None, init=False, repr=False)  # their shares of the category

    def __post_init__(self) -> None:
        if not isinstance(self.categories, pd.Series):
            raise ModelInputError(f"CategoryPopularity: categories must be a pandas Series indexed by product_id, got "
                                  f"{type(self.categories).__name__}")

    def fit(self, interactions: Interactions) -> CategoryPopularity:
        named = self.categories[~self.categories.index.duplicated()].astype(object)
        labels = named.reindex(interactions.product_ids).where(lambda c: c.notna(), "\x00unknown").to_numpy()
        code, categories = pd.factorize(labels, sort=True)
        products = len(code)
        self.in_category_ = sparse.csr_matrix((np.ones(products), (np.arange(products), code)),
                                              shape=(products, len(categories)))
        strength = _column_sums(interactions.purchases).astype(np.float64)
        strength += 1e-6 * _column_sums(interactions.matrix)
        totals = np.asarray(self.in_category_.T @ strength).ravel()
        within = np.divide(strength, totals[code], out=np.zeros(products), where=totals[code] > 0)
        self.top_, self.top_share_ = _shortlist(within, code, len(categories), SHORTLIST)
        self.product_ids_ = interactions.product_ids
        return self

    def score(self, rows: sparse.csr_matrix) -> sparse.csr_matrix:
        """Sparse: each of a row's categories contributes its SHORTLIST best-sellers (the cap keeps a list to a few
        products per category, so deeper ones could only be reached past a customer's SHORTLIST exclusions there)."""
        _require_fitted(self, self.in_category_)
        by_category = sparse.csr_matrix(sparse.csr_matrix(rows, dtype=np.float64) @ self.in_category_)
        totals = np.asarray(by_category.sum(axis=1)).ravel()
        coo = by_category.tocoo()
        keep = coo.data > 0
        r, c, share = coo.row[keep], coo.col[keep], coo.data[keep] / totals[coo.row[keep]]
        depth = self.top_.shape[1]
        values = (share[:, None] * self.top_share_[c]).ravel()
        columns = self.top_[c].ravel()
        row_of = np.repeat(r, depth)
        present = (columns >= 0) & (values > 0)
        return sparse.csr_matrix((values[present].astype(np.float32), (row_of[present], columns[present])),
                                 shape=(rows.shape[0], len(self.product_ids_)))


@dataclass
class Hybrid:
    """The average of several models' scores, each scaled to its own best score per customer (1): neighbours find
    companions, category popularity finds kinds, popularity steadies both where a customer's history is thin.
    Personal when any part is; its picks are reported as a personal model's."""

    parts: tuple
    personal: ClassVar[bool] = True
    product_ids_: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.parts:
            raise ModelInputError("Hybrid: give at least one model to average")

    def fit(self, interactions: Interactions) -> Hybrid:
        for part in self.parts:
            if part.product_ids_ is not interactions.product_ids:  # a part fitted on these very interactions is kept
                part.fit(interactions)
        self.product_ids_ = interactions.product_ids
        return self

    def score(self, rows: sparse.csr_matrix) -> np.ndarray | sparse.csr_matrix:
        """Sparse when every part's scores are (their union of candidates), else dense."""
        _require_fitted(self, self.product_ids_)
        parts = [part.score(rows) for part in self.parts]
        if all(sparse.issparse(scores) for scores in parts):
            total = sparse.csr_matrix((rows.shape[0], len(self.product_ids_)), dtype=np.float64)
            for scores in parts:
                scores = sparse.csr_matrix(scores, dtype=np.float64)
                best = scores.max(axis=1).toarray().ravel() if scores.shape[1] else np.zeros(rows.shape[0])
                scale = np.divide(1.0, best, out=np.zeros_like(best), where=best > 0)
                total = total + sparse.diags(scale) @ scores
            return sparse.csr_matrix(total / len(parts), dtype=np.float32)
        total = np.zeros((rows.shape[0], len(self.product_ids_)))
        for scores in parts:
            scores = scores.toarray() if sparse.issparse(scores) else np.asarray(scores, dtype=np.float64)
            best = scores.max(axis=1, keepdims=True) if scores.shape[1] else np.zeros((rows.shape[0], 1))
            total += np.divide(scores, best, out=np.zeros_like(scores, dtype=np.float64), where=best > 0)
        return (total / len(parts)).astype(np.float32)


def recommend(model: Recommender, interactions: Interactions, products: pd.DataFrame, *, n: int = 10,
              max_category_share: float = 0.4, replenishable_rate: float = 0.3, batch_rows: int = 10_000,
              affinity_category: pd.Series | None = None) -> pd.DataFrame:
    """Top-n lists: customer_id, rank (1..n), product_id, score, reason; sorted by customer_id and rank.

    Customers: everyone in `interactions` plus everyone in `affinity_category` (index customer_id, value a category;
    null for none). Products: `products` (product_id, category, is_available, repeat_purchase_rate); a product the
    model knows but the catalogue does not is never recommended. Each list walks one sequence:

    1. the model's picks: its best 5 * n products with a positive score for the customer, best first (none for a
       customer without interactions: a row of zeros tells the model nothing);
    2. the customer's affinity category's best-sellers (when they have one, history or not);
    3. the shop's best-sellers: every available product by recency-weighted purchase strength, then all-event
       strength (a shop without sales yet still has an order), then product_id.

    skipping excluded products (unavailable; bought at or before T unless repeat_purchase_rate >= replenishable_rate,
    a null rate counting as not replenishable) and repeats, and taking at most max(1, floor(max_category_share * n))
    products per category (a null category is one category). If the whole walk cannot fill n that way, the cap is
    relaxed: the products it held back join in walk order until the list is full. So a list has n products whenever
    n are eligible for the customer, fewer only when the catalogue cannot supply them. Ranks follow the walk; ties in
    any score break by product_id, so the same input gives the same output whatever `batch_rows` is.

    score: the model's score for its picks, NaN for fills. reason: for a personal model's pick, "viewed" when the
    customer viewed or cart-added that very product, or has no purchase at all (their scores come from browsing
    only), else "bought_together" (scored through what they bought); "category_bestseller" and "bestseller" for the
    fills and for every pick of a non-personal model (Popularity).

    `batch_rows` customers are assembled at a time (memory grows with it: about 11 * n candidates per customer);
    within a batch the model scores slices of at most `_MAX_DENSE_CELLS` / products customers, each cut at once to
    its top candidates. Raises ModelInputError for an unfitted model or one fitted on other interactions, a missing
    products column, duplicate or null product ids, a null is_available, a non-numeric repeat_purchase_rate."""
    frames = list(recommend_batches(model, interactions, products, n=n, max_category_share=max_category_share,
                                    replenishable_rate=replenishable_rate, batch_rows=batch_rows,
                                    affinity_category=affinity_category))
    if not frames:
        return _recommendation_frame(np.array([], dtype=str), np.array([], dtype=np.int64), np.array([], dtype=str),
                                     np.array([]), np.array([], dtype=object))
    return pd.concat(frames, ignore_index=True)


def recommend_batches(model: Recommender, interactions: Interactions, products: pd.DataFrame, *, n: int = 10,
                      max_category_share: float = 0.4, replenishable_rate: float = 0.3, batch_rows: int = 10_000,
                      affinity_category: pd.Series | None = None, customer_ids: np.ndarray | None = None,
                      threads: int = 1) -> Iterator[pd.DataFrame]:
    """`recommend`'s lists, `batch_rows` customers at a time (in customer_id order): a million customers' lists are
    never all in memory; `threads` of them are computed at once (each batch is independent; they are yielded in
    order). `customer_ids`: list exactly these customers (one the interactions do not hold is listed as a customer
    without history), e.g. only those an evaluation measures; the shop's best-sellers are still those of all the
    interactions. Arguments are checked before the first batch."""
    _check_recommend_arguments(n, max_category_share, replenishable_rate, batch_rows)
    if not (isinstance(threads, int) and threads >= 1):
        raise ModelInputError(f"recommend: threads must be a positive integer, got {threads!r}")
    _check_model(model, interactions)
    catalogue = _Catalogue.build(products, interactions, replenishable_rate)
    customers, affinity = _customers(interactions, affinity_category, catalogue)
    if customer_ids is not None:
        wanted = np.unique(_ids(pd.Series(customer_ids), "customer_ids", "customer_id").to_numpy(dtype=str))
        known = _positions(customers, wanted)
        customers, affinity = wanted, np.where(known >= 0, affinity[known], -1)
    row_of = _positions(interactions.customer_ids, customers)
    cap = max(1, math.floor(max_category_share * n + 1e-9))  # 1e-9: 0.3 * 10 is 3.0000000000000004 in floats

    def batch(lo: int) -> pd.DataFrame:
        return _recommend_batch(model, interactions, catalogue, customers[lo:lo + batch_rows],
                                row_of[lo:lo + batch_rows], affinity[lo:lo + batch_rows], n=n, cap=cap)

    def batches() -> Iterator[pd.DataFrame]:
        with ThreadPoolExecutor(threads) as pool:  # in order, `threads` batches ahead at most
            ahead: deque[Future] = deque()
            for lo in range(0, len(customers), batch_rows):
                ahead.append(pool.submit(batch, lo))
                if len(ahead) > threads:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()

    return batches()


def evaluate(recommendations: pd.DataFrame, later_purchases: pd.DataFrame, interactions: Interactions, *,
             k: int = 10, catalogue_size: int, groups: pd.Series | None = None) -> dict[str, float]:
    """HitRate@k, Recall@k and NDCG@k of the lists on purchases after T, and catalogue coverage.

    Only new-to-customer purchases count: a later purchase of a product the customer bought at or before T (in
    `interactions.bought`) is neither a hit nor in the denominator, and repeated purchases of a product count once.
    Evaluated: every customer with at least one such purchase, including those given no list (a miss: they were
    mailed nothing useful). recall = hits / new products bought; NDCG with binary gains, ideal DCG over
    min(k, new products bought). coverage: distinct products in the top k of all lists / catalogue_size.
    No evaluated customer: the three rates are NaN and customers is 0.
    `groups` (customer_id -> a label): also "hit_rate_by_group", {label: (customers, HitRate@k)} of the evaluated
    customers in each group."""
    _check_columns(recommendations, ("customer_id", "rank", "product_id"), "recommendations")
    _check_columns(later_purchases, ("customer_id", "product_id"), "later_purchases")
    if not (isinstance(k, int) and k >= 1):
        raise ModelInputError(f"evaluate: k must be a positive integer, got {k!r}")
    if not (isinstance(catalogue_size, int | np.integer) and catalogue_size >= 1):
        raise ModelInputError(f"evaluate: catalogue_size must be a positive integer, got {catalogue_size!r}")
    later = pd.DataFrame({
        "customer_id": _ids(later_purchases["customer_id"], "later_purchases", "customer_id").to_numpy(dtype=str),
        "product_id": _ids(later_purchases["product_id"], "later_purchases", "product_id").to_numpy(dtype=str),
    }).drop_duplicates()
    customer_pos = _positions(interactions.customer_ids, later["customer_id"].to_numpy(dtype=str))
    product_pos = _positions(interactions.product_ids, later["product_id"].to_numpy(dtype=str))
    known = (customer_pos >= 0) & (product_pos >= 0)
    rebought = np.zeros(len(later), dtype=bool)
    rebought[known] = np.isin(customer_pos[known] * len(interactions.product_ids) + product_pos[known],
                              _cell_keys(interactions.bought))
    new = later[~rebought]
    relevant = new.groupby("customer_id").size().rename("relevant")

    ranks = pd.to_numeric(recommendations["rank"], errors="coerce")
    top = pd.DataFrame({"customer_id": recommendations["customer_id"].astype(str).to_numpy(dtype=str),
                        "rank": ranks.to_numpy(dtype=float),
                        "product_id": recommendations["product_id"].astype(str).to_numpy(dtype=str)})
    top = top[top["rank"] <= k].sort_values(["customer_id", "rank"]).drop_duplicates(["customer_id", "product_id"])
    hits = top.merge(new, on=["customer_id", "product_id"], how="inner")
    hits["gain"] = 1.0 / np.log2(hits["rank"] + 1.0)
    per_customer = hits.groupby("customer_id").agg(hits=("gain", "size"), dcg=("gain", "sum"))
    table = relevant.to_frame().join(per_customer, how="left").fillna(0.0)
    coverage = float(top["product_id"].nunique() / catalogue_size)
    by_group = {}
    if groups is not None:
        label = pd.Series(groups.to_numpy(), index=groups.index.astype(str)).reindex(table.index)
        hit = (table["hits"] > 0).groupby(label.to_numpy(), sort=False)
        by_group = {"hit_rate_by_group": {key: (int(count), float(mean)) for key, count, mean in
                                          zip(hit.mean().index, hit.size(), hit.mean(), strict=True)}}
    if table.empty:
        return {"hit_rate": float("nan"), "recall": float("nan"), "ndcg": float("nan"), "coverage": coverage,
                "customers": 0, **by_group}
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[np.minimum(table["relevant"].to_numpy(), k) - 1]
    return {
        "hit_rate": float((table["hits"] > 0).mean()),
        "recall": float((table["hits"] / table["relevant"]).mean()),
        "ndcg": float((table["dcg"].to_numpy() / ideal).mean()),
        "coverage": coverage,
        "customers": len(table),
        **by_group,
    }


# --- building interactions ------------------------------------------------------------------------------------------


def _kind_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    merged = dict(DEFAULT_WEIGHTS)
    for kind, weight in (weights or {}).items():
        if kind not in DEFAULT_WEIGHTS:
            raise ModelInputError(f"weights: unknown kind {kind!r}; known kinds: {', '.join(sorted(DEFAULT_WEIGHTS))}")
        if not (isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0):
            raise ModelInputError(f"weights: the weight of {kind!r} must be a number >= 0, got {weight!r}")
        merged[kind] = float(weight)
    return merged


def _utc_times(column: pd.Series) -> pd.Series:
    """occurred_at in UTC; naive timestamps are UTC already (the warehouse's `_at` convention), as in ml.checks."""
    if not isinstance(column.dtype, pd.DatetimeTZDtype):
        try:
            column = pd.to_datetime(column, utc=True)
        except (TypeError, ValueError) as error:
            raise ModelInputError(f"events: column occurred_at is not timestamps ({error})") from error
    null = column.isna().to_numpy()
    if null.any():
        raise ModelInputError(f"events: column occurred_at has {int(null.sum())} null value(s) (first at row "
                              f"{column.index[np.argmax(null)]!r})")
    return column.dt.tz_convert("UTC")


def _ids(column: pd.Series, where: str, name: str) -> pd.Series:
    """The ids as text; a categorical stays one (its categories as sorted text), so millions of events are never
    millions of Python strings."""
    null = column.isna().to_numpy()
    if null.any():
        raise ModelInputError(f"{where}: column {name} has {int(null.sum())} null value(s) (first at row "
                              f"{column.index[np.argmax(null)]!r})")
    if isinstance(column.dtype, pd.CategoricalDtype):
        text = column.cat.rename_categories(column.cat.categories.astype(str))
        return text.cat.reorder_categories(sorted(text.cat.categories))
    return column.astype(str)


def _summed(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> sparse.csr_matrix:
    """Cells summed in float64 (in the order given), stored as float32; cells that sum to 0 are dropped, so a
    customer whose events all weigh 0 is a row of zeros."""
    matrix = sparse.coo_matrix((values, (rows, cols)), shape=shape, dtype=np.float64).tocsr()
    matrix.sum_duplicates()
    matrix = matrix.astype(np.float32)
    matrix.eliminate_zeros()
    return matrix


def _flags(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sparse.csr_matrix:
    matrix = sparse.coo_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=shape).tocsr()
    matrix.sum_duplicates()  # counted in int32: an int8 count would wrap after 127 events
    matrix.data[:] = 1
    return matrix.astype(np.int8)


def _empty_interactions(as_of: pd.Timestamp) -> Interactions:
    def empty(dtype: type) -> sparse.csr_matrix:
        return sparse.csr_matrix((0, 0), dtype=dtype)

    return Interactions(customer_ids=np.array([], dtype=str), product_ids=np.array([], dtype=str),
                        matrix=empty(np.float32), bought=empty(np.int8), purchases=empty(np.float32),
                        browsed=empty(np.int8), as_of=as_of)


# --- models ---------------------------------------------------------------------------------------------------------


def _require_fitted(model: object, state: object) -> None:
    if state is None:
        raise ModelInputError(f"{type(model).__name__} is not fitted: call fit(interactions) first")


def _column_sums(matrix: sparse.csr_matrix) -> np.ndarray:
    return np.asarray(matrix.astype(np.float64).sum(axis=0)).ravel()


def _bm25(items: sparse.csr_matrix, k1: float, b: float) -> sparse.csr_matrix:
    """BM25 weights of products (rows, the documents) x customers (columns, the terms); see ItemItem."""
    n_items = items.shape[0]
    if n_items == 0 or items.nnz == 0:
        return items.copy()
    coo = items.tocoo()
    document_frequency = np.bincount(coo.col, minlength=items.shape[1])
    idf = np.log1p((n_items - document_frequency + 0.5) / (document_frequency + 0.5))
    lengths = np.asarray(items.sum(axis=1)).ravel()
    length_norm = (1.0 - b) + b * lengths / lengths.mean()
    data = coo.data * (k1 + 1.0) / (k1 * length_norm[coo.row] + coo.data) * idf[coo.col]
    weighted = sparse.csr_matrix((data, (coo.row, coo.col)), shape=items.shape)
    weighted.eliminate_zeros()
    return weighted


def _unit_rows(items: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(np.asarray(items.multiply(items).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sparse.csr_matrix(sparse.diags(scale) @ items)


def _top_neighbours(weighted: sparse.csr_matrix, neighbours: int) -> sparse.csr_matrix:
    """products x products similarity (weighted @ weighted.T), the diagonal dropped and each row cut to its
    `neighbours` largest positive entries; computed in blocks of products so no dense products^2 block is held."""
    n_items = weighted.shape[0]
    by_customer = weighted.T.tocsr()
    step = max(1, _MAX_DENSE_CELLS // max(n_items, 1))
    rows, cols, values = [], [], []
    for lo in range(0, n_items, step):
        hi = min(lo + step, n_items)
        block = weighted[lo:hi] @ by_customer
        if block.nnz > _SPARSE_BLOCK_SHARE * block.shape[0] * block.shape[1]:
            block = block.toarray()
            block[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
            r, c, v = _top_dense(block, neighbours)
        else:  # most products share customers with few others: cut the stored entries, not a dense block of zeros
            coo = block.tocoo()
            r, c, v = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
            keep = (v > 0) & (c != r + lo)
            r, c, v = _keep_top(r[keep], c[keep], v[keep], neighbours)
        rows.append(r + lo)
        cols.append(c)
        values.append(v)
    if not rows:
        return sparse.csr_matrix((n_items, n_items), dtype=np.float32)
    return sparse.csr_matrix((np.concatenate(values).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n_items, n_items))


def _row_blocks(indptr: np.ndarray, max_nnz: int, max_rows: int) -> Iterator[tuple[int, int]]:
    """Row ranges holding at most max_nnz stored values (a longer row alone) and at most max_rows rows."""
    n_rows, lo = len(indptr) - 1, 0
    while lo < n_rows:
        hi = int(np.searchsorted(indptr, indptr[lo] + max_nnz, side="right")) - 1
        hi = min(max(hi, lo + 1), n_rows, lo + max_rows)
        yield lo, hi
        lo = hi


def _conjugate_gradient(strength: sparse.csr_matrix, fixed: np.ndarray, start: np.ndarray,
                        model: ImplicitAls) -> np.ndarray:
    """One ALS half-sweep: for each row u of `strength`, `cg_steps` conjugate-gradient iterations from start[u]
    towards the solution of (F'C_uF + reg I) x = F'C_u p_u, F the fixed side's factors."""
    gram = fixed.T @ fixed + model.regularization * np.eye(model.factors)
    solved = start.copy()
    for lo, hi in _row_blocks(strength.indptr, _SOLVE_NNZ, _SOLVE_ROWS):
        block = strength[lo:hi]
        extra = model.alpha * block.data  # confidence - 1, per interaction
        owner = np.repeat(np.arange(hi - lo), np.diff(block.indptr))
        fixed_at = fixed[block.indices]
        target = sparse.csr_matrix((1.0 + extra, block.indices, block.indptr), shape=block.shape) @ fixed
        x = solved[lo:hi]
        residual = target - _normal_times(x, gram, extra, fixed_at, owner, block, fixed)
        direction = residual.copy()
        residual_norm = np.einsum("ij,ij->i", residual, residual)
        for _ in range(model.cg_steps):
            curved = _normal_times(direction, gram, extra, fixed_at, owner, block, fixed)
            curvature = np.einsum("ij,ij->i", direction, curved)
            step = np.divide(residual_norm, curvature, out=np.zeros_like(curvature), where=curvature > 0)
            x = x + step[:, None] * direction
            residual = residual - step[:, None] * curved
            next_norm = np.einsum("ij,ij->i", residual, residual)
            beta = np.divide(next_norm, residual_norm, out=np.zeros_like(next_norm), where=residual_norm > 0)
            direction = residual + beta[:, None] * direction
            residual_norm = next_norm
        solved[lo:hi] = x
    return solved


def _normal_times(x: np.ndarray, gram: np.ndarray, extra: np.ndarray, fixed_at: np.ndarray, owner: np.ndarray,
                  block: sparse.csr_matrix, fixed: np.ndarray) -> np.ndarray:
    """(F'F + reg I) x_u + F'(C_u - I)F x_u for every row u of the block, without forming any factors^2 matrix."""
    weights = extra * np.einsum("ij,ij->i", fixed_at, x[owner])
    return x @ gram + sparse.csr_matrix((weights, block.indices, block.indptr), shape=block.shape) @ fixed


# --- list assembly --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Catalogue:
    """The products in catalogue index space (sorted by product_id) and the model's columns mapped into it."""

    product_ids: np.ndarray
    category: np.ndarray  # category code per product
    categories: pd.Index  # code -> category value
    from_model: np.ndarray  # model column -> catalogue index, -1 when the catalogue lacks the product
    model_blocked: np.ndarray  # model column never to recommend: unavailable or not in the catalogue
    model_replenishable: np.ndarray  # model column that may be recommended again to its buyers
    shop_order: np.ndarray  # available products, best-seller first
    category_orders: list[np.ndarray]  # shop_order split by category

    @classmethod
    def build(cls, products: pd.DataFrame, interactions: Interactions, replenishable_rate: float) -> _Catalogue:
        _check_columns(products, PRODUCT_COLUMNS, "products")
        ids = _ids(products["product_id"], "products", "product_id")
        duplicated = ids.duplicated().to_numpy()
        if duplicated.any():
            raise ModelInputError(f"products: column product_id has {int(duplicated.sum())} duplicate(s) (e.g. "
                                  f"{ids[duplicated].iloc[0]!r}); give one row per product")
        order = np.argsort(ids.to_numpy(dtype=str), kind="stable")
        product_ids = ids.to_numpy(dtype=str)[order]
        available_column = products["is_available"]
        if available_column.isna().any():
            raise ModelInputError(f"products: column is_available has {int(available_column.isna().sum())} null "
                                  f"value(s); say True or False for every product")
        if not (pd.api.types.is_bool_dtype(available_column.dtype)
                or pd.api.types.is_numeric_dtype(available_column.dtype)):
            raise ModelInputError(f"products: column is_available must be boolean, got dtype {available_column.dtype}")
        available = available_column.to_numpy(dtype=bool)[order]
        try:
            rate = pd.to_numeric(products["repeat_purchase_rate"], errors="raise").to_numpy(dtype=float)[order]
        except (TypeError, ValueError) as error:
            raise ModelInputError(f"products: column repeat_purchase_rate is not numeric ({error})") from error
        replenishable = np.nan_to_num(rate, nan=-np.inf) >= replenishable_rate
        category, categories = pd.factorize(products["category"].iloc[order], use_na_sentinel=False)
        categories = pd.Index(categories)

        from_model = _positions(product_ids, interactions.product_ids)
        mapped = from_model >= 0
        model_blocked = ~mapped
        model_blocked[mapped] = ~available[from_model[mapped]]
        model_replenishable = np.zeros(len(from_model), dtype=bool)
        model_replenishable[mapped] = replenishable[from_model[mapped]]

        sold = np.zeros(len(product_ids))
        sold[from_model[mapped]] = _column_sums(interactions.purchases)[mapped]
        touched = np.zeros(len(product_ids))
        touched[from_model[mapped]] = _column_sums(interactions.matrix)[mapped]
        candidates = np.flatnonzero(available)
        shop_order = candidates[np.lexsort((candidates, -touched[candidates], -sold[candidates]))]
        shop_category = category[shop_order]
        by_category = np.argsort(shop_category, kind="stable")
        bounds = np.searchsorted(shop_category[by_category], np.arange(len(categories) + 1))
        category_orders = [shop_order[by_category[bounds[code]:bounds[code + 1]]] for code in range(len(categories))]
        return cls(product_ids=product_ids, category=category, categories=categories, from_model=from_model,
                   model_blocked=model_blocked, model_replenishable=model_replenishable, shop_order=shop_order,
                   category_orders=category_orders)


def _check_recommend_arguments(n: int, max_category_share: float, replenishable_rate: float, batch_rows: int) -> None:
    if not (isinstance(n, int) and n >= 1):
        raise ModelInputError(f"recommend: n must be a positive integer, got {n!r}")
    if not (isinstance(max_category_share, int | float) and 0 < max_category_share <= 1):
        raise ModelInputError(f"recommend: max_category_share must be in (0, 1], got {max_category_share!r}")
    if not (isinstance(replenishable_rate, int | float) and math.isfinite(replenishable_rate)):
        raise ModelInputError(f"recommend: replenishable_rate must be a number, got {replenishable_rate!r}")
    if not (isinstance(batch_rows, int) and batch_rows >= 1):
        raise ModelInputError(f"recommend: batch_rows must be a positive integer, got {batch_rows!r}")


def _check_model(model: Recommender, interactions: Interactions) -> None:
    fitted = getattr(model, "product_ids_", None)
    if fitted is None:
        raise ModelInputError(f"{type(model).__name__} is not fitted: call fit(interactions) first")
    if len(fitted) != len(interactions.product_ids) or not np.array_equal(fitted, interactions.product_ids):
        raise ModelInputError(f"{type(model).__name__} was fitted on other interactions ({len(fitted)} products; these "
                              f"have {len(interactions.product_ids)}): fit it on the interactions you recommend from")


def _customers(interactions: Interactions, affinity_category: pd.Series | None,
               catalogue: _Catalogue) -> tuple[np.ndarray, np.ndarray]:
    """All customers to list (sorted) and each one's affinity category code (-1: none)."""
    customers = interactions.customer_ids
    if affinity_category is None:
        return customers, np.full(len(customers), -1, dtype=np.int64)
    if not isinstance(affinity_category, pd.Series):
        raise ModelInputError(f"affinity_category must be a pandas Series indexed by customer_id, got "
                              f"{type(affinity_category).__name__}")
    index = affinity_category.index.to_series()
    ids = _ids(index, "affinity_category", "index (customer_id)").to_numpy(dtype=str)
    duplicated = pd.Series(ids).duplicated().to_numpy()
    if duplicated.any():
        raise ModelInputError(f"affinity_category: {int(duplicated.sum())} duplicated customer_id(s) in the index "
                              f"(e.g. {ids[duplicated][0]!r}); give one category per customer")
    customers = np.union1d(customers, ids).astype(str)
    codes = np.where(affinity_category.notna().to_numpy(),
                     catalogue.categories.get_indexer(affinity_category.to_numpy(dtype=object)), -1)
    affinity = np.full(len(customers), -1, dtype=np.int64)
    affinity[_positions(customers, ids)] = codes
    return customers, affinity


def _recommend_batch(model: Recommender, interactions: Interactions, catalogue: _Catalogue, customer_ids: np.ndarray,
                     rows_index: np.ndarray, affinity: np.ndarray, *, n: int, cap: int) -> pd.DataFrame:
    n_rows, n_products = len(customer_ids), len(catalogue.product_ids)
    rows = _take_rows(interactions.matrix, rows_index)
    bought_r, bought_c = _cells(_take_rows(interactions.bought, rows_index))
    browsed_r, browsed_c = _cells(_take_rows(interactions.browsed, rows_index))
    has_purchase = np.bincount(bought_r, minlength=n_rows) > 0

    # Bought, not replenishable: never again. In model columns (before the model's top candidates are taken, or its
    # favourite would always be what they already have) and in catalogue indices (for the fills).
    never_again = ~catalogue.model_replenishable[bought_c]
    excluded_r, excluded_c = bought_r[never_again], bought_c[never_again]
    excluded_cat = catalogue.from_model[excluded_c]
    mapped = excluded_cat >= 0
    excluded_keys = np.unique(excluded_r[mapped] * n_products + excluded_cat[mapped])
    excluded_count = np.bincount(excluded_r[mapped], minlength=n_rows)

    model_r, model_item, model_score = _model_candidates(model, rows, excluded_r, excluded_c, catalogue,
                                                         _CANDIDATES_PER_SLOT * n)
    walk = {"picks": _Picks(model_r, model_item, model_score), "affinity": affinity, "excluded_keys": excluded_keys,
            "excluded_count": excluded_count, "catalogue": catalogue, "n": n, "cap": cap}
    chosen, unsettled = _walk(np.arange(n_rows), exact=False, **walk)
    parts = [chosen]
    for group in _exact_groups(unsettled, excluded_count, catalogue, n=n, cap=cap):
        settled, _ = _walk(group, exact=True, **walk)
        parts.append(settled)
    r, item, source, score = (np.concatenate([part[i] for part in parts]) for i in range(4))
    order = np.argsort(r, kind="stable")  # each part is in walk order within a customer; parts hold other customers
    r, item, source, score = r[order], item[order], source[order], score[order]

    reason = np.where(source == 1, "category_bestseller", "bestseller").astype(object)
    pick_reason = getattr(model, "pick_reason", None)
    if pick_reason is not None:
        reason[source == 0] = pick_reason
    elif model.personal:
        pick = source == 0
        browsed_keys = catalogue.from_model[browsed_c]
        browsed_keys = np.unique(browsed_r[browsed_keys >= 0] * n_products + browsed_keys[browsed_keys >= 0])
        viewed = np.isin(r * n_products + item, browsed_keys) | ~has_purchase[r]
        reason[pick & viewed] = "viewed"
        reason[pick & ~viewed] = "bought_together"
    return _recommendation_frame(customer_ids[r], _run_positions(r) + 1, catalogue.product_ids[item], score, reason)


@dataclass(frozen=True, eq=False)
class _Picks:
    """The model's candidates for a batch: batch row, catalogue index, score; per row best first."""

    row: np.ndarray
    item: np.ndarray
    score: np.ndarray


def _model_candidates(model: Recommender, rows: sparse.csr_matrix, excluded_r: np.ndarray, excluded_c: np.ndarray,
                      catalogue: _Catalogue, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each customer's k best eligible products by model score (> 0), ties to the smaller product_id."""
    n_columns = rows.shape[1]
    with_history = np.flatnonzero(np.diff(rows.indptr) > 0)
    step = max(1, _MAX_DENSE_CELLS // max(n_columns, 1))
    found = []
    for lo in range(0, len(with_history), step):
        chunk = with_history[lo:lo + step]
        scores = model.score(rows[chunk])
        inside = _member(excluded_r, chunk)
        local_r = np.searchsorted(chunk, excluded_r[inside])
        if sparse.issparse(scores):
            coo = sparse.coo_matrix(scores)
            r, c, v = coo.row, coo.col, coo.data.astype(np.float64)
            keep = (v > 0) & ~catalogue.model_blocked[c]
            excluded = np.unique(local_r.astype(np.int64) * n_columns + excluded_c[inside])
            keep &= ~_member(r.astype(np.int64) * n_columns + c, excluded)
            r, c, v = _keep_top(r[keep], c[keep], v[keep], k)
        else:
            dense = np.array(scores, dtype=np.float64)  # float64: np.partition is faster on it than on float32
            dense[np.isnan(dense)] = -np.inf
            dense[:, catalogue.model_blocked] = -np.inf
            dense[local_r, excluded_c[inside]] = -np.inf
            r, c, v = _top_dense(dense, k)
        found.append((chunk[r], catalogue.from_model[c], v))
    if not found:
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64), np.array([])
    return tuple(np.concatenate([part[i] for part in found]) for i in range(3))


def _walk(rows: np.ndarray, *, exact: bool, picks: _Picks, affinity: np.ndarray, excluded_keys: np.ndarray,
          excluded_count: np.ndarray, catalogue: _Catalogue, n: int, cap: int
          ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """The lists of `rows` (sorted batch rows), vectorised: the walk of `recommend` over the model's picks (source 0),
    the affinity category's best-sellers (1) and the shop's (2). Returns (row, item, source, score) in walk order for
    the rows it settled, and the rows it did not.

    First pass (exact=False): each best-seller sequence is cut at 3 * n + the customer's exclusions. The cut walk
    gives the full walk's list when its n-th pick comes before the first cut that drops products; other rows are
    returned unsettled (a short list, a cap to relax, a small category deep down the sales order).

    Exact pass: every category c, in the category sequence and in the shop's, is cut at its first
    depth = cap + n + (model picks) + (exclusions) products. Past that depth a category has already had cap + n
    eligible, unrepeated products in the walk: it is at its cap, and n products it held back come before any later
    one, so nothing past the depth can make the list, under the cap or relaxed. The affinity category's shop
    products are left out: they repeat its sequence or lie past the depth. This walk is the full walk's list, at
    a cost of about categories x depth per customer instead of the catalogue."""
    n_products = len(catalogue.product_ids)
    n_rows = int(rows.max()) + 1 if len(rows) else 0
    in_rows = _member(picks.row, rows)
    parts_r, parts_item, parts_source = [picks.row[in_rows]], [picks.item[in_rows]], [np.zeros(int(in_rows.sum()))]
    parts_index = [_run_positions(picks.row[in_rows])]
    cut_at = np.full(n_rows, 3, dtype=np.int8)  # the source holding the first cut that drops products; 3: none
    codes = affinity[rows]
    if exact:
        depth = cap + (1 + _CANDIDATES_PER_SLOT) * n + excluded_count
        shop_rank = np.empty(n_products, dtype=np.int64)
        shop_rank[catalogue.shop_order] = np.arange(len(catalogue.shop_order))
        sequences = [(rows[codes == code], catalogue.category_orders[code], 1) for code in np.unique(codes[codes >= 0])]
        sequences += [(rows[codes != code], order, 2) for code, order in enumerate(catalogue.category_orders)]
        for members, order, source in sequences:
            r, index = _expand(members, np.minimum(depth[members], len(order)))
            parts_r.append(r)
            parts_item.append(order[index])
            parts_source.append(np.full(len(r), source))
            parts_index.append(index if source == 1 else shop_rank[order[index]])  # shop: merged in sales order
    else:
        fill = _FILL_PER_SLOT * n + excluded_count
        sequences = [(rows[codes == code], catalogue.category_orders[code], 1) for code in np.unique(codes[codes >= 0])]
        sequences.append((rows, catalogue.shop_order, 2))
        for members, order, source in reversed(sequences):  # shop first: a category cut, earlier, overwrites cut_at
            lengths = np.minimum(fill[members], len(order))
            cut_at[members[lengths < len(order)]] = source
            r, index = _expand(members, lengths)
            parts_r.append(r)
            parts_item.append(order[index])
            parts_source.append(np.full(len(r), source))
            parts_index.append(index)
    r, item = np.concatenate(parts_r), np.concatenate(parts_item)
    source, index = np.concatenate(parts_source).astype(np.int8), np.concatenate(parts_index)
    score = np.full(len(r), np.nan)
    score[:len(parts_r[0])] = picks.score[in_rows]

    # In (row, source, position) order: one int64 key, and the parts are runs already in that order, which a stable
    # sort (timsort) merges; a fifth of lexsort's three full passes.
    order = np.argsort((r.astype(np.int64) * 3 + source) * (int(index.max(initial=0)) + 1) + index, kind="stable")
    r, item, source, score = r[order], item[order], source[order], score[order]
    keys = r * n_products + item
    keep = ~_member(keys, excluded_keys)
    first = np.zeros(len(keys), dtype=bool)
    first[np.unique(keys, return_index=True)[1]] = True  # a product's first place in the walk
    keep &= first
    r, item, source, score = r[keep], item[keep], source[keep], score[keep]

    category = catalogue.category[item]
    by_category = np.argsort(r * len(catalogue.categories) + category, kind="stable")  # walk order within each
    within_category = np.empty(len(r), dtype=np.int64)
    within_category[by_category] = _run_positions(r[by_category], category[by_category])
    under_cap = np.flatnonzero(within_category < cap)
    chosen = under_cap[_run_positions(r[under_cap]) < n]
    count = np.bincount(r[chosen], minlength=n_rows)
    last_source = np.full(n_rows, -1, dtype=np.int8)
    np.maximum.at(last_source, r[chosen], source[chosen])  # sources only grow along a walk: max = the n-th pick's

    settled_row = np.zeros(n_rows, dtype=bool)
    settled_row[rows] = (cut_at[rows] == 3) | ((count[rows] == n) & ((cut_at[rows] == 2) | (last_source[rows] <= 1)))
    relax = settled_row & (count < n)  # the whole walk under the cap is short: the held-back products fill in
    held = np.flatnonzero((within_category >= cap) & relax[r])
    held = held[_run_positions(r[held]) < (n - count)[r[held]]]
    chosen = np.sort(np.concatenate([chosen, held]))
    chosen = chosen[settled_row[r[chosen]]]
    return (r[chosen], item[chosen], source[chosen], score[chosen]), rows[~settled_row[rows]]


def _exact_groups(rows: np.ndarray, excluded_count: np.ndarray, catalogue: _Catalogue, *, n: int,
                  cap: int) -> Iterator[np.ndarray]:
    """`rows` in groups whose exact walks (see `_walk`) hold about `_MAX_DENSE_CELLS` products at most."""
    if len(rows) == 0:
        return
    depth = cap + (1 + _CANDIDATES_PER_SLOT) * n + excluded_count[rows]
    lengths = np.sort([len(order) for order in catalogue.category_orders]).astype(np.int64)
    shorter = np.searchsorted(lengths, depth)  # categories walked whole; the others to `depth`
    size = np.concatenate([[0], np.cumsum(lengths)])[shorter] + depth * (len(lengths) - shorter + 1) + depth
    group = np.cumsum(size) // _MAX_DENSE_CELLS
    bounds = np.flatnonzero(np.diff(group)) + 1
    yield from np.split(rows, bounds)


def _recommendation_frame(customer_ids: np.ndarray, rank: np.ndarray, product_ids: np.ndarray, score: np.ndarray,
                          reason: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": customer_ids.astype(object), "rank": rank.astype(np.int64),
                         "product_id": product_ids.astype(object), "score": score.astype(np.float64),
                         "reason": reason.astype(object)}, columns=list(RECOMMENDATION_COLUMNS))


# --- array helpers --------------------------------------------------------------------------------------------------


def _check_columns(frame: object, columns: tuple[str, ...], where: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ModelInputError(f"{where} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ModelInputError(f"{where}: missing required column(s) {', '.join(missing)} (expected "
                              f"{', '.join(columns)})")


def _positions(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Index of each id in `sorted_ids` (sorted, unique), -1 where absent."""
    if len(sorted_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    position = np.searchsorted(sorted_ids, ids)
    clipped = np.minimum(position, len(sorted_ids) - 1)
    return np.where(sorted_ids[clipped] == ids, clipped, -1).astype(np.int64)


def _take_rows(matrix: sparse.csr_matrix, index: np.ndarray) -> sparse.csr_matrix:
    """The rows of `matrix` at `index`, an empty row where index is -1 (a customer the matrix does not hold)."""
    present = index >= 0
    if matrix.shape[0] == 0 or not present.any():
        return sparse.csr_matrix((len(index), matrix.shape[1]), dtype=matrix.dtype)
    picked = matrix[index[present]]
    lengths = np.zeros(len(index), dtype=np.int64)
    lengths[present] = np.diff(picked.indptr)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return sparse.csr_matrix((picked.data, picked.indices, indptr), shape=(len(index), matrix.shape[1]))


def _cells(matrix: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every stored cell, row-major."""
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return rows, matrix.indices.astype(np.int64)


def _cell_keys(matrix: sparse.csr_matrix) -> np.ndarray:
    rows, cols = _cells(matrix)
    return np.unique(rows * matrix.shape[1] + cols)


def _expand(rows: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """rows[i] repeated lengths[i] times, with positions 0..lengths[i]-1."""
    lengths = lengths.astype(np.int64)
    starts = np.cumsum(lengths) - lengths
    return np.repeat(rows, lengths), np.arange(int(lengths.sum())) - np.repeat(starts, lengths)


def _run_positions(*keys: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal keys (arrays sorted by those keys): 0, 1, 2, ..."""
    size = len(keys[0])
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.zeros(size, dtype=bool)
    starts[0] = True
    for key in keys:
        starts[1:] |= key[1:] != key[:-1]
    return np.arange(size) - np.maximum.accumulate(np.where(starts, np.arange(size), 0))


def _member(values: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    """np.isin(values, sorted_unique) for a sorted array of unique values: a binary search per value."""
    if len(sorted_unique) == 0:
        return np.zeros(len(values), dtype=bool)
    position = np.minimum(np.searchsorted(sorted_unique, values), len(sorted_unique) - 1)
    return sorted_unique[position] == values


def _shortlist(values: np.ndarray, group: np.ndarray, groups: int, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group, its `depth` columns of highest value (ties to the smaller column), padded with -1: (groups x
    depth columns, their values)."""
    order = np.lexsort((np.arange(len(values)), -values, group))
    rank = _run_positions(group[order])
    keep = order[rank < depth]
    top = np.full((groups, depth), -1, dtype=np.int64)
    top_values = np.zeros((groups, depth))
    top[group[keep], rank[rank < depth]] = keep
    top_values[group[keep], rank[rank < depth]] = values[keep]
    return top, top_values


def _repeat_rows(rows: int, columns: np.ndarray, values: np.ndarray, width: int) -> sparse.csr_matrix:
    """`rows` identical sparse rows holding `values` at `columns`."""
    indptr = np.arange(rows + 1, dtype=np.int64) * len(columns)
    return sparse.csr_matrix((np.tile(values.astype(np.float32), rows), np.tile(columns, rows), indptr),
                             shape=(rows, width))


def _keep_top(r: np.ndarray, c: np.ndarray, v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the k largest values, ties to the smaller column; sorted by row, then best first."""
    r, c, v = _at_or_above_kth(r, c, v, k)  # the sort below then sees about k entries a row, not every one
    order = np.lexsort((c, -v, r))
    r, c, v = r[order], c[order], v[order]
    keep = _run_positions(r) < k
    return r[keep].astype(np.int64), c[keep].astype(np.int64), v[keep]


def _at_or_above_kth(r: np.ndarray, c: np.ndarray, v: np.ndarray,
                     k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The entries at or above their row's k-th largest value (every entry of a row with k or fewer): each row's top k
    with its ties, for `_keep_top` to sort exactly. One partition of the rows padded to the longest, instead of a three-key
    sort of every entry (7.2 s of 11.5 s for 50,000 customers' lists). The padded block holds at most as many cells
    as a dense slice of the same rows (a row has at most one entry per column)."""
    if len(r) == 0:
        return r, c, v
    if np.any(r[1:] < r[:-1]):
        order = np.argsort(r, kind="stable")
        r, c, v = r[order], c[order], v[order]
    counts = np.bincount(r)
    long_rows = np.flatnonzero(counts > k)
    if len(long_rows) == 0:
        return r, c, v
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.full(len(counts), -1, dtype=np.int64)
    slot[long_rows] = np.arange(len(long_rows))
    in_long = slot[r] >= 0
    width = int(counts[long_rows].max())
    padded = np.full((len(long_rows), width), -np.inf)
    padded[slot[r[in_long]], (np.arange(len(r)) - starts[r])[in_long]] = v[in_long]
    threshold = np.full(len(counts), -np.inf)
    threshold[long_rows] = np.partition(padded, width - k, axis=1)[:, width - k]
    keep = v >= threshold[r]
    return r[keep], c[keep], v[keep]


def _top_dense(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_keep_top` of the positive entries of a dense block, without sorting whole rows: everything at or above each
    row's k-th largest value is kept (ties included), then cut exactly."""
    n_columns = values.shape[1]
    if n_columns > k:
        kth = np.partition(values, n_columns - k, axis=1)[:, n_columns - k]
        mask = (values >= kth[:, None]) & (values > 0)
    else:
        mask = values > 0
    r, c = np.nonzero(mask)
    return _keep_top(r, c, values[r, c], k)
