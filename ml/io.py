"""The models' only door to the warehouse: read features, labels, orders, interactions and engagements as of a
date; write scores, recommendations and send times.

Every function opens a DuckDB connection through tailor.warehouse for the one read or write it does and closes it
before returning, so training and scoring (minutes of CPU) run with the file free for the loads and dbt. A write is
one transaction that first checks its input completely: on failure nothing of it is in `ml.*`.

Tables the models own (schema ml):
- churn_label_snapshots: marts.churn_labels copied per as-of date. dbt keeps the labels of its latest build only; the
  models train on the labels of several past dates, so each is kept once built (with the build's exact as-of time).
- customer_scores: one row per (customer_id, as_of_date, model_version).
- model_monitoring: drift per (as_of_date, model_version, feature) of each scoring run.
- customer_recommendations: the top-N products per (customer_id, as_of_date, model_version), one row per rank.
- customer_send_times: one send hour per (customer_id, as_of_date, model_version).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd

from ml.errors import ModelInputError
from tailor.warehouse import Warehouse, has_table

FEATURES = "marts.customer_features"
LABELS = "marts.churn_labels"
ORDERS = "marts.orders"
LABEL_SNAPSHOTS = "ml.churn_label_snapshots"
SCORES = "ml.customer_scores"
MONITORING = "ml.model_monitoring"
# One row per (as-of date, table, model version) written, with when: the feed serves, per date and table, the version
# scored last (a rescoring with a rolled-back version wins over a newer one scored before it).
SCORING_RUNS = "ml.scoring_runs"
SCORING_RUNS_DDL = f"""create table if not exists {SCORING_RUNS} (
    as_of_date date not null, table_name varchar not null, model_version varchar not null,
    scored_at timestamptz not null, rows bigint not null, primary key (as_of_date, table_name, model_version))"""

LABEL_COLUMNS = ("customer_id", "as_of_date", "as_of_at", "churn_horizon_days", "days_since_last_order",
                 "orders_in_horizon", "next_order_at", "is_churned")

SCORE_COLUMNS: dict[str, str] = {
    "customer_id": "varchar not null",
    "as_of_date": "date not null",
    "model_version": "varchar not null",
    "as_of_at": "timestamptz not null",
    "segment_id": "integer not null",
    "segment_name": "varchar not null",
    "churn_probability": "double",  # null for a customer without an order: churn is defined for buyers
    "churn_model": "varchar",
    "p_alive": "double",
    "expected_orders_12m": "double",
    "expected_net_sales_12m": "double",
    "expected_next_order_date": "date",  # null: not expected within the CLV horizon
}

MONITORING_COLUMNS = ["as_of_date", "model_version", "kind", "name", "psi", "status", "needs_retraining"]

# The per-customer tables grow by a row (recommendations: ten) per customer and scored date, tens of millions a month
# at a million customers, so they have no primary key: an ART index DuckDB loads and updates on every write. Replacing
# one date's 943,600 recommendations (100k customers; a rerun, a backfill) took 11.3 s with it, 8.6 s of it the
# commit, and 0.4 s without; adding a new date's million rows 2.5-3.0 s against 0.7-1.1 s, more with each day held.
# Their keys hold by construction: each write replaces one (as_of_date[, model_version]) in one transaction, after
# checking that its rows repeat no key. `_keyless` also rebuilds a table an earlier version made with the key.
_LABEL_SNAPSHOTS_COLUMNS = """customer_id varchar not null, as_of_date date not null, as_of_at timestamptz not null,
    churn_horizon_days integer not null, days_since_last_order integer, orders_in_horizon integer not null,
    next_order_at timestamptz, is_churned boolean not null"""
_SCORES_COLUMNS = ", ".join(f"{name} {kind}" for name, kind in SCORE_COLUMNS.items())

_DDL = [
    "create schema if not exists ml",
    # one row per snapshot taken, also when dbt found no observable labels (so an empty date is not rebuilt again)
    """create table if not exists ml.churn_label_snapshot_runs (
        as_of_date date primary key, as_of_at timestamptz not null, churn_horizon_days integer not null,
        labelled_customers bigint not null)""",
    SCORING_RUNS_DDL,
    f"""create table if not exists {MONITORING} (
        as_of_date date not null, model_version varchar not null, kind varchar not null, name varchar not null,
        psi double, status varchar not null, needs_retraining boolean not null,
        primary key (as_of_date, model_version, kind, name))""",
]


def ensure_tables(warehouse: Warehouse) -> None:
    with warehouse.writer() as con:
        for statement in _DDL:
            con.execute(statement)
        _keyless(con, LABEL_SNAPSHOTS, _LABEL_SNAPSHOTS_COLUMNS)
        _keyless(con, SCORES, _SCORES_COLUMNS)


def _keyless(con: duckdb.DuckDBPyConnection, table: str, columns_sql: str) -> None:
    """Create `table` with these columns and no primary key; one made with a key is rebuilt without it, once."""
    con.execute(f"create table if not exists {table} ({columns_sql})")
    schema, name = table.split(".")
    keyed = con.execute("select count(*) from duckdb_constraints() where schema_name = ? and table_name = ? "
                        "and constraint_type = 'PRIMARY KEY'", [schema, name]).fetchone()[0]
    if not keyed:
        return
    con.execute("begin")
    try:
        con.execute(f"create table {table}__keyless ({columns_sql})")
        con.execute(f"insert into {table}__keyless select * from {table}")  # noqa: S608 constant
        con.execute(f"drop table {table}")
        con.execute(f"alter table {table}__keyless rename to {name}")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} has no timezone: give a UTC time")
    return value.astimezone(UTC)




def _require(con: duckdb.DuckDBPyConnection, qualified: str, warehouse: Warehouse, hint: str) -> None:
    if not has_table(con, qualified):
        raise ModelInputError(f"{qualified} does not exist in {warehouse.path}: {hint}")


def _columns(con: duckdb.DuckDBPyConnection, qualified: str) -> list[str]:
    schema, name = qualified.split(".")
    return [row[0] for row in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
        "order by ordinal_position", [schema, name]).fetchall()]


def feature_snapshots(warehouse: Warehouse) -> dict[date, datetime]:
    """Each as-of date held in marts.customer_features, with the exact as-of time it was built for."""
    with warehouse.reader() as con:
        if not has_table(con, FEATURES):
            return {}
        rows = con.execute(f"select as_of_date, max(as_of_at) from {FEATURES} group by as_of_date").fetchall()  # noqa: S608 constant
    return {day: _utc(at) for day, at in rows}


def label_snapshots(warehouse: Warehouse) -> dict[date, datetime]:
    """Each as-of date whose churn labels are kept in ml.churn_label_snapshots, with its exact as-of time."""
    with warehouse.reader() as con:
        if not has_table(con, "ml.churn_label_snapshot_runs"):
            return {}
        rows = con.execute("select as_of_date, as_of_at from ml.churn_label_snapshot_runs").fetchall()
    return {day: _utc(at) for day, at in rows}


def keep_labels(warehouse: Warehouse, as_of: datetime) -> int:
    """Copy marts.churn_labels, just built as of `as_of`, into ml.churn_label_snapshots (replacing that date).

    Returns the number of labelled customers (0 when the horizon after `as_of` is not loaded yet)."""
    as_of = _utc(as_of)
    ensure_tables(warehouse)
    with warehouse.writer() as con:
        _require(con, LABELS, warehouse, "build the dbt project first (python -m tailor build --as-of ...)")
        built_for = con.execute(f"select min(as_of_at), max(as_of_at), count(*), "  # noqa: S608 constant
                                f"min(churn_horizon_days), max(churn_horizon_days) from {LABELS}").fetchone()
        lowest, highest, count, _, _ = built_for
        if count and (_utc(lowest) != as_of or _utc(highest) != as_of):
            raise ModelInputError(f"{LABELS} holds labels as of {lowest}, not {as_of.isoformat()}: it was built for "
                                  "another time; build it as of the date wanted first")
        horizon = built_for[3] if count else None
        repeated = con.execute(f"select customer_id from {LABELS} group by 1 having count(*) > 1 limit 1").fetchone()  # noqa: S608 constant
        if repeated:
            raise ModelInputError(f"{LABELS} repeats customer {repeated[0]}: its labels are not one per customer")
        con.execute("begin")
        try:
            con.execute(f"delete from {LABEL_SNAPSHOTS} where as_of_date = ?", [as_of.date()])  # noqa: S608 constant
            con.execute("delete from ml.churn_label_snapshot_runs where as_of_date = ?", [as_of.date()])
            con.execute(f"insert into {LABEL_SNAPSHOTS} select {', '.join(LABEL_COLUMNS)} from {LABELS}")  # noqa: S608 constant
            con.execute("insert into ml.churn_label_snapshot_runs values (?, ?, coalesce(?, 0), ?)",
                        [as_of.date(), as_of, horizon, count])
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    return int(count)


def read_features(warehouse: Warehouse, as_of_date: date, columns: Sequence[str]) -> pd.DataFrame:
    """The features of every customer as of `as_of_date` (index customer_id, sorted), only `columns`.

    Raises ModelInputError naming what is missing: the table, the date's snapshot, or a column."""
    with warehouse.reader() as con:
        _require(con, FEATURES, warehouse, "build the dbt project first (python -m tailor build --as-of ...)")
        present = set(_columns(con, FEATURES))
        missing = [column for column in columns if column not in present]
        if missing:
            raise ModelInputError(f"{FEATURES} has no column {', '.join(missing)}: the models need "
                                  f"{', '.join(columns)}; rebuild the dbt project or fix the model")
        select = ", ".join(f'"{column}"' for column in ("customer_id", *columns))
        frame = con.execute(f"select {select} from {FEATURES} where as_of_date = ? order by customer_id",  # noqa: S608 checked names
                            [as_of_date]).df()
    for column in columns:  # DuckDB's nullable integers (pandas.NA) become floats with NaN, what the models take
        if pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(frame[column]):
            frame[column] = frame[column].astype("float64")
    if frame.empty:
        raise ModelInputError(f"{FEATURES} has no customers as of {as_of_date}: build the features for that date "
                              f"(python -m tailor build --as-of {as_of_date}T00:00:00Z)")
    return frame.set_index("customer_id")


