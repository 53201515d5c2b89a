"""The feed for one as-of date: built by dbt (exports.esp_feed), gated (expectations/feed.yml), read as payloads.

    build_feed(as_of)            dbt build --selector feed: the feed rows of as_of's date (others kept)
    gate_feed(as_of)             the feed gate; raises GateFailed naming what failed
    feed_payloads(con, date)     the date's rows as the ESP receives them (ESP_FIELDS), in customer order
    write_feed_report(wh, as_of) the date's HTML page (lift readout, next best actions, experiment groups)

The feed reads the models' scores for the date (ml.customer_scores, ml.customer_recommendations,
ml.customer_send_times, each at the version scored last for the date), so it is built after `python -m ml score`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from tailor import settings
from tailor.export.payload import Payload
from tailor.warehouse import Warehouse, has_table

FEED = "exports.esp_feed"
FEED_SELECTOR = "feed"
SCORED_TABLES = ("ml.customer_scores", "ml.customer_recommendations", "ml.customer_send_times")

# exports.esp_feed column -> the name the ESP sees. Klaviyo keeps email, external_id and first_name as profile
# attributes and everything else as custom properties; the CSV and the S3 drop use the same names. The as-of date is
# in the manifest, not in each row: a row that did not change keeps its hash, so a delta sync does not resend it.
ESP_FIELDS: dict[str, str] = {
    "customer_id": "external_id",
    "email": "email",
    "first_name": "first_name",
    "greeting_name": "tailor_greeting_name",
    "shopify_customer_id": "tailor_shopify_customer_id",
    "klaviyo_profile_id": "tailor_klaviyo_profile_id",
    "segment_id": "tailor_segment_id",
    "segment_name": "tailor_segment",
    "rfm_segment": "tailor_rfm_segment",
    "churn_probability": "tailor_churn_probability",
    "churn_risk_band": "tailor_churn_risk",
    "expected_net_sales_12m": "tailor_predicted_value_12m",
    "expected_next_order_date": "tailor_next_order_date",
    "currency_code": "tailor_currency",
    "recommendations": "tailor_recommendations",
    "send_hour_local": "tailor_send_hour_local",
    "send_hour_utc": "tailor_send_hour_utc",
    "timezone": "tailor_timezone",
    "next_best_action": "tailor_next_best_action",
    "content_block": "tailor_content_block",
    "greeting_block": "tailor_greeting_block",
    "recommendations_block": "tailor_recommendations_block",
    "experiment_group": "tailor_experiment_group",
}
MODEL_VERSION_COLUMNS = ("scores_model_version", "recommendations_model_version", "send_times_model_version")
# Rounded for the ESP: a template shows 2 decimals, and a score moving in its 4th decimal is not a change worth
# resending a profile for.
ROUNDED = {"churn_probability": 2, "expected_net_sales_12m": 2}
FETCH_ROWS = 10_000
LIFT_COLUMNS = ("as_of_date", "metric", "horizon_days", "is_window_complete", "treatment_customers",
                "holdout_customers", "treatment_value", "holdout_value", "difference", "ci_lower", "ci_upper",
                "z_statistic", "is_significant")

if TYPE_CHECKING:
    from ml.report import FeedReport

log = logging.getLogger(__name__)


class FeedError(RuntimeError):
    """The feed cannot be built, gated or read: the message says what is missing and which command makes it."""


def build_feed(as_of: datetime, *, warehouse: Warehouse | None = None, quiet: bool = True):
    """dbt build the feed models (and their tests) as of `as_of`: replaces the rows of its date only.

    The feed reads the marts as they were last built. When another build came between (an hourly run, another day of
    a backfill) and left some as of another time, everything but the feed is built again as of `as_of` first (without
    tests: that data passed its gates), so a date's feed is always its own date's."""
    from tailor import transform

    warehouse = warehouse or Warehouse()
    missing = unscored_tables(warehouse, as_of.date())
    if missing:
        raise FeedError(f"no scores for {as_of.date()} in {', '.join(missing)}: score first "
                        f"(python -m ml score --as-of {as_of.date()})")
    transform.rebuild_moved(as_of, duckdb_path=warehouse.path, quiet=quiet)
    return transform.build(as_of, selector=FEED_SELECTOR, duckdb_path=warehouse.path, quiet=quiet)


def unscored_tables(warehouse: Warehouse, as_of_date: date) -> list[str]:
    """The models' tables with no scoring run for the date (ml.scoring_runs)."""
    with warehouse.reader() as con:
        if not has_table(con, "ml.scoring_runs"):
            return list(SCORED_TABLES)
        scored = {name for (name,) in con.execute(
            "select distinct table_name from ml.scoring_runs where as_of_date = ?", [as_of_date]).fetchall()}
    return [table for table in SCORED_TABLES if table not in scored]


