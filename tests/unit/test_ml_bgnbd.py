"""BG/NBD and Gamma-Gamma: the fits recover the parameters of populations the models generate, the forecasts agree
with what those populations then do and with the published CDNOW figure, the order summary follows the BTYD
conventions exactly, extreme customers stay finite, and every unusable input is refused with a message that names it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from ml.bgnbd import (
    BgNbdParams,
    GammaGammaParams,
    days_to_next_purchase,
    expected_average_value,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    p_alive,
    p_no_purchase,
    simulate_bgnbd,
    simulate_gamma_gamma,
    summarize_orders,
)
from ml.errors import ModelInputError

TRUE_BGNBD = BgNbdParams(r=0.25, alpha=40.0, a=0.8, b=2.5, log_likelihood=np.nan, customers=0, converged=True)
TRUE_GAMMA_GAMMA = GammaGammaParams(p=6.0, q=4.0, v=15.0, log_likelihood=np.nan, customers=0, converged=True)
CUSTOMERS = 50_000
HOLDOUT_DAYS = 90.0
# Relative errors of the fitted parameters, measured over 20 seeds at this size: standard deviation 1-2% for r and
# alpha, 4-5% for a and b (the dropout process is seen only through the repeat customers; worst seen 17% on b), 2-4%
# for the Gamma-Gamma p, q, v (worst 11%). The tolerances below are 4 standard deviations or more, so a failure
# means a wrong likelihood rather than an unlucky seed.
BGNBD_TOLERANCE = {"r": 0.10, "alpha": 0.10, "a": 0.20, "b": 0.20}
GAMMA_GAMMA_TOLERANCE = {"p": 0.15, "q": 0.15, "v": 0.20}


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    rng = np.random.default_rng(20240501)
    return simulate_bgnbd(TRUE_BGNBD, CUSTOMERS, rng.uniform(200.0, 700.0, CUSTOMERS), rng, holdout_days=HOLDOUT_DAYS)


@pytest.fixture(scope="module")
def history(population: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (population["frequency"].to_numpy(), population["recency_days"].to_numpy(),
            population["age_days"].to_numpy())


@pytest.fixture(scope="module")
def fitted(history: tuple[np.ndarray, np.ndarray, np.ndarray]) -> BgNbdParams:
    return fit_bgnbd(*history)


# --- recovery ------------------------------------------------------------------------------------------------------


def test_fit_bgnbd_recovers_the_parameters_of_a_simulated_population(fitted: BgNbdParams) -> None:
    assert fitted.converged
    assert fitted.customers == CUSTOMERS
    assert np.isfinite(fitted.log_likelihood) and fitted.log_likelihood < 0
    for name, tolerance in BGNBD_TOLERANCE.items():
        truth, estimate = getattr(TRUE_BGNBD, name), getattr(fitted, name)
        assert estimate == pytest.approx(truth, rel=tolerance), f"{name}: true {truth}, fitted {estimate}"
    assert set(fitted.as_dict()) == {"r", "alpha", "a", "b", "log_likelihood", "customers", "converged"}


def test_fit_gamma_gamma_recovers_the_parameters_of_simulated_spend(population: pd.DataFrame) -> None:
    frequency = population["frequency"].to_numpy()
    monetary = simulate_gamma_gamma(TRUE_GAMMA_GAMMA, frequency, np.random.default_rng(7))
    assert np.all(monetary[frequency == 0] == 0)

    fitted = fit_gamma_gamma(frequency, monetary)

    assert fitted.converged
    assert fitted.customers == np.count_nonzero(frequency)  # only repeat customers are fitted
    for name, tolerance in GAMMA_GAMMA_TOLERANCE.items():
        truth, estimate = getattr(TRUE_GAMMA_GAMMA, name), getattr(fitted, name)
        assert estimate == pytest.approx(truth, rel=tolerance), f"{name}: true {truth}, fitted {estimate}"


def test_a_penalizer_pulls_the_parameters_towards_one(history: tuple[np.ndarray, np.ndarray, np.ndarray],
                                                      fitted: BgNbdParams) -> None:
    penalized = fit_bgnbd(*history, penalizer=0.1)

    assert penalized.converged
    def spread(params: BgNbdParams) -> float:
        return float(np.sum(np.log([params.r, params.alpha, params.a, params.b]) ** 2))
    assert spread(penalized) < spread(fitted)
    assert penalized.log_likelihood < fitted.log_likelihood  # the unpenalized fit is the maximum


def test_a_fit_that_runs_out_of_iterations_is_flagged_not_raised(
        history: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    params = fit_bgnbd(*history, max_iterations=1)

    assert params.converged is False
    assert all(np.isfinite([params.r, params.alpha, params.a, params.b]))


# --- P(alive) and forecasts ------------------------------------------------------------------------------------------


def test_p_alive_is_one_without_a_repeat_purchase_and_falls_as_the_last_purchase_recedes(
        history: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    assert np.all(p_alive(TRUE_BGNBD, [0, 0, 0], [0, 0, 0], [0, 30, 3650]) == 1.0)

    recency = np.linspace(300.0, 1.0, 50)  # the same 4 repeat purchases, the last one ever longer ago
    alive = p_alive(TRUE_BGNBD, np.full(50, 4), recency, np.full(50, 300.0))
    assert np.all(np.diff(alive) < 0)

    everyone = p_alive(TRUE_BGNBD, *history)
    assert np.all((everyone >= 0) & (everyone <= 1))


def test_expected_purchases_match_what_the_simulated_population_then_buys(
        population: pd.DataFrame, history: tuple[np.ndarray, np.ndarray, np.ndarray], fitted: BgNbdParams) -> None:
    actual = population["holdout_purchases"].mean()

    assert expected_purchases(TRUE_BGNBD, HOLDOUT_DAYS, *history).mean() == pytest.approx(actual, rel=0.10)
    assert expected_purchases(fitted, HOLDOUT_DAYS, *history).mean() == pytest.approx(actual, rel=0.10)


def test_expected_purchases_reproduce_the_published_cdnow_example() -> None:
    # FHL 2005, section 5: with the CDNOW fit (weeks) a customer with x=2, t_x=30.43, T=38.86 is expected to make
    # 1.226 purchases in the next 39 weeks. The model is invariant to the time unit, so in days:
    cdnow = BgNbdParams(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426, log_likelihood=np.nan, customers=0, converged=True)

    expected = expected_purchases(cdnow, 39 * 7, [2], [30.43 * 7], [38.86 * 7])

    assert expected[0] == pytest.approx(1.226, abs=0.0005)


@pytest.mark.parametrize(("frequency", "recency", "age", "horizon", "reference"), [
    # FHL 2005 eq. 10 as written (no transformation), evaluated with mpmath at 40 digits.
    (500, 3640.0, 3650.0, 730.0, 91.410519766892525),
    (1, 0.5, 1.0, 730.0, 5.7895823416557198),
    (0, 0.0, 0.0, 730.0, 1.9560057885611117),
    (0, 0.0, 3650.0, 730.0, 0.048060484402054137),
    (250, 3000.0, 3650.0, 730.0, 1.2624125164607752e-17),
    (3, 100.0, 3650.0, 1.0, 1.1939037395040516e-7),
])
def test_expected_purchases_are_accurate_at_the_extremes(frequency: int, recency: float, age: float, horizon: float,
                                                         reference: float) -> None:
    expected = expected_purchases(TRUE_BGNBD, horizon, [frequency], [recency], [age])

    assert expected[0] == pytest.approx(reference, rel=1e-9)


@pytest.mark.parametrize(("a", "b", "frequency", "recency", "age", "horizon", "reference"), [
    # Eq. 10 is 0/0 at a = 1, and for x = 0 at a + b = 1; the references are its limits, taken with mpmath.
    (1.0, 2.5, 0, 0.0, 0.0, 730.0, 1.7096519143559119),
    (1.0, 2.5, 3, 50.0, 200.0, 90.0, 0.17088046536703824),
    (0.4, 0.6, 0, 0.0, 0.0, 730.0, 1.808432848797494),
    (0.4, 0.6, 0, 0.0, 100.0, 90.0, 0.14109743301300864),
])
def test_expected_purchases_are_continuous_across_removable_singularities(
        a: float, b: float, frequency: int, recency: float, age: float, horizon: float, reference: float) -> None:
    params = BgNbdParams(r=0.25, alpha=40.0, a=a, b=b, log_likelihood=np.nan, customers=0, converged=True)

    expected = expected_purchases(params, horizon, [frequency], [recency], [age])

    assert expected[0] == pytest.approx(reference, rel=1e-7)


def test_p_no_purchase_is_the_probability_of_dropout_or_silence(
        population: pd.DataFrame, history: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    frequency, recency, age = history
    silent = p_no_purchase(TRUE_BGNBD, HOLDOUT_DAYS, *history)

    assert np.all((silent >= 0) & (silent <= 1))
    alive = p_alive(TRUE_BGNBD, *history)
    silent_if_alive = ((TRUE_BGNBD.alpha + age) / (TRUE_BGNBD.alpha + age + HOLDOUT_DAYS)) ** (TRUE_BGNBD.r + frequency)
    np.testing.assert_allclose(silent, 1 - alive + alive * silent_if_alive, rtol=1e-12)
    assert np.all(p_no_purchase(TRUE_BGNBD, 0.0, *history) == pytest.approx(1.0))
    assert np.all(p_no_purchase(TRUE_BGNBD, 2 * HOLDOUT_DAYS, *history) <= silent)
    # and the simulated population agrees: the share that bought nothing in the holdout
    assert silent.mean() == pytest.approx(np.mean(population["holdout_purchases"] == 0), abs=0.01)


def test_days_to_next_purchase_inverts_p_no_purchase_and_grows_with_the_probability_asked() -> None:
    frequency, recency, age = np.array([0, 5, 20, 20]), np.array([0.0, 150.0, 195.0, 20.0]), np.full(4, 200.0)

    days = {probability: days_to_next_purchase(TRUE_BGNBD, frequency, recency, age, probability=probability,
                                               max_days=3650.0)
            for probability in (0.05, 0.1, 0.2)}

    assert np.all(np.isfinite(days[0.05][:3]))
    for lower, higher in ((0.05, 0.1), (0.1, 0.2)):
        reached = np.isfinite(days[higher])
        assert np.all(days[higher][reached] > days[lower][reached])
        assert np.all(np.isfinite(days[lower][reached]))  # what a higher bar reaches, a lower one reaches too
    # at that many days the purchase probability is exactly the one asked for
    reached = np.isfinite(days[0.1])
    bought = 1 - p_no_purchase(TRUE_BGNBD, days[0.1][reached], frequency[reached], recency[reached], age[reached])
    np.testing.assert_allclose(bought, 0.1, rtol=1e-9)


def test_days_to_next_purchase_is_nan_when_the_probability_is_out_of_reach() -> None:
    frequency, recency, age = [20, 0], [10.0, 0.0], [700.0, 700.0]
    assert p_alive(TRUE_BGNBD, frequency, recency, age)[0] < 0.01  # gone quiet after a busy start

    unreachable = days_to_next_purchase(TRUE_BGNBD, frequency, recency, age, probability=0.5)
    assert np.isnan(unreachable[0])  # P(alive) itself is below the probability asked
    beyond_window = days_to_next_purchase(TRUE_BGNBD, frequency, recency, age, probability=0.02, max_days=1.0)
    assert np.isnan(beyond_window[1])  # reachable, but not within one day
    assert np.isfinite(days_to_next_purchase(TRUE_BGNBD, frequency, recency, age, probability=0.02)[1])


def test_scores_stay_finite_for_extreme_customers(fitted: BgNbdParams) -> None:
    frequency = np.array([0, 1, 500, 500, 500, 250, 0, 1])
    recency = np.array([0.0, 0.0, 0.0, 3650.0, 1.0, 3000.0, 0.0, 1e-9])
    age = np.array([3650.0, 3650.0, 3650.0, 3650.0, 3650.0, 3650.0, 0.0, 1e-9])
    edge_cases = [fitted, TRUE_BGNBD,
                  BgNbdParams(r=0.01, alpha=0.5, a=0.05, b=0.05, log_likelihood=0, customers=0, converged=True),
                  BgNbdParams(r=50, alpha=3000, a=1.0, b=50, log_likelihood=0, customers=0, converged=True),
                  BgNbdParams(r=1, alpha=10, a=0.4, b=0.6, log_likelihood=0, customers=0, converged=True),
                  BgNbdParams(r=5, alpha=0.1, a=20, b=0.5, log_likelihood=0, customers=0, converged=True)]
    for params in edge_cases:
        for horizon in (0.0, 1e-3, 90.0, 730.0):
            expected = expected_purchases(params, horizon, frequency, recency, age)
            silent = p_no_purchase(params, horizon, frequency, recency, age)
            assert np.all(np.isfinite(expected) & (expected >= 0)), (params, horizon, expected)
            assert np.all((silent >= 0) & (silent <= 1)), (params, horizon, silent)
        alive = p_alive(params, frequency, recency, age)
        assert np.all((alive >= 0) & (alive <= 1))
        days = days_to_next_purchase(params, frequency, recency, age, probability=0.1)
        assert np.all(np.isnan(days) | ((days > 0) & (days <= 365)))


# --- Gamma-Gamma scoring -----------------------------------------------------------------------------------------------


def test_expected_average_value_shrinks_own_spend_towards_the_population_mean() -> None:
    value = expected_average_value(TRUE_GAMMA_GAMMA, [0, 1, 10, 1000], [0.0, 100.0, 100.0, 100.0])

    population_mean = 6 * 15 / (4 - 1)
    assert value[0] == pytest.approx(population_mean)
    assert value[1] == pytest.approx(6 * (15 + 1 * 100) / (6 * 1 + 4 - 1))
    assert population_mean < value[1] < value[2] < value[3] < 100.0 * 1.01  # more purchases, more own weight


def test_expected_average_value_needs_a_population_mean_when_q_is_at_most_one() -> None:
    heavy_tailed = GammaGammaParams(p=2.0, q=0.8, v=10.0, log_likelihood=np.nan, customers=0, converged=True)

    with pytest.raises(ModelInputError, match=r"q=0.8 <= 1 .*pass population_mean"):
        expected_average_value(heavy_tailed, [0, 3], [0.0, 50.0])
    value = expected_average_value(heavy_tailed, [0, 3], [0.0, 50.0], population_mean=42.0)
    assert value[0] == 42.0
    assert value[1] == pytest.approx(2 * (10 + 3 * 50) / (2 * 3 + 0.8 - 1))


# --- order summary ---------------------------------------------------------------------------------------------------


AS_OF = datetime(2024, 3, 1, tzinfo=UTC)
EASTERN = timezone(timedelta(hours=-5))
ORDERS = [  # customer, ordered_at, net sales
    ("b", datetime(2024, 1, 1, 10, tzinfo=UTC), 10.0),
    ("b", datetime(2024, 1, 1, 15, tzinfo=UTC), 5.0),  # same day: one occasion worth 15, timed at 10:00
    ("b", datetime(2024, 1, 11, 10, tzinfo=UTC), 20.0),
    ("b", datetime(2024, 1, 21, 23, 30, tzinfo=UTC), 4.0),
    ("b", datetime(2024, 1, 21, 22, tzinfo=UTC), 30.0),  # out of order on purpose; occasion of 34 at 22:00
    ("b", datetime(2024, 3, 5, tzinfo=UTC), 100.0),  # after as_of: ignored
    ("a", datetime(2024, 2, 15, 22, tzinfo=EASTERN), 12.0),  # 2024-02-16 03:00 UTC
    ("a", datetime(2024, 2, 16, 20, tzinfo=UTC), 8.0),  # the same UTC day: one occasion
    ("c", datetime(2024, 3, 1, 0, 0, 1, tzinfo=UTC), 50.0),  # one second after as_of: not a customer yet
]


def test_summarize_orders_merges_same_day_orders_and_ignores_later_ones() -> None:
    customers, ordered_at, sales = zip(*ORDERS, strict=True)

    summary = summarize_orders(list(customers), list(ordered_at), np.array(sales), AS_OF)

    assert list(summary.index) == ["a", "b"] and summary.index.name == "customer_id"
    assert list(summary.columns) == ["frequency", "recency_days", "age_days", "monetary_value", "first_order_at",
                                     "last_order_at"]
    a, b = summary.loc["a"], summary.loc["b"]
    assert (a["frequency"], a["recency_days"], a["monetary_value"]) == (0, 0.0, 0.0)
    assert a["age_days"] == pytest.approx(13 + 21 / 24)  # 2024-02-16 03:00 to 2024-03-01 00:00
    assert b["frequency"] == 2
    assert b["recency_days"] == pytest.approx(20.5)  # 2024-01-01 10:00 to 2024-01-21 22:00
    assert b["age_days"] == pytest.approx(59 + 14 / 24)  # 2024-01-01 10:00 to 2024-03-01 00:00
    assert b["monetary_value"] == pytest.approx((20.0 + 34.0) / 2)  # the repeat occasions only
    assert b["first_order_at"] == pd.Timestamp("2024-01-01 10:00", tz="UTC")
    assert b["last_order_at"] == pd.Timestamp("2024-01-21 23:30", tz="UTC")
    assert summary["frequency"].dtype == np.int64


def test_summarize_orders_reads_naive_timestamps_as_utc() -> None:
    customers, ordered_at, sales = zip(*ORDERS, strict=True)
    aware = summarize_orders(list(customers), list(ordered_at), list(sales), AS_OF)
    naive = np.array([pd.Timestamp(moment).tz_convert("UTC").tz_localize(None) for moment in ordered_at],
                     dtype="datetime64[ns]")

    from_naive = summarize_orders(np.array(customers), naive, list(sales), AS_OF.replace(tzinfo=None))

    pd.testing.assert_frame_equal(from_naive, aware, check_dtype=False)


def test_summarize_orders_without_orders_up_to_as_of_is_empty() -> None:
    summary = summarize_orders(["a"], [datetime(2024, 5, 1, tzinfo=UTC)], [1.0], AS_OF)

    assert summary.empty and "frequency" in summary.columns


# --- bad input -------------------------------------------------------------------------------------------------------


def repeat_history(customers: int = 10) -> dict[str, np.ndarray]:
    return {"frequency": np.arange(customers) % 3, "recency_days": (np.arange(customers) % 3) * 10.0,
            "age_days": np.full(customers, 100.0)}


def with_changes(**changes: object) -> dict[str, object]:
    return {**repeat_history(), **changes}


@pytest.mark.parametrize(("arguments", "message"), [
    ({"frequency": [], "recency_days": [], "age_days": []}, "no customers to fit"),
    (with_changes(age_days=np.full(9, 100.0)), r"one value per customer, got lengths 10, 10 and 9"),
    (with_changes(recency_days=np.r_[-1.0, np.zeros(9)]), r"recency_days has 1 negative values \(first at position 0"),
    (with_changes(age_days=np.r_[np.nan, np.full(9, 100.0)]), r"age_days has 1 NaN or infinite values"),
    (with_changes(recency_days=np.r_[0.0, 150.0, np.zeros(8)]), r"recency_days exceeds age_days for 1 customers"),
    (with_changes(frequency=np.r_[0.0, 1.5, np.zeros(8)]), r"frequency must count whole repeat purchases, got 1.5"),
    (with_changes(recency_days=np.r_[5.0, np.zeros(9)]), r"recency_days must be 0 where frequency is 0"),
    (with_changes(frequency=["x"] * 10), r"frequency must be numbers"),
    ({"frequency": [1, 0, 0], "recency_days": [5.0, 0, 0], "age_days": [10.0] * 3},
     r"needs at least 2 customers with a repeat purchase \(frequency > 0\) to estimate dropout, got 1"),
])
def test_fit_bgnbd_refuses_unusable_input_by_name(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ModelInputError, match=message):
        fit_bgnbd(**arguments)


def test_fit_bgnbd_refuses_a_negative_penalizer() -> None:
    with pytest.raises(ModelInputError, match="penalizer must be a non-negative number, got -1"):
        fit_bgnbd(**repeat_history(), penalizer=-1.0)


@pytest.mark.parametrize(("frequency", "monetary", "message"), [
    ([], [], "no customers to fit"),
    ([1, 2, 0], [10.0, 20.0], r"one value per customer, got lengths 3 and 2"),
    ([1, 2, 3], [10.0, np.nan, 5.0], r"monetary_value has 1 NaN or infinite values \(first at position 1\)"),
    ([1, 2, 3, 0], [10.0, 20.0, 0.0, 0.0],
     r"needs at least 3 customers with a repeat purchase and a positive monetary_value, got 2"),
])
def test_fit_gamma_gamma_refuses_unusable_input_by_name(frequency: list[int], monetary: list[float],
                                                        message: str) -> None:
    with pytest.raises(ModelInputError, match=message):
        fit_gamma_gamma(frequency, monetary)


@pytest.mark.parametrize(("score", "message"), [
    (lambda: expected_purchases(TRUE_BGNBD, -1.0, [1], [1.0], [2.0]), "horizon_days has 1 negative values"),
    (lambda: expected_purchases(TRUE_BGNBD, [30.0, 60.0], [1] * 3, [1.0] * 3, [2.0] * 3),
     r"horizon_days must be one number or one per customer \(3\), got 2"),
    (lambda: p_alive(TRUE_BGNBD, [1, 2], [1.0], [2.0]), "one value per customer"),
    (lambda: p_no_purchase(TRUE_BGNBD, 30.0, [1], [3.0], [2.0]), "recency_days exceeds age_days"),
    (lambda: days_to_next_purchase(TRUE_BGNBD, [1], [1.0], [2.0], probability=1.0),
     "probability must be strictly between 0 and 1, got 1.0"),
    (lambda: days_to_next_purchase(TRUE_BGNBD, [1], [1.0], [2.0], max_days=0), "max_days must be a positive number"),
    (lambda: p_alive(BgNbdParams(r=0.2, alpha=0.0, a=1, b=1, log_likelihood=0, customers=0, converged=False),
                     [1], [1.0], [2.0]), r"BG/NBD parameters must be positive and finite, got alpha=0.0"),
    (lambda: simulate_bgnbd(TRUE_BGNBD, 3, [10.0, 20.0], np.random.default_rng(0)),
     r"age_days must be one number or one per customer \(3\), got 2"),
])
def test_scoring_refuses_unusable_input_by_name(score, message: str) -> None:
    with pytest.raises(ModelInputError, match=message):
        score()


@pytest.mark.parametrize(("customer_ids", "ordered_at", "net_sales", "message"), [
    (["a", "b"], [AS_OF], [1.0, 2.0], r"must have the same length, got 2, 1 and 2"),
    (["a", None], [AS_OF, AS_OF], [1.0, 2.0], r"customer_ids has 1 missing values \(first at position 1\)"),
    (["a", "b"], [AS_OF, None], [1.0, 2.0], r"ordered_at has 1 missing values"),
    (["a", "b"], [AS_OF, AS_OF], [1.0, np.nan], r"net_sales has 1 NaN or infinite values"),
    (["a"], ["not a time"], [1.0], r"ordered_at could not be read as timestamps"),
])
def test_summarize_orders_refuses_unusable_input_by_name(customer_ids: list, ordered_at: list, net_sales: list,
                                                         message: str) -> None:
    with pytest.raises(ModelInputError, match=message):
        summarize_orders(customer_ids, ordered_at, net_sales, AS_OF)


def test_summarize_orders_refuses_an_as_of_that_is_not_a_time() -> None:
    with pytest.raises(ModelInputError, match="as_of must be a datetime"):
        summarize_orders(["a"], [AS_OF], [1.0], "yesterday")
