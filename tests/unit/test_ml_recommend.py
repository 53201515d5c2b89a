"""Product recommendations (ml.recommend) on shops built here with a known structure: the collaborative models find
the group a customer buys in and beat best-sellers on new purchases after T; exclusions, the category cap, cold
starts and a one-product catalogue behave as a marketer expects; lists do not depend on batching or row order; bad
events fail with a message that names them; the metrics match values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ml.errors import ModelInputError
from ml.recommend import (
    CategoryPopularity,
    Hybrid,
    ImplicitAls,
    Interactions,
    ItemItem,
    Popularity,
    build_interactions,
    evaluate,
    recommend,
    recommend_batches,
)

AS_OF = pd.Timestamp("2024-06-01", tz="UTC")
# Customers per group; each group buys within its own 12 products. Group 0 is the biggest, so the shop's
# best-sellers are its products and popularity serves the other groups badly.
GROUP_SIZES = (120, 60, 50, 40, 40, 30, 30, 30)
PER_GROUP = 12
CATEGORIES = 4  # product i is in category i % 4: every group spans all four
# The synthetic shop's categories (other cases' products are not named here: one "unknown" category to these models)
SHOP_CATEGORIES = pd.Series({f"p{i:03d}": f"cat{i % CATEGORIES}" for i in range(len(GROUP_SIZES) * PER_GROUP)})
MODELS = {
    "item_item_bm25": ItemItem,
    "item_item_cosine": lambda: ItemItem(weighting="cosine"),
    "als": ImplicitAls,
    # product factors from half the customers (as at scale); the other half is folded in at scoring like everyone
    "als_sampled": lambda: ImplicitAls(max_fit_customers=200),
    "category_popularity": lambda: CategoryPopularity(SHOP_CATEGORIES),
    "hybrid": lambda: Hybrid((ItemItem(), CategoryPopularity(SHOP_CATEGORIES), Popularity())),
    "popularity": Popularity,
}


def event(customer: str, product: str, kind: str, days_before: float = 0.0) -> dict[str, object]:
    return {"customer_id": customer, "product_id": product, "kind": kind,
            "occurred_at": AS_OF - pd.Timedelta(days=days_before)}


def catalogue(product_ids: list[str], *, category: object = "all", unavailable: tuple[str, ...] = (),
              rates: dict[str, float] | None = None) -> pd.DataFrame:
    rates = rates or {}
    return pd.DataFrame({
        "product_id": product_ids,
        "category": [category(p) if callable(category) else category for p in product_ids],
        "is_available": [p not in unavailable for p in product_ids],
        "repeat_purchase_rate": [rates.get(p, 0.05) for p in product_ids],
    })


def synthetic_shop(seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(events up to T, products, purchases in the 30 days after T). Each customer buys 4 of their group's products
    before T (popular ones more often), views 2 more, and buys 2 new ones of the group after T; 10 browsers only
    viewed group 0's products."""
    rng = np.random.default_rng(seed)
    product_ids = [f"p{i:03d}" for i in range(len(GROUP_SIZES) * PER_GROUP)]
    appeal = 1.0 / np.arange(1, PER_GROUP + 1)
    appeal /= appeal.sum()
    events, later = [], []
    for group, size in enumerate(GROUP_SIZES):
        own = product_ids[group * PER_GROUP:(group + 1) * PER_GROUP]
        for j in range(size):
            customer = f"g{group}c{j:03d}"
            picks = rng.choice(PER_GROUP, size=8, replace=False, p=appeal)
            for p in picks[:4]:
                events.append(event(customer, own[p], "view", rng.uniform(1, 180)))
                events.append(event(customer, own[p], "purchase", rng.uniform(1, 180)))
            events += [event(customer, own[p], "view", rng.uniform(1, 180)) for p in picks[4:6]]
            later += [{"customer_id": customer, "product_id": own[p]} for p in picks[6:]]
    for j in range(10):
        events += [event(f"browser{j}", product_ids[p], "view", 5.0 + j) for p in (0, 1, 2)]
    products = catalogue(product_ids, category=lambda p: f"cat{int(p[1:]) % CATEGORIES}")
    return pd.DataFrame(events), products, pd.DataFrame(later)


