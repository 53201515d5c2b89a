"""The daily run's report: one self-contained HTML page per run date, written as the daily DAG's last step.

    path = write_run_report(as_of)   # <TAILOR_DATA_DIR>/reports/run/<as_of date>/run-report.html

It shows what the run left in the warehouse for its date: which gates ran and what they found, the customer segments
and churn probabilities the models scored, the RFM grid and the engagement levels of the marts, the holdout lift
readout of the feed and what each sink was sent. Every section is a plot and a small table, drawn with ml.report's
parts (matplotlib's Agg canvas on private figures, PNGs as data URIs, inline CSS, no scripts or links out), so the
page opens anywhere and can be attached to an email.

The report is read-only (one read-only connection, closed before anything is drawn) and never fails the run it
reports on: a table that does not exist yet (no scoring, no feed, no delivery) or holds nothing for the date, a mart
built as of another date, a column an older warehouse lacks, a warehouse that cannot be opened or a plot that cannot
be drawn each become a one-line note in their section. Only a wrong `as_of` (not a datetime, or one without a
timezone) raises: that is the caller's mistake, not the data's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from matplotlib.ticker import PercentFormatter

# ml.report's page parts, shared by every report page: a figure and its PNG, a table, the page around the sections, the
# atomic write.
from ml.report import (
    FONT,
    STATUS_COLOURS,
    Plot,
    esc,
    figure_html,
    figure_png,
    format_number,
    new_figure,
    notes_html,
    page_html,
    plot_feed_lift,
    plot_label,
    plot_segments,
    safe_plot,
    table_html,
    write_atomically,
)
from tailor import settings
from tailor.export.deliveries import DELIVERIES, EXPORTS, delivery_log
from tailor.export.feed import LIFT_COLUMNS
from tailor.times import stamp
from tailor.warehouse import Warehouse, has_table

log = logging.getLogger(__name__)

REPORT_FILE = "run-report.html"

SCORES = "ml.customer_scores"
SCORING_RUNS = "ml.scoring_runs"
RFM = "marts.customer_rfm"
ENGAGEMENT = "marts.customer_engagement"
GATE_RESULTS = "quality.gate_results"
FEED_LIFT = "exports.feed_lift"

LIFT_COHORTS = 8  # the latest feed cohorts up to the run's date shown in the lift readout
MAX_ISSUES = 50  # expectations that did not pass listed in the gates section (all of them are in quality.gate_results)
HISTOGRAM_BINS = 20  # churn probability and engagement rates: bins of 0.05 over [0, 1]

# marts.customer_engagement's engagement_level values, most engaged first (the model's accepted values)
ENGAGEMENT_LEVELS = ("highly_engaged", "engaged", "lapsing", "dormant", "never_engaged")
GATE_STATUSES = ("passed", "quarantined", "warned", "failed")  # tailor.quality.results' statuses, best first

SECTIONS = [
    ("ran", "What ran"),
    ("segments", "Customer segments"),
    ("rfm", "RFM grid"),
    ("churn", "Churn probability"),
    ("engagement", "Engagement"),
    ("gates", "Gate results"),
    ("lift", "Lift readout: treatment against holdout"),
    ("deliveries", "Deliveries"),
    ("notes", "Notes"),
]


def default_directory() -> Path:
    """Where run reports go by default: <TAILOR_DATA_DIR>/reports/run (a folder per run date under it)."""
    return settings.data_dir() / "reports" / "run"


def write_run_report(as_of: datetime, *, warehouse: Warehouse | None = None, directory: Path | None = None) -> Path:
    """Write the report of the daily run as of `as_of` to <directory>/<as_of's UTC date>/run-report.html (directory
    defaults to default_directory()), replacing an earlier one atomically, and return its path.

    Reads the warehouse read-only, for the run's date. Raises TypeError when `as_of` is not a datetime and ValueError
    when it has no timezone; nothing the warehouse holds (or lacks) makes it raise."""
    if not isinstance(as_of, datetime):
        raise TypeError(f"as_of must be a datetime with a timezone, got {type(as_of).__name__}: {as_of!r}")
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError(f"as_of {as_of.isoformat()} has no timezone: give a UTC time")

    as_of = as_of.astimezone(UTC)
    warehouse = warehouse or Warehouse()
    written_at = datetime.now(UTC)  # when the page was made: metadata, not a business time
    data = read_run(warehouse, as_of)
    page = render_run_report(data, warehouse_path=warehouse.path, written_at=written_at)
    folder = Path(directory) if directory is not None else default_directory()
    path = write_atomically(folder / as_of.date().isoformat(), REPORT_FILE, page)
    empty = [heading for key, heading in SECTIONS if key in data.missing]
    log.info("run report as of %s: %s%s", stamp(as_of), path,
             f" (no data yet: {', '.join(empty)})" if empty else "")
    return path


# -------------------------------------------------------------------------------------------------------- reading


@dataclass
class RunData:
    """What the report shows, read in one go: frames and values by name; a section with nothing to show is in
    `missing`, and its notes (why) in `section_notes`."""

    as_of: datetime
    frames: dict[str, pd.DataFrame | None] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    section_notes: dict[str, list[str]] = field(default_factory=dict)  # section key -> one-line notes
    missing: set[str] = field(default_factory=set)  # sections with nothing to show
    notes: list[str] = field(default_factory=list)  # about the whole page

    @property
    def day(self) -> date:
        return self.as_of.date()

    def note(self, section: str, text: str, *, missing: bool = False) -> None:
        self.section_notes.setdefault(section, []).append(text)
        if missing:
            self.missing.add(section)


Reader = Callable[[duckdb.DuckDBPyConnection, RunData], None]


class _NoData(Exception):
    """A part has nothing for the date; the message is the note the section shows."""


def read_run(warehouse: Warehouse, as_of: datetime) -> RunData:
    """Everything the report shows for the run as of `as_of` (UTC), read on one read-only connection that is closed
    before anything is drawn. Never raises: each part that cannot be read leaves its note instead."""
    data = RunData(as_of=as_of)
    readers: list[tuple[str, Reader]] = [
        ("ran", _read_what_ran), ("segments", _read_segments), ("churn", _read_churn), ("rfm", _read_rfm),
        ("engagement", _read_engagement), ("gates", _read_gates), ("lift", _read_lift),
        ("deliveries", lambda con, data: _read_deliveries(con, data, warehouse))]
    try:
        with warehouse.reader() as con:
            for section, read in readers:
                _guarded(data, section, read, con)
    except Exception as exc:  # no file yet, a lock held past the timeout: the page says so instead of failing the run
        reason = f"The warehouse {warehouse.path} could not be read ({type(exc).__name__}: {_first_line(exc)})."
        data.notes.append(reason)
        for section, _ in readers:
            if section not in data.section_notes:
                data.note(section, reason, missing=True)
    return data


def _guarded(data: RunData, section: str, read: Reader, con: duckdb.DuckDBPyConnection) -> None:
    """One section's read. Nothing there for the date is the section's note; so is anything unforeseen (a column an
    older warehouse lacks, a type it stores differently): one part must never cost the page, nor the page the run."""
    try:
        read(con, data)
    except _NoData as exc:
        data.note(section, str(exc), missing=True)
    except Exception as exc:  # deliberately broad, see above
        data.note(section, f"Could not be read ({type(exc).__name__}: {_first_line(exc)}).", missing=True)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _require(con: duckdb.DuckDBPyConnection, table: str, hint: str) -> None:
    if not has_table(con, table):
        raise _NoData(f"No {table} in the warehouse yet: {hint}.")


def _day_bounds(data: RunData) -> tuple[datetime, datetime]:
    """The start of the run's UTC date and the as-of time: what happened on the date up to the run (a later hourly
    gate of the same date is not this run's)."""
    return datetime.combine(data.day, datetime.min.time(), UTC), data.as_of


