"""Send time: hours read on each customer's local clock (across DST changes and half-hour offsets), shrinkage toward
the group's profile that fades with a customer's own history, a circular ±1 h window, UTC send hours that follow DST
at as_of, an evaluation that beats one hour for everyone, and every unusable input refused by name."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from ml.errors import ModelInputError
from ml.sendtime import (
    HOURS,
    HourCounts,
    evaluate_send_hours,
    fit_prior,
    local_hour_counts,
    pick_send_hours,
)

TRAIN_START = pd.Timestamp("2024-02-20")
AS_OF = datetime(2024, 4, 20, tzinfo=UTC)  # the training window spans NY's (Mar 10), Berlin's and Sydney's changes
LATER_END = datetime(2024, 5, 20, tzinfo=UTC)
ZONES = ("America/New_York", "Asia/Kolkata", "Europe/Berlin", "UTC", "Australia/Sydney")
# Wide bands (7 hours): the group profile alone is right (±1 h) for under half of a group, a customer's own hours
# must do the rest.
SEGMENT_HOURS = {"morning": (5, 6, 7, 8, 9, 10, 11), "evening": (17, 18, 19, 20, 21, 22, 23)}


def _circular_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    distance = np.abs(np.asarray(a) - np.asarray(b)) % HOURS
    return np.minimum(distance, HOURS - distance)


def _simulated_events(rng: np.random.Generator, customers: pd.DataFrame, per_customer: np.ndarray,
                      start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Engagements around each customer's true local hour (80%: the hour +- N(0, 0.7) rounded; 20%: any hour), on
    uniform days of [start, end), written on the local clock and then converted to UTC."""
    owner = np.repeat(np.arange(len(customers)), per_customer)
    near = rng.random(len(owner)) < 0.8
    hour = np.where(near, customers["true_hour"].to_numpy()[owner] + np.rint(rng.normal(0, 0.7, len(owner))),
                    rng.integers(0, HOURS, len(owner))).astype(int) % HOURS
    days = rng.integers(0, (end - start).days, len(owner))
    local = start + pd.to_timedelta(days, "D") + pd.to_timedelta(hour, "h") + pd.to_timedelta(
        rng.integers(0, 60, len(owner)), "min")
    occurred = pd.Series(pd.NaT, index=range(len(owner)), dtype="datetime64[ns, UTC]")
    zone_of = customers["timezone"].to_numpy()[owner]
    for zone in ZONES:
        mine = np.flatnonzero(zone_of == zone)
        occurred.iloc[mine] = pd.DatetimeIndex(local[mine]).tz_localize(
            zone, ambiguous=np.zeros(len(mine), dtype=bool), nonexistent="shift_forward").tz_convert("UTC")
    return pd.DataFrame({"customer_id": customers["customer_id"].to_numpy()[owner], "occurred_at": occurred,
                         "kind": np.where(rng.random(len(owner)) < 0.2, "click", "open")})


@pytest.fixture(scope="module")
def world() -> dict[str, object]:
    rng = np.random.default_rng(11)
    size = 3000
    segment = rng.choice(list(SEGMENT_HOURS), size, p=[0.6, 0.4])
    customers = pd.DataFrame({
        "customer_id": [f"c{i:05d}" for i in range(size)],
        "timezone": rng.choice(ZONES, size),
        "segment": segment,
        "true_hour": [rng.choice(SEGMENT_HOURS[s]) for s in segment],
    })
    history = _simulated_events(rng, customers, rng.poisson(5.0, size), TRAIN_START, pd.Timestamp("2024-04-19"))
    later = _simulated_events(rng, customers, rng.poisson(3.0, size), pd.Timestamp("2024-04-21"),
                              pd.Timestamp("2024-05-19"))
    timezones = customers.set_index("customer_id")["timezone"]
    groups = customers.set_index("customer_id")["segment"]
    counts = local_hour_counts(history, timezones, AS_OF)
    prior = fit_prior(counts, groups)
    return {"customers": customers, "history": history, "timezones": timezones, "groups": groups, "counts": counts,
            "prior": prior, "picks": pick_send_hours(counts, prior, groups, AS_OF),
            "later": local_hour_counts(later, timezones, LATER_END)}


def _events(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [r[0] for r in rows],
                         "occurred_at": pd.to_datetime([r[1] for r in rows], utc=True),
                         "kind": [r[2] for r in rows]})


