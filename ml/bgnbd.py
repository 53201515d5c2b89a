"""BG/NBD and Gamma-Gamma: who is still buying, how much more, when next, and for how much, from order history alone.

BG/NBD (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way") models repeat purchases as a Poisson
process (rate lambda ~ Gamma(r, alpha) across customers) that ends, right after any repeat purchase, with
probability p ~ Beta(a, b). Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and Customer Lifetime Value") models the
mean spend of a customer's repeat purchases. Both are fitted here by maximum likelihood on numpy/scipy, written
out rather than taken from `lifetimes` (unmaintained), so that fitting and scoring stay vectorized on millions of
customers and every unusable input ends in a `ModelInputError` that says what is wrong.

Conventions, the same in every public function:
- Time is in DAYS: recency, age, horizons, and the BG/NBD scale `alpha` (so r / alpha is purchases per day).
- A purchase occasion is one customer's UTC calendar day with at least one order: several orders on one day are one
  purchase (net sales summed), the usual BTYD convention, so a split basket does not look like a loyal customer.
- `frequency` counts repeat occasions (occasions - 1); `recency_days` runs from the first occasion to the last;
  `age_days` from the first occasion to the as-of time; `monetary_value` is the mean net sales of the repeat
  occasions (0 without one), as Gamma-Gamma expects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.optimize import OptimizeResult, minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

from ml.checks import utc_timestamp
from ml.errors import ModelInputError

__all__ = [
    "MIN_REPEAT_CUSTOMERS_BGNBD",
    "MIN_REPEAT_CUSTOMERS_GAMMA_GAMMA",
    "BgNbdParams",
    "GammaGammaParams",
    "days_to_next_purchase",
    "expected_average_value",
    "expected_purchases",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "p_alive",
    "p_no_purchase",
    "simulate_bgnbd",
    "simulate_gamma_gamma",
    "summarize_orders",
]

# Below these counts the dropout process (BG/NBD) or the spread of spend between customers (Gamma-Gamma) is not
# identified: the optimizer would return a number, but not an estimate.
MIN_REPEAT_CUSTOMERS_BGNBD = 2
MIN_REPEAT_CUSTOMERS_GAMMA_GAMMA = 3

# Log-parameters stay within exp(+-25): far beyond any sensible value, but short of overflow in the likelihood.
_LOG_PARAM_BOUND = 25.0
# Recency may exceed age by this many days through rounding elsewhere (then it is clipped to age).
_RECENCY_SLACK_DAYS = 1e-6
# A fit stopped by the line search (not by its own tolerances) still counts as converged when the gradient of the
# mean log-likelihood is this flat: the optimum is found, only the last step could not improve on float noise.
_FLAT_GRADIENT = 1e-4
# Within this distance of a = 1 the conditional expectation is interpolated across its removable singularity.
_A_NEAR_ONE = 1e-5
_OPTIMIZER_OPTIONS = {"ftol": 1e-11, "gtol": 1e-7}
_NANOSECONDS_PER_DAY = 86_400 * 10**9

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


@dataclass(frozen=True)
class BgNbdParams:
    """Fitted BG/NBD parameters: lambda ~ Gamma(shape r, rate alpha) with alpha in DAYS; p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int
    converged: bool

    def as_dict(self) -> dict[str, float]:
        """Every field as a float (converged as 1.0 or 0.0), ready to log as run parameters or metrics."""
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b, "log_likelihood": self.log_likelihood,
                "customers": float(self.customers), "converged": float(self.converged)}


