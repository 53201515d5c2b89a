"""The personalization feed (dbt_project/models/exports/, `dbt build --selector feed`) on a warehouse whose marts dbt
built from the session's simulator world and whose ml.* tables the test writes with purpose-built rows (the models'
table shapes from ml/io.py, several model versions and scoring runs per date): who is in the feed, what each row and
list holds, the served model version per date, a date rebuilt without touching the others, a feed for a date not
scored stopping before it writes anything, and the selectors. Then the A/A test of the lift readout: the simulator's
customers do not react to emails, so over 200 salts the readout's tests (tailor.lift_statistics, on groups drawn by
tailor.experiment_group) may claim lift no more often than their 5 % level allows.

dbt runs in process (dbtRunner), on a copy of the shared marts build: the project is parsed once and every
invocation reuses that manifest (vars such as as_of apply when a node is compiled, not when it is parsed), so a feed
build takes seconds rather than a reparse.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ml import io as ml_io
from tailor.transform import FEED_TAG, _release_duckdb
from tests.integration import dbt_fixtures
from tests.integration.dbt_fixtures import Built, DbtWorld

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "dbt_project"

dbt_world = dbt_fixtures.dbt_world  # the session's loaded world (built once, shared with the other dbt tests)

# the marts the feed reads (and their parents); a whole build made earlier in the session serves as well
FEED_MARTS = "+customers +customer_rfm +products +orders +email_events"

ESP_FEED_COLUMNS = [
    "as_of_date", "as_of_at", "customer_id", "shopify_customer_id", "klaviyo_profile_id", "email", "first_name",
    "greeting_name", "has_first_name", "email_consent_state", "segment_id", "segment_name", "rfm_segment",
    "churn_probability", "churn_risk_band", "expected_net_sales_12m", "expected_next_order_date", "currency_code",
    "recommendations", "recommendation_count", "send_hour_local", "send_hour_utc", "timezone", "next_best_action",
    "content_block", "greeting_block", "recommendations_block", "experiment_group", "experiment_salt",
    "scores_model_version", "recommendations_model_version", "send_times_model_version",
]
RECOMMENDATION_COLUMNS = ["as_of_date", "customer_id", "rank", "product_id", "product_title", "product_url",
                          "image_url", "price", "reason"]
FEED_LIFT_COLUMNS = [
    "as_of_date", "as_of_at", "experiment_salt", "metric", "horizon_days", "window_end_at", "is_window_complete",
    "treatment_customers", "holdout_customers", "treatment_total", "holdout_total", "treatment_value",
    "holdout_value", "difference", "standard_error", "ci_lower", "ci_upper", "z_statistic", "z_critical",
    "is_significant", "computed_as_of_at",
]
# dbt_project.yml's feed vars
SALT, HOLDOUT_SHARE, FIRST_NAME_FALLBACK = "tailor", 0.1, "there"
LIFT_HORIZON_DAYS = 14
AA_SALTS = 200
AA_MAX_REJECTION_SHARE = 0.10  # 5 % level; P(more than 20 of 200 | 5 %) < 0.4 %


class Dbt:
    """dbt in this process on one parsed manifest; each invocation on a given warehouse file, released after it.
    The manifest holds the catalog name of the file parsed with (DuckDB names it after the file): every warehouse
    file is called warehouse.duckdb."""

    def __init__(self, state: Path):
        from dbt.cli.main import dbtRunner

        self._runner = dbtRunner
        self.state = state
        with self._environment(state / "warehouse.duckdb"):  # parsing opens no database
            parsed = dbtRunner().invoke(["parse", *self._common()])
        assert parsed.success, parsed.exception
        self.manifest = parsed.result

    def _common(self) -> list[str]:
        return ["--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT), "--target-path",
                str(self.state / "target"), "--log-path", str(self.state / "logs"), "--quiet"]

    @staticmethod
    @contextmanager
    def _environment(warehouse: Path) -> Iterator[None]:
        saved = {name: os.environ.get(name) for name in ("TAILOR_DUCKDB_PATH", "TAILOR_DBT_TARGET")}
        os.environ.update(TAILOR_DUCKDB_PATH=str(warehouse), TAILOR_DBT_TARGET="duckdb")
        try:
            yield
        finally:
            _release_duckdb()  # dbt-duckdb keeps the file open (and locked) in the process otherwise
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def invoke(self, *args: str, warehouse: Path, check: bool = True):
        with self._environment(warehouse):
            result = self._runner(manifest=self.manifest).invoke([*args, *self._common()])
        if check:
            failed = [f"{r.node.name}: {r.status}: {r.message}" for r in getattr(result.result, "results", None) or []
                      if str(r.status) not in ("success", "pass")]
            assert result.success, f"dbt {' '.join(args[:3])} failed: {result.exception or failed}"
        return result


def _build_feed(shop: FeedShop, as_of: datetime, check: bool = True):
    return shop.dbt.invoke("build", "--selector", "feed", "--vars", json.dumps({"as_of": as_of.isoformat()}),
                           warehouse=shop.path, check=check)


def _bucket(salt: str, customer_id: str) -> float:
    """tailor.experiment_bucket in Python: the first 32 bits of md5(salt:customer_id) over 2^32."""
    return int(hashlib.md5(f"{salt}:{customer_id}".encode()).hexdigest()[:8], 16) / 2**32


@dataclass
class FeedShop:
    """A copy of the marts build with ml.* written by the test."""

    path: Path
    dbt: Dbt
    now: datetime
    customers: list[str]  # every customer of marts.customers
    consented: set[str]  # subscribed with a valid address: the feed's audience
    available: list[str]  # products that can be offered (three of them go in every list)
    unavailable: str  # a product that cannot: left out of the lists
    unscored: str  # a consented customer without a score: not in the feed
    without_list: str  # a consented customer without a list: the fallback block

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.path), read_only=read_only)

    def score(self, as_of_date: date, version: str, scored_at: datetime, segment_name: str,
              tables: tuple[str, ...] = (ml_io.SCORES, ml_io.RECOMMENDATIONS, ml_io.SEND_TIMES)) -> None:
        """Write `version`'s rows of the date for `tables` and record the scoring runs at `scored_at`."""
        as_of_at = datetime.combine(as_of_date, datetime.min.time(), UTC) + timedelta(hours=12)
        scored = [c for c in self.customers if c != self.unscored]
        with self.connect() as con:
            con.execute("create schema if not exists ml")
            for table, columns in ((ml_io.SCORES, ml_io.SCORE_COLUMNS),
                                   (ml_io.RECOMMENDATIONS, ml_io.RECOMMENDATION_COLUMNS),
                                   (ml_io.SEND_TIMES, ml_io.SEND_TIME_COLUMNS)):
                con.execute(f"create table if not exists {table} ("
                            + ", ".join(f"{name} {kind}" for name, kind in columns.items()) + ")")
            con.execute(ml_io.SCORING_RUNS_DDL)
            buyers = {c for (c,) in con.execute("select customer_id from marts.customers where order_count > 0")
                      .fetchall()}
            rows: dict[str, list[tuple]] = {ml_io.SCORES: [], ml_io.RECOMMENDATIONS: [], ml_io.SEND_TIMES: []}
            for number, customer in enumerate(scored):
                churn = (0.1, 0.5, 0.9)[number % 3] if customer in buyers else None
                rows[ml_io.SCORES].append((customer, as_of_date, version, as_of_at, number % 4, segment_name, churn,
                                           "test", 0.5, 1.0, 100.0 + number, as_of_date + timedelta(days=30)))
                if customer != self.without_list:
                    products = [self.available[0], self.unavailable, self.available[1], self.available[2]]
                    rows[ml_io.RECOMMENDATIONS] += [(customer, as_of_date, version, rank, product, 1.0 / rank,
                                                     "bestseller") for rank, product in enumerate(products, 1)]
                rows[ml_io.SEND_TIMES].append((customer, as_of_date, version, 9, 8, "Europe/London", True, 0.5, 3.0))
            for table in tables:
                con.execute(f"delete from {table} where as_of_date = ? and model_version = ?",
                            [as_of_date, version])
                columns = list({ml_io.SCORES: ml_io.SCORE_COLUMNS, ml_io.RECOMMENDATIONS: ml_io.RECOMMENDATION_COLUMNS,
                                ml_io.SEND_TIMES: ml_io.SEND_TIME_COLUMNS}[table])
                con.register("written", pd.DataFrame(rows[table], columns=columns))
                con.execute(f"insert into {table} select * from written")
                con.unregister("written")
                con.execute(f"delete from {ml_io.SCORING_RUNS} where as_of_date = ? and table_name = ? "
                            "and model_version = ?", [as_of_date, table, version])
                con.execute(f"insert into {ml_io.SCORING_RUNS} values (?, ?, ?, ?, ?)",
                            [as_of_date, table, version, scored_at, len(rows[table])])

    def feed(self, as_of_date: date) -> dict[str, dict]:
        with self.connect(read_only=True) as con:
            cursor = con.execute("select * from exports.esp_feed where as_of_date = ?", [as_of_date])
            columns = [d[0] for d in cursor.description]
            return {row[2]: dict(zip(columns, row, strict=True)) for row in cursor.fetchall()}


