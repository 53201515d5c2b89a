"""Train, score and evaluate the customer models: segments, churn probability, CLV and the next order.

    result = train(as_of)        # snapshots (dbt) -> fit -> validate against baselines -> MLflow -> promote or reject
    scored = score(as_of)        # the production models -> ml.customer_scores + drift in ml.model_monitoring
    evaluation = evaluate(as_of) # production's churn model and the baselines on the latest window labelled by as_of

Time-based splits only. For a training as-of T and churn horizon h (the labels' dbt var):
- validation snapshot V = the Monday midnight at least h + 1 days before T's day: features as of V, labels over
  (V, V + h], all known by T;
- training snapshots T0 = the Monday ceil(h / 7) weeks before V, and TRAINING_SNAPSHOTS - 1 more every
  SNAPSHOT_SPACING_DAYS before it: their labels end by V, so nothing of the validation window is learnt;
- BG/NBD (the baseline, a feature of the blend, and the CLV model) is fitted at each snapshot on the
  purchase histories its features hold (clv.from_features), so nothing after the snapshot reaches it.
A history too short for a labelled training and validation window (about 2 h) leaves BG/NBD serving alone: the run
says so. Everything reads the warehouse through ml.io with the connection closed while models fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from ml import churn, clv, config, io, monitor, snapshots
from ml.errors import ModelInputError
from ml.registry import Candidate, Registry, promotion_decision
from ml.segments import SEGMENT_FEATURES, SegmentModel, fit_segments
from tailor import settings
from tailor.warehouse import Warehouse

FEATURE_COLUMNS = tuple(dict.fromkeys(("order_count", *churn.CHURN_FEATURES, *SEGMENT_FEATURES)))
Say = Callable[[str], None]


def _say(line: str) -> None:
    print(line, flush=True)


@dataclass
class CustomerModels:
    """What one training run produced and scoring applies: saved whole as the MLflow artifact."""

    trained_as_of: datetime
    churn_horizon_days: int
    clv_horizon_days: int
    seed: int
    churn_model: str  # the served candidate: boosting_blend, recency_rule or bgnbd
    churn_pipelines: dict[str, object]  # the fitted classifier Pipelines by candidate (empty without a labelled window)
    clv: clv.ClvModel
    segments: SegmentModel
    feature_references: dict[str, monitor.Reference]
    score_reference: monitor.Reference | None
    validation_as_of: datetime | None
    training_as_of: tuple[datetime, ...]
    notes: list[str] = field(default_factory=list)

    def churn_probability(self, features: pd.DataFrame, summary: pd.DataFrame, as_of: datetime,
                          candidate: str | None = None) -> pd.Series:
        """P(no order in the horizon) per customer with an order by `as_of` (NaN for the others), by the served
        candidate or the one named. `summary`: clv.from_features of the features as of `as_of`."""
        candidate = candidate or self.churn_model
        buyers = features.index[features["order_count"].fillna(0) > 0]
        out = pd.Series(np.nan, index=features.index, dtype=float)
        if len(buyers) == 0:
            return out
        stacked = with_bgnbd(features.loc[buyers], summary, self.clv, as_of, self.churn_horizon_days)
        if candidate == "bgnbd":
            out.loc[buyers] = stacked["bgnbd_p_no_order"]
        elif candidate in self.churn_pipelines:
            out.loc[buyers] = self.churn_pipelines[candidate].predict_proba(stacked)[:, 1]
        else:
            raise ModelInputError(f"these models have no churn candidate {candidate!r}: "
                                  f"{', '.join(['bgnbd', *self.churn_pipelines])}")
        return out


def with_bgnbd(features: pd.DataFrame, summary: pd.DataFrame, model: clv.ClvModel, at: datetime,
               horizon_days: int) -> pd.DataFrame:
    """`features` plus BG/NBD's P(alive), P(no order in the horizon) and expected orders in it at `at` (NaN for a
    customer without an order by then)."""
    known = summary.index.intersection(features.index)
    predicted = clv.predict(model, summary.loc[known], at, horizon_days, churn_horizon_days=horizon_days)
    out = features.copy()
    out["bgnbd_p_alive"] = predicted["p_alive"].reindex(features.index)
    out["bgnbd_p_no_order"] = predicted["p_no_order"].reindex(features.index)
    out["bgnbd_expected_orders"] = predicted["expected_orders"].reindex(features.index)
    return out


def _stacked_at(frame: pd.DataFrame, everyone: pd.DataFrame, at: datetime, horizon: int) -> pd.DataFrame:
    """Labelled customers' features at `at` with BG/NBD fitted on every buyer's history at `at` (`everyone`: all
    customers' features then); each labelled customer must have an order by then."""
    summary = clv.from_features(everyone)
    stacked = with_bgnbd(frame, summary, clv.fit(summary, at), at, horizon)
    missing = stacked["bgnbd_p_no_order"].isna()
    if missing.any():
        raise ModelInputError(f"{int(missing.sum())} customers labelled as of {at.date()} have no order by then in "
                              f"{io.FEATURES} (e.g. {stacked.index[missing][0]}): rebuild both for that time")
    return stacked


@dataclass
class TrainResult:
    candidate: Candidate
    promoted: bool
    reason: str
    churn_metrics: pd.DataFrame
    clv_metrics: pd.DataFrame
    clv_deciles: pd.DataFrame
    segments: pd.DataFrame
    report_path: str
    notes: list[str]
    models: CustomerModels


def _midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def snapshot_times(as_of: datetime, churn_horizon_days: int) -> tuple[datetime, list[datetime]]:
    """(validation snapshot V, training snapshots earliest first) for a training as-of.

    V is the Monday midnight at least h + 1 days before as-of's day, so a model retrained daily reuses a week's
    snapshots (each costs dbt builds the first time)."""
    validation = _midnight(as_of) - timedelta(days=churn_horizon_days + 1)
    validation -= timedelta(days=validation.weekday())
    first = validation - timedelta(weeks=math.ceil(churn_horizon_days / 7))  # a Monday whose labels end by V
    training = [first - timedelta(days=config.SNAPSHOT_SPACING_DAYS * k) for k in range(config.TRAINING_SNAPSHOTS)]
    return validation, sorted(training)


def _as_utc(as_of: datetime) -> datetime:
    if as_of.tzinfo is None:
        raise ValueError(f"as-of {as_of.isoformat()} has no timezone: give a UTC time")
    return as_of.astimezone(UTC)


def _sample(frame: pd.DataFrame, y: np.ndarray, rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    if len(frame) <= rows:
        return frame, y
    pick = np.sort(np.random.default_rng(seed).choice(len(frame), rows, replace=False))
    return frame.iloc[pick], y[pick]


def train(as_of: datetime, *, warehouse: Warehouse | None = None, registry: Registry | None = None,
          allow_build: bool = True, say: Say = _say) -> TrainResult:
    """Train every customer model as of `as_of`, validate on the later window, log to MLflow, promote by rule."""
    as_of = _as_utc(as_of)
    warehouse = warehouse or Warehouse()
    registry = registry or Registry()
    horizon = config.churn_horizon_days()
    seed = config.SEED
    notes: list[str] = []
    validation_at, training_at = snapshot_times(as_of, horizon)

    newest = io.orders_built_as_of(warehouse)
    if newest is None:
        raise ModelInputError(f"{io.ORDERS} is missing or empty in {warehouse.path}: load and build first")
    history_start = io.first_order_at(warehouse, as_of)
    if history_start is None:
        raise ModelInputError(f"no orders at or before {as_of.isoformat()} in {io.ORDERS}: nothing to learn from")
    # only snapshots inside the history are worth building
    # (without a training snapshot after the first order there is no split to validate: none are needed)
    trainable_at = [t for t in training_at if t > history_start]
    labelled_wanted = [*trainable_at, validation_at] if trainable_at else []
    snapshots.prepare(warehouse, as_of, labelled_wanted, allow_build=allow_build, say=say)

    say(f"ml: reading features and orders as of {as_of.isoformat()}")
    orders = io.read_orders(warehouse, as_of)
    current = io.read_features(warehouse, as_of.date(), FEATURE_COLUMNS)

    # --- churn: time-based split, baselines on the same window --------------------------------------------------
    train_frames, train_labels, labelled_total = [], [], 0
    per_snapshot = config.TRAIN_SAMPLE_ROWS // max(1, sum(t in labelled_wanted for t in training_at))
    for moment in training_at:
        if moment not in labelled_wanted:
            continue
        labels = io.read_labels(warehouse, moment.date())
        if labels.empty:
            continue
        everyone = io.read_features(warehouse, moment.date(), FEATURE_COLUMNS)
        frame, y = churn.training_examples(everyone, labels, moment.date())
        labelled_total += len(y)
        frame, y = _sample(frame, y, per_snapshot, seed)  # sampled as read: never all snapshots' examples at once
        train_frames.append(_stacked_at(frame, everyone, moment, horizon))
        train_labels.append(y)
    x_train = pd.concat(train_frames) if train_frames else current.iloc[0:0]
    del train_frames  # at a million customers every copy of the examples is a gigabyte
    y_train = np.concatenate(train_labels) if train_labels else np.zeros(0, dtype=int)
    val_labels = io.read_labels(warehouse, validation_at.date()) if validation_at in labelled_wanted else None
    x_val, y_val = current.iloc[0:0], np.zeros(0, int)
    if val_labels is not None and not val_labels.empty:
        everyone = io.read_features(warehouse, validation_at.date(), FEATURE_COLUMNS)
        x_val, y_val = churn.training_examples(everyone, val_labels, validation_at.date())
        x_val = _stacked_at(x_val, everyone, validation_at, horizon)
    problem = (churn.check_trainable(y_train, config.MIN_CLASS_EXAMPLES, f"at the training snapshots "
                                     f"{', '.join(t.date().isoformat() for t in training_at)}")
               or churn.check_trainable(y_val, config.MIN_CLASS_EXAMPLES,
                                        f"at the validation snapshot {validation_at.date().isoformat()}"))

    scored_candidates: dict[str, np.ndarray] = {}
    metrics: list[churn.ChurnMetrics] = []
    pipelines: dict[str, object] = {}
    if problem is None:
        sampled = f" (a sample of {labelled_total:,})" if labelled_total > len(y_train) else ""
        say(f"ml: churn: {len(y_train):,} training examples{sampled} as of "
            f"{', '.join(t.date().isoformat() for t in training_at)}, {len(y_val):,} to validate as of "
            f"{validation_at.date().isoformat()} (horizon {horizon} days)")
        blend = churn.make_churn_pipeline(seed).fit(x_train, y_train)
        recency = churn.make_recency_pipeline().fit(x_train, y_train)
        pipelines = {"boosting_blend": blend, "recency_rule": recency}
        scored_candidates["boosting_blend"] = blend.predict_proba(x_val)[:, 1]
        scored_candidates["recency_rule"] = recency.predict_proba(x_val)[:, 1]
        scored_candidates["bgnbd"] = x_val["bgnbd_p_no_order"].to_numpy()
        metrics = [churn.score_metrics(name, y_val, values) for name, values in scored_candidates.items()]
        served = churn.winner(metrics, config.CANDIDATE_MARGIN).candidate
    else:
        served = "bgnbd"
        notes.append(f"no usable labelled churn window (training needs about 2 x {horizon} days of orders before "
                     f"{as_of.date()} and both outcomes): {problem}; BG/NBD P(alive) serves alone")
        say(f"ml: churn: {notes[-1]}")

    # --- CLV and next order: back-test, then the model fitted on everything up to as_of -------------------------
    say("ml: CLV: back-testing BG/NBD + Gamma-Gamma against last period's orders")
    backtest = clv.backtest(orders, as_of, config.CLV_HORIZON_DAYS)
    if backtest.note:
        notes.append(backtest.note)
    summary_now = clv.from_features(current)
    clv_model = replace(clv.fit(summary_now, as_of), next_order_method=backtest.next_order_method)

    # --- segments, ids matched to those of the model in production as of as_of ---------------------------------------
    production = registry.production(as_of)
    previous = production.bundle.segments if production is not None else None
    say(f"ml: segments: k-means on {len(current):,} customers, k in {config.SEGMENT_K_RANGE}")
    segment_model = fit_segments(current[list(SEGMENT_FEATURES)], k_range=config.SEGMENT_K_RANGE, seed=seed,
                                 min_share=config.SEGMENT_MIN_SHARE, previous=previous)

    models = CustomerModels(
        trained_as_of=as_of, churn_horizon_days=horizon, clv_horizon_days=config.CLV_HORIZON_DAYS, seed=seed,
        churn_model=served, churn_pipelines=pipelines, clv=clv_model, segments=segment_model,
        feature_references=monitor.references(current[list(churn.CHURN_FEATURES)]), score_reference=None,
        validation_as_of=validation_at if problem is None else None,
        training_as_of=tuple(training_at) if problem is None else (), notes=notes)
    churn_now = pd.concat([  # in batches, as scoring does: the pipelines' copies of a million rows add up
        models.churn_probability(batch, summary_now.loc[summary_now.index.intersection(batch.index)], as_of)
        for batch in _batches(current)])
    models.score_reference = monitor.reference(churn_now.dropna())

    # --- promotion: beat production on the same window -----------------------------------------------------------
    churn_table = pd.DataFrame([m.as_dict() for m in metrics])
    candidate_metrics = _metrics(metrics, served, backtest)
    if problem is None:
        production_metrics = (_production_metrics(production.bundle, x_val, y_val, validation_at)
                              if production is not None else None)
        promote, reason = promotion_decision(candidate_metrics, production_metrics, metric=config.PROMOTION_METRIC,
                                             margin=config.PROMOTION_MARGIN)
    elif production is not None and production.bundle.churn_model != "bgnbd":
        promote, reason = False, ("no labelled window to compare the candidate with production's churn classifier "
                                  "on: production keeps scoring")
    else:
        promote, reason = True, "no labelled window: BG/NBD refitted on newer orders replaces BG/NBD"

    from ml.report import ScoredCandidate, TrainingReport, write_report

    # how far the customers as of T have moved from the labelled snapshots the classifier learnt from
    moved = (monitor.drift(monitor.references(x_train[list(churn.CHURN_FEATURES)]), current)
             if len(x_train) else None)

    window = {"as_of": as_of.isoformat(), "validation_as_of": validation_at.isoformat() if problem is None else "",
              "training_as_of": ",".join(t.isoformat() for t in training_at) if problem is None else "",
              "orders_from": history_start.isoformat(), "clv_backtest_from": (
                  backtest.calibration_end.isoformat() if backtest.calibration_end else "")}
    params = {"seed": seed, "churn_horizon_days": horizon, "clv_horizon_days": config.CLV_HORIZON_DAYS,
              "training_snapshots": config.TRAINING_SNAPSHOTS, "snapshot_spacing_days": config.SNAPSHOT_SPACING_DAYS,
              "served_churn_model": served, "next_order_method": clv_model.next_order_method, "segments_k": segment_model.chosen_k,
              "segments_elbow_k": segment_model.elbow_k, **{f"bgnbd_{k}": v for k, v in clv_model.transactions.as_dict().items()},
              **({f"gamma_gamma_{k}": v for k, v in clv_model.spend.as_dict().items()} if clv_model.spend else {})}
    card = _model_card(models, churn_table, backtest, segment_model, window, reason)
    report = TrainingReport(
        title=f"Tailor customer models trained as of {as_of.isoformat()}", as_of=as_of.isoformat(),
        model_version="candidate", summary={**window, "served churn model": served, "promotion": reason},
        churn_candidates=[ScoredCandidate(name, y_val, values, True) for name, values in scored_candidates.items()],
        churn_metrics=churn_table, churn_note=notes[0] if problem is not None else None,
        segment_profiles=segment_model.segments, silhouette_by_k=segment_model.silhouette_by_k,
        inertia_by_k=segment_model.inertia_by_k, chosen_k=segment_model.chosen_k,
        clv_deciles=backtest.deciles if len(backtest.deciles) else None,
        clv_metrics=backtest.metrics if len(backtest.metrics) else None, drift=moved, notes=notes)
    candidate = registry.log_candidate(
        bundle=models, run_name=f"train-{as_of:%Y%m%dT%H%M%SZ}", params=params, metrics=candidate_metrics,
        feature_list=list(FEATURE_COLUMNS), data_window=window, model_card=card,
        tags={"tailor.served_churn_model": served}, trained_as_of=as_of)
    report.model_version = candidate.model_version
    report_path = write_report(report, settings.data_dir() / "reports")
    registry.log_artifact(candidate, report_path)
    if promote:
        registry.promote(candidate, reason)
    else:
        registry.reject(candidate, reason)
    say(f"ml: {'promoted' if promote else 'rejected'} {candidate.model_version}: {reason}")
    say(f"ml: report: {report_path}")
    return TrainResult(candidate=candidate, promoted=promote, reason=reason, churn_metrics=churn_table,
                       clv_metrics=backtest.metrics, clv_deciles=backtest.deciles, segments=segment_model.segments, report_path=str(report_path),
                       notes=notes, models=models)


def _metrics(metrics: list[churn.ChurnMetrics], served: str, backtest: clv.Backtest) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in metrics:
        for key in ("roc_auc", "pr_auc", "brier"):
            out[f"churn_{m.candidate}_{key}"] = getattr(m, key)
        if m.candidate == served:
            out["churn_roc_auc"], out["churn_pr_auc"], out["churn_brier"] = m.roc_auc, m.pr_auc, m.brier
    if len(backtest.metrics):
        for row in backtest.metrics.itertuples():
            out[f"clv_{row.metric}_mae_{row.model}"] = row.mae
        out["clv_net_sales_mae"] = backtest.metric("net_sales")
    return {k: float(v) for k, v in out.items() if v is not None and not math.isnan(float(v))}


def _production_metrics(bundle: CustomerModels, x_val: pd.DataFrame, y_val: np.ndarray,
                        validation_at: datetime) -> dict[str, float]:
    """Production's served churn model scored on the candidate's validation window."""
    values = bundle.churn_probability(x_val, clv.from_features(x_val), validation_at).to_numpy()
    m = churn.score_metrics("production", y_val, values)
    return {"churn_roc_auc": m.roc_auc, "churn_pr_auc": m.pr_auc, "churn_brier": m.brier}


def _markdown(frame: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _model_card(models: CustomerModels, churn_table: pd.DataFrame, backtest: clv.Backtest, segments: SegmentModel,
                window: dict[str, str], reason: str) -> str:
    lines = ["# Tailor customer models", "", f"Trained as of {models.trained_as_of.isoformat()}.", "",
             "## Intended use", "Per-customer churn probability over the next "
             f"{models.churn_horizon_days} days, expected orders and net sales over the next "
             f"{models.clv_horizon_days} days, the expected next order date and a marketing segment, for choosing "
             "who gets which email. Not for decisions about individuals beyond marketing.", "",
             "## Data window", *[f"- {k}: {v}" for k, v in window.items() if v], "",
             "## Churn", f"Served: {models.churn_model}.",
             _markdown(churn_table) if len(churn_table) else "No labelled window.", "",
             "## CLV back-test", _markdown(backtest.metrics) if len(backtest.metrics) else (
                 backtest.note or ""), "",
             "## Segments", _markdown(segments.segments[["segment_id", "segment_name", "customers", "share"]]), "", "## Promotion", reason, ""]
    if models.notes:
        lines += ["## Notes", *[f"- {note}" for note in models.notes], ""]
    return "\n".join(lines)


@dataclass
class ScoreResult:
    model_version: str
    as_of: datetime
    customers: int
    drift: pd.DataFrame
    needs_retraining: bool
    scores: pd.DataFrame


def score(as_of: datetime, *, warehouse: Warehouse | None = None, registry: Registry | None = None,
          model_version: str | None = None, allow_build: bool = True, say: Say = _say) -> ScoreResult:
    """Score every customer as of `as_of` with the models in production then (or `model_version`) into
    ml.customer_scores, and record the drift of the features and of the churn score against the training snapshot."""
    as_of = _as_utc(as_of)
    warehouse = warehouse or Warehouse()
    registry = registry or Registry()
    models, model_version = _models(registry, model_version, as_of)
    snapshots.prepare(warehouse, as_of, [], allow_build=allow_build, say=say)
    say(f"ml: scoring as of {as_of.isoformat()} with {model_version} (churn: {models.churn_model})")
    features = io.read_features(warehouse, as_of.date(), FEATURE_COLUMNS)
    scores = _score_frame(models, features, as_of, model_version)

    drift = pd.concat([
        monitor.drift(models.feature_references, features, kind="feature"),
        monitor.drift({"churn_probability": models.score_reference} if models.score_reference else {},
                      scores.set_index("customer_id")[["churn_probability"]].dropna(), kind="score"),
    ], ignore_index=True)
    needs_retraining = bool((drift["status"] == "fail").any())
    io.write_scores(warehouse, scores, drift, as_of.date(), model_version, needs_retraining)
    worst = drift.iloc[0] if len(drift) else None
    say(f"ml: wrote {len(scores):,} scores to {io.SCORES} for {as_of.date()} ({model_version})")
    if worst is not None:
        say(f"ml: drift: worst {worst['kind']} {worst['name']} PSI {worst['psi']:.3f} ({worst['status']}); "
            f"{(drift['status'] == 'warn').sum()} warn, {(drift['status'] == 'fail').sum()} fail"
            + ("; retraining requested" if needs_retraining else ""))
    return ScoreResult(model_version=model_version, as_of=as_of, customers=len(scores), drift=drift,
                       needs_retraining=needs_retraining, scores=scores)


def _models(registry: Registry, model_version: str | None, as_of: datetime) -> tuple[CustomerModels, str]:
    """The models of `model_version` (e.g. v3), else those in production as of `as_of`, and their label."""
    if model_version is None:
        production = registry.production(as_of)
        if production is None:
            raise ModelInputError(f"no customer model promoted as of {as_of.isoformat()}: train one as of that date or "
                                  f"before (python -m ml train --as-of ...), or name a version (--model-version)")
        return production.bundle, production.model_version
    return registry.load(model_version), model_version if model_version.startswith("v") else f"v{model_version}"


def _batches(features: pd.DataFrame) -> Iterator[pd.DataFrame]:
    for start in range(0, len(features), config.SCORE_BATCH_ROWS):
        yield features.iloc[start:start + config.SCORE_BATCH_ROWS]


def _score_frame(models: CustomerModels, features: pd.DataFrame, as_of: datetime, model_version: str) -> pd.DataFrame:
    """One score row per customer of `features`, computed in batches so a million customers fit in memory."""
    summary = clv.from_features(features)
    names = models.segments.names()
    parts = []
    for batch in _batches(features):
        known = summary.index.intersection(batch.index)
        batch_summary = summary.loc[known]
        predicted = clv.predict(models.clv, batch_summary, as_of, models.clv_horizon_days).reindex(batch.index)
        segment_ids = models.segments.assign(batch[list(SEGMENT_FEATURES)])
        parts.append(pd.DataFrame({
            "customer_id": batch.index,
            "as_of_date": as_of.date(),
            "model_version": model_version,
            "as_of_at": as_of,
            "segment_id": segment_ids.to_numpy(dtype=int),
            "segment_name": [names[s] for s in segment_ids],
            "churn_probability": models.churn_probability(batch, batch_summary, as_of).to_numpy(),
            "churn_model": models.churn_model,
            "p_alive": predicted["p_alive"].to_numpy(),
            # a customer without an order yet: no purchase history to project (null, not zero)
            "expected_orders_12m": predicted["expected_orders"].to_numpy(),
            "expected_net_sales_12m": predicted["expected_net_sales"].to_numpy(),
            "expected_next_order_date": predicted["expected_next_order_at"].dt.date.to_numpy(),
        }))
    frame = pd.concat(parts, ignore_index=True)
    frame.loc[frame["churn_probability"].isna(), "churn_model"] = None
    return frame


@dataclass
class Evaluation:
    model_version: str
    window_start: datetime
    window_end: datetime
    metrics: pd.DataFrame


def evaluate(as_of: datetime, *, warehouse: Warehouse | None = None, registry: Registry | None = None,
             model_version: str | None = None, allow_build: bool = True, say: Say = _say) -> Evaluation:
    """Production's churn model and both baselines on the latest window labelled by `as_of`: features as of
    V = as_of's midnight - h - 1 day, labels over (V, V + h]. Meaningful for a model trained before V + h (watching a
    model in service); a model trained later has seen these labels."""
    as_of = _as_utc(as_of)
    warehouse = warehouse or Warehouse()
    registry = registry or Registry()
    models, model_version = _models(registry, model_version, as_of)
    horizon = models.churn_horizon_days
    validation_at, _ = snapshot_times(as_of, horizon)
    snapshots.prepare(warehouse, as_of, [validation_at], allow_build=allow_build, say=say)
    labels = io.read_labels(warehouse, validation_at.date())
    x_val, y_val = churn.training_examples(io.read_features(warehouse, validation_at.date(), FEATURE_COLUMNS),
                                           labels, validation_at.date())
    problem = churn.check_trainable(y_val, 1, f"as of {validation_at.date()}")
    if problem:
        raise ModelInputError(f"cannot evaluate as of {as_of.isoformat()}: {problem}")
    everyone = io.read_features(warehouse, validation_at.date(), FEATURE_COLUMNS)
    x_val = _stacked_at(x_val, everyone, validation_at, horizon)
    served = models.churn_probability(x_val, clv.from_features(x_val), validation_at).to_numpy()
    recency = x_val["days_since_last_order"].astype(float).to_numpy()
    rows = [churn.score_metrics(f"production ({models.churn_model})", y_val, served),
            churn.score_metrics("recency_rule (days since last order)", y_val, recency, is_probability=False),
            churn.score_metrics("bgnbd (refitted at the window's start)", y_val, x_val["bgnbd_p_no_order"].to_numpy())]
    table = pd.DataFrame([m.as_dict() for m in rows])
    say(f"ml: evaluated {model_version} on ({validation_at.isoformat()}, "
        f"{(validation_at + timedelta(days=horizon)).isoformat()}]")
    return Evaluation(model_version=model_version, window_start=validation_at,
                      window_end=validation_at + timedelta(days=horizon), metrics=table)
