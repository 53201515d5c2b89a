"""Customer lifetime value and the next order: BG/NBD for how many orders, Gamma-Gamma for how much each, per customer
over the next CLV horizon (12 months), with a back-test on a held-out window against a naive baseline.

Back-test: the models are fitted on the orders up to C = T - W and predict (C, C + W], where W is the CLV horizon
when the history allows and otherwise half of it (at least MIN_BACKTEST_DAYS); the predictions are compared with what
each customer really ordered in that window. The baseline a skeptic proposes: "next period = last period" (a
customer's orders and net sales in (C - W, C]), and for the next order date, the customer's own mean gap after the
last order (the population's median gap for a one-time buyer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from ml import bgnbd
from ml.config import BGNBD_PENALIZER, MIN_BACKTEST_DAYS
from ml.errors import ModelInputError


@dataclass(frozen=True)
class ClvModel:
    """BG/NBD and Gamma-Gamma parameters fitted on the orders up to `fitted_as_of`."""

    transactions: bgnbd.BgNbdParams
    spend: bgnbd.GammaGammaParams | None  # None: too few repeat buyers; the mean order value is used instead
    mean_order_value: float
    fitted_as_of: datetime
    customers: int
    median_gap_days: float  # between a repeat buyer's purchase days: the next-gap guess for a one-time buyer
    # how the next order's date is estimated: the back-test's winner (see next_order_days)
    next_order_method: str = "bgnbd"


def fit(summary: pd.DataFrame, as_of: datetime) -> ClvModel:
    """Fit BG/NBD and Gamma-Gamma on every customer's history at `as_of` (frequency, recency_days, age_days,
    monetary_value: summarize() or from_features())."""
    if summary.empty:
        raise ModelInputError(f"no customer with an order at or before {as_of.isoformat()}: CLV needs an order history")
    # a light penalty keeps the parameters finite on a shop whose customers all buy alike (the MLE then runs off to
    # r, alpha -> infinity, a -> 0, where the expectations overflow); negligible on a heterogeneous one
    transactions = bgnbd.fit_bgnbd(summary["frequency"], summary["recency_days"], summary["age_days"],
                                   penalizer=BGNBD_PENALIZER)
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    try:
        spend = bgnbd.fit_gamma_gamma(repeat["frequency"], repeat["monetary_value"])
    except ModelInputError:
        spend = None
    values = summary["monetary_value"][summary["monetary_value"] > 0]
    gaps = (summary["recency_days"] / summary["frequency"])[summary["frequency"] > 0]
    return ClvModel(transactions=transactions, spend=spend,
                    mean_order_value=float(values.mean()) if len(values) else 0.0, fitted_as_of=as_of,
                    customers=len(summary), median_gap_days=float(gaps.median()) if len(gaps) else math.nan)


NEXT_ORDER_METHODS = ("bgnbd", "customer_gap")


def next_order_days(model: ClvModel, summary: pd.DataFrame, horizon_days: int, method: str | None = None) -> np.ndarray:
    """Days from the as-of to each customer's expected next order; NaN when BG/NBD gives an order within the horizon
    less than even odds (or the date falls past it). BG/NBD says whether; `method` says when:
    - bgnbd: the median wait for the next purchase while alive, (alpha + T)(2^(1/(r + x)) - 1);
    - customer_gap: the customer's own mean gap between purchase days after the last one (the population's median
      gap for a one-time buyer), at least a day; the simple rule a skeptic proposes."""
    method = method or model.next_order_method
    x, t_x, age = (summary[c].to_numpy(dtype=float) for c in ("frequency", "recency_days", "age_days"))
    params = model.transactions
    likely = 1 - bgnbd.p_no_purchase(params, horizon_days, x, t_x, age) >= 0.5
    if method == "bgnbd":
        days = (params.alpha + age) * (2 ** (1 / (params.r + x)) - 1)
    elif method == "customer_gap":
        gaps = np.where(x > 0, t_x / np.maximum(x, 1), model.median_gap_days)
        days = np.maximum(1.0, gaps - (age - t_x))
    else:
        raise ModelInputError(f"unknown next-order method {method!r}: choose one of {', '.join(NEXT_ORDER_METHODS)}")
    return np.where(likely & (days <= horizon_days), days, np.nan)


def summarize(orders: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """Each customer's purchase history at `as_of` from order rows (one purchase occasion per customer and day)."""
    if orders.empty or not (orders["ordered_at"] <= as_of).any():
        raise ModelInputError(f"no orders at or before {as_of.isoformat()}: CLV needs an order history")
    return bgnbd.summarize_orders(orders["customer_id"], orders["ordered_at"], orders["net_sales_amount"], as_of)