@pytest.fixture(scope="module")
def dbt(tmp_path_factory: pytest.TempPathFactory) -> Dbt:
    return Dbt(tmp_path_factory.mktemp("dbt"))


@pytest.fixture(scope="module")
def shop(dbt_world: DbtWorld, dbt: Dbt, tmp_path_factory: pytest.TempPathFactory) -> FeedShop:
    built: Built = dbt_fixtures.build_as_of(dbt_world, dbt_world.now, select=FEED_MARTS)
    root = tmp_path_factory.mktemp("feed")
    path = root / "warehouse.duckdb"  # the catalog name compiled SQL uses ("warehouse"."marts"...)
    shutil.copyfile(built.path, path)
    with duckdb.connect(str(path), read_only=True) as con:
        customers = [c for (c,) in con.execute("select customer_id from marts.customers order by 1").fetchall()]
        consented = sorted(c for (c,) in con.execute(
            "select customer_id from marts.customers where is_email_marketable and email_consent_state = 'subscribed' "
            "and regexp_full_match(email, '[A-Za-z0-9._%+''-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}')")
            .fetchall())
        available = [p for (p,) in con.execute(
            "select product_id from marts.products where is_available order by product_id limit 3").fetchall()]
        unavailable = con.execute("select min(product_id) from marts.products where not is_available").fetchone()[0]
    assert len(consented) > 100 and len(available) == 3 and unavailable is not None
    return FeedShop(path=path, dbt=dbt, now=dbt_world.now, customers=customers, consented=set(consented),
                    available=available, unavailable=unavailable, unscored=consented[0], without_list=consented[1])