def read_labels(warehouse: Warehouse, as_of_date: date) -> pd.DataFrame:
    """The churn labels kept for `as_of_date` (index customer_id; columns is_churned, days_since_last_order,
    orders_in_horizon, next_order_at), possibly empty."""
    with warehouse.reader() as con:
        if not has_table(con, LABEL_SNAPSHOTS):
            return pd.DataFrame(columns=["is_churned"]).rename_axis("customer_id")
        frame = con.execute(f"select customer_id, is_churned, days_since_last_order, orders_in_horizon, "  # noqa: S608 constant
                            f"next_order_at from {LABEL_SNAPSHOTS} where as_of_date = ? order by customer_id",
                            [as_of_date]).df()
    return frame.set_index("customer_id")


def read_orders(warehouse: Warehouse, until: datetime) -> pd.DataFrame:
    """Every non-cancelled order of a known customer placed at or before `until`: customer_id, ordered_at (UTC),
    net_sales_amount, from marts.orders (as of its latest build, which must be at or after `until`)."""
    until = _utc(until)
    with warehouse.reader() as con:
        _require(con, ORDERS, warehouse, "build the dbt project first (python -m tailor build --as-of ...)")
        frame = con.execute(
            f"select customer_id, ordered_at, cast(net_sales_amount as double) as net_sales_amount from {ORDERS} "  # noqa: S608 constant
            "where not is_cancelled and customer_id is not null and ordered_at <= ? order by customer_id, ordered_at",
            [until]).df()
    frame["ordered_at"] = pd.to_datetime(frame["ordered_at"], utc=True)
    return frame