@pytest.fixture(scope="module")
def shop() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Interactions]:
    events, products, later = synthetic_shop()
    return events, products, later, build_interactions(events, AS_OF)


@pytest.fixture(scope="module")
def fitted(shop) -> dict[str, object]:
    interactions = shop[3]
    return {name: make().fit(interactions) for name, make in MODELS.items()}


# --- interactions ---------------------------------------------------------------------------------------------------


def test_interactions_weigh_events_by_kind_and_halve_them_every_half_life():
    events = pd.DataFrame([
        event("c2", "p2", "cart_add", 180),  # 2 * 0.25
        event("c2", "p1", "view", 45),  # twice: 2 * 2 ** -0.5
        event("c2", "p1", "view", 45),
        event("c1", "p1", "purchase", 0),  # 3
        event("c1", "p1", "view", 90),  # 0.5
    ])
    interactions = build_interactions(events, AS_OF)
    assert list(interactions.customer_ids) == ["c1", "c2"] and list(interactions.product_ids) == ["p1", "p2"]
    np.testing.assert_allclose(interactions.matrix.toarray(), [[3.5, 0.0], [2 * 2 ** -0.5, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(interactions.purchases.toarray(), [[3.0, 0.0], [0.0, 0.0]])
    assert interactions.bought.toarray().tolist() == [[1, 0], [0, 0]]
    assert interactions.browsed.toarray().tolist() == [[1, 0], [1, 1]]
    assert interactions.matrix.dtype == np.float32 and interactions.bought.dtype == np.int8

    # Weights override per kind; a customer whose events all weigh 0 stays, as a row of zeros.
    halved = build_interactions(events, AS_OF, weights={"view": 0.0}, half_life_days=180.0)
    np.testing.assert_allclose(halved.matrix.toarray(), [[3.0, 0.0], [0.0, 1.0]], rtol=1e-6)
    assert halved.matrix.getrow(0).nnz == 1 and list(halved.customer_ids) == ["c1", "c2"]


def test_no_events_give_empty_interactions_and_best_seller_lists_for_named_customers():
    empty = pd.DataFrame(columns=["customer_id", "product_id", "kind", "occurred_at"])
    interactions = build_interactions(empty, AS_OF)
    assert interactions.matrix.shape == (0, 0) and len(interactions.customer_ids) == 0
    products = catalogue(["b", "a", "c"], category=lambda p: p)
    for make in MODELS.values():
        model = make().fit(interactions)
        lists = recommend(model, interactions, products, n=2, max_category_share=0.5,
                          affinity_category=pd.Series({"new": "c"}))
        # No sales yet: the category's products, then the shop's, in product_id order.
        assert lists[["customer_id", "product_id", "reason"]].values.tolist() == [
            ["new", "c", "category_bestseller"], ["new", "a", "bestseller"]]
    assert recommend(Popularity().fit(interactions), interactions, products).empty


@pytest.mark.parametrize(("change", "message"), [
    (lambda e: e.drop(columns="kind"), r"events: missing required column\(s\) kind"),
    (lambda e: e.assign(kind=["purchase", "wishlist", "view", "wishlist"]),
     r"column kind has 2 event\(s\) of unknown kind 'wishlist' \(first at row 1\)"),
    (lambda e: e.assign(customer_id=["c1", None, "c2", "c2"]), r"column customer_id has 1 null value\(s\)"),
    (lambda e: e.assign(occurred_at=[AS_OF + pd.Timedelta(days=3), AS_OF, AS_OF + pd.Timedelta(days=1),
                                     AS_OF + pd.Timedelta(days=2)]),
     r"events: 3 event\(s\) after as_of 2024-06-01T00:00:00\+00:00, the first at 2024-06-02T00:00:00\+00:00 "
     r"\(customer 'c2', product 'p2', row 2\)"),
    (lambda e: e.assign(occurred_at=["2024-05-01", "yesterday", None, None]), "occurred_at is not timestamps"),
])
def test_bad_events_are_refused_with_a_message_naming_them(change, message):
    events = pd.DataFrame([event("c1", "p1", "purchase", 3), event("c1", "p2", "view", 2),
                           event("c2", "p2", "view", 1), event("c2", "p1", "view", 1)])
    with pytest.raises(ModelInputError, match=message):
        build_interactions(change(events), AS_OF)


def test_naive_times_are_utc_and_unknown_weights_are_refused():
    events = pd.DataFrame([event("c1", "p1", "purchase", 3)])
    aware = build_interactions(events, AS_OF)
    naive = build_interactions(events.assign(occurred_at=events["occurred_at"].dt.tz_localize(None)),
                               AS_OF.tz_localize(None))
    assert (aware.matrix != naive.matrix).nnz == 0 and naive.as_of == AS_OF
    with pytest.raises(ModelInputError, match="as_of must be a datetime"):
        build_interactions(events, "not a time")
    with pytest.raises(ModelInputError, match="weights: unknown kind 'wishlist'"):
        build_interactions(events, AS_OF, weights={"wishlist": 1.0})


# --- models and lists -----------------------------------------------------------------------------------------------


def test_collaborative_models_beat_popularity_on_new_purchases_after_t(shop, fitted):
    _, products, later, interactions = shop
    metrics = {name: evaluate(recommend(model, interactions, products), later, interactions, k=10,
                              catalogue_size=len(products))
               for name, model in fitted.items()}
    baseline = metrics.pop("popularity")
    metrics.pop("category_popularity")  # every group spans all four categories here: categories tell it nothing
    assert baseline["customers"] == sum(GROUP_SIZES)
    for name, found in metrics.items():
        assert found["customers"] == sum(GROUP_SIZES), name
        floor = 0.8 if name == "hybrid" else 0.9  # the hybrid averages in popularity, which this shop punishes
        assert found["hit_rate"] >= floor and found["hit_rate"] >= baseline["hit_rate"] + 0.3, (name, found, baseline)
        assert found["recall"] >= 0.6 and found["recall"] >= baseline["recall"] + 0.3, (name, found, baseline)
        assert found["ndcg"] > baseline["ndcg"], name
        assert found["coverage"] > baseline["coverage"], name


@pytest.mark.parametrize("name", list(MODELS))
def test_lists_are_full_capped_per_category_and_give_reasons(shop, fitted, name):
    _, products, _, interactions = shop
    lists = recommend(fitted[name], interactions, products)
    category = lists["product_id"].map(products.set_index("product_id")["category"])
    per_category = lists.assign(category=category).groupby(["customer_id", "category"]).size()
    assert per_category.max() <= 4  # floor(0.4 * 10)
    assert (lists.groupby("customer_id").size() == 10).all() and lists["customer_id"].nunique() == 410
    assert lists.groupby("customer_id")["rank"].apply(list).map(lambda r: r == list(range(1, 11))).all()
    buyer = set(lists.loc[lists["customer_id"] == "g0c000", "reason"])
    browser = set(lists.loc[(lists["customer_id"] == "browser0") & lists["score"].notna(), "reason"])
    if name == "popularity":
        assert set(lists["reason"]) == {"bestseller"}
    elif name == "category_popularity":  # its picks are its customers' categories' best-sellers
        assert set(lists.loc[lists["score"].notna(), "reason"]) == {"category_bestseller"}
    else:  # the buyer's picks come through what they bought (or viewed); a browser's only through views
        assert "bought_together" in buyer and buyer <= {"bought_together", "viewed", "bestseller"}
        assert browser == {"viewed"}


def test_category_cap_is_relaxed_only_when_the_catalogue_cannot_fill_the_list(shop, fitted):
    _, products, _, interactions = shop
    for share, most in ((0.3, 3), (0.2, 4)):
        lists = recommend(fitted["item_item_bm25"], interactions, products, max_category_share=share)
        category = lists["product_id"].map(products.set_index("product_id")["category"])
        counts = lists.assign(category=category).groupby(["customer_id", "category"]).size().unstack(fill_value=0)
        assert (lists.groupby("customer_id").size() == 10).all()
        if share == 0.3:  # 4 categories x 3 fill 10: the cap holds
            assert counts.to_numpy().max() == most
        else:  # 4 categories x 2 = 8 < 10: two products over the cap, every category at least at it
            assert (counts.to_numpy() >= 2).all() and counts.to_numpy().max() <= most
            assert (counts.sum(axis=1) == 10).all()


def exclusion_shop() -> tuple[Interactions, pd.DataFrame]:
    """x bought a (rarely rebought), b (replenishable) and n (no repeat rate known); five others bought a, b, c, d, n
    together; c is unavailable; e is only viewed."""
    events = [event("x", p, "purchase", 10) for p in ("a", "b", "n")]
    for j in range(5):
        events += [event(f"o{j}", p, "purchase", 20 + j) for p in ("a", "b", "c", "d", "n")]
    events.append(event("o0", "e", "view", 3))
    products = catalogue(["a", "b", "c", "d", "e", "n"], category=lambda p: p, unavailable=("c",),
                         rates={"a": 0.1, "b": 0.6, "n": float("nan")})
    return build_interactions(pd.DataFrame(events), AS_OF), products


@pytest.mark.parametrize("name", list(MODELS))
def test_bought_and_unavailable_products_are_excluded_unless_replenishable(name):
    interactions, products = exclusion_shop()
    model = MODELS[name]().fit(interactions)
    lists = recommend(model, interactions, products, n=5, max_category_share=1.0)
    per_customer = lists.groupby("customer_id")["product_id"].apply(set).to_dict()
    # Only three products are eligible for x: the list is those three, b (replenishable) among them.
    assert per_customer["x"] == {"b", "d", "e"}
    assert all(chosen == {"b", "e"} for customer, chosen in per_customer.items() if customer != "x")
    assert "c" not in set(lists["product_id"])
    if name != "popularity":
        x = lists[lists["customer_id"] == "x"].set_index("product_id")
        reason = "category_bestseller" if name == "category_popularity" else "bought_together"
        assert x.loc["d", "reason"] == reason and x.loc["d", "score"] > 0


def cold_start_shop() -> tuple[Interactions, pd.DataFrame]:
    sales = {"h1": 7, "h2": 6, "s1": 5, "h3": 4, "s2": 3, "g1": 2, "s3": 1}
    events = [event(f"buyer_{p}_{j}", p, "purchase", 1) for p, count in sales.items() for j in range(count)]
    events.append(event("viewer", "s4", "view", 1))
    category = {"s": "shoes", "h": "hats", "g": "bags"}
    products = catalogue(["g1", "h1", "h2", "h3", "h4", "s1", "s2", "s3", "s4"], category=lambda p: category[p[0]])
    # Views weigh nothing here: the viewer is a row of zeros, as good as unknown.
    return build_interactions(pd.DataFrame(events), AS_OF, weights={"view": 0.0}), products


@pytest.mark.parametrize("name", list(MODELS))
def test_customers_without_history_get_their_category_best_sellers_then_the_shops(name):
    interactions, products = cold_start_shop()
    model = MODELS[name]().fit(interactions)
    affinity = pd.Series({"newbie": "shoes", "viewer": "hats", "stranger": None, "toy_lover": "toys"})
    lists = recommend(model, interactions, products, n=5, max_category_share=0.4, affinity_category=affinity)
    got = {customer: list(zip(group["product_id"], group["reason"], strict=True))
           for customer, group in lists.groupby("customer_id")}
    # Cap 2 per category; the shop's best-sellers are h1, h2, s1, h3, s2, g1, s3.
    assert got["newbie"] == [("s1", "category_bestseller"), ("s2", "category_bestseller"), ("h1", "bestseller"),
                             ("h2", "bestseller"), ("g1", "bestseller")]
    assert got["viewer"] == [("h1", "category_bestseller"), ("h2", "category_bestseller"), ("s1", "bestseller"),
                             ("s2", "bestseller"), ("g1", "bestseller")]
    shop_only = [("h1", "bestseller"), ("h2", "bestseller"), ("s1", "bestseller"), ("s2", "bestseller"),
                 ("g1", "bestseller")]
    assert got["stranger"] == shop_only and got["toy_lover"] == shop_only
    assert lists.loc[lists["customer_id"].isin(["newbie", "viewer", "stranger"]), "score"].isna().all()


@pytest.mark.parametrize("name", list(MODELS))
def test_a_catalogue_of_one_product(name):
    events = pd.DataFrame([event("buyer", "p1", "purchase", 3), event("viewer", "p1", "view", 2)])
    interactions = build_interactions(events, AS_OF)
    products = catalogue(["p1"], rates={"p1": float("nan")})
    model = MODELS[name]().fit(interactions)
    lists = recommend(model, interactions, products, affinity_category=pd.Series({"newcomer": "all"}))
    # The buyer has it already (not replenishable): nothing left to offer, an empty list rather than a repeat.
    assert lists[["customer_id", "rank", "product_id"]].values.tolist() == [["newcomer", 1, "p1"],
                                                                           ["viewer", 1, "p1"]]


def lopsided_shop(seed: int = 5) -> tuple[Interactions, pd.DataFrame, pd.Series]:
    """Random events on 60 products in lopsided categories (40, 15, 5), a fifth unavailable, some replenishable,
    and affinities for half the customers and ten newcomers: lists that hit the cap, cut fills and relaxations."""
    rng = np.random.default_rng(seed)
    product_ids = [f"q{i:02d}" for i in range(60)]
    kinds = ["purchase", "cart_add", "view"]
    events = [event(f"c{rng.integers(80):02d}", product_ids[min(int(rng.exponential(12)), 59)],
                    kinds[rng.integers(3)], rng.uniform(0, 200)) for _ in range(900)]
    products = catalogue(product_ids, category=lambda p: "big" if int(p[1:]) < 40 else "mid" if int(p[1:]) < 55
                         else "small", unavailable=tuple(rng.choice(product_ids, 12, replace=False)),
                         rates={p: float(rng.uniform(0, 0.6)) for p in product_ids})
    customers = [f"c{j:02d}" for j in range(0, 80, 2)] + [f"new{j}" for j in range(10)]
    affinity = pd.Series(rng.choice(["big", "mid", "small"], len(customers)), index=customers)
    return build_interactions(pd.DataFrame(events), AS_OF), products, affinity


def walked_one_by_one(model, interactions, products, affinity, *, n, share, rate):
    """The lists recommend() promises, one customer at a time in plain Python: model picks, affinity category's
    best-sellers, shop's best-sellers; skip excluded and repeats; cap per category; relax if still short."""
    cap = max(1, math.floor(share * n + 1e-9))
    category = products.set_index("product_id")["category"].to_dict()
    available = set(products.loc[products["is_available"], "product_id"])
    replenishable = set(products.loc[products["repeat_purchase_rate"] >= rate, "product_id"])
    ids = list(interactions.product_ids)
    sold = dict(zip(ids, np.asarray(interactions.purchases.sum(axis=0)).ravel(), strict=True))
    touched = dict(zip(ids, np.asarray(interactions.matrix.sum(axis=0)).ravel(), strict=True))
    shop = sorted(available, key=lambda p: (-sold.get(p, 0.0), -touched.get(p, 0.0), p))
    rows = {customer: i for i, customer in enumerate(interactions.customer_ids)}
    lists = {}
    for customer in sorted(set(rows) | set(affinity.index)):
        i = rows.get(customer)
        bought = {ids[j] for j in interactions.bought[i].indices} if i is not None else set()
        excluded = (bought - replenishable) | (set(ids) - available)
        picks = []
        if i is not None and interactions.matrix[i].nnz:
            scores = model.score(interactions.matrix[i])
            scores = np.asarray(scores.toarray() if hasattr(scores, "toarray") else scores).ravel()
            ranked = sorted((-scores[j], p) for j, p in enumerate(ids) if scores[j] > 0 and p not in excluded)
            picks = [p for _, p in ranked[:5 * n]]
        liked = [p for p in shop if category[p] == affinity.get(customer)]
        walk = [p for p in dict.fromkeys(picks + liked + shop) if p not in excluded]
        chosen, held, counts = [], [], {}
        for p in walk:
            if len(chosen) == n:
                break
            counts[category[p]] = counts.get(category[p], 0) + 1
            (chosen if counts[category[p]] <= cap else held).append(p)
        chosen = [p for p in walk if p in set(chosen) | set(held[:n - len(chosen)])]
        if chosen:
            lists[customer] = chosen
    return lists


@pytest.mark.parametrize("name", list(MODELS))
def test_lists_match_a_plain_walk_customer_by_customer(name):
    interactions, products, affinity = lopsided_shop()
    model = MODELS[name]().fit(interactions)
    for n, share in ((6, 0.34), (8, 0.25), (3, 1.0)):
        lists = recommend(model, interactions, products, n=n, max_category_share=share, affinity_category=affinity,
                          batch_rows=13)
        got = lists.groupby("customer_id", sort=True)["product_id"].apply(list).to_dict()
        assert got == walked_one_by_one(model, interactions, products, affinity, n=n, share=share, rate=0.3)


def test_the_top_k_per_row_equals_a_full_sort_with_ties_to_the_smaller_column():
    # the model's candidates are cut to each row's k-th value before the exact sort: the result must be a full sort's
    # (value, then the smaller column), with ties at the k-th value, rows shorter than k and rows in any order
    from ml.recommend import _keep_top

    rng = np.random.default_rng(7)
    for trial in range(200):
        rows, k = int(rng.integers(1, 40)), int(rng.integers(1, 30))
        cells = np.unique(rng.integers(0, rows * 300, int(rng.integers(0, 2_000))))
        if trial % 2:
            rng.shuffle(cells)
        r, c = cells // 300, cells % 300
        v = rng.integers(1, 5, len(r)).astype(float) if trial % 3 == 0 else rng.random(len(r))
        order = np.lexsort((c, -v, r))
        rank = np.arange(len(order)) - np.searchsorted(r[order], r[order])  # position within its row
        expected = (r[order][rank < k], c[order][rank < k], v[order][rank < k])
        for got, want in zip(_keep_top(r, c, v, k), expected, strict=True):
            assert np.array_equal(got, want), trial


@pytest.mark.parametrize("name", list(MODELS))
def test_batches_give_the_same_lists_as_one_batch(shop, fitted, name):
    _, products, _, interactions = shop
    affinity = pd.Series({"g3c000": "cat1", "newcomer": "cat2"})
    whole = recommend(fitted[name], interactions, products, affinity_category=affinity)
    batched = recommend(fitted[name], interactions, products, affinity_category=affinity, batch_rows=7)
    pd.testing.assert_frame_equal(whole, batched)
    on_threads = pd.concat(recommend_batches(fitted[name], interactions, products, affinity_category=affinity,
                                             batch_rows=7, threads=3), ignore_index=True)
    pd.testing.assert_frame_equal(whole, on_threads)
    assert len(whole[whole["customer_id"] == "newcomer"]) == 10


@pytest.mark.parametrize("name", ["item_item_bm25", "als"])
def test_same_events_in_any_order_give_the_same_lists(shop, fitted, name):
    events, products, _, interactions = shop
    shuffled = events.sample(frac=1.0, random_state=11).reset_index(drop=True)
    again = build_interactions(shuffled, AS_OF)
    first = recommend(fitted[name], interactions, products)
    second = recommend(MODELS[name]().fit(again), again, products)
    pd.testing.assert_frame_equal(first, second)


def test_item_similarity_is_sparse_with_at_most_the_neighbours_asked(shop):
    similarity = ItemItem(neighbours=3).fit(shop[3]).similarity_
    assert np.diff(similarity.indptr).max() <= 3 and similarity.diagonal().max() == 0


@pytest.mark.parametrize("weighting", ["bm25", "cosine"])
def test_item_similarity_cut_from_stored_entries_equals_the_dense_cut(shop, weighting, monkeypatch):
    # a block of similarities is cut from its stored entries when sparse enough, else densely: the same neighbours
    import ml.recommend

    fitted = {}
    for share in (0.0, 1.0):  # every block dense, every block from its stored entries
        monkeypatch.setattr(ml.recommend, "_SPARSE_BLOCK_SHARE", share)
        fitted[share] = ItemItem(weighting=weighting, neighbours=4).fit(shop[3]).similarity_
    dense, stored = fitted[0.0], fitted[1.0]
    dense.sort_indices()
    stored.sort_indices()
    assert dense.nnz > 0 and (dense != stored).nnz == 0
    assert np.array_equal(dense.indptr, stored.indptr) and np.array_equal(dense.indices, stored.indices)


def test_recommend_refuses_an_unfitted_or_mismatched_model_and_bad_products(shop):
    _, products, _, interactions = shop
    with pytest.raises(ModelInputError, match="ItemItem is not fitted"):
        recommend(ItemItem(), interactions, products)
    other, _ = exclusion_shop()
    with pytest.raises(ModelInputError, match="fitted on other interactions"):
        recommend(Popularity().fit(other), interactions, products)
    with pytest.raises(ModelInputError, match=r"products: missing required column\(s\) is_available"):
        recommend(Popularity().fit(interactions), interactions, products.drop(columns="is_available"))
    with pytest.raises(ModelInputError, match="duplicate"):
        recommend(Popularity().fit(interactions), interactions, pd.concat([products, products.head(1)]))
    with pytest.raises(ModelInputError, match="threads must be a positive integer, got 0"):
        recommend_batches(Popularity().fit(interactions), interactions, products, threads=0)


# --- evaluation -----------------------------------------------------------------------------------------------------


def test_evaluate_on_a_case_worked_by_hand():
    interactions = build_interactions(pd.DataFrame([
        event("c1", "p1", "purchase", 5), event("c4", "p7", "purchase", 5), event("c2", "p2", "view", 5),
    ]), AS_OF)
    recommendations = pd.DataFrame({
        "customer_id": ["c1"] * 4 + ["c2"] * 3 + ["c3"] * 2,
        "rank": [1, 2, 3, 4, 1, 2, 3, 1, 2],
        "product_id": ["p2", "p3", "p4", "p6", "p1", "p5", "p2", "p4", "p5"],
    })
    later = pd.DataFrame({
        "customer_id": ["c1", "c1", "c1", "c2", "c2", "c3", "c4", "c5"],
        "product_id": ["p1", "p3", "p6", "p2", "p2", "p1", "p7", "p2"],
    })
    metrics = evaluate(recommendations, later, interactions, k=3, catalogue_size=10)
    # c1: p1 is a rebuy (ignored); new {p3, p6}; p3 at rank 2 (p6 at rank 4 is past k). c2: {p2} at rank 3.
    # c3: {p1}, missed. c4: only a rebuy, not evaluated. c5: {p2}, no list: a miss.
    c1_ndcg = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    c2_ndcg = 1 / math.log2(4)
    assert metrics["customers"] == 4
    assert metrics["hit_rate"] == pytest.approx(2 / 4)
    assert metrics["recall"] == pytest.approx((1 / 2 + 1 + 0 + 0) / 4)
    assert metrics["ndcg"] == pytest.approx((c1_ndcg + c2_ndcg) / 4)
    assert metrics["coverage"] == pytest.approx(5 / 10)  # p1..p5 in the top 3 of some list
    grouped = evaluate(recommendations, later, interactions, k=3, catalogue_size=10,
                       groups=pd.Series({"c1": "a", "c2": "b", "c3": "b", "c4": "a", "c5": "b"}))
    assert grouped["hit_rate_by_group"] == {"a": (1, 1.0), "b": (3, pytest.approx(1 / 3))}  # c4 is not evaluated


def test_evaluate_without_new_purchases_reports_nan():
    interactions = build_interactions(pd.DataFrame([event("c1", "p1", "purchase", 5)]), AS_OF)
    recommendations = pd.DataFrame({"customer_id": ["c1"], "rank": [1], "product_id": ["p2"]})
    later = pd.DataFrame({"customer_id": ["c1"], "product_id": ["p1"]})
    metrics = evaluate(recommendations, later, interactions, k=10, catalogue_size=2)
    assert metrics["customers"] == 0 and math.isnan(metrics["hit_rate"]) and metrics["coverage"] == 0.5


def test_category_popularity_ranks_a_customers_categories_best_sellers_and_beats_popularity():
    """Customers who keep to one category (of four, of unequal size): their category's best-sellers first, in that
    category's order; the shop's best-sellers (all of the biggest category) serve the others badly."""
    categories = pd.Series({f"{c}{k}": c for c in "abcd" for k in range(6)})
    events, later = [], []
    for c, size in zip("abcd", (60, 20, 15, 10), strict=True):
        for j in range(size):
            customer = f"{c}-{j}"
            for k in range(3):  # products 0-2 of the category bought, k=0 most often
                if j % (k + 1) == 0:
                    events.append(event(customer, f"{c}{k}", "purchase", 10 + j % 7))
            later.append({"customer_id": customer, "product_id": f"{c}{3 + j % 3}"})
            events.append(event(customer, f"{c}{3 + (j + 1) % 3}", "purchase", 200))
    events = pd.DataFrame(events)
    interactions = build_interactions(events, AS_OF)
    products = catalogue(list(categories.index), category=lambda p: p[0])
    model = CategoryPopularity(categories).fit(interactions)
    scores = model.score(interactions.matrix[[list(interactions.customer_ids).index("d-0")]]).toarray()[0]
    in_d = [list(interactions.product_ids).index(f"d{k}") for k in range(3)]
    assert scores[in_d[0]] > scores[in_d[1]] > scores[in_d[2]] > 0
    assert scores[[i for i in range(len(scores)) if i not in in_d and not str(interactions.product_ids[i]).startswith("d")]].max() == 0
    found = evaluate(recommend(model, interactions, products), pd.DataFrame(later), interactions, k=4,
                     catalogue_size=len(products))
    baseline = evaluate(recommend(Popularity().fit(interactions), interactions, products), pd.DataFrame(later),
                        interactions, k=4, catalogue_size=len(products))
    assert found["hit_rate"] > baseline["hit_rate"] + 0.2, (found, baseline)


def test_hybrid_averages_its_parts_scaled_to_each_customers_best():
    events = pd.DataFrame([event("c1", "p1", "purchase", 1), event("c2", "p1", "purchase", 1),
                           event("c2", "p2", "purchase", 1), event("c3", "p3", "view", 1)])
    interactions = build_interactions(events, AS_OF)
    parts = (ItemItem(), Popularity())
    hybrid = Hybrid(parts).fit(interactions)
    rows = interactions.matrix
    expected = np.zeros((3, 3))
    for part in parts:
        scores = part.score(rows)
        scores = scores.toarray() if hasattr(scores, "toarray") else np.asarray(scores, dtype=float)
        best = scores.max(axis=1, keepdims=True)
        expected += np.divide(scores, best, out=np.zeros_like(scores), where=best > 0)
    np.testing.assert_allclose(hybrid.score(rows).toarray(), expected / 2, rtol=1e-6)  # sparse parts: sparse
    with pytest.raises(ModelInputError, match="at least one"):
        Hybrid(())