def from_features(features: pd.DataFrame) -> pd.DataFrame:
    """Each buyer's purchase history from customer_features, which hold it exactly as of their as-of: frequency =
    orders - 1, recency = days from the first to the last order, age = days since the first order, monetary value =
    the average order's net sales. Whole days, and every order counts (two on a day are two): the features are what
    the warehouse knew then, where the orders mart of a later build would leak later cancellations and merges."""
    buyers = features[features["order_count"].fillna(0) > 0]
    age = buyers["days_since_first_order"].astype(float)
    last = buyers["days_since_last_order"].astype(float)
    frequency = (buyers["order_count"] - 1).astype(float)
    summary = pd.DataFrame({
        "frequency": frequency,
        "recency_days": np.where(frequency > 0, (age - last).clip(lower=0), 0.0),
        "age_days": age,
        "monetary_value": np.where(frequency > 0, buyers["avg_order_value_amount"].astype(float).clip(lower=0), 0.0),
    }, index=buyers.index)
    broken = summary[["frequency", "recency_days", "age_days"]].isna().any(axis=1)
    if broken.any():
        raise ModelInputError(f"{int(broken.sum())} buyers in customer_features lack days_since_first_order or "
                              f"days_since_last_order (e.g. {summary.index[broken][0]})")
    return summary


def predict(model: ClvModel, summary: pd.DataFrame, as_of: datetime, horizon_days: int,
            churn_horizon_days: int | None = None) -> pd.DataFrame:
    """Per customer of `summary` (summarize() or from_features() at `as_of`): p_alive, expected_orders, expected_net_sales
    over (as_of, as_of + horizon], expected_next_order_date (null when not likely within the horizon) and, with a
    churn horizon, p_no_order (BG/NBD's churn probability)."""
    x, t_x, age = (summary[c].to_numpy(dtype=float) for c in ("frequency", "recency_days", "age_days"))
    params = model.transactions
    expected_orders = bgnbd.expected_purchases(params, horizon_days, x, t_x, age)
    if model.spend is not None:
        value = bgnbd.expected_average_value(model.spend, x, summary["monetary_value"].to_numpy(dtype=float),
                                             population_mean=model.mean_order_value)
    else:
        value = np.full(len(summary), model.mean_order_value)
    days = next_order_days(model, summary, horizon_days)
    next_date = pd.Series(pd.NaT, index=summary.index, dtype="datetime64[ns, UTC]")
    known = ~np.isnan(days)
    next_date[known] = pd.Timestamp(as_of) + pd.to_timedelta(np.ceil(days[known]), unit="D")
    out = pd.DataFrame({
        "p_alive": bgnbd.p_alive(params, x, t_x, age),
        "expected_orders": expected_orders,
        "expected_net_sales": expected_orders * value,
        "expected_next_order_at": next_date,
    }, index=summary.index)
    if churn_horizon_days is not None:
        out["p_no_order"] = bgnbd.p_no_purchase(params, churn_horizon_days, x, t_x, age)
    return out


@dataclass
class Backtest:
    calibration_end: datetime | None  # C; None: no back-test (the history is too short)
    window_days: int
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)  # metric, model, mae, mean_predicted, mean_actual, customers
    deciles: pd.DataFrame = field(default_factory=pd.DataFrame)  # metric, decile, customers, predicted_mean, actual_mean
    note: str | None = None
    next_order_method: str = "bgnbd"  # the method with the lower next-order error (bgnbd without a back-test)

    def metric(self, metric: str, model: str = "bgnbd_gamma_gamma") -> float:
        rows = self.metrics[(self.metrics["metric"] == metric) & (self.metrics["model"] == model)] if len(
            self.metrics) else self.metrics
        return float(rows["mae"].iloc[0]) if len(rows) else math.nan