def gate_params() -> dict[str, Any]:
    """The feed gate's params whose truth lives in the recommender's config."""
    from ml import config

    return {"list_size": config.REC_LIST_SIZE, "replenishable_rate": config.REC_REPLENISHABLE_RATE}


def gate_feed(as_of: datetime, *, warehouse: Warehouse | None = None, raise_on_failure: bool = True):
    """Run expectations/feed.yml on the feed of as_of's date (GateFailed names each failed check)."""
    from tailor.export.deliveries import ensure_tables
    from tailor.quality import run_gate

    warehouse = warehouse or Warehouse()
    ensure_tables(warehouse)  # the volume check reads export.exports, empty before the first export
    return run_gate("feed", as_of, warehouse, raise_on_failure=raise_on_failure, params=gate_params())


def lift_readout(con: duckdb.DuckDBPyConnection, cohorts: int = 5) -> list[str]:
    """The latest cohorts of exports.feed_lift as lines: treatment against holdout, with the interval and verdict."""
    if not has_table(con, "exports.feed_lift"):
        return []
    rows = con.execute("""
        select as_of_date, metric, treatment_customers, holdout_customers, treatment_value, holdout_value, difference,
               ci_lower, ci_upper, is_significant, is_window_complete, horizon_days
        from exports.feed_lift
        where as_of_date in (select distinct as_of_date from exports.feed_lift order by as_of_date desc limit ?)
        order by as_of_date desc, metric""", [cohorts]).fetchall()
    lines = []
    for (day, metric, treated, held, treated_value, held_value, difference, low, high, significant, complete,
         horizon) in rows:
        verdict = "significant" if significant else "not significant"
        window = f"{horizon}-day window complete" if complete else f"{horizon}-day window still open"
        lines.append(f"  {day} {metric:<10} treatment {_number(treated_value)} (n {treated:,}) vs holdout "
                     f"{_number(held_value)} (n {held:,}): {_number(difference, '+')}, 95% CI "
                     f"[{_number(low, '+')}, {_number(high, '+')}], {verdict}; {window}")
    return lines


def _number(value: Any, sign: str = "") -> str:
    return "n/a" if value is None else f"{float(value):{sign},.4f}"


def feed_rows(con: duckdb.DuckDBPyConnection, as_of_date: date) -> int:
    if not has_table(con, FEED):
        return 0
    return con.execute(f"select count(*) from {FEED} where as_of_date = ?", [as_of_date]).fetchone()[0]  # noqa: S608 constant


def model_versions(con: duckdb.DuckDBPyConnection, as_of_date: date) -> dict[str, str]:
    """The model versions the date's feed was made with (one per kind)."""
    row = con.execute(f"select {', '.join(f'min({c}), max({c})' for c in MODEL_VERSION_COLUMNS)} "  # noqa: S608 constant
                      f"from {FEED} where as_of_date = ?", [as_of_date]).fetchone()
    versions = {}
    for number, column in enumerate(MODEL_VERSION_COLUMNS):
        low, high = row[2 * number], row[2 * number + 1]
        if low != high:
            raise FeedError(f"{FEED} for {as_of_date} mixes {column} {low} and {high}: rebuild the feed")
        versions[column.removesuffix("_model_version")] = low
    return versions