def first_order_at(warehouse: Warehouse, until: datetime) -> datetime | None:
    """The first non-cancelled order at or before `until` in marts.orders (None without one)."""
    with warehouse.reader() as con:
        _require(con, ORDERS, warehouse, "build the dbt project first (python -m tailor build --as-of ...)")
        first = con.execute(f"select min(ordered_at) from {ORDERS} where not is_cancelled and customer_id is not null "  # noqa: S608 constant
                            "and ordered_at <= ?", [_utc(until)]).fetchone()[0]
    return _utc(first) if first is not None else None


def orders_built_as_of(warehouse: Warehouse) -> datetime | None:
    """The newest order time in marts.orders: orders after a training as-of are invisible to a build before it."""
    with warehouse.reader() as con:
        if not has_table(con, ORDERS):
            return None
        newest = con.execute(f"select max(ordered_at) from {ORDERS}").fetchone()[0]  # noqa: S608 constant
    return _utc(newest) if newest is not None else None


def write_scores(warehouse: Warehouse, scores: pd.DataFrame, drift: pd.DataFrame, as_of_date: date,
                 model_version: str, needs_retraining: bool) -> int:
    """Replace the scores of (as_of_date, model_version) with `scores` (one row per customer, SCORE_COLUMNS) and its
    drift rows (kind, name, psi, status) with `drift`, in one transaction. Returns the score rows written."""
    missing = [column for column in SCORE_COLUMNS if column not in scores.columns]
    if missing:
        raise ModelInputError(f"scores lack column {', '.join(missing)}")
    if scores.empty:
        raise ModelInputError(f"no scores to write for {as_of_date} ({model_version})")
    if scores["customer_id"].duplicated().any():
        raise ModelInputError(f"scores for {as_of_date} repeat customers, e.g. "
                              f"{scores.loc[scores['customer_id'].duplicated(), 'customer_id'].iloc[0]}")
    if (scores["as_of_date"] != as_of_date).any() or (scores["model_version"] != model_version).any():
        raise ModelInputError(f"scores hold other dates or model versions than {as_of_date} / {model_version}")
    frames = {
        SCORES: (scores[list(SCORE_COLUMNS)], list(SCORE_COLUMNS)),
        MONITORING: (drift.assign(as_of_date=as_of_date, model_version=model_version,
                                  needs_retraining=needs_retraining), MONITORING_COLUMNS),
    }
    ensure_tables(warehouse)
    with warehouse.writer() as con:
        con.execute("begin")
        try:
            for table, (frame, columns) in frames.items():
                con.register("rows_frame", frame[columns])
                con.execute(f"delete from {table} where as_of_date = ? and model_version = ?",  # noqa: S608 constant
                            [as_of_date, model_version])
                con.execute(f"insert into {table} select {', '.join(columns)} from rows_frame")  # noqa: S608 constant
                con.unregister("rows_frame")
            _record_scoring_run(con, SCORES, as_of_date, model_version, len(scores))
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    return len(scores)