# --- the feed ----------------------------------------------------------------------------------------------------


def test_feed_by_date_consent_lists_versions_and_groups(shop: FeedShop):
    day, next_day = shop.now.date(), shop.now.date() + timedelta(days=1)
    scored_at = shop.now + timedelta(hours=1)
    shop.score(day, "v1", scored_at, "segment v1")
    shop.score(day, "v2", scored_at + timedelta(minutes=5), "segment v2", tables=(ml_io.SCORES,))
    _build_feed(shop, shop.now)

    with shop.connect(read_only=True) as con:
        for table, expected in (("esp_feed", ESP_FEED_COLUMNS), ("esp_feed_recommendations", RECOMMENDATION_COLUMNS),
                                ("feed_lift", FEED_LIFT_COLUMNS)):
            columns = [name for (name,) in con.execute(
                "select column_name from information_schema.columns where table_schema = 'exports' "
                "and table_name = ? order by ordinal_position", [table]).fetchall()]
            assert columns == expected, table
        states = dict(con.execute("select customer_id, email_consent_state from marts.customers").fetchall())
        first_names = dict(con.execute("select customer_id, first_name from marts.customers").fetchall())
        lists = {}
        for customer, rank, product, title, url, image, price, reason in con.execute(
                "select customer_id, rank, product_id, product_title, product_url, image_url, price, reason "
                "from exports.esp_feed_recommendations where as_of_date = ? order by customer_id, rank",
                [day]).fetchall():
            lists.setdefault(customer, []).append({"rank": rank, "product_id": product, "title": title, "url": url,
                                                   "image_url": image, "price": float(price), "reason": reason})
    feed = shop.feed(day)

    # consent: exactly the subscribed customers with a valid address that were scored; nobody else, ever
    assert set(feed) == shop.consented - {shop.unscored}
    assert {states[c] for c in feed} == {"subscribed"}
    assert len(shop.consented) < len(shop.customers)  # the world has unsubscribed, bounced, never-subscribed people
    # the served versions: scores from v2 (scored last for the date), lists and send times from v1
    assert {(r["scores_model_version"], r["segment_name"]) for r in feed.values()} == {("v2", "segment v2")}
    assert {(r["recommendations_model_version"], r["send_times_model_version"]) for r in feed.values()} == {
        ("v1", "v1")}
    # lists: the unavailable product left out, ranks renumbered, the JSON equal to the relational rows
    for customer, row in feed.items():
        assert json.loads(row["recommendations"]) == lists.get(customer, []), customer
        assert row["recommendation_count"] == len(lists.get(customer, []))
    assert [item["product_id"] for item in lists[shop.consented.difference({shop.unscored, shop.without_list}).pop()]] \
        == shop.available
    assert (feed[shop.without_list]["recommendations"], feed[shop.without_list]["recommendations_block"]) == (
        "[]", "recommendations_bestsellers")
    assert {r["recommendations_block"] for c, r in feed.items() if c != shop.without_list} == {
        "recommendations_personal"}
    # greeting, risk band, groups (the md5 rule, reproduced here), one action each
    for customer, row in feed.items():
        name = (first_names[customer] or "").strip() or None
        assert (row["first_name"], row["greeting_name"], row["has_first_name"], row["greeting_block"]) == (
            (name, name, True, "greeting_named") if name else (None, FIRST_NAME_FALLBACK, False, "greeting_generic"))
        expected_band = ("not_a_buyer" if row["churn_probability"] is None else
                         "high" if row["churn_probability"] >= 0.7 else
                         "medium" if row["churn_probability"] >= 0.4 else "low")
        assert row["churn_risk_band"] == expected_band
        assert row["experiment_group"] == ("holdout" if _bucket(SALT, customer) < HOLDOUT_SHARE else "treatment")
        assert row["experiment_salt"] == SALT and row["next_best_action"] and row["content_block"]
    holdout = sum(r["experiment_group"] == "holdout" for r in feed.values())
    assert 0 < holdout < 0.25 * len(feed)

    # the next date: its own partition, the first date untouched
    shop.score(next_day, "v1", scored_at + timedelta(days=1), "segment day two")
    _build_feed(shop, shop.now + timedelta(days=1))
    assert shop.feed(day) == feed
    assert {r["segment_name"] for r in shop.feed(next_day).values()} == {"segment day two"}

    # a rescoring of the first date with v1 (a rollback, scored last) and a rebuild of that date: it serves v1 now,
    # the next date stays as it was
    second_day = shop.feed(next_day)
    shop.score(day, "v1", scored_at + timedelta(days=2), "segment v1 again", tables=(ml_io.SCORES,))
    _build_feed(shop, shop.now)
    assert {(r["scores_model_version"], r["segment_name"]) for r in shop.feed(day).values()} == {
        ("v1", "segment v1 again")}
    assert shop.feed(next_day) == second_day

    # the readout as of the first date: cohorts up to as_of only (the next date's feed was built for a later time)
    with shop.connect(read_only=True) as con:
        lift = con.execute("select as_of_date, metric, treatment_customers + holdout_customers, is_window_complete "
                           "from exports.feed_lift order by 1, 2").fetchall()
    assert lift == [(day, "conversion", len(feed), False), (day, "net_sales", len(feed), False)]

    # a date nobody scored: the build stops at the scoring check, before the feed models; nothing is written
    unscored_day = shop.now + timedelta(days=5)
    result = _build_feed(shop, unscored_day, check=False)
    failed = {r.node.name for r in result.result.results if str(r.status) == "fail"}
    assert not result.success and {name.split("_stg_ml")[0] for name in failed} == {"scored_for_as_of_date"}, failed
    with shop.connect(read_only=True) as con:
        assert con.execute("select count(*) from exports.esp_feed where as_of_date = ?",
                           [unscored_day.date()]).fetchone()[0] == 0
    assert shop.feed(day) and shop.feed(next_day) == second_day