def _read_what_ran(con: duckdb.DuckDBPyConnection, data: RunData) -> None:
    """The date's gate runs, scoring runs and export, as one 'step, what, when, outcome' table."""
    steps: list[dict[str, Any]] = []
    start, end = _day_bounds(data)
    if has_table(con, GATE_RESULTS):
        runs = con.execute(f"""
            select suite, run_id, min(run_at) as run_at, count(*) as expectations,
                   count(*) filter (where status = 'failed') as failed,
                   count(*) filter (where status = 'warned') as warned,
                   count(*) filter (where status = 'quarantined') as quarantined
            from {GATE_RESULTS} where as_of >= ? and as_of <= ?
            group by suite, run_id order by run_at""", [start, end]).fetchall()  # noqa: S608 constant
        for suite, run_id, run_at, expectations, failed, warned, quarantined in runs:
            verdict = "FAILED" if failed else "passed"
            steps.append({"step": f"gate {suite}", "what": run_id, "at": run_at,
                          "outcome": f"{verdict}: {expectations:,} expectations, {failed:,} failed, {warned:,} "
                                     f"warned, {quarantined:,} with rows quarantined"})
    if has_table(con, SCORING_RUNS):
        for table, version, scored_at, rows in con.execute(
                f"select table_name, model_version, scored_at, rows from {SCORING_RUNS} "  # noqa: S608 constant
                "where as_of_date = ? order by scored_at", [data.day]).fetchall():
            steps.append({"step": "score", "what": f"{table} {version}", "at": scored_at,
                          "outcome": f"{rows:,} rows"})
    if has_table(con, EXPORTS):
        for exported_at, rows, path in con.execute(
                f"select exported_at, rows, path from {EXPORTS} where as_of_date = ?",  # noqa: S608 constant
                [data.day]).fetchall():
            steps.append({"step": "export", "what": path, "at": exported_at, "outcome": f"{rows:,} feed rows"})
    if not steps:
        raise _NoData(f"Nothing recorded for {data.day}: no gate run ({GATE_RESULTS}), scoring run ({SCORING_RUNS}) "
                      f"or export ({EXPORTS}) of the date.")
    frame = pd.DataFrame(steps).sort_values("at", kind="stable")
    frame["at"] = frame["at"].map(_stamp_or_none)
    data.frames["ran"] = frame.reset_index(drop=True)


