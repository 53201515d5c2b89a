"""One self-contained HTML page per model training run: what was trained, how the churn candidates compare, what the
segments look like, how the CLV back-test went and whether the features drifted.

The page is a single file (PNG plots embedded as base64 data URIs, inline CSS, no scripts, fonts or network) so a
marketer can open it anywhere or attach it to an email. Plots are drawn with matplotlib's Agg canvas on private
Figure objects (never pyplot), so rendering neither touches global matplotlib state nor needs a display. A plot whose
data is empty or degenerate is replaced by a one-line explanation: a report never fails because of its input.

The personalization models (product recommendations and send times) get the same kind of page from the same parts:
how the recommendation candidates compare overall and by customer history, how the send hours did against the shop's
single best hour, which send hours customers were given, and a few example customers. The feed gets one page per
feed date: the holdout experiment's lift readout per cohort, and how the date's customers split over next best actions
and experiment groups.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from sklearn.metrics import roc_auc_score, roc_curve

PSI_WARN = 0.1
PSI_FAIL = 0.25

_DPI = 90
FONT = 8
STATUS_COLOURS = {"ok": "#4c9a5f", "warn": "#e0a030", "fail": "#c8453c"}
_MAX_DRIFT_BARS = 30
_MAX_HEATMAP_CELLS_ANNOTATED = 150
_SERVED_COLOUR = "#4c9a5f"
_OTHER_COLOUR = "#9aa5b1"
_WINDOW_COMPLETE_COLOUR = "#4a78a8"
_WINDOW_OPEN_COLOUR = "#a9c1db"  # the same blue, lighter: a cohort whose orders are still coming in
_FEED_METRICS = {"conversion": ("Conversion: share of customers with an order", "treatment − holdout (percentage points)"),
                 "net_sales": ("Net sales per customer", "treatment − holdout (shop currency)")}


@dataclass
class ScoredCandidate:
    """One churn candidate scored on the validation window."""

    name: str  # e.g. "boosting_blend", "recency_rule", "bgnbd_p_alive"
    y_true: np.ndarray  # 1 = churned
    score: np.ndarray  # higher = more likely to churn
    is_probability: bool  # the calibration plot shows probability candidates only


@dataclass
class TrainingReport:
    """Everything one training run shows; see the module docstring for what each part becomes."""

    title: str
    as_of: str  # ISO date or datetime; its date names the file
    model_version: str
    summary: dict[str, str]
    churn_candidates: list[ScoredCandidate]
    churn_metrics: pd.DataFrame  # candidate, roc_auc, pr_auc, brier (nullable), customers, churn_rate
    churn_note: str | None
    segment_profiles: pd.DataFrame  # segment_id, segment_name, customers, share, numeric profile columns
    silhouette_by_k: dict[int, float]
    inertia_by_k: dict[int, float]
    chosen_k: int
    clv_deciles: pd.DataFrame | None  # decile, customers, predicted_mean, actual_mean[, metric]
    clv_metrics: pd.DataFrame | None  # metric, model, mae, ...
    drift: pd.DataFrame | None  # feature, psi, status; None = no drift check in this run
    notes: list[str] = field(default_factory=list)


@dataclass
class PersonalizationReport:
    """Everything one training of the personalization models shows; a None or empty part is explained on the page."""

    title: str
    as_of: str  # ISO date or datetime; its date names the file
    model_versions: dict[str, str]  # e.g. {"recommendations": "v3", "send times": "v2"}
    summary: dict[str, str]  # validation window, served candidate, promotion decisions, ...
    rec_metrics: pd.DataFrame | None  # candidate, hit_rate, recall, ndcg, coverage, customers, served (bool)
    rec_hit_rate_by_history: pd.DataFrame | None  # candidate, history (bucket label, display order), customers, hit_rate
    send_metrics: pd.DataFrame | None  # method, customers, engagements, hits, hit_share
    send_hour_distribution: pd.DataFrame | None  # hour (0..23 local), customers, engagement_share (sums to 1)
    send_prior: pd.DataFrame | None  # group, concentration, customers, uses_shop_prior, best_hour
    samples: pd.DataFrame | None  # customer_id, rank, product_title, category, reason, send_hour_local, timezone
    notes: list[str] = field(default_factory=list)


@dataclass
class FeedReport:
    """One feed date's page: the date's feed and the lift readout of the latest cohorts (exports.feed_lift)."""

    as_of: str  # the feed date (ISO date or datetime); its date names the file
    summary: dict[str, str]  # customers, groups, model versions, ...
    next_best_actions: pd.DataFrame | None  # next_best_action, customers, share
    experiment_groups: pd.DataFrame | None  # experiment_group, customers
    # exports.feed_lift rows: as_of_date, metric, horizon_days, is_window_complete, treatment_customers,
    # holdout_customers, treatment_value, holdout_value, difference, ci_lower, ci_upper, z_statistic, is_significant
    lift: pd.DataFrame | None
    title: str = "Tailor feed report"
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plot:
    """A rendered plot (base64 PNG) or, when skipped, why; `note` may also say what a drawn plot left out."""

    png: str | None
    note: str = ""


# ---------------------------------------------------------------------------------------------------------- helpers


def new_figure(width: float = 6.0, height: float = 4.0) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attach the Agg canvas to this figure only
    return fig


def figure_png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})  # no version stamp: stable bytes
    fig.clear()
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_label(value: Any) -> str:
    """Text for a plot: '$' would start matplotlib's mathtext (and can make it raise)."""
    return str(value).replace("$", r"\$")


def _joined(notes: Sequence[str]) -> str:
    return " ".join(n for n in notes if n)