@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters: spend per purchase ~ Gamma(shape p, rate nu), nu ~ Gamma(shape q, rate v).

    `customers` and `log_likelihood` cover only the customers the model was fitted on (a repeat purchase and a
    positive monetary_value)."""

    p: float
    q: float
    v: float
    log_likelihood: float
    customers: int
    converged: bool

    def as_dict(self) -> dict[str, float]:
        """Every field as a float (converged as 1.0 or 0.0), ready to log as run parameters or metrics."""
        return {"p": self.p, "q": self.q, "v": self.v, "log_likelihood": self.log_likelihood,
                "customers": float(self.customers), "converged": float(self.converged)}


# --- order history -> per-customer summary -------------------------------------------------------------------------


def summarize_orders(customer_ids: ArrayLike, ordered_at: ArrayLike, net_sales: ArrayLike,
                     as_of: datetime | pd.Timestamp) -> pd.DataFrame:
    """One row per customer (index `customer_id`, sorted) with the BTYD summary of their orders up to `as_of`.

    Timestamps without a time zone are taken as UTC; orders after `as_of` are ignored. Orders of one customer on the
    same UTC calendar day are one purchase occasion, timed at that day's first order and worth the day's summed net
    sales. Columns: `frequency` (occasions - 1), `recency_days` (first occasion to last, float days), `age_days`
    (first occasion to as_of), `monetary_value` (mean net sales of the repeat occasions, 0 without one),
    `first_order_at` and `last_order_at` (earliest and latest order, UTC; the latest may be later on the day of the
    last occasion than the time recency is measured to). No order up to `as_of` gives an empty frame.
    """
    as_of_utc = utc_timestamp("as_of", as_of)
    try:
        times = pd.DatetimeIndex(pd.to_datetime(ordered_at, utc=True))
    except (TypeError, ValueError) as error:
        raise ModelInputError(f"ordered_at could not be read as timestamps: {error}") from error
    ids = pd.Series(np.asarray(customer_ids, dtype=object).ravel())
    sales = _as_float_vector("net_sales", net_sales)
    if not len(ids) == len(times) == len(sales):
        raise ModelInputError("customer_ids, ordered_at and net_sales must have the same length, got "
                              f"{len(ids)}, {len(times)} and {len(sales)}")
    _refuse_missing("customer_ids", ids.isna().to_numpy())
    _refuse_missing("ordered_at", times.isna())

    on_or_before = np.asarray(times <= as_of_utc)
    # Integer customer codes (in sorted id order) and nanoseconds: one sort, then runs, is far faster than a
    # groupby on strings and timestamps.
    customer_code, customer_id = pd.factorize(ids[on_or_before].astype(str), sort=True)
    ordered_ns = times[on_or_before].as_unit("ns").asi8
    sales = sales[on_or_before]
    chronological = np.lexsort((ordered_ns, customer_code))
    customer_code, ordered_ns, sales = customer_code[chronological], ordered_ns[chronological], sales[chronological]

    utc_day = ordered_ns // _NANOSECONDS_PER_DAY
    starts_occasion = np.ones(ordered_ns.size, dtype=bool)
    starts_occasion[1:] = (customer_code[1:] != customer_code[:-1]) | (utc_day[1:] != utc_day[:-1])
    occasion_first_order = np.flatnonzero(starts_occasion)
    occasion_customer = customer_code[occasion_first_order]
    occasion_at = ordered_ns[occasion_first_order]  # an occasion is timed at its day's first order
    occasion_sales = _sum_runs(sales, occasion_first_order)

    starts_customer = np.ones(occasion_customer.size, dtype=bool)
    starts_customer[1:] = occasion_customer[1:] != occasion_customer[:-1]
    first_occasion = np.flatnonzero(starts_customer)
    last_occasion = _run_ends(first_occasion, occasion_customer.size)
    last_order = _run_ends(occasion_first_order[first_occasion], ordered_ns.size)
    frequency = last_occasion - first_occasion
    repeat_sales = occasion_sales.copy()
    repeat_sales[first_occasion] = 0.0
    repeat_sales_total = _sum_runs(repeat_sales, first_occasion)

    first_at = occasion_at[first_occasion]
    summary = pd.DataFrame({
        "frequency": frequency.astype(np.int64),
        "recency_days": (occasion_at[last_occasion] - first_at) / _NANOSECONDS_PER_DAY,
        "age_days": (as_of_utc.as_unit("ns").value - first_at) / _NANOSECONDS_PER_DAY,
        "monetary_value": np.divide(repeat_sales_total, frequency, out=np.zeros(frequency.size), where=frequency > 0),
        "first_order_at": pd.to_datetime(first_at, unit="ns", utc=True),
        "last_order_at": pd.to_datetime(ordered_ns[last_order], unit="ns", utc=True),
    }, index=pd.Index(np.asarray(customer_id, dtype=object), name="customer_id"))
    return summary


def _sum_runs(values: np.ndarray, run_starts: np.ndarray) -> np.ndarray:
    """Sum of each run of `values` beginning at the sorted indices `run_starts` (the last run ends at the end)."""
    return np.add.reduceat(values, run_starts) if run_starts.size else np.zeros(0)


def _run_ends(run_starts: np.ndarray, size: int) -> np.ndarray:
    """Index of the last element of each run, for runs beginning at the sorted indices `run_starts`."""
    return np.append(run_starts[1:], size)[: run_starts.size] - 1


# --- BG/NBD ----------------------------------------------------------------------------------------------------------


def fit_bgnbd(frequency: ArrayLike, recency_days: ArrayLike, age_days: ArrayLike, *, penalizer: float = 0.0,
              max_iterations: int = 1000) -> BgNbdParams:
    """Maximum-likelihood BG/NBD parameters (alpha in days) from per-customer frequency, recency and age.

    Minimizes the mean negative log-likelihood (FHL 2005 eq. 6) over log-parameters with L-BFGS-B and an analytic
    gradient, plus `penalizer` * sum(log-parameter^2) (an L2 pull of every parameter towards 1; 0 = plain MLE).
    Starts from r=1, alpha=mean age, a=b=1 and, should that fail, from a moment-based second start. A fit that does
    not converge is returned with converged=False: the caller decides.
    """
    frequency, recency, age = _validated_history(frequency, recency_days, age_days)
    _check_penalizer(penalizer)
    if frequency.size == 0:
        raise ModelInputError("no customers to fit: frequency, recency_days and age_days are empty")
    repeat_customers = int(np.count_nonzero(frequency))
    if repeat_customers < MIN_REPEAT_CUSTOMERS_BGNBD:
        raise ModelInputError(f"BG/NBD needs at least {MIN_REPEAT_CUSTOMERS_BGNBD} customers with a repeat purchase "
                              f"(frequency > 0) to estimate dropout, got {repeat_customers}")

    objective = _bgnbd_objective(frequency, recency, age, penalizer)
    mean_age = max(float(age.mean()), 1.0)
    purchase_rate = max(float(frequency.mean()), 0.1) / mean_age
    starts = [np.log([1.0, mean_age, 1.0, 1.0]), np.log([0.5, 0.5 / purchase_rate, 0.5, 2.0])]
    result, converged = _minimize_from_starts(objective, starts, bounds=4, max_iterations=max_iterations)
    r, alpha, a, b = np.exp(result.x)
    log_likelihood = -(float(result.fun) - penalizer * float(np.sum(result.x ** 2))) * frequency.size
    return BgNbdParams(r=float(r), alpha=float(alpha), a=float(a), b=float(b), log_likelihood=log_likelihood,
                       customers=int(frequency.size), converged=converged)


def _bgnbd_objective(frequency: np.ndarray, recency: np.ndarray, age: np.ndarray, penalizer: float) -> Objective:
    """Mean negative log-likelihood and its gradient in log-parameters.

    Per customer, L = Gamma(r+x) alpha^r / Gamma(r) * [B(a, b+x)/B(a,b) (alpha+T)^-(r+x)
                                                     + [x>0] B(a+1, b+x-1)/B(a,b) (alpha+t_x)^-(r+x)].
    Customers without a repeat purchase have only the first term, so they are summed apart (no log-sum-exp);
    everything that depends on x alone is computed once per distinct x and weighted by its count.
    """
    customers = frequency.size
    is_repeat = frequency > 0
    age_of_one_timers = age[~is_repeat]
    repeat_x, repeat_recency, repeat_age = frequency[is_repeat], recency[is_repeat], age[is_repeat]
    distinct_x, x_index, x_counts = np.unique(repeat_x, return_inverse=True, return_counts=True)

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        r, alpha, a, b = np.exp(log_params)
        log_alpha_age0 = np.log(alpha + age_of_one_timers)
        log_alpha_age = np.log(alpha + repeat_age)
        log_alpha_recency = np.log(alpha + repeat_recency)
        shape = r + repeat_x
        # Per distinct x: log of the two terms without their (alpha + .)^-(r+x) factor.
        beta_ab = betaln(a, b)
        still_alive_x = betaln(a, b + distinct_x) - beta_ab
        dropped_out_x = betaln(a + 1, b + distinct_x - 1) - beta_ab
        still_alive = still_alive_x[x_index] - shape * log_alpha_age
        dropped_out = dropped_out_x[x_index] - shape * log_alpha_recency
        mixture = np.logaddexp(still_alive, dropped_out)
        dropped_weight = np.exp(dropped_out - mixture)  # posterior share of the "dropped out at t_x" term
        dropped_by_x = np.bincount(x_index, weights=dropped_weight, minlength=distinct_x.size)
        alive_by_x = x_counts - dropped_by_x

        # A customer without a repeat purchase contributes only r log(alpha / (alpha + T)): the Gamma and Beta
        # ratios of the first term are 1 at x = 0.
        log_likelihood = (customers * r * np.log(alpha) - r * log_alpha_age0.sum()
                          + x_counts @ (gammaln(r + distinct_x) - gammaln(r)) + mixture.sum())
        # d/d r, alpha, a, b, then to log-parameters by the chain rule (d/d log th = th d/d th).
        d_r = (customers * np.log(alpha) - log_alpha_age0.sum() + x_counts @ (digamma(r + distinct_x) - digamma(r))
               - log_alpha_age.sum() - dropped_weight @ (log_alpha_recency - log_alpha_age))
        d_alpha = (customers * r / alpha - r * np.sum(1.0 / (alpha + age_of_one_timers))
                   - shape @ ((1.0 - dropped_weight) / (alpha + repeat_age) + dropped_weight / (alpha + repeat_recency)))
        psi_ab, psi_abx = digamma(a + b), digamma(a + b + distinct_x)
        d_still_alive_da = psi_ab - psi_abx
        d_still_alive_db = digamma(b + distinct_x) - digamma(b) + psi_ab - psi_abx
        d_dropped_db = digamma(b + distinct_x - 1) - digamma(b) + psi_ab - psi_abx
        d_a = alive_by_x @ d_still_alive_da + dropped_by_x @ (d_still_alive_da + 1.0 / a)
        d_b = alive_by_x @ d_still_alive_db + dropped_by_x @ d_dropped_db
        gradient = np.array([d_r * r, d_alpha * alpha, d_a * a, d_b * b])
        return _penalized_mean(log_likelihood, gradient, customers, log_params, penalizer)

    return objective


def p_alive(params: BgNbdParams, frequency: ArrayLike, recency_days: ArrayLike, age_days: ArrayLike) -> np.ndarray:
    """P(still active at age T | x, t_x, T) (FHL 2005 eq. 13): 1 for a customer without a repeat purchase, else
    1 / (1 + a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)), computed as a logistic of its log-odds so it cannot overflow."""
    _check_bgnbd_params(params)
    frequency, recency, age = _validated_history(frequency, recency_days, age_days)
    return _p_alive(params, frequency, recency, age)


def _p_alive(params: BgNbdParams, frequency: np.ndarray, recency: np.ndarray, age: np.ndarray) -> np.ndarray:
    is_repeat = frequency > 0
    # b + x - 1 is only used where x >= 1; the clip keeps the other lanes free of log(negative).
    log_odds_dead = (np.log(params.a) - np.log(params.b + np.maximum(frequency, 1.0) - 1.0)
                     + (params.r + frequency) * (np.log(params.alpha + age) - np.log(params.alpha + recency)))
    return np.where(is_repeat, expit(-log_odds_dead), 1.0)


def expected_purchases(params: BgNbdParams, horizon_days: float | ArrayLike, frequency: ArrayLike,
                       recency_days: ArrayLike, age_days: ArrayLike) -> np.ndarray:
    """E[X(T, T+t) | x, t_x, T]: expected purchase occasions in the next `horizon_days` (FHL 2005 eq. 10).

    Eq. 10 has (1-z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z) with z = t/(alpha+T+t): for large x that 2F1 is astronomically
    large and multiplied by a vanishing power. Euler's transformation turns it into the bounded
    (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), whose upper parameters no longer grow with x: scipy evaluates it to
    ~1e-12 relative or better for ages to 10 years, frequencies to 500 and horizons to 2 years.
    """
    _check_bgnbd_params(params)
    frequency, recency, age = _validated_history(frequency, recency_days, age_days)
    horizon = _horizon(horizon_days, frequency.size)
    return _expected_purchases(params, horizon, frequency, recency, age)


def _expected_purchases(params: BgNbdParams, horizon: np.ndarray, frequency: np.ndarray, recency: np.ndarray,
                        age: np.ndarray) -> np.ndarray:
    alive = _p_alive(params, frequency, recency, age)
    if abs(params.a - 1.0) >= _A_NEAR_ONE:
        return alive * _expected_if_alive(params, params.a, horizon, frequency, age)
    # a = 1 is a removable 0/0 in eq. 10: interpolate between a = 1 -+ step, accurate to ~1e-10.
    below = _expected_if_alive(params, 1.0 - _A_NEAR_ONE, horizon, frequency, age)
    above = _expected_if_alive(params, 1.0 + _A_NEAR_ONE, horizon, frequency, age)
    share_above = (params.a - (1.0 - _A_NEAR_ONE)) / (2.0 * _A_NEAR_ONE)
    return alive * (below + share_above * (above - below))


def _expected_if_alive(params: BgNbdParams, a: float, horizon: np.ndarray, frequency: np.ndarray,
                       age: np.ndarray) -> np.ndarray:
    r, alpha, b = params.r, params.alpha, params.b
    # c = a+b+x-1 vanishes for x = 0 when a+b = 1: another removable 0/0 (2F1 has a pole at c = 0), stepped around.
    c = a + b + frequency - 1.0
    c = np.where(np.abs(c) < 1e-9, 1e-9, c)
    z = horizon / (alpha + age + horizon)
    not_yet_bought = np.exp((a - 1.0) * np.log1p(-z)) * hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
    return c / (a - 1.0) * (1.0 - not_yet_bought)


def p_no_purchase(params: BgNbdParams, horizon_days: float | ArrayLike, frequency: ArrayLike,
                  recency_days: ArrayLike, age_days: ArrayLike) -> np.ndarray:
    """P(X(T, T+t) = 0 | x, t_x, T) = (1 - P(alive)) + P(alive) ((alpha+T)/(alpha+T+t))^(r+x).

    An active customer's rate is then Gamma(r+x, alpha+T), and BG/NBD only drops customers right after a purchase,
    so one who buys nothing in the window stays active through it."""
    _check_bgnbd_params(params)
    frequency, recency, age = _validated_history(frequency, recency_days, age_days)
    horizon = _horizon(horizon_days, frequency.size)
    alive = _p_alive(params, frequency, recency, age)
    silent_if_alive = np.exp(-(params.r + frequency) * np.log1p(horizon / (params.alpha + age)))
    return (1.0 - alive) + alive * silent_if_alive


def days_to_next_purchase(params: BgNbdParams, frequency: ArrayLike, recency_days: ArrayLike, age_days: ArrayLike,
                          *, probability: float = 0.5, max_days: float = 365.0) -> np.ndarray:
    """The smallest t in (0, max_days] with P(X(T, T+t) > 0 | x, t_x, T) >= probability; NaN when not reached.

    P(purchase within t) = P(alive) (1 - ((alpha+T)/(alpha+T+t))^(r+x)) rises with t towards P(alive), so it inverts
    exactly: t = (alpha+T) ((1 - probability/P(alive))^(-1/(r+x)) - 1), reachable only where P(alive) > probability.
    The closed form is exact and as fast as one step of a bisection.
    """
    _check_bgnbd_params(params)
    if not 0.0 < probability < 1.0:
        raise ModelInputError(f"probability must be strictly between 0 and 1, got {probability}")
    if not (np.isfinite(max_days) and max_days > 0):
        raise ModelInputError(f"max_days must be a positive number of days, got {max_days}")
    frequency, recency, age = _validated_history(frequency, recency_days, age_days)
    alive = _p_alive(params, frequency, recency, age)
    with np.errstate(divide="ignore", invalid="ignore"):  # P(alive) = 0 and unreachable lanes become NaN below
        share_of_alive = probability / alive
        days = (params.alpha + age) * np.expm1(-np.log1p(-share_of_alive) / (params.r + frequency))
    return np.where((share_of_alive < 1.0) & (days <= max_days), days, np.nan)


# --- Gamma-Gamma -----------------------------------------------------------------------------------------------------


def fit_gamma_gamma(frequency: ArrayLike, monetary_value: ArrayLike, *, penalizer: float = 0.0,
                    max_iterations: int = 1000) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters from repeat frequency and mean repeat spend.

    Only customers with frequency > 0 and monetary_value > 0 carry information on spend and are used; the others are
    skipped, not refused. Likelihood per customer (mean spend m over x purchases):
    Gamma(px+q) / (Gamma(px) Gamma(q)) v^q m^(px-1) x^(px) / (v + m x)^(px+q); optimized like `fit_bgnbd`.
    """
    frequency, monetary = _validated_spend(frequency, monetary_value)
    _check_penalizer(penalizer)
    if frequency.size == 0:
        raise ModelInputError("no customers to fit: frequency and monetary_value are empty")
    informative = (frequency > 0) & (monetary > 0)
    used = int(np.count_nonzero(informative))
    if used < MIN_REPEAT_CUSTOMERS_GAMMA_GAMMA:
        raise ModelInputError(f"Gamma-Gamma needs at least {MIN_REPEAT_CUSTOMERS_GAMMA_GAMMA} customers with a repeat "
                              f"purchase and a positive monetary_value, got {used}")
    frequency, monetary = frequency[informative], monetary[informative]

    objective = _gamma_gamma_objective(frequency, monetary, penalizer)
    mean_spend = float(monetary.mean())
    # Both starts put the population mean spend p v / (q - 1) at the observed mean.
    starts = [np.log([1.0, 2.0, mean_spend]), np.log([4.0, 3.0, mean_spend / 2.0])]
    result, converged = _minimize_from_starts(objective, starts, bounds=3, max_iterations=max_iterations)
    p, q, v = np.exp(result.x)
    log_likelihood = -(float(result.fun) - penalizer * float(np.sum(result.x ** 2))) * frequency.size
    return GammaGammaParams(p=float(p), q=float(q), v=float(v), log_likelihood=log_likelihood,
                            customers=used, converged=converged)