def _stamp_or_none(value: Any) -> str | None:
    return stamp(value) if isinstance(value, datetime) else None


def _served_version(con: duckdb.DuckDBPyConnection, day: date) -> str | None:
    """The version of ml.customer_scores the feed serves for the date: its latest scoring run's (as
    stg_ml__scoring_runs decides), else the highest version scored for the date."""
    if has_table(con, SCORING_RUNS):
        row = con.execute(f"select model_version from {SCORING_RUNS} where as_of_date = ? and table_name = ? "  # noqa: S608 constant
                          "order by scored_at desc, model_version desc limit 1", [day, SCORES]).fetchone()
        if row:
            return row[0]
    row = con.execute(f"select max(model_version) from {SCORES} where as_of_date = ?", [day]).fetchone()  # noqa: S608 constant
    return row[0]


def _scored_version(con: duckdb.DuckDBPyConnection, day: date) -> str:
    _require(con, SCORES, "the models have not scored yet (python -m ml score)")
    version = _served_version(con, day)
    if version is None:
        raise _NoData(f"No scores for {day} in {SCORES}: the models have not scored the date "
                      f"(python -m ml score --as-of {day}).")
    return version


def _read_segments(con: duckdb.DuckDBPyConnection, data: RunData) -> None:
    """Segment sizes and mean scores of the served scores of the date."""
    version = _scored_version(con, data.day)
    data.values["scores_version"] = version
    segments = con.execute(f"""
        select segment_id, segment_name, count(*) as customers,
               avg(churn_probability) as mean_churn_probability, avg(p_alive) as mean_p_alive,
               avg(expected_orders_12m) as mean_expected_orders_12m,
               avg(expected_net_sales_12m) as mean_expected_net_sales_12m
        from {SCORES} where as_of_date = ? and model_version = ?
        group by segment_id, segment_name order by segment_id""", [data.day, version]).df()  # noqa: S608 constant
    segments.insert(3, "share", segments["customers"] / segments["customers"].sum())
    data.frames["segments"] = segments