def _record_scoring_run(con: duckdb.DuckDBPyConnection, table: str, as_of_date: date, model_version: str,
                        rows: int) -> None:
    """Inside the write's transaction: this version is now the one scored last for the date."""
    con.execute(f"delete from {SCORING_RUNS} where as_of_date = ? and table_name = ? and model_version = ?",  # noqa: S608 constant
                [as_of_date, table, model_version])
    con.execute(f"insert into {SCORING_RUNS} values (?, ?, ?, now(), ?)", [as_of_date, table, model_version, rows])  # noqa: S608 constant


def read_scores(warehouse: Warehouse, as_of_date: date, model_version: str | None = None) -> pd.DataFrame:
    """The scores of `as_of_date` (of one model version, or all), ordered by customer."""
    return _read_dated(warehouse, SCORES, list(SCORE_COLUMNS), as_of_date, model_version, "model_version, customer_id")


def _read_dated(warehouse: Warehouse, table: str, columns: list[str], as_of_date: date, model_version: str | None,
                order: str) -> pd.DataFrame:
    """The rows of an ml.* table keyed by as-of date and model version: one date, one version or all; none yet: an
    empty frame with the columns."""
    with warehouse.reader() as con:
        if not has_table(con, table):
            return pd.DataFrame(columns=columns)
        where, params = "as_of_date = ?", [as_of_date]
        if model_version is not None:
            where, params = where + " and model_version = ?", [as_of_date, model_version]
        return con.execute(f"select * from {table} where {where} order by {order}", params).df()  # noqa: S608 constant


