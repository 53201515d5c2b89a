"""Send time: the local hour at which to email each customer, from the hours at which they opened and clicked before.

Model. Each customer i has a distribution p_i over the 24 hours of their own local clock, and their engagements (opens,
and clicks weighing `click_weight`) are draws from it. Within a group g (a segment), p_i ~ Dirichlet(s_g * m_g): m_g
is the group's hour profile, s_g (the concentration) says how alike its customers are. The posterior mean of p_i is
(n_i + s_g * m_g) / (N_i + s_g) for hour counts n_i summing to N_i, so a customer with N_i << s_g engagements is sent
at their group's hour and one with N_i >> s_g at their own. Empirical Bayes: m_g and s_g are estimated from the group.

- m_g is the group's pooled hour shares, smoothed circularly with a (1/4, 1/2, 1/4) kernel and mixed with 1% of the
  uniform: an hour nobody in the group used is unlikely, not impossible, so a customer's own evidence can still win.
- s_g is the maximum-likelihood concentration of the Dirichlet-multinomial with the mean held at m_g: the root of the
  score equation Minka's fixed point iterates on ("Estimating a Dirichlet distribution", 2000), found by Brent's
  method. Chosen over the method of moments because the moment estimator (Pearson residuals per hour) is dominated by
  rare hours with a tiny m_k and by customers with one or two engagements, which are most customers; the likelihood
  weighs every customer by what their counts say. Counts enter through their distinct values per hour (Minka's
  histogram form), so each step costs the number of distinct counts, not the number of customers.
- A group with fewer than MIN_GROUP_CUSTOMERS customers with two or more engagements (one engagement says nothing
  about the concentration) takes the shop's prior, fitted the same way on every customer.

Local hours. An event's hour is read on the customer's local clock at the event's own moment (pandas tz_convert, so
DST is right on both sides of a change). The bins are local clock hours even where the offset is not whole: in
Asia/Kolkata (+05:30) hour 9 is 09:00-09:59 IST, i.e. 03:30-04:29 UTC. A missing or unknown timezone name (or a
customer missing from `timezones`) is read as UTC and flagged in `timezone_known`.

The pick. The hour h maximizing the posterior mass of the circular window h-1..h+1 (23 and 0 are neighbours), so a
customer reading at 07:00 and 08:00 is sent at 07 or 08, not between their habits; `confidence` is that mass.
`send_hour_utc` is the first whole UTC hour at or after the local hour starts on as_of's local date: exact for
whole-hour offsets, and for +05:30 local 9 (03:30 UTC) gives 04 UTC = 09:30 IST, still inside the chosen local hour.
A local hour that DST skips is shifted forward; one that occurs twice is taken at its first (summer-time) occurrence.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import digamma

from ml.checks import require_columns, utc_timestamp
from ml.errors import ModelInputError

__all__ = [
    "HOURS",
    "MIN_GROUP_CUSTOMERS",
    "HourCounts",
    "HourPrior",
    "evaluate_send_hours",
    "fit_prior",
    "local_hour_counts",
    "pick_send_hours",
]

HOURS = 24
# A group needs this many customers with two or more engagements for its own prior; fewer, and it takes the shop's.
MIN_GROUP_CUSTOMERS = 50
KINDS = ("open", "click")

_SMOOTHING_KERNEL = (0.25, 0.5, 0.25)  # previous hour, the hour, next hour
_UNIFORM_SHARE = 0.01
# The concentration is searched in this range: at the floor every customer keeps their own hours, at the ceiling
# everyone is sent at the group's hour. Past either end the likelihood is flat enough that the bound is the answer.
_CONCENTRATION_BOUNDS = (1e-2, 1e4)
# Posterior matrices are built this many customers at a time, bounding memory at 1M customers.
_CHUNK_ROWS = 1 << 18
_EVALUATED_METHODS = ("model", "shop_hour", "historical_mode")


@dataclass(frozen=True, eq=False)
class HourCounts:
    """Engagements per customer and local hour: row i of `counts` is customer_ids[i], column h is local hour h.

    `timezone` is the name the hours were read in ("UTC" where the given one was missing or unknown, then
    `timezone_known` is False).
    """

    customer_ids: np.ndarray
    counts: np.ndarray
    timezone: np.ndarray
    timezone_known: np.ndarray

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts, dtype=float)
        if counts.ndim != 2 or counts.shape[1] != HOURS:
            raise ModelInputError(f"HourCounts.counts must be customers x {HOURS} hours, got shape {counts.shape}")
        rows = counts.shape[0]
        for name in ("customer_ids", "timezone", "timezone_known"):
            if len(getattr(self, name)) != rows:
                raise ModelInputError(f"HourCounts.{name} has {len(getattr(self, name))} values for {rows} customers")
        bad = ~np.isfinite(counts) | (counts < 0)
        if bad.any():
            row = int(np.argmax(bad.any(axis=1)))
            raise ModelInputError(f"HourCounts.counts has {int(bad.sum())} negative or non-finite values "
                                  f"(first for customer {self.customer_ids[row]!r})")
        object.__setattr__(self, "counts", counts)

    @property
    def engagements(self) -> np.ndarray:
        """Each customer's (weighted) number of engagements."""
        return self.counts.sum(axis=1)