def _missing_columns(frame: pd.DataFrame, needed: set[str]) -> str:
    return ", ".join(sorted(needed - set(frame.columns)))


def _clean_candidate(candidate: ScoredCandidate) -> tuple[np.ndarray, np.ndarray] | str:
    """(y, score) with non-finite scores dropped, or why the candidate cannot be plotted."""
    try:
        y = np.asarray(candidate.y_true, dtype=float).ravel()
        s = np.asarray(candidate.score, dtype=float).ravel()
    except (TypeError, ValueError):
        return f"{candidate.name}: labels or scores are not numeric."
    if y.shape != s.shape:
        return f"{candidate.name}: {y.size} labels but {s.size} scores."
    keep = np.isfinite(s) & np.isfinite(y)
    y, s = y[keep], s[keep]
    if y.size == 0:
        return f"{candidate.name}: no scored customers."
    if not np.isin(y, (0.0, 1.0)).all():
        return f"{candidate.name}: labels are not 0/1."
    return y.astype(int), s


def _two_class(candidate: ScoredCandidate) -> tuple[np.ndarray, np.ndarray] | str:
    cleaned = _clean_candidate(candidate)
    if isinstance(cleaned, str):
        return cleaned
    if np.unique(cleaned[0]).size < 2:
        return f"{candidate.name}: only one class in the labels ({'all churned' if cleaned[0][0] else 'none churned'})."
    return cleaned