def test_pipeline_builds_leave_the_feed_out_and_feed_selects_it(dbt: Dbt, tmp_path: Path):
    def listed(*selection: str) -> set[str]:
        result = dbt.invoke("ls", *selection, "--resource-type", "model", "--resource-type", "seed", "--output", "path",
                            warehouse=tmp_path / "warehouse.duckdb")
        return set(result.result)

    default, feed = listed("--exclude", FEED_TAG), listed("--selector", "feed")  # FEED_TAG: what build() excludes
    feed_paths = {path for path in default | feed
                  if path.startswith(("models/exports/", "models/staging/ml/")) or "next_best_actions" in path}
    assert default and not default & feed_paths, sorted(default & feed_paths)
    assert feed == feed_paths
    assert {"models/exports/esp_feed.sql", "models/exports/esp_feed_recommendations.sql",
            "models/exports/feed_lift.sql", "models/staging/ml/stg_ml__customer_scores.sql",
            "seeds/next_best_actions.csv"} <= feed
    assert "models/marts/core/customers.sql" in default


def test_the_hourly_selector_builds_the_hourly_models_and_tests_only_the_incremental_ones(dbt: Dbt, tmp_path: Path):
    # the hourly build (selectors.yml) builds every model but the daily ones (tag daily: the marketing and ml marts)
    # and runs the generic tests of the models that carry rows from one run to the next, but for the event tables'
    # whole-table key tests (tag daily too); the other data tests (singular ones too) and the unit tests wait for
    # the daily build; no feed
    listed = dbt.invoke("ls", "--selector", "hourly", "--output", "json", "--output-keys", "unique_id",
                        warehouse=tmp_path / "warehouse.duckdb").result
    hourly = {json.loads(line)["unique_id"] for line in listed}
    nodes = {**dbt.manifest.nodes, **dbt.manifest.unit_tests}
    pipeline = {uid: node for uid, node in nodes.items() if "feed" not in node.tags}
    daily = {uid for uid, node in pipeline.items() if "daily" in node.tags}
    incremental = {uid for uid, node in pipeline.items()
                   if getattr(node.config, "materialized", None) == "incremental" and uid not in daily}
    expected = {uid for uid, node in pipeline.items() if node.resource_type in ("model", "seed") and uid not in daily}
    generic_tests = {uid for uid, node in pipeline.items() if getattr(node, "test_metadata", None)}  # keys, not-nulls
    expected |= {uid for uid in generic_tests - daily if set(pipeline[uid].depends_on.nodes) <= incremental}
    assert hourly == expected, sorted(hourly ^ expected)
    names = {uid.split(".")[2] for uid in hourly}
    assert {"unique_order_lines_order_line_id", "not_null_email_events_event_id", "customers", "orders"} <= names
    assert not {"unique_email_events_event_id", "unique_base_klaviyo__events_event_id"} & names
    assert not {"customer_features", "customer_engagement", "customer_rfm", "churn_labels"} & names
    assert "assert_core_order_totals_reconcile_with_raw" not in names
    assert not {uid for uid in hourly if uid.startswith("unit_test.")}
    # the hourly build is whole: nothing it builds reads a daily model, which it would read as of the last daily build
    reads = {uid: set(getattr(pipeline[uid].depends_on, "nodes", ())) for uid in hourly}  # seeds read no node
    stale = {uid: sorted(parents & daily) for uid, parents in reads.items() if parents & daily}
    assert not stale, stale