def _read_churn(con: duckdb.DuckDBPyConnection, data: RunData) -> None:
    """The churn probabilities of the served scores of the date: binned in the warehouse (a million customers'
    probabilities never come to Python), and a few quantiles."""
    version = _scored_version(con, data.day)
    data.values["scores_version"] = version
    scored, without, mean, p10, p50, p90, high = con.execute(f"""
        select count(churn_probability), count(*) - count(churn_probability), avg(churn_probability),
               quantile_cont(churn_probability, 0.1), quantile_cont(churn_probability, 0.5),
               quantile_cont(churn_probability, 0.9), count(*) filter (where churn_probability >= 0.5)
        from {SCORES} where as_of_date = ? and model_version = ?""", [data.day, version]).fetchone()  # noqa: S608 constant
    if not scored:
        raise _NoData(f"No churn probabilities in {SCORES} for {data.day} (version {version}, {without:,} customers): "
                      "churn is scored for customers with an order only.")
    data.frames["churn_stats"] = pd.DataFrame([{
        "customers with a probability": scored, "without (no order yet)": without, "mean": mean,
        "10th percentile": p10, "median": p50, "90th percentile": p90, "at 0.5 or more": high}])
    data.frames["churn"] = con.execute(f"""
        select least(cast(floor(churn_probability * {HISTOGRAM_BINS}) as integer), {HISTOGRAM_BINS - 1}) as bin,
               count(*) as customers
        from {SCORES} where as_of_date = ? and model_version = ? and churn_probability is not null
        group by bin order by bin""", [data.day, version]).df()  # noqa: S608 constant


def _mart_as_of(con: duckdb.DuckDBPyConnection, table: str, data: RunData, section: str) -> datetime:
    """A mart holds its latest build only: its as-of time, or _NoData when it is empty or of another date."""
    _require(con, table, "build the dbt project (python -m tailor build)")
    rows, built_at = con.execute(f"select count(*), max(as_of_at) from {table}").fetchone()  # noqa: S608 constant
    if not rows:
        raise _NoData(f"{table} is empty.")
    if built_at.astimezone(UTC).date() != data.day:
        raise _NoData(f"{table} holds its latest build only, as of {stamp(built_at)}, not of {data.day}: "
                      "not shown (rebuild the date to see it).")
    data.values[f"{section}_as_of"] = built_at
    return built_at


def _read_rfm(con: duckdb.DuckDBPyConnection, data: RunData) -> None:
    _mart_as_of(con, RFM, data, "rfm")
    data.frames["rfm_cells"] = con.execute(
        f"select r_score, f_score, count(*) as customers from {RFM} group by r_score, f_score").df()  # noqa: S608 constant
    segments = con.execute(f"select rfm_segment, count(*) as customers from {RFM} "  # noqa: S608 constant
                           "group by rfm_segment order by customers desc, rfm_segment").df()
    segments["share"] = segments["customers"] / segments["customers"].sum()
    data.frames["rfm_segments"] = segments


def _read_engagement(con: duckdb.DuckDBPyConnection, data: RunData) -> None:
    _mart_as_of(con, ENGAGEMENT, data, "engagement")
    levels = con.execute(f"""
        select engagement_level, count(*) as customers, sum(messages_received_90d) as emails_received_90d,
               avg(open_rate_90d) as mean_open_rate_90d, avg(click_rate_90d) as mean_click_rate_90d,
               sum(open_abandoned_carts) as open_abandoned_carts
        from {ENGAGEMENT} group by engagement_level""").df()  # noqa: S608 constant
    order = {level: number for number, level in enumerate(ENGAGEMENT_LEVELS)}
    levels = levels.sort_values("engagement_level", key=lambda s: s.map(order).fillna(len(order)), kind="stable")
    levels.insert(2, "share", levels["customers"] / levels["customers"].sum())
    data.frames["engagement"] = levels.reset_index(drop=True)
    data.frames["engagement_rates"] = con.execute(f"""
        select 'open rate' as rate, least(cast(floor(open_rate_90d * {HISTOGRAM_BINS}) as integer),
               {HISTOGRAM_BINS - 1}) as bin, count(*) as customers
        from {ENGAGEMENT} where open_rate_90d is not null group by bin
        union all
        select 'click rate', least(cast(floor(click_rate_90d * {HISTOGRAM_BINS}) as integer), {HISTOGRAM_BINS - 1}),
               count(*)
        from {ENGAGEMENT} where click_rate_90d is not null group by 2""").df()  # noqa: S608 constant