def feed_report(con: duckdb.DuckDBPyConnection, as_of_date: date, cohorts: int = 8) -> FeedReport:
    """The date's feed (customers, groups, next best actions, model versions) and the latest cohorts of
    exports.feed_lift as a FeedReport. Nothing missing raises: an empty part is explained on the page."""
    from ml.report import FeedReport  # matplotlib: only when a page is made

    notes: list[str] = []
    rows = feed_rows(con, as_of_date)
    summary = {"feed date": as_of_date.isoformat(), "customers in the feed": f"{rows:,}"}
    actions = groups = None
    if rows:
        groups = con.execute(f"select experiment_group, count(*) as customers from {FEED} "  # noqa: S608 constant
                             "where as_of_date = ? group by experiment_group order by experiment_group desc",
                             [as_of_date]).df()
        for group, customers in zip(groups["experiment_group"], groups["customers"], strict=True):
            summary[str(group)] = f"{customers:,} ({customers / rows:.1%})"
        actions = con.execute(f"select next_best_action, count(*) as customers from {FEED} "  # noqa: S608 constant
                              "where as_of_date = ? group by next_best_action "
                              "order by customers desc, next_best_action", [as_of_date]).df()
        actions["share"] = actions["customers"] / rows
        try:
            versions = model_versions(con, as_of_date)
            summary["model versions"] = ", ".join(f"{kind.replace('_', ' ')} {version}"
                                                  for kind, version in versions.items())
        except FeedError as exc:  # the page is still written; the gate and the export refuse such a feed
            notes.append(str(exc))
    else:
        notes.append(f"No rows in {FEED} for {as_of_date}: build the feed (python -m tailor feed build).")
    lift = None
    if has_table(con, "exports.feed_lift"):
        lift = con.execute(f"""
            select cast(as_of_date as varchar) as as_of_date, {", ".join(LIFT_COLUMNS[1:])}
            from exports.feed_lift
            where as_of_date in (select distinct as_of_date from exports.feed_lift order by as_of_date desc limit ?)
            order by as_of_date desc, metric""", [cohorts]).df()  # noqa: S608 constant
        complete = lift[lift["is_window_complete"].eq(True)]
        summary["lift cohorts shown"] = f"{lift['as_of_date'].nunique():,} (the latest, at most {cohorts})"
        summary["significant, complete windows"] = (f"{int(complete['is_significant'].sum()):,} of {len(complete):,} "
                                                    "rows (about 5 % expected by chance alone)")
    return FeedReport(as_of=as_of_date.isoformat(), summary=summary, next_best_actions=actions,
                      experiment_groups=groups, lift=lift, notes=notes)


def write_feed_report(warehouse: Warehouse, as_of: datetime) -> Path:
    """Write the page of as_of's feed date to TAILOR_DATA_DIR/reports/feed-<date>.html (beside the models' pages)."""
    from ml.report import write_feed_report as write_page

    with warehouse.reader() as con:
        report = feed_report(con, as_of.date())
    return write_page(report, settings.data_dir() / "reports")


def feed_payloads(con: duckdb.DuckDBPyConnection, as_of_date: date) -> Iterator[Payload]:
    """The date's feed rows as Payloads, in customer order, fetched in slices (a million rows are never held)."""
    columns = list(ESP_FIELDS)
    result = con.execute(f"select {', '.join(columns)} from {FEED} where as_of_date = ? order by customer_id",  # noqa: S608 constant
                         [as_of_date])
    while True:
        rows = result.fetchmany(FETCH_ROWS)
        if not rows:
            return
        for row in rows:
            yield to_payload(dict(zip(columns, row, strict=True)))


def to_payload(row: dict[str, Any]) -> Payload:
    """One exports.esp_feed row (its ESP_FIELDS columns) as the ESP receives it."""
    if not row.get("email") or not row.get("customer_id"):
        raise FeedError(f"{FEED} row without customer_id or email: {row.get('customer_id')!r}")
    fields = {}
    for column, name in ESP_FIELDS.items():
        value = row[column]
        if column == "recommendations" and isinstance(value, str):
            value = json.loads(value)  # JSON-safe as parsed
        elif column == "recommendations":
            value = _json_safe(value or [])
        elif column in ROUNDED and value is not None:
            value = round(float(value), ROUNDED[column])
        elif type(value) not in _JSON_TYPES:
            value = _json_safe(value)
        fields[name] = value
    return Payload.of(row["customer_id"], row["email"], fields)


_JSON_TYPES = frozenset({str, int, float, bool, type(None)})  # as JSON takes them: most of a row, checked fast


def _json_safe(value: Any) -> Any:
    if type(value) in _JSON_TYPES:
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    return value