# --- the A/A test ------------------------------------------------------------------------------------------------

AA_QUERY = """
with

-- two populations: the feed's audience (consented) and every customer known at the cohort's start
customers as (
    select
        'consented' as population,
        customer_id
    from {{{{ ref('customers') }}}}
    where is_email_marketable and email_consent_state = 'subscribed'

    union all

    select
        'everyone' as population,
        customer_id
    from {{{{ ref('customers') }}}}
    where customer_created_at <= cast('{start}' as timestamptz)
),

salts as (
    select 'aa-' || cast(salt_number as varchar) as salt
    from range({salts}) as salts (salt_number)
),

window_orders as (
    select
        customer_id,
        count(*) as orders,
        sum(net_sales_amount) as net_sales
    from {{{{ ref('orders') }}}}
    where not is_cancelled
        and customer_id is not null
        and ordered_at > cast('{start}' as timestamptz)
        and ordered_at <= cast('{end}' as timestamptz)
    group by customer_id
),

outcomes as (
    select
        customers.population,
        salts.salt,
        customers.customer_id,
        {{{{ tailor.experiment_group('customers.customer_id', 'salts.salt') }}}} as experiment_group,
        case when window_orders.orders > 0 then 1 else 0 end as converted,
        coalesce(window_orders.net_sales, 0) as net_sales
    from salts
    cross join customers
    left join window_orders on customers.customer_id = window_orders.customer_id
),

statistics as (
    {{{{ tailor.lift_statistics('outcomes', ['population', 'salt']) }}}}
)

select
    population,
    metric,
    count(*) as readouts,
    sum(case when is_significant then 1 else 0 end) as rejections,
    sum(case when ci_lower > 0 or ci_upper < 0 then 1 else 0 end) as intervals_without_zero,
    min(holdout_customers) as smallest_holdout,
    min(holdout_total + treatment_total) as smallest_outcome_total
from statistics
group by population, metric
order by population, metric
"""