def _read_gates(con: duckdb.DuckDBPyConnection, data: RunData) -> None:
    _require(con, GATE_RESULTS, "no gate has run on this warehouse")
    start, end = _day_bounds(data)
    statuses = ",\n".join(f"count(*) filter (where status = '{status}') as {status}" for status in GATE_STATUSES)
    runs = con.execute(f"""
        select suite, as_of, min(run_at) as run_at,
               case when bool_and(status <> 'failed') then 'passed' else 'FAILED' end as verdict,
               count(*) as expectations,
               {statuses}, count(error) as not_evaluated, sum(quarantined_rows) as quarantined_rows,
               max(element_count) as most_rows_checked
        from {GATE_RESULTS} where as_of >= ? and as_of <= ?
        group by run_id, suite, as_of order by run_at""", [start, end]).df()  # noqa: S608 constant
    if runs.empty:
        raise _NoData(f"No gate ran as of {data.day} (up to {stamp(data.as_of)}) in {GATE_RESULTS}.")
    for column in ("as_of", "run_at"):
        runs[column] = runs[column].map(_stamp_or_none)
    data.frames["gates"] = runs
    data.frames["gate_issues"] = con.execute(f"""
        select suite, status, table_name, column_name, expectation, unexpected_count, element_count,
               quarantined_rows, error
        from {GATE_RESULTS} where as_of >= ? and as_of <= ? and status <> 'passed'
        order by case status when 'failed' then 0 when 'warned' then 1 else 2 end, suite, table_name, expectation
        limit {MAX_ISSUES + 1}""", [start, end]).df()  # noqa: S608 constant


def _read_lift(con: duckdb.DuckDBPyConnection, data: RunData) -> None:
    _require(con, FEED_LIFT, "the feed has not been built yet (python -m tailor feed build)")
    lift = con.execute(f"""
        select cast(as_of_date as varchar) as as_of_date, {", ".join(LIFT_COLUMNS[1:])}
        from {FEED_LIFT}
        where as_of_date in (select distinct as_of_date from {FEED_LIFT} where as_of_date <= ?
                             order by as_of_date desc limit ?)
        order by as_of_date desc, metric""", [data.day, LIFT_COHORTS]).df()  # noqa: S608 constant
    if lift.empty:
        raise _NoData(f"No feed cohort up to {data.day} in {FEED_LIFT} yet: it gets a row per metric for every feed "
                      "date built.")
    (computed,) = con.execute(f"select max(computed_as_of_at) from {FEED_LIFT}").fetchone()  # noqa: S608 constant
    data.values["lift_computed_as_of"] = computed
    data.frames["lift"] = lift


def _read_deliveries(con: duckdb.DuckDBPyConnection, data: RunData, warehouse: Warehouse) -> None:
    _require(con, DELIVERIES, "nothing has been delivered from this warehouse")
    # delivery_log opens its own read-only connection: in this process it joins the database `con` holds open, so it
    # reads the same state and waits for no lock
    deliveries = delivery_log(warehouse, data.day, limit=1000)
    if deliveries.empty:
        raise _NoData(f"No delivery for {data.day} in {DELIVERIES}.")
    deliveries["as_of_date"] = deliveries["as_of_date"].map(lambda value: pd.Timestamp(value).date().isoformat())
    data.frames["deliveries"] = deliveries.iloc[::-1].reset_index(drop=True)  # oldest first


# ---------------------------------------------------------------------------------------------------------- plots


def plot_rfm_grid(cells: pd.DataFrame | None, segments: pd.DataFrame | None) -> Plot:
    """Customers per (recency score, frequency score) as an annotated heatmap, beside customers per RFM segment."""
    if cells is None or cells.empty:
        return Plot(None, "RFM grid skipped: no scored customers.")
    grid = (cells.pivot_table(index="r_score", columns="f_score", values="customers", aggfunc="sum")
            .reindex(index=range(5, 0, -1), columns=range(1, 6)).fillna(0))
    fig = new_figure(9.5, 3.8)
    panels = fig.add_gridspec(1, 2, width_ratios=(1, 1.1))
    ax = fig.add_subplot(panels[0, 0])
    values = grid.to_numpy(dtype=float)
    image = ax.imshow(values, cmap="Blues", aspect="auto")
    ax.set_xticks(range(5), [str(c) for c in grid.columns], fontsize=FONT)
    ax.set_yticks(range(5), [str(r) for r in grid.index], fontsize=FONT)
    ax.set_xlabel("frequency score (5 = most orders)", fontsize=FONT)
    ax.set_ylabel("recency score (5 = most recent)", fontsize=FONT)
    ax.set_title("Customers per recency × frequency score", fontsize=FONT + 2)
    top = values.max() or 1.0
    for (row, column), value in np.ndenumerate(values):
        ax.text(column, row, format_number(int(value)), ha="center", va="center", fontsize=FONT - 1,
                color="white" if value > 0.6 * top else "black")
    fig.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=FONT)
    if segments is not None and not segments.empty:
        ax = fig.add_subplot(panels[0, 1])
        rows = np.arange(len(segments))
        ax.barh(rows, segments["customers"].to_numpy(dtype=float), color="#4a78a8")
        ax.set_yticks(rows, [plot_label(s) for s in segments["rfm_segment"]], fontsize=FONT)
        ax.invert_yaxis()
        ax.set_xlabel("customers", fontsize=FONT)
        ax.set_title("Customers per RFM segment", fontsize=FONT + 2)
        ax.tick_params(axis="x", labelsize=FONT)
        ax.grid(axis="x", alpha=0.3)
    return Plot(figure_png(fig))