# --- recommendations and send times ---------------------------------------------------------------------------------

INTERACTIONS = "marts.customer_product_interactions"
PRODUCTS = "marts.products"
EMAIL_EVENTS = "marts.email_events"
CUSTOMERS = "marts.customers"
RECOMMENDATIONS = "ml.customer_recommendations"
SEND_TIMES = "ml.customer_send_times"

RECOMMENDATION_COLUMNS: dict[str, str] = {
    "customer_id": "varchar not null",
    "as_of_date": "date not null",
    "model_version": "varchar not null",
    "rank": "integer not null",
    "product_id": "varchar not null",
    "score": "double",  # the model's score for its picks; null for a best-seller fill
    "reason": "varchar not null",  # bought_together, viewed, category_bestseller, bestseller
}
SEND_TIME_COLUMNS: dict[str, str] = {
    "customer_id": "varchar not null",
    "as_of_date": "date not null",
    "model_version": "varchar not null",
    "send_hour_local": "integer not null",
    "send_hour_utc": "integer not null",
    "timezone": "varchar not null",  # the IANA name the hour is read in: UTC when the customer's is missing or unknown
    "timezone_known": "boolean not null",
    "confidence": "double not null",  # posterior mass of the hours pick - 1 .. pick + 1
    "engagements": "double not null",  # opens and clicks the pick learnt from
}
_PERSONALIZATION_DDL = ["create schema if not exists ml", SCORING_RUNS_DDL]
# Each table's columns and, within one (as_of_date, model_version), its key (not a primary key: see _keyless).
_PERSONALIZATION_TABLES = {
    RECOMMENDATIONS: (RECOMMENDATION_COLUMNS, ("customer_id", "rank")),
    SEND_TIMES: (SEND_TIME_COLUMNS, ("customer_id",)),
}
_BUILD_HINT = "build the dbt project first (python -m tailor build --as-of ...)"


def read_interactions(warehouse: Warehouse, until: datetime) -> pd.DataFrame:
    """Every purchase, cart add and product view of a known customer at or before `until` (UTC): customer_id,
    product_id, kind (purchase, cart_add, view), occurred_at; from marts.customer_product_interactions as of its
    latest build (which must be at or after `until`). The three text columns are categoricals (codes numbered by
    DuckDB): tens of millions of interactions as Python strings would take gigabytes."""
    # No temporary table of the events: 25M rows of text ids held at once were 3.5 GB of the peak. Each id column is
    # numbered from its own distinct values, and the events are read as those numbers.
    events = f"(select customer_id, product_id, interaction, occurred_at from {INTERACTIONS} where occurred_at <= $1)"  # noqa: S608 constant
    numbered = {column: f"""(select {column}, cast(row_number() over (order by {column}) - 1 as {kind}) as code
                             from (select distinct {column} from {events}))"""  # noqa: S608 fixed names
                for column, kind in (("customer_id", "integer"), ("product_id", "integer"),
                                     ("interaction", "tinyint"))}
    with warehouse.reader() as con:
        _require(con, INTERACTIONS, warehouse, _BUILD_HINT)
        ids = {column: [value for (value,) in con.execute(
            f"select distinct {column} from {events} order by 1", [_utc(until)]).fetchall()]  # noqa: S608 fixed names
            for column in ("customer_id", "product_id", "interaction")}
        codes = con.execute(f"""
            select customers.code as customer, products.code as product, kinds.code as kind, events.occurred_at
            from {events} as events
            join {numbered["customer_id"]} as customers using (customer_id)
            join {numbered["product_id"]} as products using (product_id)
            join {numbered["interaction"]} as kinds using (interaction)""", [_utc(until)]).df()  # noqa: S608 fixed names
    return pd.DataFrame({
        "customer_id": pd.Categorical.from_codes(codes["customer"].to_numpy(), categories=ids["customer_id"]),
        "product_id": pd.Categorical.from_codes(codes["product"].to_numpy(), categories=ids["product_id"]),
        "kind": pd.Categorical.from_codes(codes["kind"].to_numpy(), categories=ids["interaction"]),
        "occurred_at": pd.to_datetime(codes["occurred_at"], utc=True),
    })