@dataclass(frozen=True, eq=False)
class HourPrior:
    """Dirichlet(concentration * mean) over the 24 local hours, per group (row g is groups[g]) and for the shop.

    `customers` counts the customers with two or more engagements each fit learnt from; a group with too few has
    `uses_shop_prior` set and the shop's mean and concentration copied in. `shop_hour` is the mode of the pooled
    training counts (no smoothing): the one hour everyone would get without a model.
    """

    groups: np.ndarray
    mean: np.ndarray
    concentration: np.ndarray
    customers: np.ndarray
    uses_shop_prior: np.ndarray
    shop_mean: np.ndarray
    shop_concentration: float
    shop_customers: int
    shop_hour: int

    def table(self) -> pd.DataFrame:
        """group, concentration, customers, uses_shop_prior, best_hour (of the prior's ±1 h window): one row each."""
        return pd.DataFrame({"group": self.groups, "concentration": self.concentration, "customers": self.customers,
                             "uses_shop_prior": self.uses_shop_prior,
                             "best_hour": _window_mass(self.mean).argmax(axis=1) if len(self.groups) else []})


# --- events -> local hour counts -----------------------------------------------------------------------------------


def local_hour_counts(events: pd.DataFrame, timezones: pd.Series, as_of: datetime, *, click_weight: float = 1.0,
                      open_weight: float = 1.0) -> HourCounts:
    """Each customer's engagements per local hour, up to `as_of`.

    `events` has customer_id, occurred_at (UTC; timestamps without a time zone, and a naive `as_of`, are taken as
    UTC, the `_at` convention) and kind ("open" or "click"). `timezones` maps customer_id (its index) to an IANA
    name or None.
    Customers are those of `timezones` and of `events`, sorted by id; one without events has a row of zeros. An event
    after `as_of` is refused rather than dropped: it means the training window was cut wrongly upstream.
    """
    require_columns("events", events, ("customer_id", "occurred_at", "kind"))
    as_of_utc = utc_timestamp("as_of", as_of)
    weights = {"open": _weight("open_weight", open_weight), "click": _weight("click_weight", click_weight)}
    event_ids = events["customer_id"]
    _refuse_missing("events.customer_id", event_ids.isna().to_numpy())
    try:
        occurred = pd.DatetimeIndex(pd.to_datetime(events["occurred_at"], utc=True))
    except (TypeError, ValueError) as error:
        raise ModelInputError(f"events.occurred_at could not be read as timestamps: {error}") from error
    _refuse_missing("events.occurred_at", np.asarray(occurred.isna()))
    kinds = events["kind"]
    unknown_kind = ~kinds.isin(KINDS).to_numpy(dtype=bool)
    if unknown_kind.any():
        found = sorted({str(k) for k in kinds[unknown_kind]})[:5]
        raise ModelInputError(f"events.kind must be one of {KINDS}, but {int(unknown_kind.sum())} events are not "
                              f"(e.g. {', '.join(found)})")
    late = np.asarray(occurred > as_of_utc)
    if late.any():
        late_positions = np.flatnonzero(late)
        first = late_positions[np.argmin(occurred[late_positions].asi8)]
        raise ModelInputError(f"events: {late.sum()} events are after as_of {as_of_utc.isoformat()}, the first at "
                              f"{occurred[first].isoformat()} (customer {event_ids.iloc[first]!r})")
    _require_unique_index("timezones", timezones)

    customer_ids = pd.Index(timezones.index).append(pd.Index(pd.unique(event_ids))).unique()
    with suppress(TypeError):  # ids of mixed types cannot be ordered: then timezones' order, then the events'
        customer_ids = customer_ids.sort_values()
    resolved, known = _resolve_timezones(timezones.reindex(customer_ids))
    event_customer = customer_ids.get_indexer(event_ids)
    zone_code, zone_names = pd.factorize(resolved)
    event_hour = np.empty(len(events), dtype=np.int64)
    # One conversion per timezone, not per customer: events sorted by zone, each zone's run converted at once.
    event_zone = zone_code[event_customer]
    by_zone = np.argsort(event_zone, kind="stable")
    bounds = np.searchsorted(event_zone[by_zone], np.arange(len(zone_names) + 1))
    for code, name in enumerate(zone_names):
        members = by_zone[bounds[code]:bounds[code + 1]]
        if len(members):
            event_hour[members] = occurred[members].tz_convert(ZoneInfo(name)).hour
    event_weight = np.where((kinds == "click").to_numpy(dtype=bool), weights["click"], weights["open"])
    counts = np.bincount(event_customer * HOURS + event_hour, weights=event_weight,
                         minlength=len(customer_ids) * HOURS).reshape(len(customer_ids), HOURS)
    return HourCounts(customer_ids=customer_ids.to_numpy(dtype=object), counts=counts, timezone=resolved,
                      timezone_known=known)