def _histogram_axes(ax, counts: pd.Series, colour: str, label: str | None = None, offset: float = 0.0,
                    width: float = 1.0) -> None:
    edges = np.arange(HISTOGRAM_BINS) / HISTOGRAM_BINS
    step = 1.0 / HISTOGRAM_BINS
    heights = counts.reindex(range(HISTOGRAM_BINS)).fillna(0).to_numpy(dtype=float)
    ax.bar(edges + step * offset, heights, width=step * width, align="edge", color=colour, label=label)


def plot_churn_histogram(bins: pd.DataFrame | None) -> Plot:
    """Customers per churn probability bin of 0.05."""
    if bins is None or bins.empty:
        return Plot(None, "Churn histogram skipped: no churn probabilities.")
    fig = new_figure(7.0, 3.5)
    ax = fig.add_subplot()
    _histogram_axes(ax, bins.set_index("bin")["customers"], "#c8453c")
    ax.set_xlim(0, 1)
    ax.set_xlabel("churn probability", fontsize=FONT)
    ax.set_ylabel("customers", fontsize=FONT)
    ax.set_title("Churn probability of the customers scored for the date", fontsize=FONT + 2)
    ax.tick_params(labelsize=FONT)
    ax.grid(axis="y", alpha=0.3)
    return Plot(figure_png(fig))


def plot_engagement(levels: pd.DataFrame | None, rates: pd.DataFrame | None) -> Plot:
    """Customers per engagement level, beside the distribution of the 90-day open and click rates."""
    if levels is None or levels.empty:
        return Plot(None, "Engagement plot skipped: no customers.")
    has_rates = rates is not None and not rates.empty
    fig = new_figure(9.5 if has_rates else 6.0, 3.6)
    ax = fig.add_subplot(1, 2 if has_rates else 1, 1)
    rows = np.arange(len(levels))
    ax.barh(rows, levels["customers"].to_numpy(dtype=float), color="#4a78a8")
    ax.set_yticks(rows, [plot_label(level).replace("_", " ") for level in levels["engagement_level"]], fontsize=FONT)
    ax.invert_yaxis()
    ax.set_xlabel("customers", fontsize=FONT)
    ax.set_title("Customers per engagement level", fontsize=FONT + 2)
    ax.tick_params(axis="x", labelsize=FONT)
    ax.grid(axis="x", alpha=0.3)
    note = ""
    if has_rates:
        ax = fig.add_subplot(1, 2, 2)
        for number, (rate, colour) in enumerate((("open rate", "#4c9a5f"), ("click rate", "#e0a030"))):
            part = rates[rates["rate"] == rate]
            _histogram_axes(ax, part.set_index("bin")["customers"], colour, rate, offset=0.5 * number, width=0.5)
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel("share of the emails of the last 90 days opened / clicked", fontsize=FONT)
        ax.set_ylabel("customers", fontsize=FONT)
        ax.set_title("90-day open and click rates", fontsize=FONT + 2)
        ax.tick_params(labelsize=FONT)
        ax.legend(fontsize=FONT)
        ax.grid(axis="y", alpha=0.3)
    else:
        note = "No customer received an email in the last 90 days: no rates to draw."
    return Plot(figure_png(fig), note)