def _counts(rows: dict[str, dict[int, float]], timezone: str = "UTC") -> HourCounts:
    matrix = np.zeros((len(rows), HOURS))
    for i, hours in enumerate(rows.values()):
        for hour, count in hours.items():
            matrix[i, hour] = count
    return HourCounts(customer_ids=np.array(list(rows), dtype=object), counts=matrix,
                      timezone=np.full(len(rows), timezone, dtype=object), timezone_known=np.ones(len(rows), bool))


def _group_population(rng: np.random.Generator, prefix: str, size: int, hours: tuple[int, ...],
                      engagements: int = 8) -> dict[str, dict[int, float]]:
    """Customers whose engagements fall tightly around a true hour drawn from `hours`."""
    population = {}
    for i in range(size):
        drawn = (rng.choice(hours) + np.rint(rng.normal(0, 0.6, engagements))).astype(int) % HOURS
        population[f"{prefix}{i:04d}"] = dict(zip(*np.unique(drawn, return_counts=True), strict=True))
    return population


# --- the whole path on a simulated shop ----------------------------------------------------------------------------


def test_picks_find_the_true_local_hour_and_beat_one_hour_for_everyone(world: dict) -> None:
    picks, customers = world["picks"], world["customers"]
    assert list(picks.columns) == ["customer_id", "send_hour_local", "send_hour_utc", "timezone", "confidence",
                                   "engagements"]
    truth = customers.set_index("customer_id").loc[picks["customer_id"], "true_hour"].to_numpy()
    seasoned = picks["engagements"].to_numpy() >= 5
    assert seasoned.sum() > 1000
    close = _circular_distance(picks["send_hour_local"].to_numpy(), truth) <= 1
    assert close[seasoned].mean() >= 0.95
    assert picks["confidence"].between(0, 1).all() and picks["send_hour_local"].between(0, 23).all()

    scores = evaluate_send_hours(picks, world["later"], history=world["counts"]).set_index("method")
    assert scores.loc["model", "customers"] > 2000
    assert scores.loc["model", "hit_share"] > scores.loc["shop_hour", "hit_share"] + 0.3
    assert scores.loc["model", "hit_share"] > scores.loc["historical_mode", "hit_share"] + 0.02  # shrinkage helps
    assert scores.loc["shop_hour", "hit_share"] > 0  # the baseline is scored, not empty


def test_results_are_deterministic_and_do_not_depend_on_event_order(world: dict) -> None:
    shuffled = world["history"].sample(frac=1.0, random_state=3).reset_index(drop=True)
    counts = local_hour_counts(shuffled, world["timezones"], AS_OF)
    again = pick_send_hours(counts, fit_prior(counts, world["groups"]), world["groups"], AS_OF)
    pd.testing.assert_frame_equal(again, world["picks"])


# --- local hours ---------------------------------------------------------------------------------------------------


def test_hours_are_read_on_the_local_clock_on_both_sides_of_a_dst_change() -> None:
    events = _events([
        ("ny", "2024-03-05T13:15Z", "open"), ("ny", "2024-03-15T12:15Z", "open"),  # 08:15 EST and 08:15 EDT
        ("berlin", "2024-03-25T07:15Z", "open"), ("berlin", "2024-04-05T06:15Z", "open"),  # CET, CEST
        ("sydney", "2024-03-31T21:15Z", "open"), ("sydney", "2024-04-09T22:15Z", "open"),  # AEDT, AEST
    ])
    zones = pd.Series({"ny": "America/New_York", "berlin": "Europe/Berlin", "sydney": "Australia/Sydney"})
    counts = local_hour_counts(events, zones, AS_OF)
    assert list(counts.customer_ids) == ["berlin", "ny", "sydney"]
    assert (counts.counts[:, 8] == 2).all() and counts.counts.sum() == 6
    assert counts.timezone_known.all()


def test_a_half_hour_offset_is_binned_by_the_local_clock_hour() -> None:
    events = _events([("k", "2024-04-01T03:15Z", "open"),  # 08:45 IST
                      ("k", "2024-04-01T03:45Z", "open"),  # 09:15 IST
                      ("k", "2024-04-02T04:15Z", "click")])  # 09:45 IST
    counts = local_hour_counts(events, pd.Series({"k": "Asia/Kolkata"}), AS_OF, click_weight=2.0)
    assert counts.counts[0, 8] == 1 and counts.counts[0, 9] == 3  # the click weighs 2
    prior = fit_prior(_counts({"k": {9: 20}, "x": {9: 20}}, timezone="Asia/Kolkata"))
    picks = pick_send_hours(_counts({"k": {9: 20}}, timezone="Asia/Kolkata"), prior, None, AS_OF)
    # local 09:00 is 03:30 UTC: the first whole UTC hour in the local hour is 04 (09:30 IST)
    assert picks.loc[0, "send_hour_local"] == 9 and picks.loc[0, "send_hour_utc"] == 4