def _resolve_timezones(names: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per customer: the IANA name, or "UTC" where it is missing or unknown; and whether it was known."""
    known_names = {name for name in pd.unique(names.dropna()) if _zone(name) is not None}
    known = names.isin(known_names).to_numpy(dtype=bool)
    resolved = np.where(known, names.to_numpy(dtype=object, na_value=None), "UTC").astype(object)
    return resolved, known


def _zone(name: object) -> ZoneInfo | None:
    if not isinstance(name, str) or not name:
        return None
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError; "../x" is a ValueError
        return None


# --- the prior -----------------------------------------------------------------------------------------------------


def fit_prior(counts: HourCounts, groups: pd.Series | None = None, *,
              min_group_customers: int = MIN_GROUP_CUSTOMERS) -> HourPrior:
    """The shop's Dirichlet prior over local hours and one per group (`groups`: customer_id -> segment id; None: the
    shop only). Customers missing from `groups`, or with a null group, count for the shop only."""
    totals = counts.engagements
    if not (totals > 0).any():
        raise ModelInputError("no customer has an engagement before as_of: there is no hour to learn from")
    shop_customers = int(np.count_nonzero(totals >= 2))
    if shop_customers == 0:
        raise ModelInputError("no customer has two or more engagements before as_of: how alike customers' hours are "
                              "cannot be estimated")
    shop_mean = _smoothed_profile(counts.counts.sum(axis=0))
    shop_concentration = _concentration(counts.counts, shop_mean)

    codes, labels = _group_codes(counts, groups)
    means, concentrations, informative, fallback = [], [], [], []
    for code in range(len(labels)):
        members = counts.counts[codes == code]
        enough = int(np.count_nonzero(members.sum(axis=1) >= 2))
        informative.append(enough)
        fallback.append(enough < min_group_customers)
        if fallback[-1]:
            means.append(shop_mean)
            concentrations.append(shop_concentration)
        else:
            means.append(_smoothed_profile(members.sum(axis=0)))
            concentrations.append(_concentration(members, means[-1]))
    return HourPrior(groups=np.asarray(labels, dtype=object),
                     mean=np.array(means, dtype=float).reshape(len(labels), HOURS),
                     concentration=np.array(concentrations, dtype=float), customers=np.array(informative, dtype=int),
                     uses_shop_prior=np.array(fallback, dtype=bool), shop_mean=shop_mean,
                     shop_concentration=shop_concentration, shop_customers=shop_customers,
                     shop_hour=int(np.argmax(counts.counts.sum(axis=0))))


def _smoothed_profile(pooled: np.ndarray) -> np.ndarray:
    shares = pooled / pooled.sum() if pooled.sum() > 0 else np.full(HOURS, 1.0 / HOURS)
    before, here, after = _SMOOTHING_KERNEL
    smoothed = before * np.roll(shares, 1) + here * shares + after * np.roll(shares, -1)
    return (1.0 - _UNIFORM_SHARE) * smoothed + _UNIFORM_SHARE / HOURS


def _concentration(counts: np.ndarray, mean: np.ndarray) -> float:
    """Maximum-likelihood s of Dirichlet-multinomial(s * mean) for the rows of `counts`, the mean held fixed.

    d logL / ds = sum_i,k mean_k [psi(n_ik + s mean_k) - psi(s mean_k)] - sum_i [psi(N_i + s) - psi(s)]; hours a
    customer never used add nothing, so only the distinct non-zero counts per hour (and distinct totals) are kept.
    """
    totals = counts.sum(axis=1)
    total_values, total_repeats = np.unique(totals[totals > 0], return_counts=True)
    hours, values, repeats = [], [], []
    for hour in range(HOURS):
        column = counts[:, hour]
        distinct, times = np.unique(column[column > 0], return_counts=True)
        hours.append(np.full(len(distinct), hour))
        values.append(distinct)
        repeats.append(times)
    hour_mean = mean[np.concatenate(hours)]
    values_all, repeats_all = np.concatenate(values), np.concatenate(repeats)

    def score(log_s: float) -> float:
        s = np.exp(log_s)
        own = np.sum(repeats_all * hour_mean * (digamma(values_all + s * hour_mean) - digamma(s * hour_mean)))
        return float(own - np.sum(total_repeats * (digamma(total_values + s) - digamma(s))))

    low, high = np.log(_CONCENTRATION_BOUNDS[0]), np.log(_CONCENTRATION_BOUNDS[1])
    if score(high) >= 0:  # customers are no more alike than draws from the profile: pool them fully
        return _CONCENTRATION_BOUNDS[1]
    if score(low) <= 0:
        return _CONCENTRATION_BOUNDS[0]
    return float(np.exp(brentq(score, low, high, xtol=1e-8)))


def _group_codes(counts: HourCounts, groups: pd.Series | None) -> tuple[np.ndarray, pd.Index]:
    """Per customer the position of its group among the sorted labels (-1: no group), and the labels."""
    if groups is None:
        return np.full(len(counts.customer_ids), -1), pd.Index([], dtype=object)
    _require_unique_index("groups", groups)
    codes, labels = pd.factorize(groups.reindex(counts.customer_ids), sort=True)
    return codes, labels


# --- the pick ------------------------------------------------------------------------------------------------------


def pick_send_hours(counts: HourCounts, prior: HourPrior, groups: pd.Series | None, as_of: datetime) -> pd.DataFrame:
    """Per customer the local hour to send at, the same hour in UTC on as_of's local date, and how sure the pick is.

    Columns: customer_id, send_hour_local, send_hour_utc, timezone, confidence (posterior mass of the ±1 h window
    around the pick), engagements. A customer whose group the prior does not know (or without a group) gets the
    shop's prior; one without engagements gets the prior's own best hour, at the prior's (low) confidence.
    """
    as_of_utc = utc_timestamp("as_of", as_of)
    if groups is None:
        row = np.full(len(counts.customer_ids), len(prior.groups))
    else:
        _require_unique_index("groups", groups)
        row = pd.Index(prior.groups).get_indexer(groups.reindex(counts.customer_ids))
        row[row < 0] = len(prior.groups)  # the shop's prior sits after the groups'
    means = np.vstack([prior.mean.reshape(-1, HOURS), prior.shop_mean])
    concentrations = np.append(prior.concentration, prior.shop_concentration)
    totals = counts.engagements
    customers = len(totals)
    send_hour = np.empty(customers, dtype=np.int64)
    confidence = np.empty(customers)
    for start in range(0, customers, _CHUNK_ROWS):
        part = slice(start, start + _CHUNK_ROWS)
        strength = concentrations[row[part]]
        posterior = counts.counts[part] + strength[:, None] * means[row[part]]
        posterior /= (totals[part] + strength)[:, None]
        window = _window_mass(posterior)
        send_hour[part] = window.argmax(axis=1)  # ties go to the earliest hour: deterministic
        confidence[part] = np.take_along_axis(window, send_hour[part, None], axis=1)[:, 0]
    return pd.DataFrame({
        "customer_id": counts.customer_ids,
        "send_hour_local": send_hour,
        "send_hour_utc": _utc_send_hours(send_hour, counts.timezone, as_of_utc),
        "timezone": counts.timezone,
        "confidence": np.clip(confidence, 0.0, 1.0),
        "engagements": totals,
    })


def _window_mass(shares: np.ndarray) -> np.ndarray:
    """Mass of hours h-1, h, h+1 (circular) for every h; works on one profile or a matrix of them."""
    return shares + np.roll(shares, 1, axis=-1) + np.roll(shares, -1, axis=-1)


def _utc_send_hours(local_hour: np.ndarray, timezone: np.ndarray, as_of_utc: pd.Timestamp) -> np.ndarray:
    zone_code, zone_names = pd.factorize(pd.Series(timezone, dtype=object))
    table = np.empty((len(zone_names), HOURS), dtype=np.int64)
    for code, name in enumerate(zone_names):
        zone = _zone(name)
        if zone is None:
            raise ModelInputError(f"HourCounts.timezone has the unknown timezone {name!r}: build the counts with "
                                  "local_hour_counts, which reads unknown names as UTC")
        local_date = as_of_utc.tz_convert(zone).tz_localize(None).normalize()
        starts = pd.date_range(local_date, periods=HOURS, freq="h").tz_localize(
            zone, ambiguous=np.ones(HOURS, dtype=bool), nonexistent="shift_forward")
        table[code] = starts.tz_convert("UTC").ceil("h").hour
    return table[zone_code, local_hour]


# --- evaluation ----------------------------------------------------------------------------------------------------


def evaluate_send_hours(picks: pd.DataFrame, later: HourCounts, tolerance_hours: int = 1, *, history: HourCounts,
                        shop_hour: int | None = None) -> pd.DataFrame:
    """How many later engagements fell within ±tolerance_hours (circular) of each method's hour.

    Methods: "model" (the picks), "shop_hour" (`shop_hour` for everyone; default the mode of `history`'s pooled
    counts, which is HourPrior.shop_hour) and "historical_mode" (each customer's most frequent training hour, no
    shrinkage; the shop hour for a customer without history). `history` is the training counts, `later` the counts
    after as_of in the same local-hour convention. Only customers picked and with a later engagement count.
    Columns: method, customers, engagements, hits, hit_share.
    """
    require_columns("picks", picks, ("customer_id", "send_hour_local"))
    if isinstance(tolerance_hours, bool) or not isinstance(tolerance_hours, int | np.integer) or not (
            0 <= tolerance_hours < HOURS // 2):
        raise ModelInputError(f"tolerance_hours must be a whole number of hours from 0 to {HOURS // 2 - 1}, "
                              f"got {tolerance_hours!r}")
    picked = pd.Index(picks["customer_id"])
    if picked.has_duplicates:
        raise ModelInputError(f"picks has customer {picked[picked.duplicated()][0]!r} more than once")
    picked_hours = _hours("picks.send_hour_local", picks["send_hour_local"].to_numpy())
    pooled = history.counts.sum(axis=0)
    everyone = int(np.argmax(pooled)) if shop_hour is None else int(_hours("shop_hour", np.array([shop_hour]))[0])

    later_totals = later.engagements
    position = picked.get_indexer(later.customer_ids)
    kept = np.flatnonzero((later_totals > 0) & (position >= 0))
    later_counts = later.counts[kept]
    historical = np.full(len(kept), everyone)
    past_row = pd.Index(history.customer_ids).get_indexer(later.customer_ids[kept])
    has_row = np.flatnonzero(past_row >= 0)
    past = history.counts[past_row[has_row]]
    with_history = past.sum(axis=1) > 0
    historical[has_row[with_history]] = past[with_history].argmax(axis=1)

    hour_of = {"model": picked_hours[position[kept]], "shop_hour": np.full(len(kept), everyone),
               "historical_mode": historical}
    engagements = float(later_counts.sum())
    rows = []
    for method in _EVALUATED_METHODS:
        distance = np.abs(np.arange(HOURS)[None, :] - hour_of[method][:, None])
        within = np.minimum(distance, HOURS - distance) <= tolerance_hours
        hits = float(later_counts[within].sum())
        rows.append({"method": method, "customers": len(kept), "engagements": engagements, "hits": hits,
                     "hit_share": hits / engagements if engagements > 0 else np.nan})
    return pd.DataFrame(rows, columns=["method", "customers", "engagements", "hits", "hit_share"])


# --- input checks --------------------------------------------------------------------------------------------------


def _require_unique_index(name: str, series: pd.Series) -> None:
    if not isinstance(series, pd.Series):
        raise ModelInputError(f"{name} must be a pandas Series indexed by customer_id, got {type(series).__name__}")
    if series.index.has_duplicates:
        raise ModelInputError(f"{name} has customer {series.index[series.index.duplicated()][0]!r} more than once")


def _weight(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not (
            np.isfinite(value) and value >= 0):
        raise ModelInputError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def _hours(name: str, values: np.ndarray) -> np.ndarray:
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(numbers) | (numbers != np.round(numbers)) | (numbers < 0) | (numbers >= HOURS)
    if bad.any():
        first = int(np.argmax(bad))
        raise ModelInputError(f"{name} must be whole hours 0..{HOURS - 1}: {int(bad.sum())} values are not "
                              f"(first at position {first}: {values[first]!r})")
    return numbers.astype(np.int64)


def _refuse_missing(name: str, missing: np.ndarray) -> None:
    if missing.any():
        raise ModelInputError(f"{name} has {int(np.count_nonzero(missing))} missing values "
                              f"(first at row {int(np.argmax(missing))})")