def backtest_window(first_order_at: datetime, as_of: datetime, horizon_days: int) -> int:
    """The held-out window's length: the CLV horizon if half the history holds it, else half the history in days."""
    history_days = (as_of - first_order_at).days
    return min(horizon_days, history_days // 2)


def backtest(orders: pd.DataFrame, as_of: datetime, horizon_days: int) -> Backtest:
    """Fit at C = as_of - W on orders up to C, predict (C, C + W], compare with what happened; and the baseline."""
    orders = orders[orders["ordered_at"] <= as_of]
    if orders.empty:
        return Backtest(None, 0, note=f"no orders at or before {as_of.isoformat()}: no CLV back-test")
    window = backtest_window(orders["ordered_at"].min().to_pydatetime(), as_of, horizon_days)
    if window < MIN_BACKTEST_DAYS:
        return Backtest(None, window, note=f"history of {(as_of - orders['ordered_at'].min()).days} days holds no "
                                           f"back-test window of {MIN_BACKTEST_DAYS} days or more")
    cut = as_of - timedelta(days=window)
    summary = summarize(orders, cut)
    try:
        model = fit(summary, cut)
    except ModelInputError as exc:
        return Backtest(None, window, note=f"no CLV back-test: {exc}")
    predicted = predict(model, summary, cut, window)
    later = orders[(orders["ordered_at"] > cut)]
    # one purchase occasion per customer and day, as the model counts them
    occasions = later.assign(day=later["ordered_at"].dt.floor("D")).groupby(["customer_id", "day"], as_index=False)[
        "net_sales_amount"].sum()
    actual = occasions.groupby("customer_id").agg(orders=("day", "size"), net_sales=("net_sales_amount", "sum"),
                                                  next_order_at=("day", "min"))
    actual = actual.reindex(summary.index)
    actual_orders = actual["orders"].fillna(0).to_numpy(float)
    actual_sales = actual["net_sales"].fillna(0).to_numpy(float)

    before = orders[(orders["ordered_at"] > cut - timedelta(days=window)) & (orders["ordered_at"] <= cut)]
    before = before.assign(day=before["ordered_at"].dt.floor("D")).groupby(["customer_id", "day"], as_index=False)[
        "net_sales_amount"].sum()
    last_period = before.groupby("customer_id").agg(orders=("day", "size"), net_sales=("net_sales_amount", "sum"))
    last_period = last_period.reindex(summary.index).fillna(0)

    rows, deciles = [], []
    for metric, model_values, baseline_values, actual_values in (
        ("orders", predicted["expected_orders"].to_numpy(), last_period["orders"].to_numpy(float), actual_orders),
        ("net_sales", predicted["expected_net_sales"].to_numpy(), last_period["net_sales"].to_numpy(float),
         actual_sales),
    ):
        for name, values in (("bgnbd_gamma_gamma", model_values), ("last_period", baseline_values)):
            rows.append({"metric": metric, "model": name, "mae": float(np.mean(np.abs(values - actual_values))),
                         "mean_predicted": float(values.mean()), "mean_actual": float(actual_values.mean()),
                         "customers": len(values)})
        deciles.append(_deciles(metric, model_values, actual_values))

    # next order: over the customers who did order in the window, days from C to the predicted vs the real date
    ordered = actual["next_order_at"].notna().to_numpy()
    real_days = ((actual["next_order_at"] - pd.Timestamp(cut)).dt.total_seconds() / 86400).to_numpy()
    model_days = next_order_days(model, summary, window, "bgnbd")
    baseline_days = next_order_days(model, summary, window, "customer_gap")
    # both on the same customers: those who ordered and whom BG/NBD expects to, within the window
    has = ordered & ~np.isnan(model_days) & ~np.isnan(baseline_days)
    errors = {}
    for name, values in (("bgnbd_gamma_gamma", model_days), ("customer_gap", baseline_days)):
        errors[name] = float(np.mean(np.abs(values[has] - real_days[has]))) if has.any() else math.nan
        rows.append({"metric": "next_order_days", "model": name,
                     "mae": float(np.mean(np.abs(values[has] - real_days[has]))) if has.any() else math.nan,
                     "mean_predicted": float(np.mean(values[has])) if has.any() else math.nan,
                     "mean_actual": float(np.mean(real_days[has])) if has.any() else math.nan,
                     "customers": int(has.sum())})
    method = "customer_gap" if errors["customer_gap"] < errors["bgnbd_gamma_gamma"] else "bgnbd"
    return Backtest(cut, window, pd.DataFrame(rows), pd.concat(deciles, ignore_index=True), next_order_method=method)


def _deciles(metric: str, predicted: np.ndarray, actual: np.ndarray) -> pd.DataFrame:
    """Customers ranked by prediction into ten groups (1 = highest): mean predicted vs mean actual per group."""
    order = np.argsort(-predicted, kind="stable")
    groups = np.empty(len(predicted), dtype=int)
    groups[order] = np.arange(len(predicted)) * 10 // max(len(predicted), 1) + 1
    frame = pd.DataFrame({"decile": groups, "predicted": predicted, "actual": actual})
    table = frame.groupby("decile").agg(customers=("predicted", "size"), predicted_mean=("predicted", "mean"),
                                        actual_mean=("actual", "mean")).reset_index()
    return table.assign(metric=metric)[["metric", "decile", "customers", "predicted_mean", "actual_mean"]]


