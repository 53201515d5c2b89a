"""Suite files: the shipped ones parse, and a mistake in one is reported with the file and what is wrong; the
failure message of a gate names suite, expectation, table, column, count and samples."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tailor import settings
from tailor.quality.results import GateFailed, GateReport, Outcome
from tailor.quality.suite import SuiteError, available_gates, load_suite, parse_suite

AS_OF = datetime(2026, 11, 1, 6, tzinfo=UTC)


def minimal(**changes) -> dict:
    suite = {"suite": "demo", "params": {"limit": "as_of + 15 minutes", "share": 0.9},
             "assets": [{"name": "orders", "table": "raw.shopify_orders", "key": ["record_id", "updated_at"],
                         "rows": "select * from raw.shopify_orders where updated_at <= {limit}",
                         "expectations": [{"type": "expect_column_values_to_not_be_null",
                                           "kwargs": {"column": "record_id"}}]}]}
    suite.update(changes)
    return suite


def parse(document: dict) -> object:
    return parse_suite(document, Path("/suites/demo.yml"))


def test_the_shipped_raw_suite_parses():
    assert "raw" in available_gates(settings.expectations_dir())
    suite = load_suite("raw")
    assert {a.name for a in suite.assets} >= {"shopify_orders", "klaviyo_events", "extract_volume", "record_keys"}
    checks = [c for a in suite.assets for c in a.checks]
    assert all(c.severity in ("fail", "warn") for c in checks)
    # content problems are quarantined; keys, volume and loads fail
    assert {c.column for c in checks if c.quarantine} == {"updated_at", "missing_fields", "email", "lowest_price"}
    assert not any(c.quarantine for a in suite.assets if a.name in ("record_keys", "extract_volume") for c in a.checks)


def test_params_resolve_against_as_of_and_render_as_sql_literals():
    suite = parse(minimal())
    params = suite.parameters(AS_OF)
    assert params["limit"] == datetime(2026, 11, 1, 6, 15, tzinfo=UTC)
    sql = suite.render_sql(suite.assets[0].rows, params)
    assert sql.endswith("updated_at <= TIMESTAMPTZ '2026-11-01T06:15:00+00:00'")
    assert suite.render_sql("select {share}, {as_of}, '{\"a\": 1}'", params) == \
        "select 0.9, TIMESTAMPTZ '2026-11-01T06:00:00+00:00', '{\"a\": 1}'"
    assert suite.assets[0].relation == "gate_orders"


def test_shared_lists_are_spliced_in():
    shared = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "updated_at"}}]
    document = minimal()
    document["assets"][0]["expectations"] = [shared, document["assets"][0]["expectations"]]
    suite = parse(document)
    assert [c.column for c in suite.assets[0].checks] == ["updated_at", "record_id"]


@pytest.mark.parametrize(("change", "message"), [
    ({"suite": "other"}, "does not match the file name demo.yml"),
    ({"params": {"as_of": 1}}, "`as_of` is given by the gate run"),
    ({"assets": []}, "`assets` must be a non-empty list"),
    ({"extra": 1}, "unknown keys ['extra']"),
])
def test_suite_level_mistakes_are_named(change, message):
    with pytest.raises(SuiteError, match=r"/suites/demo.yml: .*" + re.escape(message)):
        parse(minimal(**change))


@pytest.mark.parametrize(("asset_change", "message"), [
    ({"name": "Bad Name"}, "`name` must be a lower-case name"),
    ({"rows": "select {nope}"}, "unknown placeholder {nope}"),
    ({"key": []}, None),  # without a key, quarantine is refused (below)
    ({"expectations": [{"type": "expect_x", "kwargs": {}, "severity": "critical"}]}, "severity 'critical'"),
    ({"expectations": [{"type": "count_rows"}]}, "must name a GX expectation"),
    ({"expectations": [{"type": "expect_x", "kwargs": {"max_value": {"$PARAMETER": "unknown"}}}]},
     "unknown $PARAMETER ['unknown']"),
])
def test_asset_level_mistakes_are_named(asset_change, message):
    document = minimal()
    document["assets"][0].update(asset_change)
    if message is None:
        document["assets"][0]["expectations"][0]["quarantine"] = True
        message = "quarantine needs the asset key ['record_id', 'updated_at']"
    with pytest.raises(SuiteError, match=re.escape(message)):
        parse(document)


def test_an_unknown_gate_lists_the_known_ones(tmp_path):
    (tmp_path / "raw.yml").write_text(yaml.safe_dump(minimal(suite="raw")))
    with pytest.raises(SuiteError, match=r"no suite for gate 'feed'.*gates in .*: raw"):
        load_suite("feed", tmp_path)


def test_a_failed_gate_names_suite_expectation_table_column_count_and_samples():
    report = GateReport(suite="raw", as_of=AS_OF, run_id="raw@2026-11-01T06:00:00Z", run_at=AS_OF,
                        docs="/data/quality/docs/index.html")
    report.outcomes = [
        Outcome(suite="raw", asset="shopify_products", table="raw.shopify_products", column="lowest_price",
                expectation="expect_column_values_to_be_between", severity="fail", notes="a negative price",
                success=False, unexpected_count=2, element_count=40, quarantine=True, quarantined_rows=2,
                quarantined_share=0.05, max_share=0.01,
                samples=["'gid://shopify/Product/1' @ 2026-11-01T05:00:00Z: -5", "'gid://shopify/Product/2' @ ...: -1"]),
        Outcome(suite="raw", asset="source_freshness", table="raw._batches", column="hours_since_update",
                expectation="expect_column_values_to_be_between", severity="warn", notes="", success=False,
                unexpected_count=1, element_count=3, samples=["'hubspot': 80"]),
        Outcome(suite="raw", asset="shopify_orders", table="raw.shopify_orders", column="email",
                expectation="expect_column_values_to_match_regex", severity="fail", notes="", success=False,
                unexpected_count=1, element_count=500, quarantine=True, quarantined_rows=1,
                quarantined_share=0.002, max_share=0.01),
    ]
    assert [o.status for o in report.outcomes] == ["failed", "warned", "quarantined"]
    message = str(GateFailed(report))
    assert message.splitlines()[0] == ("gate raw failed as of 2026-11-01T06:00:00Z: 1 failed expectation(s) "
                                       "(run raw@2026-11-01T06:00:00Z)")
    assert ("  - raw: expect_column_values_to_be_between on raw.shopify_products column lowest_price "
            "[a negative price]: 2 unexpected of 40 rows, 2 quarantined (5.00% of the rows, over the 1.00% limit); "
            "e.g. 'gid://shopify/Product/1' @ 2026-11-01T05:00:00Z: -5") in message
    assert "hours_since_update" not in message and "email" not in message  # warnings and quarantines: report only
    assert message.endswith("Data Docs: /data/quality/docs/index.html")
