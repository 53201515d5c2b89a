"""Customer segmentation (ml.segments) on planted synthetic customers: the groups come back, k is theirs, names say
what they are, ids survive a refit, tiny groups are folded in, and bad input fails with a message that names it."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from ml.errors import ModelInputError
from ml.segments import ALL_CUSTOMERS, SEGMENT_FEATURES, SegmentModel, fit_segments

# Archetypes with realistic marts.customer_features values; "orders": 0 plants never-ordered customers.
ARCHETYPES = {
    "vip": dict(days=8, orders=14, aov=160, discount=0.04, returns=0.03, tenure=1100, open=0.62, click=0.22, sends=24,
                views=45, carts=9, top=0.45, trend=2),
    "lapsed_bargain": dict(days=260, orders=3, aov=45, discount=0.45, returns=0.12, tenure=800, open=0.08, click=0.01,
                           sends=20, views=2, carts=0.3, top=0.7, trend=-2),
    "prospects": dict(days=None, orders=0, aov=None, discount=None, returns=None, tenure=40, open=0.45, click=0.12,
                      sends=10, views=18, carts=2, top=None, trend=0),
    "regulars": dict(days=45, orders=4, aov=85, discount=0.12, returns=0.06, tenure=600, open=0.3, click=0.06, sends=22,
                     views=10, carts=2, top=0.55, trend=0),
    "wholesale": dict(days=3, orders=60, aov=900, discount=0.0, returns=0.3, tenure=2000, open=0.95, click=0.7,
                      sends=60, views=200, carts=60, top=0.98, trend=10),
}
PLANTED = {"vip": 300, "lapsed_bargain": 450, "prospects": 400, "regulars": 550}


def customers(sizes: dict[str, int], seed: int = 1, first_id: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Features per customer (index customer_id) drawn around each archetype, and the planted group per customer."""
    rng = np.random.default_rng(seed)
    frames, groups = [], []
    for group, n in sizes.items():
        a = ARCHETYPES[group]
        buyer = a["orders"] > 0
        missing = np.full(n, np.nan)
        orders = np.maximum(1, rng.poisson(a["orders"], n)) if buyer else np.zeros(n, dtype=int)
        aov = rng.lognormal(np.log(a["aov"]), 0.25, n) if buyer else missing
        returns = np.clip(rng.normal(a["returns"], 0.03, n), 0, 1) if buyer else missing
        sends = rng.poisson(a["sends"], n)
        frames.append(pd.DataFrame({
            "days_since_last_order": np.round(rng.lognormal(np.log(a["days"]), 0.3, n)) if buyer else missing,
            "order_count": orders,
            "net_sales_amount": np.round(orders * np.nan_to_num(aov) * (1 - np.nan_to_num(returns)), 2),
            "avg_order_value_amount": np.round(aov, 2),
            "discount_rate": np.clip(rng.normal(a["discount"], 0.05, n), 0, 1) if buyer else missing,
            "return_rate": returns,
            "tenure_days": np.round(rng.lognormal(np.log(a["tenure"]), 0.3, n)),
            "open_rate_90d": np.where(sends > 0, np.clip(rng.normal(a["open"], 0.07, n), 0, 1), np.nan),
            "click_rate_90d": np.where(sends > 0, np.clip(rng.normal(a["click"], 0.03, n), 0, 1), np.nan),
            "sends_90d": sends,
            "product_views_90d": rng.poisson(a["views"], n),
            "cart_adds_90d": rng.poisson(a["carts"], n),
            "top_category_share": np.clip(rng.normal(a["top"], 0.1, n), 0, 1) if buyer else missing,
            "orders_trend_90d": np.round(rng.normal(a["trend"], 1, n)).astype(int),
        }))
        groups += [group] * n
    frame = pd.concat(frames, ignore_index=True)
    frame.index = pd.Index([f"c{first_id + i:06d}" for i in range(len(frame))], name="customer_id")
    # Rows arrive in no particular order, as from a warehouse query without ORDER BY.
    order = rng.permutation(len(frame))
    return frame.iloc[order], pd.Series(groups, index=frame.index).iloc[order]