def test_aa_readout_claims_lift_no_more_often_than_its_level(shop: FeedShop):
    # The feed's groups (tailor.experiment_group, holdout share 0.1) drawn with 200 salts over the shop's customers,
    # a cohort a month before the clock and its outcomes in the following lift_horizon_days, the readout's
    # statistics (tailor.lift_statistics), for the feed's audience and for every customer. Nobody reacts to a group
    # in the simulator, so each test is an A/A test: it may reject (and its interval exclude 0) about 5 % of the time.
    start = shop.now - timedelta(days=30)
    query = AA_QUERY.format(salts=AA_SALTS, start=start.isoformat(),
                            end=(start + timedelta(days=LIFT_HORIZON_DAYS)).isoformat())
    compiled = shop.dbt.invoke("compile", "--inline", query, warehouse=shop.path).result.results[0].node.compiled_code
    with shop.connect(read_only=True) as con:
        rows = con.execute(compiled).fetchall()
    readouts = {(population, metric): rest for population, metric, *rest in rows}
    assert set(readouts) == {(p, m) for p in ("consented", "everyone") for m in ("conversion", "net_sales")}
    for (population, metric), (count, rejections, without_zero, smallest_holdout, total) in readouts.items():
        assert count == AA_SALTS and smallest_holdout > 10 and total > 0, (population, metric, readouts)
        assert rejections / count <= AA_MAX_REJECTION_SHARE, (
            f"{metric} ({population}): the readout claimed lift in {rejections} of {count} A/A splits: {readouts}")
        assert without_zero <= rejections, (population, metric, readouts)  # an interval without 0 is significant
    print(readouts)