@pytest.mark.parametrize("given", ["Mars/Olympus", None, "", "../etc/passwd", 5])
def test_an_unknown_or_missing_timezone_is_read_as_utc_and_flagged(given: object) -> None:
    events = _events([("lost", "2024-04-01T07:30Z", "open"), ("known", "2024-04-01T07:30Z", "open"),
                      ("absent", "2024-04-01T07:30Z", "open")])
    counts = local_hour_counts(events, pd.Series({"lost": given, "known": "Asia/Kolkata"}, dtype=object), AS_OF)
    by_id = dict(zip(counts.customer_ids, range(3), strict=True))
    for customer in ("lost", "absent"):  # absent: has events but no row in timezones
        row = by_id[customer]
        assert counts.timezone[row] == "UTC" and not counts.timezone_known[row] and counts.counts[row, 7] == 1
    assert counts.timezone[by_id["known"]] == "Asia/Kolkata" and counts.timezone_known[by_id["known"]]
    assert counts.counts[by_id["known"], 13] == 1  # 07:30 UTC is 13:00 IST


def test_a_customer_without_events_gets_a_row_of_zeros() -> None:
    counts = local_hour_counts(_events([("a", "2024-04-01T07:30Z", "open")]),
                               pd.Series({"a": "UTC", "quiet": "Europe/Berlin"}), AS_OF)
    assert list(counts.customer_ids) == ["a", "quiet"] and list(counts.engagements) == [1.0, 0.0]


# --- the prior and shrinkage ---------------------------------------------------------------------------------------


def test_the_fitted_concentration_recovers_a_dirichlet_multinomial_population() -> None:
    rng = np.random.default_rng(5)
    hours = np.arange(HOURS)
    profile = 1.0 + 6.0 * np.exp(-0.5 * ((hours - 9) / 2.0) ** 2) + 4.0 * np.exp(-0.5 * ((hours - 20) / 2.0) ** 2)
    profile /= profile.sum()
    for true_concentration in (3.0, 15.0):
        preferences = rng.dirichlet(true_concentration * profile, 6000)
        totals = rng.poisson(8.0, 6000) + 1
        matrix = np.array([rng.multinomial(n, p) for n, p in zip(totals, preferences, strict=True)], dtype=float)
        counts = HourCounts(customer_ids=np.arange(6000).astype(object), counts=matrix,
                            timezone=np.full(6000, "UTC", dtype=object), timezone_known=np.ones(6000, bool))
        prior = fit_prior(counts)
        assert prior.shop_concentration == pytest.approx(true_concentration, rel=0.1)  # seen: within 3%
        assert np.abs(prior.shop_mean - profile).max() < 0.01


def test_one_engagement_is_pulled_to_the_group_profile_and_fifty_are_not() -> None:
    rng = np.random.default_rng(8)
    rows = _group_population(rng, "m", 600, (7, 8, 9)) | _group_population(rng, "e", 300, (19, 20, 21))
    rows |= {"once": {8: 1}, "often": {8: 50}, "quiet": {}}
    counts = _counts(rows)
    groups = pd.Series({customer: "morning" if customer.startswith("m") else "evening" for customer in rows})
    prior = fit_prior(counts, groups)
    evening = list(prior.groups).index("evening")
    assert not prior.uses_shop_prior.any() and prior.concentration[evening] > 2
    assert prior.mean[evening, 8] > 0  # smoothing: an hour nobody in the group used stays possible
    picks = pick_send_hours(counts, prior, groups, AS_OF).set_index("customer_id")
    # "once" read at 08, the shop's busiest hour, but their group reads in the evening: one engagement is not enough
    assert prior.shop_hour in (7, 8, 9)
    assert 19 <= picks.loc["once", "send_hour_local"] <= 21
    assert picks.loc["often", "send_hour_local"] == 8
    assert picks.loc["often", "confidence"] > 0.8 > picks.loc["once", "confidence"]
    # no engagement at all: the group's best hour, with the group's (low) confidence
    assert picks.loc["quiet", "send_hour_local"] == prior.table().set_index("group").loc["evening", "best_hour"]
    assert picks.loc["quiet", "engagements"] == 0
    assert picks.loc["quiet", "confidence"] < picks.loc[picks["engagements"] >= 8, "confidence"].min()