@pytest.fixture(scope="module")
def planted() -> tuple[pd.DataFrame, pd.Series]:
    return customers(PLANTED)


@pytest.fixture(scope="module")
def model(planted) -> SegmentModel:
    return fit_segments(planted[0])


def segment_of_group(model: SegmentModel, frame: pd.DataFrame, groups: pd.Series) -> dict[str, int]:
    """The segment holding most of each planted group."""
    assigned = model.assign(frame)
    return {group: int(assigned[groups == group].mode()[0]) for group in groups.unique()}


def test_recovers_the_planted_groups_and_silhouette_picks_their_number(planted, model):
    frame, groups = planted
    assigned = model.assign(frame)
    assert adjusted_rand_score(groups, assigned) > 0.9
    assert model.chosen_k == 4 and len(model.segments) == 4
    assert max(model.silhouette_by_k, key=model.silhouette_by_k.get) == 4
    assert sorted(model.inertia_by_k) == list(range(3, 9)) and model.elbow_k in model.inertia_by_k
    # Sizes and shares describe everyone; ids are 0..n-1 by descending median net sales.
    segments = model.segments.set_index("segment_id")
    assert segments["customers"].sum() == len(frame) and segments["share"].sum() == pytest.approx(1)
    assert list(segments.index) == [0, 1, 2, 3]
    assert segments["net_sales_amount"].is_monotonic_decreasing
    assert (assigned.value_counts().sort_index() == segments["customers"]).all()


def test_segments_are_profiled_in_original_units(planted, model):
    frame, groups = planted
    segments = model.segments.set_index("segment_id")
    vip = segments.loc[segment_of_group(model, frame, groups)["vip"]]
    assert vip["order_count"] == pytest.approx(frame.loc[groups == "vip", "order_count"].median())
    assert 5 <= vip["days_since_last_order"] <= 12 and 0.5 <= vip["open_rate_90d"] <= 0.75
    prospects = segments.loc[segment_of_group(model, frame, groups)["prospects"]]
    assert prospects["buyer_share"] == 0 and np.isnan(prospects["days_since_last_order"])
    assert set(SEGMENT_FEATURES) <= set(model.segments.columns)


def test_names_are_unique_and_say_what_the_planted_groups_are(planted, model):
    frame, groups = planted
    names = model.names()
    assert len(set(names.values())) == len(names) == 4
    named = {group: names[segment] for group, segment in segment_of_group(model, frame, groups).items()}
    assert named["vip"].startswith("high value") and "active" in named["vip"] and "highly engaged" in named["vip"]
    assert "lapsed" in named["lapsed_bargain"] and "bargain hunters" in named["lapsed_bargain"]
    assert "disengaged" in named["lapsed_bargain"] and "high value" not in named["lapsed_bargain"]
    assert "non-buyers" in named["prospects"] and "new" in named["prospects"]
    assert "mid value" in named["regulars"]


def test_coinciding_names_are_told_apart():
    # Two groups alike in value, recency and engagement, different only in basket size and order count.
    small = dict(ARCHETYPES["regulars"], aov=30, orders=12)
    big = dict(ARCHETYPES["regulars"], aov=250, orders=2)
    ARCHETYPES.update(small_baskets=small, big_baskets=big)
    try:
        frame, groups = customers({"vip": 300, "lapsed_bargain": 400, "small_baskets": 400, "big_baskets": 400}, seed=5)
    finally:
        del ARCHETYPES["small_baskets"], ARCHETYPES["big_baskets"]
    model = fit_segments(frame, k_range=(4, 4))
    names = model.names()
    assert len(set(names.values())) == len(names) == 4
    named = {group: names[segment] for group, segment in segment_of_group(model, frame, groups).items()}
    assert named["small_baskets"].endswith("small baskets") and named["big_baskets"].endswith("big baskets")