def read_products(warehouse: Warehouse) -> pd.DataFrame:
    """The catalogue as of marts.products' build: product_id, category, is_available, repeat_purchase_rate,
    created_at and what a list shows (product_title, product_url, image_url, price_amount)."""
    with warehouse.reader() as con:
        _require(con, PRODUCTS, warehouse, _BUILD_HINT)
        frame = con.execute(
            f"select product_id, product_category as category, is_available, "  # noqa: S608 constant
            f"cast(repeat_purchase_rate as double) as repeat_purchase_rate, created_at, product_title, product_url, "
            f"image_url, cast(price_amount as double) as price_amount from {PRODUCTS} order by product_id").df()
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["is_available"] = frame["is_available"].astype(bool)
    return frame


def read_engagements(warehouse: Warehouse, until: datetime) -> pd.DataFrame:
    """Email opens and clicks of known customers at or before `until`: customer_id, occurred_at (UTC), kind (open,
    click); from marts.email_events as of its latest build."""
    with warehouse.reader() as con:
        _require(con, EMAIL_EVENTS, warehouse, _BUILD_HINT)
        frame = con.execute(
            f"select customer_id, occurred_at, case event_type when 'opened' then 'open' else 'click' end as kind "  # noqa: S608 constant
            f"from {EMAIL_EVENTS} where event_type in ('opened', 'clicked') and customer_id is not null "
            "and occurred_at <= ?", [_utc(until)]).df()
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    return frame


def read_timezones(warehouse: Warehouse) -> pd.Series:
    """Each customer's IANA timezone name (None when unknown), index customer_id, from marts.customers."""
    with warehouse.reader() as con:
        _require(con, CUSTOMERS, warehouse, _BUILD_HINT)
        frame = con.execute(f"select customer_id, timezone from {CUSTOMERS} order by customer_id").df()  # noqa: S608 constant
    return frame.set_index("customer_id")["timezone"].astype(object).where(frame["timezone"].notna().to_numpy(), None)


def built_as_of(warehouse: Warehouse, table: str) -> datetime | None:
    """The as-of time a mart with an as_of_at column was last built for (None: missing, empty or without it)."""
    with warehouse.reader() as con:
        if not has_table(con, table) or "as_of_at" not in _columns(con, table):
            return None
        built = con.execute(f"select max(as_of_at) from {table}").fetchone()[0]  # noqa: S608 constant
    return _utc(built) if built is not None else None