def test_a_small_group_or_a_customer_without_one_takes_the_shop_prior() -> None:
    rng = np.random.default_rng(9)
    rows = _group_population(rng, "m", 200, (7, 8, 9)) | _group_population(rng, "t", 10, (15,))
    rows |= {"stray": {}}
    groups = pd.Series({customer: "tiny" if customer.startswith("t") else "main" for customer in rows if
                        customer != "stray"})
    prior = fit_prior(_counts(rows), groups, min_group_customers=50)
    table = prior.table().set_index("group")
    assert bool(table.loc["tiny", "uses_shop_prior"]) and table.loc["tiny", "customers"] == 10
    tiny = list(prior.groups).index("tiny")
    assert np.array_equal(prior.mean[tiny], prior.shop_mean)
    assert prior.concentration[tiny] == prior.shop_concentration
    picks = pick_send_hours(_counts(rows), prior, groups, AS_OF).set_index("customer_id")
    assert picks.loc["stray", "send_hour_local"] == table.loc["tiny", "best_hour"] == 8


# --- the pick ------------------------------------------------------------------------------------------------------


def test_the_window_is_circular_and_does_not_split_two_habits() -> None:
    rng = np.random.default_rng(4)
    rows = _group_population(rng, "e", 300, (19, 20, 21)) | {
        "night": {22: 4, 23: 4, 0: 4},  # the ±1 h window around 23 holds all of it
        "midnight": {23: 6, 0: 6},
        "two_habits": {7: 6, 8: 6},
    }
    counts = _counts(rows)
    picks = pick_send_hours(counts, fit_prior(counts), None, AS_OF).set_index("customer_id")
    assert picks.loc["night", "send_hour_local"] == 23 and picks.loc["night", "confidence"] > 0.75
    assert picks.loc["midnight", "send_hour_local"] in (23, 0) and picks.loc["midnight", "confidence"] > 0.75
    assert picks.loc["two_habits", "send_hour_local"] in (7, 8)


@pytest.mark.parametrize(("as_of", "new_york", "berlin"), [
    (datetime(2024, 3, 9, 12, tzinfo=UTC), 14, 8),  # EST, CET
    (datetime(2024, 3, 10, 6, tzinfo=UTC), 13, 8),  # 01:00 EST on the day of the change: local 09:00 is EDT
    (datetime(2024, 3, 11, 12, tzinfo=UTC), 13, 8),  # EDT, CET
    (datetime(2024, 4, 1, 12, tzinfo=UTC), 13, 7),  # EDT, CEST
])
def test_the_utc_send_hour_follows_dst_at_as_of(as_of: datetime, new_york: int, berlin: int) -> None:
    rows = {"ny": {9: 30}, "berlin": {9: 30}, "kolkata": {9: 30}}
    counts = HourCounts(customer_ids=np.array(list(rows), dtype=object), counts=_counts(rows).counts,
                        timezone=np.array(["America/New_York", "Europe/Berlin", "Asia/Kolkata"], dtype=object),
                        timezone_known=np.ones(3, bool))
    picks = pick_send_hours(counts, fit_prior(counts), None, as_of).set_index("customer_id")
    assert (picks["send_hour_local"] == 9).all()
    assert picks.loc["ny", "send_hour_utc"] == new_york and picks.loc["berlin", "send_hour_utc"] == berlin
    assert picks.loc["kolkata", "send_hour_utc"] == 4
    assert (picks["timezone"] == counts.timezone).all()


# --- evaluation ----------------------------------------------------------------------------------------------------


def test_the_evaluation_counts_later_engagements_within_the_tolerance() -> None:
    history = _counts({"a": {9: 3}, "b": {20: 5}, "c": {}, "d": {9: 3}})  # pooled mode: 9
    picks = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "send_hour_local": [10, 3, 23, 9]})
    later = _counts({"a": {9: 2, 12: 1}, "b": {20: 4, 23: 1}, "c": {0: 2, 14: 1}, "d": {},
                     "unpicked": {9: 10}})  # d: nothing later; unpicked: no pick to judge
    scores = evaluate_send_hours(picks, later, history=history).set_index("method")
    assert (scores["customers"] == 3).all() and (scores["engagements"] == 11).all()
    # model: a's 09 (2) near 10, c's 00 (2) near 23; shop 09: a's 09; own mode: a's 09 and b's 20 (c has none: 09)
    assert scores["hits"].to_dict() == {"model": 4.0, "shop_hour": 2.0, "historical_mode": 6.0}
    assert scores.loc["model", "hit_share"] == pytest.approx(4 / 11)
    exact = evaluate_send_hours(picks, later, 0, history=history, shop_hour=20).set_index("method")
    assert exact["hits"].to_dict() == {"model": 0.0, "shop_hour": 4.0, "historical_mode": 6.0}