def _stacked_bars(frame: pd.DataFrame, parts: tuple[tuple[str, str, str], ...], labels: list[str], xlabel: str,
                  title: str) -> Plot:
    """One horizontal bar per row of `frame`, stacked from its (column, legend label, colour) parts, first row on top."""
    fig = new_figure(7.0, max(2.2, 0.4 * len(frame) + 1.4))
    ax = fig.add_subplot()
    rows = np.arange(len(frame))
    left = np.zeros(len(frame))
    for column, label, colour in parts:
        counts = pd.to_numeric(frame[column], errors="coerce").fillna(0).to_numpy(dtype=float)
        ax.barh(rows, counts, left=left, height=0.6, color=colour, label=label)
        left += counts
    ax.set_yticks(rows, [plot_label(label) for label in labels], fontsize=FONT)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.set_title(title, fontsize=FONT + 2)
    ax.tick_params(axis="x", labelsize=FONT)
    fig.legend(fontsize=FONT, loc="outside lower center", ncols=4)  # below: never over a bar
    ax.grid(axis="x", alpha=0.3)
    return Plot(figure_png(fig))


def plot_gate_runs(runs: pd.DataFrame | None) -> Plot:
    """Expectations per gate run by status, as stacked horizontal bars."""
    if runs is None or runs.empty:
        return Plot(None, "Gate plot skipped: no gate runs.")
    colours = {"passed": STATUS_COLOURS["ok"], "quarantined": "#4a78a8", "warned": STATUS_COLOURS["warn"],
               "failed": STATUS_COLOURS["fail"]}
    parts = tuple((status, status, colours[status]) for status in GATE_STATUSES)
    labels = [f"{suite} as of {as_of}" for suite, as_of in zip(runs["suite"], runs["as_of"], strict=True)]
    return _stacked_bars(runs, parts, labels, "expectations", "Gate runs of the date: expectations by outcome")


_DELIVERY_PARTS = (("rows_sent", "sent", "#4c9a5f"), ("rows_unchanged", "unchanged", "#9aa5b1"),
                   ("rows_skipped", "skipped", "#e0a030"), ("rows_failed", "failed", "#c8453c"))


def plot_deliveries(deliveries: pd.DataFrame | None) -> Plot:
    """Each delivery of the date (oldest first) as a bar of its feed rows: sent, unchanged, skipped, failed."""
    if deliveries is None or deliveries.empty:
        return Plot(None, "Delivery plot skipped: no deliveries.")
    number: dict[str, int] = {}
    labels = []
    for sink, mode, status in zip(deliveries["sink"], deliveries["mode"], deliveries["status"], strict=True):
        number[sink] = number.get(sink, 0) + 1
        labels.append(f"{sink} #{number[sink]} ({mode}, {status})")
    return _stacked_bars(deliveries, _DELIVERY_PARTS, labels, "feed rows", "Deliveries of the date per sink")


# ----------------------------------------------------------------------------------------------------------- HTML


def _per_sink(deliveries: pd.DataFrame) -> pd.DataFrame:
    """One row per sink: its deliveries of the date, the latest one's status, and the rows sent by all of them."""
    rows = []
    for sink, group in deliveries.groupby("sink", sort=True):
        latest = group.iloc[-1]
        rows.append({"sink": sink, "deliveries": len(group), "latest status": latest["status"],
                     "latest mode": latest["mode"], "rows in feed": latest["rows_in_feed"],
                     "rows sent (all deliveries)": int(group["rows_sent"].sum()),
                     "rows skipped (latest)": latest["rows_skipped"], "rows failed (latest)": latest["rows_failed"]})
    return pd.DataFrame(rows)