def test_same_input_and_seed_give_the_same_model_whatever_the_row_order_or_dtypes(planted, model):
    frame, _ = planted
    again = fit_segments(frame)
    pd.testing.assert_frame_equal(again.segments, model.segments)
    assert again.cluster_to_segment == model.cluster_to_segment
    pd.testing.assert_series_equal(again.assign(frame), model.assign(frame))

    shuffled = frame.sample(frac=1, random_state=99)
    refit = fit_segments(shuffled)
    pd.testing.assert_frame_equal(refit.segments, model.segments)
    by_customer = refit.assign(shuffled)
    assert list(by_customer.index) == list(shuffled.index)  # the caller's order is kept
    pd.testing.assert_series_equal(by_customer.loc[frame.index], model.assign(frame))

    # The warehouse's nullable dtypes (Int64 with <NA>) read the same as floats with NaN.
    nullable = frame.convert_dtypes()
    assert str(nullable["days_since_last_order"].dtype) == "Int64"
    pd.testing.assert_series_equal(model.assign(nullable), model.assign(frame))


def test_a_sample_fits_and_everyone_is_assigned(planted, model):
    frame, groups = planted
    sampled = fit_segments(frame, sample_size=600, silhouette_sample=400)
    assigned = sampled.assign(frame)
    assert adjusted_rand_score(groups, assigned) > 0.9
    assert sampled.segments["customers"].sum() == len(frame)


def test_the_model_survives_pickling_as_the_registry_stores_it(planted, model):
    frame, _ = planted
    restored = pickle.loads(pickle.dumps(model))
    pd.testing.assert_series_equal(restored.assign(frame), model.assign(frame))
    assert restored.names() == model.names()