def write_personalization(warehouse: Warehouse, table: str, batches: Iterable[pd.DataFrame], as_of_date: date,
                          model_version: str) -> int:
    """Replace the rows of (as_of_date, model_version) in ml.customer_recommendations or ml.customer_send_times with
    `batches` (frames of the table's columns). Each batch is checked and spooled to a Parquet file as it comes, so the
    batches are computed with the warehouse free; then one transaction swaps the rows: a failure anywhere leaves the
    old ones."""
    if table not in _PERSONALIZATION_TABLES:
        raise ValueError(f"{table} is not a personalization table")
    columns, key = _PERSONALIZATION_TABLES[table]
    with tempfile.TemporaryDirectory(prefix="tailor-ml-rows-") as spool:
        written = 0
        for number, frame in enumerate(batches):
            missing = [column for column in columns if column not in frame.columns]
            if missing:
                raise ModelInputError(f"rows for {table} lack column {', '.join(missing)}")
            if (frame["as_of_date"] != as_of_date).any() or (frame["model_version"] != model_version).any():
                raise ModelInputError(f"rows for {table} hold other dates or versions than {as_of_date} / {model_version}")
            frame[list(columns)].to_parquet(Path(spool) / f"{number:06d}.parquet", index=False)
            written += len(frame)
        rows = str(Path(spool) / "*.parquet")
        with warehouse.writer() as con:
            for statement in _PERSONALIZATION_DDL:
                con.execute(statement)
            _keyless(con, table, ", ".join(f"{name} {kind}" for name, kind in columns.items()))
            if written and (repeated := con.execute(
                    f"select {', '.join(key)} from read_parquet(?) group by all having count(*) > 1 limit 1",  # noqa: S608 constant
                    [rows]).fetchone()):
                raise ModelInputError(f"rows for {table} repeat ({', '.join(key)}) = {repeated} for {as_of_date} / "
                                      f"{model_version}")
            con.execute("begin")
            try:
                con.execute(f"delete from {table} where as_of_date = ? and model_version = ?",  # noqa: S608 constant
                            [as_of_date, model_version])
                if written:
                    con.execute(f"insert into {table} select {', '.join(columns)} from read_parquet(?)",  # noqa: S608 constant
                                [rows])
                _record_scoring_run(con, table, as_of_date, model_version, written)
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
    return written


def read_personalization(warehouse: Warehouse, table: str, as_of_date: date,
                         model_version: str | None = None) -> pd.DataFrame:
    """The rows of ml.customer_recommendations or ml.customer_send_times for `as_of_date` (one version or all)."""
    columns = _PERSONALIZATION_TABLES[table][0]
    order = "model_version, customer_id" + (", rank" if table == RECOMMENDATIONS else "")
    return _read_dated(warehouse, table, list(columns), as_of_date, model_version, order)


def read_samples(warehouse: Warehouse, as_of_date: date, recommendations_version: str, send_times_version: str,
                 customers: int = 3) -> pd.DataFrame:
    """A few customers' lists with what an email shows (title, category, price, URL) and their send hour: one who
    bought, one who only browsed, one without history, as far as the shop has them (then more of the kinds it has).
    Columns: customer_id, history (has bought, has only browsed, no history), rank, product_title, category,
    price_amount, product_url, reason, score, send_hour_local, send_hour_utc, timezone, timezone_known."""
    with warehouse.reader() as con:
        for table in (RECOMMENDATIONS, SEND_TIMES, PRODUCTS, INTERACTIONS):
            _require(con, table, warehouse, "score first (python -m ml score --as-of ...)")
        return con.execute(f"""
            with lists as (
                select * from {RECOMMENDATIONS} where as_of_date = $1 and model_version = $2
            ),
            kinds as (
                select listed.customer_id,
                    case when bool_or(interactions.interaction = 'purchase') then 1
                         when count(interactions.customer_id) > 0 then 2 else 3 end as kind
                from (select distinct customer_id from lists) as listed
                left join {INTERACTIONS} as interactions using (customer_id)
                group by listed.customer_id
            ),
            picked as (
                select customer_id, kind from (
                    select customer_id, kind, row_number() over (partition by kind order by customer_id) as nth
                    from kinds
                ) order by nth, kind limit $4
            )
            select lists.customer_id,
                case picked.kind when 1 then 'has bought' when 2 then 'has only browsed' else 'no history' end
                    as history,
                lists.rank, products.product_title, products.product_category as category,
                cast(products.price_amount as double) as price_amount, products.product_url, lists.reason,
                lists.score, send.send_hour_local, send.send_hour_utc, send.timezone, send.timezone_known
            from lists
            join picked on picked.customer_id = lists.customer_id
            left join {PRODUCTS} as products using (product_id)
            left join {SEND_TIMES} as send
                on send.customer_id = lists.customer_id and send.as_of_date = $1 and send.model_version = $3
            order by lists.customer_id, lists.rank""",  # noqa: S608 constants
            [as_of_date, recommendations_version, send_times_version, customers]).df()
