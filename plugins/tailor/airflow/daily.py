"""The daily run's decisions and steps that are more than one call, as plain Python (no Airflow import), so the
DAG's tasks stay one call each and tests can run them directly.

    reasons = training_reasons(as_of)      # why the models retrain today ([] : they do not)
    retraining_requested(warehouse, date)  # the date of the previous scoring, if it asked for retraining
    score_all(as_of)                       # customer models, then recommendations and send times
    deliver_all(as_of, sinks, make_sink)   # the day's export to every sink of TAILOR_FEED_SINKS
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime

from tailor.warehouse import Warehouse, has_table

log = logging.getLogger(__name__)

# The weekly retraining: the runs whose as-of (the interval end, midnight UTC) falls on this weekday (Monday = 0),
# i.e. the run of Sunday's data, so the week's models learn from a whole week.
TRAINING_WEEKDAY = 0
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def retraining_requested(warehouse: Warehouse, before: date) -> date | None:
    """The date of the latest scoring before `before` if that scoring found drift past PSI_FAIL (ml.monitor) and so
    recorded needs_retraining in ml.model_monitoring; None otherwise (or before any scoring)."""
    if not warehouse.exists():
        return None
    with warehouse.reader() as con:
        if not has_table(con, "ml.model_monitoring"):
            return None
        row = con.execute("""
            select as_of_date, bool_or(needs_retraining) from ml.model_monitoring
            where as_of_date < ? group by as_of_date order by as_of_date desc limit 1""", [before]).fetchone()
    return row[0] if row is not None and row[1] else None


def _registries() -> dict[str, object]:
    """Family -> its ml.registry.Registry: the customer models, recommendations, send times."""
    from ml.personalization import recommendation_registry, send_time_registry
    from ml.registry import Registry

    return {"customer": Registry(), "recommendation": recommendation_registry(), "send-time": send_time_registry()}


def training_reasons(as_of: datetime, warehouse: Warehouse | None = None) -> list[str]:
    """Why the daily run for `as_of` trains the models: the weekly day, a drift request from the previous scoring,
    or a family without a model promoted as of `as_of` (scoring would have nothing to score with). Empty: scoring
    uses the models in production as of `as_of`. Empty too when this date's training was done and decided (a re-run
    of the day, a backfill reprocessing it): training again would only register copies, and what the day scores and
    delivers stays as it was."""
    warehouse = warehouse or Warehouse()
    registries = _registries()
    done = {name: version for name, registry in registries.items() if (version := registry.decided_at(as_of))}
    if len(done) == len(registries):
        log.info("trained as of %s already (%s): not again", as_of.isoformat(),
                 ", ".join(f"{name} {version}" for name, version in done.items()))
        return []
    reasons = []
    if as_of.weekday() == TRAINING_WEEKDAY:
        reasons.append(f"the weekly retraining ({as_of.date()} is a {_WEEKDAYS[TRAINING_WEEKDAY]})")
    requested = retraining_requested(warehouse, as_of.date())
    if requested is not None:
        reasons.append(f"the scoring of {requested} found drift and asked for retraining (ml.model_monitoring)")
    missing = [name for name, registry in registries.items() if registry.production_label(as_of) is None]
    if missing:
        reasons.append(f"no {', '.join(missing)} model promoted as of {as_of.date()} yet")
    return reasons


class DeliveryFailed(RuntimeError):
    """One or more sinks did not take the day's feed (the others did); the message names each and why."""


@dataclass
class TrainSummary:
    customer_version: str
    customer_promoted: bool
    recommendations_version: str
    recommendations_promoted: bool
    send_times_version: str
    send_times_promoted: bool
    reports: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def train_all(as_of: datetime) -> TrainSummary:
    """Train the customer models, then the personalization models, as of `as_of` (each promoted by its rule)."""
    from ml import personalization, training

    customer = training.train(as_of, say=log.info)
    chosen = personalization.train(as_of, say=log.info)
    return TrainSummary(customer.candidate.model_version, customer.promoted, chosen.recommendations.model_version,
                        chosen.recommendations_promoted, chosen.send_times.model_version, chosen.send_times_promoted,
                        [customer.report_path, chosen.report_path])


def score_all(as_of: datetime) -> dict:
    """Score every customer as of `as_of`: ml.customer_scores (and drift in ml.model_monitoring), then
    ml.customer_recommendations and ml.customer_send_times."""
    from ml import personalization, training

    scored = training.score(as_of, say=log.info)
    listed = personalization.score(as_of, say=log.info)
    return {"model_version": scored.model_version, "customers": scored.customers,
            "needs_retraining": scored.needs_retraining, "recommendations_version": listed.recommendations_version,
            "recommendation_rows": listed.recommendation_rows, "send_times_version": listed.send_times_version,
            "send_time_rows": listed.send_time_rows}


def deliver_all(as_of: datetime, sinks: tuple[str, ...], make_sink=None) -> list[dict]:
    """Deliver the day's export to each sink (only what changed since the sink last accepted it; resumable).
    make_sink: name -> sink, with the credentials the caller read (an Airflow task: its Connections), else
    tailor.export.steps.make_sink's. Raises DeliveryFailed after every sink was tried if any failed, naming each
    failed sink and why."""
    from tailor.export import steps

    make_sink = make_sink or steps.make_sink
    outcomes, failures = [], []
    for sink in sinks:
        try:
            result = steps.deliver(as_of, sink, sink_object=make_sink(sink), say=log.info)
        except Exception as exc:  # the other sinks still get the day's feed; raised below
            log.error("feed deliver %s: %s", sink, exc)
            failures.append((sink, exc))
            continue
        log.info("feed deliver: %s", result.summary())
        for customer_id, kind, reason in result.issues:
            log.warning("feed deliver %s: %s %s: %s", sink, kind, customer_id, reason)
        outcomes.append({"sink": sink, "summary": result.summary()})
    if failures:
        raise DeliveryFailed("; ".join(f"{sink}: {type(exc).__name__}: {exc}" for sink, exc in failures)) \
            from failures[0][1]
    return outcomes