def _gamma_gamma_objective(frequency: np.ndarray, monetary: np.ndarray, penalizer: float) -> Objective:
    customers = frequency.size
    log_monetary_x = np.log(monetary) + np.log(frequency)
    log_monetary_sum = np.log(monetary).sum()
    spend_total = monetary * frequency

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        p, q, v = np.exp(log_params)
        shape = p * frequency
        log_v_plus_spend = np.log(v + spend_total)
        log_likelihood = (np.sum(gammaln(shape + q) - gammaln(shape)) - customers * gammaln(q)
                          + customers * q * np.log(v) - log_monetary_sum + shape @ log_monetary_x
                          - (shape + q) @ log_v_plus_spend)
        psi_shape_q = digamma(shape + q)
        d_p = frequency @ (psi_shape_q - digamma(shape) + log_monetary_x - log_v_plus_spend)
        d_q = psi_shape_q.sum() - customers * digamma(q) + customers * np.log(v) - log_v_plus_spend.sum()
        d_v = customers * q / v - np.sum((shape + q) / (v + spend_total))
        gradient = np.array([d_p * p, d_q * q, d_v * v])
        return _penalized_mean(log_likelihood, gradient, customers, log_params, penalizer)

    return objective


def expected_average_value(params: GammaGammaParams, frequency: ArrayLike, monetary_value: ArrayLike, *,
                           population_mean: float | None = None) -> np.ndarray:
    """E[mean spend per purchase | x, m] = p (v + x m) / (p x + q - 1): the customer's own mean shrunk towards the
    population's, the more so the fewer purchases back it.

    A customer without a repeat purchase gets the population mean p v / (q - 1). That exists only for q > 1; for a fit
    with q <= 1 pass `population_mean` (e.g. the observed mean spend), used only then, or this raises. A negative
    monetary_value (refunds above sales) is taken as 0: Gamma-Gamma has no negative spend.
    """
    _check_positive_params("Gamma-Gamma", {"p": params.p, "q": params.q, "v": params.v})
    frequency, monetary = _validated_spend(frequency, monetary_value)
    monetary = np.maximum(monetary, 0.0)
    denominator = params.p * frequency + params.q - 1.0
    has_own_estimate = (frequency > 0) & (denominator > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        own_estimate = params.p * (params.v + frequency * monetary) / denominator
    if has_own_estimate.all():
        return own_estimate
    if params.q > 1.0:
        fallback = params.p * params.v / (params.q - 1.0)
    elif population_mean is not None and np.isfinite(population_mean) and population_mean >= 0:
        fallback = float(population_mean)
    else:
        raise ModelInputError(f"Gamma-Gamma q={params.q:.4g} <= 1 leaves the population mean spend undefined, which "
                              f"{int(np.count_nonzero(~has_own_estimate))} customers without a usable repeat purchase "
                              "need: pass population_mean (a non-negative number, e.g. the observed mean spend)")
    return np.where(has_own_estimate, own_estimate, fallback)


# --- simulation (for tests, benchmarks and sanity checks) -----------------------------------------------------------


def simulate_bgnbd(params: BgNbdParams, customers: int, age_days: float | ArrayLike, rng: np.random.Generator, *,
                   holdout_days: float = 0.0) -> pd.DataFrame:
    """A population generated by BG/NBD itself: columns frequency, recency_days, age_days.

    Each customer: lambda ~ Gamma(r, rate alpha), p ~ Beta(a, b); first purchase at time 0, repeat purchases at the
    events of a Poisson process of rate lambda, dropout with probability p right after each repeat purchase; observed
    up to age_days. Drawn exactly without a loop: the purchases a customer makes before dropping out are a geometric
    count K, the Poisson events up to the horizon a count N, so x = min(N, K), and the x-th of N uniform event times
    is a Beta order statistic. With holdout_days > 0 the process runs on to age + holdout_days and the purchases made
    after age_days are returned as `holdout_purchases` (to check forecasts against).
    """
    _check_bgnbd_params(params)
    if isinstance(customers, bool) or not isinstance(customers, int | np.integer) or customers < 0:
        raise ModelInputError(f"customers must be a non-negative whole number, got {customers!r}")
    age = _as_float_vector("age_days", age_days)
    if age.size == 1:
        age = np.full(customers, age[0])
    if age.size != customers:
        raise ModelInputError(f"age_days must be one number or one per customer ({customers}), got {age.size}")
    _refuse_negative("age_days", age)
    if not (np.isfinite(holdout_days) and holdout_days >= 0):
        raise ModelInputError(f"holdout_days must be a non-negative number of days, got {holdout_days}")

    rate = rng.gamma(params.r, 1.0 / params.alpha, customers)
    dropout = np.clip(rng.beta(params.a, params.b, customers), 1e-12, 1.0)  # p = 0 would be an endless geometric
    purchases_before_dropout = rng.geometric(dropout)
    horizon = age + holdout_days
    events_to_horizon = rng.poisson(rate * horizon)
    # Given N events by the horizon, how many fall by age_days is binomial (the events are uniform on the span).
    share_by_age = np.divide(age, horizon, out=np.ones_like(age), where=horizon > 0)
    events_by_age = rng.binomial(events_to_horizon, share_by_age)
    frequency = np.minimum(events_by_age, purchases_before_dropout)
    recency = np.zeros(customers)
    bought = frequency > 0
    recency[bought] = age[bought] * rng.beta(frequency[bought], events_by_age[bought] - frequency[bought] + 1)
    population = pd.DataFrame({"frequency": frequency.astype(np.int64), "recency_days": recency, "age_days": age})
    if holdout_days > 0:
        population["holdout_purchases"] = np.minimum(events_to_horizon, purchases_before_dropout) - frequency
    return population


def simulate_gamma_gamma(params: GammaGammaParams, frequency: ArrayLike, rng: np.random.Generator) -> np.ndarray:
    """Mean spend of each customer's `frequency` repeat purchases drawn from Gamma-Gamma (0 where frequency is 0).

    nu ~ Gamma(q, rate v) per customer, each purchase ~ Gamma(p, rate nu); the sum of x purchases is Gamma(p x, nu)."""
    _check_positive_params("Gamma-Gamma", {"p": params.p, "q": params.q, "v": params.v})
    frequency = _as_float_vector("frequency", frequency)
    _refuse_negative("frequency", frequency)
    rate = rng.gamma(params.q, 1.0 / params.v, frequency.size)
    mean_spend = np.zeros(frequency.size)
    bought = frequency > 0
    mean_spend[bought] = rng.gamma(params.p * frequency[bought], 1.0 / rate[bought]) / frequency[bought]
    return mean_spend


# --- shared checks and optimizer -------------------------------------------------------------------------------------


def _penalized_mean(log_likelihood: float, gradient: np.ndarray, customers: int, log_params: np.ndarray,
                    penalizer: float) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood plus the L2 penalty: the mean keeps the scale of the objective independent of the
    number of customers, so one set of tolerances fits 100 customers and 10 million."""
    value = -log_likelihood / customers + penalizer * float(log_params @ log_params)
    slope = -gradient / customers + 2.0 * penalizer * log_params
    if not (np.isfinite(value) and np.isfinite(slope).all()):
        # Steer the line search back from a region where the likelihood under- or overflows.
        return 1e30, np.zeros_like(log_params)
    return float(value), slope


def _minimize_from_starts(objective: Objective, starts: list[np.ndarray], *, bounds: int,
                          max_iterations: int) -> tuple[OptimizeResult, bool]:
    """L-BFGS-B from each start until one converges; otherwise the best result, flagged as not converged."""
    best: OptimizeResult | None = None
    for start in starts:
        with np.errstate(all="ignore"):
            result = minimize(objective, start, jac=True, method="L-BFGS-B",
                              bounds=[(-_LOG_PARAM_BOUND, _LOG_PARAM_BOUND)] * bounds,
                              options={**_OPTIMIZER_OPTIONS, "maxiter": max_iterations})
        finite = bool(np.isfinite(result.fun) and np.isfinite(result.x).all()) and result.fun < 1e30
        flat = finite and float(np.max(np.abs(result.jac))) < _FLAT_GRADIENT and result.nit < max_iterations
        if finite and (result.success or flat):
            return result, True
        if best is None or (finite and result.fun < best.fun):
            best = result
    return best, False


def _as_float_vector(name: str, values: ArrayLike) -> np.ndarray:
    """`values` as a 1-D float64 array (a scalar as one value), refusing non-numbers, NaN and infinities by name."""
    try:
        if hasattr(values, "to_numpy"):  # pandas, including nullable dtypes whose NA numpy cannot cast
            values = values.to_numpy(dtype=np.float64, na_value=np.nan)
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ModelInputError(f"{name} must be numbers: {error}") from error
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ModelInputError(f"{name} must be one value per customer (1-D), got shape {array.shape}")
    _refuse_missing(name, ~np.isfinite(array), what="NaN or infinite values")
    return array


def _refuse_missing(name: str, missing: np.ndarray, what: str = "missing values") -> None:
    if missing.any():
        raise ModelInputError(f"{name} has {int(np.count_nonzero(missing))} {what} "
                              f"(first at position {int(np.argmax(missing))})")


def _refuse_negative(name: str, values: np.ndarray) -> None:
    negative = values < 0
    if negative.any():
        first = int(np.argmax(negative))
        raise ModelInputError(f"{name} has {int(np.count_nonzero(negative))} negative values "
                              f"(first at position {first}: {values[first]:g})")


def _refuse_fractional_frequency(frequency: np.ndarray) -> None:
    fractional = frequency != np.round(frequency)
    if fractional.any():
        first = int(np.argmax(fractional))
        raise ModelInputError(f"frequency must count whole repeat purchases, got {frequency[first]:g} at position "
                              f"{first} ({int(np.count_nonzero(fractional))} such values)")


def _validated_history(frequency: ArrayLike, recency_days: ArrayLike,
                       age_days: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """frequency, recency_days and age_days as float arrays, after every check the models rely on."""
    frequency = _as_float_vector("frequency", frequency)
    recency = _as_float_vector("recency_days", recency_days)
    age = _as_float_vector("age_days", age_days)
    if not frequency.size == recency.size == age.size:
        raise ModelInputError("frequency, recency_days and age_days must have one value per customer, got lengths "
                              f"{frequency.size}, {recency.size} and {age.size}")
    for name, values in (("frequency", frequency), ("recency_days", recency), ("age_days", age)):
        _refuse_negative(name, values)
    _refuse_fractional_frequency(frequency)
    too_recent = recency > age + _RECENCY_SLACK_DAYS
    if too_recent.any():
        first = int(np.argmax(too_recent))
        raise ModelInputError(f"recency_days exceeds age_days for {int(np.count_nonzero(too_recent))} customers (first "
                              f"at position {first}: {recency[first]:g} > {age[first]:g}); the last purchase cannot "
                              "come after the as-of time")
    recency_without_repeat = (frequency == 0) & (recency > 0)
    if recency_without_repeat.any():
        raise ModelInputError(f"recency_days must be 0 where frequency is 0 (no repeat purchase), but "
                              f"{int(np.count_nonzero(recency_without_repeat))} customers have more (first at position "
                              f"{int(np.argmax(recency_without_repeat))})")
    return frequency, np.minimum(recency, age), age


def _validated_spend(frequency: ArrayLike, monetary_value: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    frequency = _as_float_vector("frequency", frequency)
    monetary = _as_float_vector("monetary_value", monetary_value)
    if frequency.size != monetary.size:
        raise ModelInputError("frequency and monetary_value must have one value per customer, got lengths "
                              f"{frequency.size} and {monetary.size}")
    _refuse_negative("frequency", frequency)
    _refuse_fractional_frequency(frequency)
    return frequency, monetary


def _horizon(horizon_days: float | ArrayLike, customers: int) -> np.ndarray:
    horizon = _as_float_vector("horizon_days", horizon_days)
    _refuse_negative("horizon_days", horizon)
    if horizon.size not in (1, customers):
        raise ModelInputError(f"horizon_days must be one number or one per customer ({customers}), got {horizon.size}")
    return horizon


def _check_penalizer(penalizer: float) -> None:
    if not (np.isfinite(penalizer) and penalizer >= 0):
        raise ModelInputError(f"penalizer must be a non-negative number, got {penalizer}")


def _check_bgnbd_params(params: BgNbdParams) -> None:
    _check_positive_params("BG/NBD", {"r": params.r, "alpha": params.alpha, "a": params.a, "b": params.b})


def _check_positive_params(model: str, values: dict[str, float]) -> None:
    bad = {name: value for name, value in values.items() if not (np.isfinite(value) and value > 0)}
    if bad:
        raise ModelInputError(f"{model} parameters must be positive and finite, got "
                              + ", ".join(f"{name}={value}" for name, value in bad.items()))