def lift_by_decile(y_true: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Churn rate per score decile (1 = highest scores) over the overall rate. Ties are broken by a fixed-seed random
    order so a coarse score (e.g. the recency rule) does not inherit the row order. Needs both classes, >= 10 rows."""
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(score, dtype=float)
    tiebreak = np.random.default_rng(0).random(y.size)
    order = np.lexsort((tiebreak, -s))  # last key is primary: descending score
    groups = np.array_split(y[order], 10)
    return np.array([g.mean() for g in groups]) / y.mean()


def _calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Mean predicted probability and observed rate per quantile bin of the prediction (tied edges merge bins)."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    bins = np.searchsorted(edges[1:-1], p, side="right")
    frame = pd.DataFrame({"bin": bins, "p": p, "y": y}).groupby("bin")[["p", "y"]].mean()
    return frame["p"].to_numpy(), frame["y"].to_numpy()


# ------------------------------------------------------------------------------------------------------------ plots


def plot_roc(candidates: Sequence[ScoredCandidate]) -> Plot:
    """ROC curves of all churn candidates on one axes, AUC in the legend."""
    notes: list[str] = []
    curves = []
    for c in candidates:
        cleaned = _two_class(c)
        if isinstance(cleaned, str):
            notes.append(cleaned)
            continue
        y, s = cleaned
        fpr, tpr, _ = roc_curve(y, s)
        curves.append((c.name, fpr, tpr, roc_auc_score(y, s)))
    if not curves:
        return Plot(None, _joined(["ROC curves skipped:", *notes]) if notes else "ROC curves skipped: no candidates.")
    fig = new_figure()
    ax = fig.add_subplot()
    for name, fpr, tpr, auc in curves:
        ax.plot(fpr, tpr, lw=1.5, label=f"{plot_label(name)} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate")
    ax.set_title("ROC curves (validation window)", fontsize=FONT + 2)
    ax.legend(loc="lower right", fontsize=FONT)
    ax.grid(alpha=0.3)
    return Plot(figure_png(fig), _joined(["Not drawn:", *notes]) if notes else "")


def plot_calibration(candidates: Sequence[ScoredCandidate]) -> Plot:
    """Reliability curve of each probability candidate: 10 quantile bins, mean predicted vs observed churn rate."""
    notes: list[str] = []
    curves = []
    for c in candidates:
        if not c.is_probability:
            continue
        cleaned = _clean_candidate(c)
        if isinstance(cleaned, str):
            notes.append(cleaned)
            continue
        y, p = cleaned
        if p.min() < 0 or p.max() > 1:
            notes.append(f"{c.name}: scores outside [0, 1] are not probabilities.")
            continue
        curves.append((c.name, *_calibration_bins(y, p)))
    if not curves:
        reason = _joined(notes) if notes else "no probability candidates."
        return Plot(None, f"Calibration skipped: {reason}")
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="perfectly calibrated")
    for name, predicted, observed in curves:
        ax.plot(predicted, observed, marker="o", ms=3.5, lw=1.5, label=plot_label(name))
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted churn probability", ylabel="observed churn rate")
    ax.set_title("Calibration (10 quantile bins)", fontsize=FONT + 2)
    ax.legend(loc="upper left", fontsize=FONT)
    ax.grid(alpha=0.3)
    return Plot(figure_png(fig), _joined(["Not drawn:", *notes]) if notes else "")


def plot_lift(candidates: Sequence[ScoredCandidate]) -> Plot:
    """Churn rate per score decile over the overall rate, bars grouped by candidate (decile 1 = highest scores)."""
    notes: list[str] = []
    lifts = []
    for c in candidates:
        cleaned = _two_class(c)
        if isinstance(cleaned, str):
            notes.append(cleaned)
        elif cleaned[0].size < 10:
            notes.append(f"{c.name}: fewer than 10 scored customers.")
        else:
            lifts.append((c.name, lift_by_decile(*cleaned)))
    if not lifts:
        reason = _joined(notes) if notes else "no candidates."
        return Plot(None, f"Lift by decile skipped: {reason}")
    fig = new_figure()
    ax = fig.add_subplot()
    deciles = np.arange(1, 11)
    width = 0.8 / len(lifts)
    for i, (name, lift) in enumerate(lifts):
        ax.bar(deciles - 0.4 + width * (i + 0.5), lift, width=width, label=plot_label(name))
    ax.axhline(1.0, ls="--", lw=1, color="grey")
    ax.set(xticks=deciles, xlabel="score decile (1 = most likely to churn)", ylabel="lift (decile rate / overall rate)")
    ax.set_title("Lift by score decile", fontsize=FONT + 2)
    ax.legend(fontsize=FONT)
    ax.grid(axis="y", alpha=0.3)
    return Plot(figure_png(fig), _joined(["Not drawn:", *notes]) if notes else "")


def plot_segments(profiles: pd.DataFrame) -> Plot:
    """Segment sizes (bars) beside a heatmap of the profile columns standardized across segments."""
    if profiles is None or profiles.empty:
        return Plot(None, "Segment profiles skipped: no segments.")
    name_column = next((c for c in ("segment_name", "segment_id") if c in profiles), None)
    names = [plot_label(n) for n in (profiles[name_column] if name_column else profiles.index).astype(str)]
    size_column = next((c for c in ("customers", "share") if c in profiles), None)
    skip = {"segment_id", "segment_name", "customers", "share"}
    numeric = profiles[[c for c in profiles.select_dtypes(include="number").columns if c not in skip]]
    numeric = numeric.apply(pd.to_numeric, errors="coerce").astype(float)
    if size_column is None and numeric.empty:
        return Plot(None, "Segment profiles skipped: no sizes and no numeric profile columns.")
    notes = []
    if size_column is None:
        notes.append("No customers or share column: sizes not drawn.")
    if numeric.empty:
        notes.append("No numeric profile columns: heatmap not drawn.")
    panels = int(size_column is not None) + int(not numeric.empty)
    fig = new_figure(9.5 if panels == 2 else 6.0, max(3.0, 0.35 * len(names) + 1.5))
    grid = fig.add_gridspec(1, panels, width_ratios=(1, max(1.5, 0.45 * numeric.shape[1]))[:panels])
    rows = np.arange(len(names))
    if size_column is not None:
        ax = fig.add_subplot(grid[0, 0])
        sizes = pd.to_numeric(profiles[size_column], errors="coerce").fillna(0).to_numpy(dtype=float)
        ax.barh(rows, sizes, color="#4a78a8")
        ax.set_yticks(rows, names, fontsize=FONT)
        ax.invert_yaxis()
        ax.set_xlabel(size_column, fontsize=FONT)
        ax.set_title("Segment sizes", fontsize=FONT + 2)
        ax.tick_params(axis="x", labelsize=FONT)
        if "share" in profiles:
            shares = pd.to_numeric(profiles["share"], errors="coerce").to_numpy(dtype=float)
            for row, (size, share) in enumerate(zip(sizes, shares, strict=True)):
                if np.isfinite(share):
                    ax.annotate(f"{share:.0%}", (size, row), xytext=(2, 0), textcoords="offset points",
                                va="center", fontsize=FONT - 1)
            ax.margins(x=0.15)
    if not numeric.empty:
        ax = fig.add_subplot(grid[0, panels - 1])
        std = numeric.std(ddof=0).replace(0, np.nan)
        z = ((numeric - numeric.mean()) / std).fillna(0.0).to_numpy()
        limit = max(1.0, float(np.abs(z).max()))
        image = ax.imshow(z, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_yticks(rows, names, fontsize=FONT)
        ax.set_xticks(np.arange(numeric.shape[1]), [plot_label(c) for c in numeric.columns], fontsize=FONT,
                      rotation=40, ha="right")
        if z.size <= _MAX_HEATMAP_CELLS_ANNOTATED:  # raw values in the cells, colour = standardized
            for (r, c), value in np.ndenumerate(numeric.to_numpy()):
                ax.text(c, r, format_number(value), ha="center", va="center", fontsize=FONT - 1,
                        color="white" if abs(z[r, c]) > 0.6 * limit else "black")
        ax.set_title("Profiles (colour: z-score across segments; text: value)", fontsize=FONT + 2)
        fig.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=FONT)
    return Plot(figure_png(fig), " ".join(notes))


def plot_k_selection(silhouette_by_k: dict[int, float], inertia_by_k: dict[int, float], chosen_k: int) -> Plot:
    """Silhouette by k and inertia by k (elbow) side by side, the chosen k marked on both."""
    series = [
        ("Silhouette by k (higher is better)", "silhouette", silhouette_by_k or {}),
        ("Inertia by k (elbow)", "inertia", inertia_by_k or {}),
    ]
    if not any(values for _, _, values in series):
        return Plot(None, "Choice of k skipped: no silhouette or inertia values.")
    fig = new_figure(9.0, 3.5)
    for i, (title, ylabel, values) in enumerate(series):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.set_title(title, fontsize=FONT + 2)
        points = sorted((int(k), float(v)) for k, v in values.items() if v is not None and math.isfinite(float(v)))
        if not points:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        ks, vs = zip(*points, strict=True)
        ax.plot(ks, vs, marker="o", ms=4, lw=1.5, color="#4a78a8")
        ax.axvline(chosen_k, ls="--", lw=1, color="#c8453c", label=f"chosen k = {chosen_k}")
        if chosen_k in ks:
            ax.plot([chosen_k], [vs[ks.index(chosen_k)]], marker="o", ms=8, mfc="none", mec="#c8453c", mew=2)
        ax.set(xticks=list(ks), xlabel="k (number of segments)", ylabel=ylabel)
        ax.legend(fontsize=FONT)
        ax.grid(alpha=0.3)
    return Plot(figure_png(fig))


def plot_clv_deciles(deciles: pd.DataFrame | None) -> Plot:
    """CLV back-test: predicted vs actual mean per decile, one subplot per metric."""
    needed = {"decile", "predicted_mean", "actual_mean"}
    if deciles is None or deciles.empty:
        return Plot(None, "CLV back-test plot skipped: no deciles.")
    if not needed <= set(deciles.columns):
        missing = ", ".join(sorted(needed - set(deciles.columns)))
        return Plot(None, f"CLV back-test plot skipped: missing columns {missing}.")
    frame = deciles.copy()
    for column in needed:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame = frame.dropna(subset=sorted(needed))
    if frame.empty:
        return Plot(None, "CLV back-test plot skipped: no numeric deciles.")
    groups = list(frame.groupby("metric", sort=False)) if "metric" in frame else [("CLV", frame)]
    cols = min(3, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig = new_figure(min(4.0 * cols, 12.0) if cols > 1 else 6.0, 3.5 * rows)
    for i, (metric, group) in enumerate(groups):
        ax = fig.add_subplot(rows, cols, i + 1)
        group = group.sort_values("decile")
        ax.plot(group["decile"], group["actual_mean"], marker="o", ms=4, lw=1.5, label="actual")
        ax.plot(group["decile"], group["predicted_mean"], marker="s", ms=4, lw=1.5, ls="--", label="predicted")
        ax.set_title(plot_label(metric), fontsize=FONT + 2)
        ax.set_xticks(group["decile"].astype(int).unique())
        ax.set_xlabel("decile", fontsize=FONT)
        ax.set_ylabel("mean per customer", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        ax.legend(fontsize=FONT)
        ax.grid(alpha=0.3)
    return Plot(figure_png(fig))


def plot_drift(drift: pd.DataFrame | None) -> Plot:
    """Horizontal bars of PSI per feature, coloured by status, with the warn and fail thresholds."""
    if drift is None or drift.empty or not {"feature", "psi"} <= set(drift.columns):
        return Plot(None, "Drift plot skipped: no PSI values.")
    frame = drift.assign(psi=pd.to_numeric(drift["psi"], errors="coerce"))
    notes = []
    missing = frame["psi"].isna().sum()
    if missing:
        notes.append(f"{missing} feature(s) without a PSI value not drawn.")
    frame = frame.dropna(subset=["psi"]).sort_values("psi", ascending=False)
    if frame.empty:
        return Plot(None, "Drift plot skipped: no PSI values.")
    if len(frame) > _MAX_DRIFT_BARS:
        notes.append(f"Showing the {_MAX_DRIFT_BARS} largest of {len(frame)} features (all are in the table).")
        frame = frame.head(_MAX_DRIFT_BARS)
    statuses = frame["status"].astype(str).str.lower() if "status" in frame else pd.Series("", index=frame.index)
    colours = [STATUS_COLOURS.get(s, "#888888") for s in statuses]
    fig = new_figure(6.0, min(10.0, max(2.5, 0.25 * len(frame) + 1.2)))
    ax = fig.add_subplot()
    rows = np.arange(len(frame))
    ax.barh(rows, frame["psi"], color=colours)
    ax.set_yticks(rows, [plot_label(f) for f in frame["feature"]], fontsize=FONT)
    ax.invert_yaxis()
    ax.axvline(PSI_WARN, ls="--", lw=1, color=STATUS_COLOURS["warn"], label=f"warn ({PSI_WARN})")
    ax.axvline(PSI_FAIL, ls="--", lw=1, color=STATUS_COLOURS["fail"], label=f"fail ({PSI_FAIL})")
    ax.set_xlim(0, max(PSI_FAIL * 1.2, float(frame["psi"].max()) * 1.1))
    ax.set_xlabel("population stability index (PSI)", fontsize=FONT)
    ax.set_title("Feature drift vs the training window", fontsize=FONT + 2)
    ax.tick_params(axis="x", labelsize=FONT)
    ax.legend(fontsize=FONT, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return Plot(figure_png(fig), " ".join(notes))


def _hit_rate_grid(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """HitRate@10 with a row per history bucket and a column per candidate, both in the order given, and each
    bucket's tick label with its customer count (the same for every candidate, so the largest one is taken)."""
    data = frame.assign(history=frame["history"].astype(str), candidate=frame["candidate"].astype(str),
                        hit_rate=pd.to_numeric(frame["hit_rate"], errors="coerce"),
                        customers=pd.to_numeric(frame["customers"], errors="coerce"))
    buckets = list(pd.unique(data["history"]))
    grid = (data.groupby(["history", "candidate"])["hit_rate"].mean().unstack()
            .reindex(index=buckets, columns=list(pd.unique(data["candidate"]))))
    customers = data.groupby("history")["customers"].max().reindex(buckets)
    labels = [f"{plot_label(b)}\n({format_number(n)} customers)" for b, n in customers.items()]
    return grid, labels


def plot_hit_rate_by_history(frame: pd.DataFrame | None) -> Plot:
    """HitRate@10 per customer-history bucket, bars grouped by candidate: a personal model should beat the
    best-sellers where there is history, and fall back to them (not below) where there is none."""
    needed = {"candidate", "history", "customers", "hit_rate"}
    if frame is None or frame.empty:
        return Plot(None, "Hit rate by history skipped: no history buckets.")
    if not needed <= set(frame.columns):
        return Plot(None, f"Hit rate by history skipped: missing columns {_missing_columns(frame, needed)}.")
    grid, labels = _hit_rate_grid(frame)
    if grid.isna().all().all():
        return Plot(None, "Hit rate by history skipped: no numeric hit rates.")
    fig = new_figure(max(6.0, 0.9 * len(labels) + 2.0), 4.0)
    ax = fig.add_subplot()
    positions = np.arange(len(labels))
    width = 0.8 / grid.shape[1]
    for i, candidate in enumerate(grid.columns):
        ax.bar(positions - 0.4 + width * (i + 0.5), grid[candidate].to_numpy(dtype=float), width=width,
               label=plot_label(candidate))
    ax.set_xticks(positions, labels, fontsize=FONT)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.tick_params(axis="y", labelsize=FONT)
    ax.set_xlabel("customer history before the validation window", fontsize=FONT)
    ax.set_ylabel("HitRate@10 (customers with a hit)", fontsize=FONT)
    ax.set_title("HitRate@10 by customer history", fontsize=FONT + 2)
    ax.legend(fontsize=FONT)
    ax.grid(axis="y", alpha=0.3)
    return Plot(figure_png(fig))


def plot_coverage(rec_metrics: pd.DataFrame | None) -> Plot:
    """Catalogue coverage per recommendation candidate as horizontal bars, the served one highlighted."""
    if rec_metrics is None or rec_metrics.empty:
        return Plot(None, "Coverage plot skipped: no recommendation metrics.")
    if not {"candidate", "coverage"} <= set(rec_metrics.columns):
        missing = _missing_columns(rec_metrics, {"candidate", "coverage"})
        return Plot(None, f"Coverage plot skipped: missing columns {missing}.")
    served = rec_metrics["served"].eq(True) if "served" in rec_metrics else pd.Series(False, index=rec_metrics.index)
    frame = rec_metrics.assign(coverage=pd.to_numeric(rec_metrics["coverage"], errors="coerce"), served=served)
    notes = []
    missing = frame["coverage"].isna().sum()
    if missing:
        notes.append(f"{missing} candidate(s) without a coverage value not drawn.")
    frame = frame.dropna(subset=["coverage"])
    if frame.empty:
        return Plot(None, "Coverage plot skipped: no coverage values.")
    if not frame["served"].any():
        notes.append("No candidate is marked as served.")
    fig = new_figure(6.0, max(2.0, 0.35 * len(frame) + 1.2))
    ax = fig.add_subplot()
    rows = np.arange(len(frame))
    coverage = frame["coverage"].to_numpy(dtype=float)
    ax.barh(rows, coverage, color=[_SERVED_COLOUR if s else _OTHER_COLOUR for s in frame["served"]])
    names = [plot_label(n) + (" (served)" if s else "") for n, s in zip(frame["candidate"], frame["served"], strict=True)]
    ax.set_yticks(rows, names, fontsize=FONT)
    ax.invert_yaxis()
    for row, value in enumerate(coverage):
        ax.annotate(f"{value:.1%}", (value, row), xytext=(2, 0), textcoords="offset points", va="center",
                    fontsize=FONT - 1)
    ax.set_xlim(0, max(0.01, float(coverage.max())) * 1.2)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.tick_params(axis="x", labelsize=FONT)
    ax.set_xlabel("share of the catalogue in the top 10 of any customer's list", fontsize=FONT)
    ax.set_title("Catalogue coverage", fontsize=FONT + 2)
    ax.grid(axis="x", alpha=0.3)
    return Plot(figure_png(fig), " ".join(notes))


def plot_send_hours(frame: pd.DataFrame | None) -> Plot:
    """Customers per local send hour (bars) against the shop's share of past engagements per local hour (line, right
    axis). Hours absent from the frame had no customers."""
    if frame is None or frame.empty:
        return Plot(None, "Send hours plot skipped: no send hours.")
    if "hour" not in frame or not {"customers", "engagement_share"} & set(frame.columns):
        missing = _missing_columns(frame, {"hour", "customers", "engagement_share"})
        return Plot(None, f"Send hours plot skipped: missing columns {missing}.")
    hours = pd.to_numeric(frame["hour"], errors="coerce")
    valid = hours.between(0, 23) & (hours % 1 == 0)
    notes = []
    if (~valid).sum():
        notes.append(f"{(~valid).sum()} row(s) with an hour outside 0..23 not drawn.")
    by_hour = hours[valid].astype(int)
    day = pd.RangeIndex(24)

    def per_hour(column: str) -> pd.Series:
        if column not in frame:
            return pd.Series(np.nan, index=day)
        values = pd.to_numeric(frame.loc[valid, column], errors="coerce")
        return values.groupby(by_hour.to_numpy()).sum(min_count=1).reindex(day)

    customers = per_hour("customers")
    share = per_hour("engagement_share")
    if customers.isna().all() and share.isna().all():
        return Plot(None, "Send hours plot skipped: no customers and no engagement shares per hour.")
    if customers.isna().all():
        notes.append("No customers per hour: bars not drawn.")
    if share.isna().all():
        notes.append("No engagement shares: line not drawn.")
    fig = new_figure(7.0, 3.8)
    ax = fig.add_subplot()
    handles = []
    if not customers.isna().all():
        handles.append(ax.bar(day, customers.fillna(0).to_numpy(dtype=float), color="#4a78a8",
                              label="customers given this send hour"))
    ax.set_xticks(day, [str(h) for h in day], fontsize=FONT)
    ax.set_xlim(-0.6, 23.6)
    ax.tick_params(axis="y", labelsize=FONT)
    ax.set_xlabel("local hour of day", fontsize=FONT)
    ax.set_ylabel("customers", fontsize=FONT)
    if not share.isna().all():
        right = ax.twinx()
        handles.extend(right.plot(day, share.to_numpy(dtype=float), color="#c8453c", marker="o", ms=3, lw=1.5,
                                  label="shop's past engagements at this hour"))
        right.set_ylim(bottom=0)
        right.yaxis.set_major_formatter(PercentFormatter(1.0))
        right.tick_params(axis="y", labelsize=FONT)
        right.set_ylabel("share of engagements", fontsize=FONT)
    ax.set_title("Send hours given vs the shop's engagement by hour", fontsize=FONT + 2)
    ax.legend(handles=handles, fontsize=FONT, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return Plot(figure_png(fig), " ".join(notes))


def plot_feed_lift(lift: pd.DataFrame | None) -> Plot:
    """One panel per metric: treatment − holdout per cohort date with its 95 % interval as an error bar and a line at
    0; cohorts whose window is still open in a lighter colour."""
    needed = {"as_of_date", "metric", "difference", "ci_lower", "ci_upper"}
    if lift is None or lift.empty:
        return Plot(None, "No feed cohorts yet: exports.feed_lift gets a row per metric for every feed date built.")
    if not needed <= set(lift.columns):
        return Plot(None, f"Lift plot skipped: missing columns {_missing_columns(lift, needed)}.")
    frame = lift.assign(as_of_date=pd.to_datetime(lift["as_of_date"], errors="coerce"),
                        metric=lift["metric"].astype(str),
                        **{c: pd.to_numeric(lift[c], errors="coerce") for c in ("difference", "ci_lower", "ci_upper")})
    notes = []
    if "is_window_complete" in lift:
        frame["open"] = ~lift["is_window_complete"].eq(True)
    else:
        frame["open"] = False
        notes.append("No is_window_complete column: every cohort drawn as complete.")
    unusable = frame["as_of_date"].isna() | frame["difference"].isna()
    if unusable.sum():
        notes.append(f"{unusable.sum()} row(s) without a cohort date or difference not drawn.")
    frame = frame[~unusable]
    if frame.empty:
        return Plot(None, "Lift plot skipped: no cohort with a date and a difference.")
    no_interval = (frame["ci_lower"].isna() | frame["ci_upper"].isna()).sum()
    if no_interval:
        notes.append(f"{no_interval} point(s) without an interval drawn without an error bar.")
    if frame["open"].any():
        horizon = pd.to_numeric(frame["horizon_days"], errors="coerce").dropna().unique() \
            if "horizon_days" in frame else []
        window = f"{int(horizon[0])}-day window" if len(horizon) == 1 else "window"
        notes.append(f"Lighter points: cohorts whose {window} is still open (their orders are still coming in).")
    present = set(frame["metric"])
    metrics = [m for m in _FEED_METRICS if m in present] + sorted(present - set(_FEED_METRICS))
    fig = new_figure(7.0, 2.6 * len(metrics) + 0.4)
    axes = fig.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    handles: dict[str, Any] = {}
    for ax, metric in zip(axes, metrics, strict=True):
        group = frame[frame["metric"] == metric].sort_values("as_of_date")
        below = (group["difference"] - group["ci_lower"]).clip(lower=0).fillna(0)
        above = (group["ci_upper"] - group["difference"]).clip(lower=0).fillna(0)
        for is_open, colour, label in ((False, _WINDOW_COMPLETE_COLOUR, "window complete"),
                                       (True, _WINDOW_OPEN_COLOUR, "window still open")):
            part = (group["open"] == is_open).to_numpy()
            if part.any():
                handles.setdefault(label, ax.errorbar(
                    group["as_of_date"].to_numpy()[part], group["difference"].to_numpy(dtype=float)[part],
                    yerr=[below.to_numpy(dtype=float)[part], above.to_numpy(dtype=float)[part]], fmt="o", ms=4,
                    capsize=3, lw=1.2, color=colour, label=label))
        ax.axhline(0.0, ls="--", lw=1, color="grey")
        title, ylabel = _FEED_METRICS.get(metric, (plot_label(metric), "treatment − holdout"))
        ax.set_title(title, fontsize=FONT + 2)
        ax.set_ylabel(ylabel, fontsize=FONT)
        if metric == "conversion":
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.tick_params(labelsize=FONT)
        ax.grid(axis="y", alpha=0.3)
    first, last = frame["as_of_date"].min(), frame["as_of_date"].max()
    pad = max(pd.Timedelta(days=3), (last - first) * 0.05)  # one cohort alone would get years (or hours) of axis
    axes[-1].set_xlim(first - pad, last + pad)
    locator = AutoDateLocator(maxticks=10)
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes[-1].set_xlabel("cohort (feed date)", fontsize=FONT)
    axes[0].legend(handles=list(handles.values()), fontsize=FONT, loc="best")
    return Plot(figure_png(fig), " ".join(notes))


# ------------------------------------------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; max-width: 1000px;
       margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
.meta { color: #666; margin-top: 0; } nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f5f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; } figure { margin: 1em 0; } img { max-width: 100%; height: auto; }
figcaption, .skip { color: #666; font-size: 0.9em; } .skip { font-style: italic; }
.note { background: #fff8e5; border-left: 4px solid #e0a030; padding: 0.5em 0.8em; }
"""

_SECTIONS = [
    ("summary", "Summary"),
    ("churn", "Churn model"),
    ("segments", "Customer segments"),
    ("k", "Choosing the number of segments"),
    ("clv", "Customer lifetime value"),
    ("drift", "Feature drift"),
    ("notes", "Notes"),
]

_PERSONALIZATION_SECTIONS = [
    ("summary", "Summary"),
    ("recommendations", "Product recommendations"),
    ("send-times", "Send times"),
    ("samples", "Example customers"),
    ("notes", "Notes"),
]

_FEED_SECTIONS = [
    ("summary", "Summary"),
    ("lift", "Lift readout: treatment against holdout"),
    ("actions", "Next best actions"),
    ("groups", "Experiment groups"),
    ("notes", "Notes"),
]

_LIFT_EXPLAINED = (
    "Each feed date is a cohort: its treatment customers were sent the personalized version, its holdout customers "
    "the generic one. For the days after the feed date, the readout compares conversion (the share of customers with "
    "an order) and net sales per customer, treatment minus holdout, with a 95 % interval. A difference whose interval "
    "contains 0 is no evidence of lift, whichever its sign. \"Significant\" means the interval leaves 0 out, and even "
    "on a shop whose customers do not react to emails at all (or in an A/A split) about 5 % of cohorts show it by "
    "chance: one significant cohort proves nothing. Neighbouring cohorts are mostly the same customers over "
    "overlapping windows, so they tend to agree; a run of them is not a run of independent confirmations. A cohort "
    "whose window is still open counts only the orders so far."
)


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.api.types.is_scalar(value) and pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_number(value: Any) -> str:
    """Floats to 4 significant digits (whole numbers with separators from 1,000 up); ints with separators."""
    if _is_missing(value):
        return "—"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3g}" if abs(v) < 1e-3 else f"{v:.4g}"
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    return str(value)


def table_html(frame: pd.DataFrame | None, empty: str = "No rows.") -> str:
    if frame is None or frame.empty:
        return f'<p class="skip">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False, name=None):
        cells = []
        for value in row:
            numeric = isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)
            cells.append(f'<td class="num">{esc(format_number(value))}</td>' if numeric
                         else f"<td>{esc(format_number(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _key_values(values: dict[str, str]) -> str:
    if not values:
        return '<p class="skip">No summary.</p>'
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in values.items())
    return f'<div class="scroll"><table class="kv"><tbody>{rows}</tbody></table></div>'


def figure_html(plot: Plot, alt: str, caption: str = "") -> str:
    """The plot with its caption (what to look for) and its note, or only the note saying why it was skipped."""
    if plot.png is None:
        return f'<p class="skip">{esc(plot.note)}</p>'
    text = _joined([caption, plot.note])
    caption = f"<figcaption>{esc(text)}</figcaption>" if text else ""
    return f'<figure><img src="data:image/png;base64,{plot.png}" alt="{esc(alt)}">{caption}</figure>'


def safe_plot(draw: Callable[..., Plot], *args: Any) -> Plot:
    """A plot that fails for a reason the checks above did not foresee is reported, not raised: the report of a
    finished training run must still be written."""
    try:
        return draw(*args)
    except Exception as exc:  # deliberately broad, see above
        return Plot(None, f"This plot could not be drawn ({type(exc).__name__}: {exc}).")


def notes_html(notes: Sequence[str]) -> str:
    return ("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>") if notes \
        else '<p class="skip">No notes.</p>'


def page_html(title: str, version: str, meta: str, sections: Sequence[tuple[str, str]], bodies: dict[str, str]) -> str:
    """The document around the sections, the same for every report: `meta` is HTML (escaped by the caller), the
    sections come in the order of `sections` (key, heading), each with its body from `bodies` and a link at the top."""
    nav = "".join(f'<a href="#{key}">{esc(heading)}</a>' for key, heading in sections)
    parts = "\n".join(f'<section id="{key}"><h2>{esc(heading)}</h2>\n{bodies[key]}\n</section>'
                      for key, heading in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} — {esc(version)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p class="meta">{meta}</p>
<nav>{nav}</nav>
{parts}
</body>
</html>
"""


def render_report(report: TrainingReport) -> str:
    """The report as one self-contained HTML document."""
    summary = _key_values(report.summary)

    churn = []
    if report.churn_note:
        churn.append(f'<p class="note">{esc(report.churn_note)}</p>')
    if report.churn_candidates:
        churn.append(table_html(report.churn_metrics, "No churn metrics."))
        churn.append("<h3>ROC curves</h3>" + figure_html(safe_plot(plot_roc, report.churn_candidates), "ROC curves"))
        churn.append("<h3>Calibration</h3>"
                     + figure_html(safe_plot(plot_calibration, report.churn_candidates), "Calibration curves"))
        churn.append("<h3>Lift by score decile</h3>"
                     + figure_html(safe_plot(plot_lift, report.churn_candidates), "Lift by score decile"))
    else:
        if report.churn_metrics is not None and not report.churn_metrics.empty:
            churn.append(table_html(report.churn_metrics))
        if not report.churn_note:
            churn.append('<p class="skip">No churn candidates were scored in this run.</p>')

    segments = (figure_html(safe_plot(plot_segments, report.segment_profiles), "Segment sizes and profiles")
                + table_html(report.segment_profiles, "No segments."))
    k_choice = (f"<p>Chosen k: <strong>{esc(report.chosen_k)}</strong></p>"
                + figure_html(safe_plot(plot_k_selection, report.silhouette_by_k, report.inertia_by_k, report.chosen_k),
                               "Silhouette and inertia by k"))

    if report.clv_deciles is None and report.clv_metrics is None:
        clv = '<p class="skip">No CLV back-test in this run.</p>'
    else:
        clv = (table_html(report.clv_metrics, "No CLV metrics.")
               + "<h3>Back-test by decile</h3>"
               + figure_html(safe_plot(plot_clv_deciles, report.clv_deciles), "CLV predicted vs actual by decile"))

    if report.drift is None:
        drift = '<p class="skip">No drift check in this run.</p>'
    else:
        drift = figure_html(safe_plot(plot_drift, report.drift), "PSI per feature") + table_html(report.drift,
                                                                                         "No features checked.")

    bodies = {"summary": summary, "churn": "\n".join(churn), "segments": segments, "k": k_choice, "clv": clv,
              "drift": drift, "notes": notes_html(report.notes)}
    meta = f"Model version <strong>{esc(report.model_version)}</strong> · as of {esc(report.as_of)}"
    return page_html(report.title, report.model_version, meta, _SECTIONS, bodies)


def render_personalization_report(report: PersonalizationReport) -> str:
    """The personalization report as one self-contained HTML document."""
    if report.rec_metrics is None and report.rec_hit_rate_by_history is None:
        recommendations = '<p class="skip">No recommendation evaluation in this run.</p>'
    else:
        recommendations = (
            table_html(report.rec_metrics, "No recommendation metrics.")
            + "<h3>HitRate@10 by customer history</h3>"
            + figure_html(safe_plot(plot_hit_rate_by_history, report.rec_hit_rate_by_history),
                           "HitRate@10 by customer history",
                           "With little or no history the lists are mostly best-seller fills, so those bars should be "
                           "close; look for the personal models to pull ahead as history grows.")
            + "<h3>Catalogue coverage</h3>"
            + figure_html(safe_plot(plot_coverage, report.rec_metrics), "Catalogue coverage per candidate",
                           "A low share means most customers are shown the same few products (mostly the "
                           "best-sellers): weigh it against the hit rate before preferring a candidate.")
        )

    if report.send_metrics is None and report.send_hour_distribution is None and report.send_prior is None:
        send_times = '<p class="skip">No send-time evaluation in this run.</p>'
    else:
        send_times = (
            table_html(report.send_metrics, "No send-time back-test (it needs engagements after the training window).")
            + "<h3>Send hours given</h3>"
            + figure_html(safe_plot(plot_send_hours, report.send_hour_distribution), "Customers per local send hour",
                           "Bars that follow the line give customers the shop's busy hours; bars away from it come "
                           "from customers' own histories. One tall bar alone means nearly everyone got the same hour.")
            + "<h3>Hour priors per group</h3>"
            + table_html(report.send_prior, "No hour priors.")
        )

    bodies = {"summary": _key_values(report.summary), "recommendations": recommendations, "send-times": send_times,
              "samples": table_html(report.samples, "No example customers."), "notes": notes_html(report.notes)}
    versions = (report.model_versions or {}).items()
    listed = ", ".join(f"{esc(name)} <strong>{esc(version)}</strong>" for name, version in versions) or "none"
    meta = f"Model versions {listed} · as of {esc(report.as_of)}"
    return page_html(report.title, ", ".join(f"{name} {version}" for name, version in versions) or "unversioned", meta,
                 _PERSONALIZATION_SECTIONS, bodies)


def render_feed_report(report: FeedReport) -> str:
    """The feed report as one self-contained HTML document."""
    lift = [f"<p>{esc(_LIFT_EXPLAINED)}</p>",
            figure_html(safe_plot(plot_feed_lift, report.lift), "Lift per cohort and metric",
                         "Each point is one feed date's cohort and its bar the 95 % interval: a bar that crosses the "
                         "dashed line at 0 is no evidence of lift.")]
    if report.lift is not None and not report.lift.empty:
        lift.append(table_html(report.lift))
    bodies = {"summary": _key_values(report.summary), "lift": "\n".join(lift),
              "actions": table_html(report.next_best_actions, "No next best actions: no feed rows for this date."),
              "groups": table_html(report.experiment_groups, "No experiment groups: no feed rows for this date."),
              "notes": notes_html(report.notes)}
    meta = f"Feed date <strong>{esc(report.as_of)}</strong>"
    return page_html(report.title, report.as_of, meta, _FEED_SECTIONS, bodies)


def _file_day(as_of: str, owner: str) -> str:
    try:
        return datetime.fromisoformat(as_of).date().isoformat()
    except ValueError as exc:
        raise ValueError(f"{owner}.as_of must be an ISO date or datetime, got {as_of!r}") from exc


def _file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")


def report_filename(report: TrainingReport) -> str:
    """training-<as_of date>-<model_version>.html, the version reduced to characters safe in a file name."""
    version = _file_safe(report.model_version) or "unversioned"
    return f"training-{_file_day(report.as_of, 'TrainingReport')}-{version}.html"


def personalization_report_filename(report: PersonalizationReport) -> str:
    """personalization-<as_of date>-<model>_<version>-....html, e.g. personalization-2024-06-30-recommendations_v3-
    send_times_v2.html: both versions are in the name so a retrain of either model gets its own page."""
    named = ("_".join(part for part in (_file_safe(str(name)), _file_safe(str(version))) if part)
             for name, version in (report.model_versions or {}).items())
    versions = "-".join(n for n in named if n) or "unversioned"
    return f"personalization-{_file_day(report.as_of, 'PersonalizationReport')}-{versions}.html"


def feed_report_filename(report: FeedReport) -> str:
    """feed-<as_of date>.html: one page per feed date, which a rebuild of the date replaces."""
    return f"feed-{_file_day(report.as_of, 'FeedReport')}.html"


def write_report(report: TrainingReport, directory: Path) -> Path:
    """Write the report to directory/training-<as_of date>-<model_version>.html and return the path."""
    return write_atomically(Path(directory), report_filename(report), render_report(report))


def write_personalization_report(report: PersonalizationReport, directory: Path) -> Path:
    """Write the report to directory/personalization-<as_of date>-<model>_<version>-....html and return the path."""
    return write_atomically(Path(directory), personalization_report_filename(report),
                             render_personalization_report(report))


def write_feed_report(report: FeedReport, directory: Path) -> Path:
    """Write the report to directory/feed-<as_of date>.html and return the path."""
    return write_atomically(Path(directory), feed_report_filename(report), render_feed_report(report))


def write_atomically(directory: Path, name: str, text: str) -> Path:
    """Replace directory/name atomically (a reader sees the old page or the new one, never half of one)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes it owner-only; the page is meant to be shared
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target