def render_run_report(data: RunData, *, warehouse_path: Path, written_at: datetime) -> str:
    """The report as one self-contained HTML document. A section whose HTML cannot be made (data of a shape nothing
    here foresaw) becomes a note: the page is still written."""
    frames = data.frames

    def body(section: str, make: Callable[[], str]) -> str:
        notes = "".join(f'<p class="skip">{esc(n)}</p>' for n in data.section_notes.get(section, []))
        if section in data.missing:
            return notes
        try:
            return notes + make()
        except Exception as exc:  # deliberately broad: one section must not cost the page (the plots are safe_plot too)
            reason = f"This section could not be drawn ({type(exc).__name__}: {exc})."
            return f'{notes}<p class="skip">{esc(reason)}</p>'

    def as_of_line(key: str, what: str) -> str:
        at = data.values.get(key)
        return f"<p>{esc(what)} as of {esc(stamp(at))}.</p>" if isinstance(at, datetime) else ""

    version = data.values.get("scores_version")
    scored = f"<p>{esc(SCORES)} version <strong>{esc(version)}</strong> (the one served for the date).</p>" \
        if version else ""
    bodies = {
        "ran": body("ran", lambda: table_html(frames.get("ran"), "Nothing recorded for the date.")),
        "segments": body("segments", lambda: scored + figure_html(
            safe_plot(plot_segments, frames.get("segments")), "Segment sizes and profiles",
            "Bars: customers per segment; heatmap: each segment's mean scores (colour compares segments, the text is "
            "the value).") + table_html(frames.get("segments"), "No segments.")),
        "rfm": body("rfm", lambda: as_of_line("rfm_as_of", RFM) + figure_html(
            safe_plot(plot_rfm_grid, frames.get("rfm_cells"), frames.get("rfm_segments")), "RFM grid and segments",
            "Scores are quintiles of the customers with an order in the RFM window: the top right of the grid are "
            "recent, frequent buyers.") + table_html(frames.get("rfm_segments"), "No RFM segments.")),
        "churn": body("churn", lambda: scored + figure_html(
            safe_plot(plot_churn_histogram, frames.get("churn")), "Churn probability histogram",
            "Customers without an order yet have no churn probability and are not drawn.")
            + table_html(frames.get("churn_stats"), "No churn probabilities.")),
        "engagement": body("engagement", lambda: as_of_line("engagement_as_of", ENGAGEMENT) + figure_html(
            safe_plot(plot_engagement, frames.get("engagement"), frames.get("engagement_rates")),
            "Engagement levels and rates",
            "Rates count distinct emails received in the last 90 days; customers who received none have no rate and "
            "are not in the right-hand panel.") + table_html(frames.get("engagement"), "No engagement levels.")),
        "gates": body("gates", lambda: _gates_html(frames.get("gates"), frames.get("gate_issues"))),
        "lift": body("lift", lambda: _lift_intro(data) + figure_html(
            safe_plot(plot_feed_lift, frames.get("lift")), "Lift per cohort and metric",
            "Each point is one feed date's cohort and its bar the 95 % interval: a bar that crosses the dashed line "
            "at 0 is no evidence of lift.") + table_html(frames.get("lift"), "No lift rows.")),
        "deliveries": body("deliveries", lambda: _deliveries_html(frames.get("deliveries"))),
        "notes": notes_html(data.notes),
    }
    meta = (f"Run date <strong>{esc(data.day.isoformat())}</strong> · as of {esc(stamp(data.as_of))} · "
            f"written {esc(stamp(written_at))} · warehouse {esc(warehouse_path)}")
    return page_html("Tailor daily run report", data.day.isoformat(), meta, SECTIONS, bodies)


def _gates_html(runs: pd.DataFrame | None, issues: pd.DataFrame | None) -> str:
    parts = [figure_html(safe_plot(plot_gate_runs, runs), "Expectations per gate run by outcome",
                          "Quarantined: rows set aside within the allowed share, the run passes; warned: reported "
                          "only; failed: the gate stopped the run."),
             table_html(runs, "No gate runs.")]
    if issues is not None:
        shown = issues.head(MAX_ISSUES)
        more = f" (the first {MAX_ISSUES}; quality.gate_results holds all)" if len(issues) > MAX_ISSUES else ""
        parts.append(f"<h3>Expectations that did not pass{more}</h3>")
        parts.append(table_html(shown, "Every expectation passed."))
    return "".join(parts)


def _lift_intro(data: RunData) -> str:
    computed = data.values.get("lift_computed_as_of")
    when = f", computed as of {stamp(computed)}" if isinstance(computed, datetime) else ""
    return (f"<p>The latest {LIFT_COHORTS} feed cohorts up to {esc(data.day.isoformat())}{esc(when)}: for each "
            "feed date, treatment (sent the personalized email) against holdout (the generic one). About 5 % of "
            "cohorts look significant by chance alone.</p>")


def _deliveries_html(deliveries: pd.DataFrame | None) -> str:
    if deliveries is None or deliveries.empty:
        return '<p class="skip">No deliveries.</p>'
    return "".join([
        figure_html(safe_plot(plot_deliveries, deliveries), "Deliveries per sink",
                     "Each bar is one delivery of the date's export: the rows it sent, those the sink already held "
                     "unchanged, and those skipped or failed (tried again by the next delivery)."),
        table_html(_per_sink(deliveries)),
        "<h3>Delivery log</h3>",
        table_html(deliveries.drop(columns=["content_hash"], errors="ignore")),
    ])