# --- refused input -------------------------------------------------------------------------------------------------


GOOD_EVENTS = [("a", "2024-04-01T07:30Z", "open"), ("b", "2024-04-02T08:30Z", "click")]
ZONE_OF = pd.Series({"a": "UTC", "b": "Europe/Berlin"})


@pytest.mark.parametrize("column", ["customer_id", "occurred_at", "kind"])
def test_a_missing_column_is_named(column: str) -> None:
    with pytest.raises(ModelInputError, match=f"events is missing the column.*{column}"):
        local_hour_counts(_events(GOOD_EVENTS).drop(columns=column), ZONE_OF, AS_OF)


def test_events_after_as_of_are_refused_naming_how_many_and_the_first() -> None:
    events = _events([*GOOD_EVENTS, ("b", "2024-04-25T09:00Z", "open"), ("a", "2024-04-21T10:00Z", "open")])
    with pytest.raises(ModelInputError, match=r"2 events are after as_of 2024-04-20.*first at 2024-04-21T10:00.*'a'"):
        local_hour_counts(events, ZONE_OF, AS_OF)


@pytest.mark.parametrize(("change", "message"), [
    (lambda e: e.assign(kind=["open", "bounce"]), r"events.kind must be one of.*but 1 events are not.*bounce"),
    (lambda e: e.assign(occurred_at=[pd.NaT, e["occurred_at"][1]]), r"events.occurred_at has 1 missing values"),
    (lambda e: e.assign(occurred_at=["yesterday", "today"]), r"events.occurred_at could not be read"),
    (lambda e: e.assign(customer_id=[None, "b"]), r"events.customer_id has 1 missing values"),
])
def test_unusable_events_are_refused_by_name(change: object, message: str) -> None:
    with pytest.raises(ModelInputError, match=message):
        local_hour_counts(change(_events(GOOD_EVENTS)), ZONE_OF, AS_OF)


def test_other_unusable_input_is_refused_by_name() -> None:
    events = _events(GOOD_EVENTS)
    with pytest.raises(ModelInputError, match="click_weight must be a non-negative number"):
        local_hour_counts(events, ZONE_OF, AS_OF, click_weight=-1.0)
    with pytest.raises(ModelInputError, match="timezones has customer 'a' more than once"):
        local_hour_counts(events, pd.Series(["UTC", "UTC"], index=["a", "a"]), AS_OF)
    with pytest.raises(ModelInputError, match="as_of must be a datetime"):
        local_hour_counts(events, ZONE_OF, "not a date")
    with pytest.raises(ModelInputError, match="no customer has an engagement"):
        fit_prior(_counts({"a": {}, "b": {}}))
    with pytest.raises(ModelInputError, match="no customer has two or more engagements"):
        fit_prior(_counts({"a": {3: 1}, "b": {4: 1}}))
    with pytest.raises(ModelInputError, match=r"customers x 24 hours, got shape \(2, 12\)"):
        HourCounts(customer_ids=np.array(["a", "b"]), counts=np.zeros((2, 12)), timezone=np.array(["UTC"] * 2),
                   timezone_known=np.ones(2, bool))
    history = _counts({"a": {9: 3}})
    with pytest.raises(ModelInputError, match="picks is missing the column.*send_hour_local"):
        evaluate_send_hours(pd.DataFrame({"customer_id": ["a"]}), history, history=history)
    with pytest.raises(ModelInputError, match="tolerance_hours must be a whole number of hours from 0 to 11"):
        evaluate_send_hours(pd.DataFrame({"customer_id": ["a"], "send_hour_local": [9]}), history, 12,
                            history=history)
    with pytest.raises(ModelInputError, match=r"picks.send_hour_local must be whole hours 0..23.*24"):
        evaluate_send_hours(pd.DataFrame({"customer_id": ["a"], "send_hour_local": [24]}), history, history=history)