def perturbed(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same customers a little later: a few more days since the last order, money and views moved by ~5%."""
    rng = np.random.default_rng(seed)
    moved = frame.copy()
    moved["days_since_last_order"] += rng.integers(0, 4, len(frame))
    for column in ("net_sales_amount", "avg_order_value_amount"):
        moved[column] = (moved[column] * rng.lognormal(0, 0.05, len(frame))).round(2)
    moved["product_views_90d"] = rng.poisson(moved["product_views_90d"])
    return moved


def test_segment_ids_survive_a_refit_on_changed_data(planted, model):
    frame, groups = planted
    # Give the previous model arbitrary ids, so keeping them cannot happen by the default ordering.
    relabel = {0: 12, 1: 10, 2: 13, 3: 11}
    previous = dataclasses.replace(
        model, cluster_to_segment={c: relabel[s] for c, s in model.cluster_to_segment.items()},
        segments=model.segments.assign(segment_id=model.segments["segment_id"].map(relabel)))
    newcomers, _ = customers({name: n // 50 for name, n in PLANTED.items()}, seed=2, first_id=100_000)  # +2%
    later = pd.concat([perturbed(frame, seed=3), newcomers])

    refit = fit_segments(later, previous=previous)
    before, after = previous.assign(frame), refit.assign(later).loc[frame.index]
    assert (before == after).mean() > 0.95
    assert set(refit.names()) == {10, 11, 12, 13}
    assert refit.names() == previous.names()


def test_a_new_group_gets_a_new_id_above_the_previous_ones(planted, model):
    frame, groups = planted
    wholesale, _ = customers({"wholesale": 150}, seed=4, first_id=200_000)
    # k forced to 5: a refit otherwise keeps the previous k unless the silhouette clearly prefers another
    refit = fit_segments(pd.concat([frame, wholesale]), previous=model, k_range=(5, 5))
    assigned = refit.assign(pd.concat([frame, wholesale]))
    assert refit.chosen_k == 5
    assert (assigned.loc[wholesale.index] == 4).all()
    assert (assigned.loc[frame.index] == model.assign(frame)).mean() > 0.95


def test_a_tiny_cluster_is_merged_into_its_nearest_neighbour():
    frame, groups = customers({**PLANTED, "wholesale": 9}, seed=3)  # wholesale: 0.5% of customers
    forced = fit_segments(frame, k_range=(5, 5))  # five k-means clusters: the tiny group gets its own
    assert len(forced.cluster_to_segment) == 5 and len(set(forced.cluster_to_segment.values())) == 4
    assert len(forced.segments) == 4 and forced.segments["share"].min() >= 0.02
    assert forced.segments["customers"].sum() == len(frame)
    assigned = forced.assign(frame)
    # Its nearest neighbour is the VIPs: the merged segment keeps their profile and name.
    vip_segment = int(assigned[groups == "vip"].mode()[0])
    assert (assigned[groups == "wholesale"] == vip_segment).all()
    merged = forced.segments.set_index("segment_id").loc[vip_segment]
    assert merged["customers"] == (groups == "vip").sum() + 9 and "merged" in merged["note"]
    assert forced.names()[vip_segment].startswith("high value")

    chosen = fit_segments(frame)  # whatever k wins, no segment is left under min_share
    assert chosen.segments["share"].min() >= 0.02


def test_constant_features_give_one_segment_for_everyone():
    frame, _ = customers({"regulars": 60})
    constant = pd.DataFrame([frame.iloc[0]] * 60, index=frame.index)
    model = fit_segments(constant)
    assert model.chosen_k == 1 and model.names() == {0: ALL_CUSTOMERS}
    assert "degenerate" in model.segments.loc[0, "note"] and model.segments.loc[0, "customers"] == 60
    assert (model.assign(constant) == 0).all() and (model.assign(frame) == 0).all()


def test_fewer_distinct_profiles_than_segments_give_one_segment():
    frame, _ = customers({"regulars": 40})
    two_kinds = pd.DataFrame([frame.iloc[0]] * 20 + [frame.iloc[1]] * 20, index=frame.index)
    model = fit_segments(two_kinds, k_range=(3, 5))
    assert list(model.segments["segment_name"]) == [ALL_CUSTOMERS]


@pytest.fixture
def small() -> pd.DataFrame:
    return customers({"regulars": 10, "vip": 10})[0]


@pytest.mark.parametrize(("spoil", "message"), [
    (lambda f: f.iloc[0:0], "empty"),
    (lambda f: f.drop(columns=["open_rate_90d"]), "missing required column(s) open_rate_90d"),
    (lambda f: f.assign(sends_90d=f["sends_90d"].astype(str) + " sends"), "column sends_90d is not numeric"),
    (lambda f: f.assign(tenure_days=pd.to_datetime("2024-01-01")), "column tenure_days is not numeric"),
    (lambda f: f.assign(net_sales_amount=f["net_sales_amount"].where(f.index != f.index[3], np.inf)),
     "column net_sales_amount has 1 infinite value(s)"),
    (lambda f: f.assign(order_count=f["order_count"].where(f.index != f.index[0], np.nan)),
     "column order_count has 1 null value(s)"),
    (lambda f: pd.concat([f, f.iloc[:2]]), "2 customer ids appear more than once"),
    (lambda f: f.iloc[:1], "1 customer(s), too few to try 3 segments"),
    (lambda f: f.iloc[:3], "at least 4 customers are needed"),
], ids=["empty", "missing", "text", "dates", "infinite", "null", "duplicates", "one_row", "three_rows"])
def test_bad_input_is_refused_with_a_message_naming_the_problem(small, spoil, message):
    bad = spoil(small)
    kept = bad.copy()
    with pytest.raises(ModelInputError, match="customer features") as error:
        fit_segments(bad)
    assert message in str(error.value)
    pd.testing.assert_frame_equal(bad, kept)  # the caller's frame is left as it was


def test_scoring_refuses_bad_input_too(model, small):
    with pytest.raises(ModelInputError, match="missing required column"):
        model.assign(small.drop(columns=["cart_adds_90d"]))
    with pytest.raises(ModelInputError, match="column discount_rate has 1 infinite"):
        model.assign(small.assign(discount_rate=small["discount_rate"].where(small.index != small.index[0], -np.inf)))
    with pytest.raises(ModelInputError, match="must be a pandas DataFrame"):
        model.assign(small.to_numpy())


def test_parameters_out_of_range_are_refused(small):
    with pytest.raises(ValueError, match="k_range"):
        fit_segments(small, k_range=(1, 4))
    with pytest.raises(ValueError, match="min_share"):
        fit_segments(small, min_share=1.5)
