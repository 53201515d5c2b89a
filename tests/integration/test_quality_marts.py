"""The marts gate (expectations/marts.yml) on a real dbt build of a simulator world: the build passes, and each
class of bad data in the marts fails the gate with a message naming the expectation, table, column and samples."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from tailor import quality
from tailor.warehouse import Warehouse
from tests.integration import dbt_fixtures
from tests.integration.dbt_fixtures import Built

dbt_world = dbt_fixtures.dbt_world
built_now = dbt_fixtures.built_now


@pytest.fixture
def marts(built_now: Built, tmp_path: Path, monkeypatch) -> Warehouse:
    """A copy of the built warehouse (each test damages its own), with gate results under tmp_path."""
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "warehouse.duckdb"
    shutil.copyfile(built_now.path, path)
    return Warehouse(path)


def _damage(warehouse: Warehouse, *statements: str) -> None:
    con = duckdb.connect(str(warehouse.path))
    try:
        for sql in statements:
            con.execute(sql)
    finally:
        con.close()


def _failure(warehouse: Warehouse, as_of) -> str:
    with pytest.raises(quality.GateFailed) as failed:
        quality.run_gate("marts", as_of, warehouse, data_docs=False)
    return str(failed.value)


def test_a_built_world_passes_and_its_results_are_kept(marts: Warehouse, built_now: Built):
    report = quality.run_gate("marts", built_now.as_of, marts)
    assert report.success, report.lines()
    assert len(report.outcomes) >= 20
    assert report.docs and Path(report.docs).exists()
    with marts.reader() as con:
        kept = con.execute("select count(*), count(*) filter (where status = 'passed') from quality.gate_results "
                           "where suite = 'marts'").fetchone()
    assert kept == (len(report.outcomes), len(report.outcomes))


@pytest.mark.parametrize(("damage", "expected"), [
    ("update marts.customers set customer_id = null where customer_id in (select customer_id from marts.customers "
     "order by 1 limit 2)",
     "expect_column_values_to_not_be_null on marts.customers column customer_id"),
    ("insert into marts.orders select * from marts.orders order by order_id limit 3",
     "expect_column_values_to_be_unique on marts.orders column order_id"),
    ("update marts.customers set email = 'not-an-email' where customer_id in (select customer_id from "
     "marts.customers where email is not null order by 1 limit 1)",
     "expect_column_values_to_match_regex on marts.customers column email"),
    ("update marts.orders set total_amount = -12.50 where order_id in (select order_id from marts.orders "
     "order by 1 limit 1)",
     "expect_column_values_to_be_between on marts.orders column total_amount"),
    ("update marts.customer_rfm set r_score = 6 where customer_id in (select customer_id from marts.customer_rfm "
     "order by 1 limit 1)",
     "expect_column_values_to_be_between on marts.customer_rfm column r_score"),
    ("update marts.customers set email_consent_state = 'maybe' where customer_id in (select customer_id from "
     "marts.customers order by 1 limit 1)",
     "expect_column_values_to_be_in_set on marts.customers column email_consent_state"),
])
def test_each_class_of_bad_marts_data_fails_with_its_message(marts: Warehouse, built_now: Built, damage, expected):
    _damage(marts, damage)
    message = _failure(marts, built_now.as_of)
    assert "gate marts failed" in message
    assert expected in message, message
    assert "unexpected" in message and "e.g." in message  # a count and sample values


def test_a_person_split_into_two_customers_fails(marts: Warehouse, built_now: Built):
    # one record of a person with several records gets a customer of its own
    _damage(marts, """
        update marts.customer_identity_crosswalk set customer_id = 'split-' || customer_id
        where (source, source_record_id) in (
            select source, source_record_id from marts.customer_identity_crosswalk
            where email_normalized in (select email_normalized from marts.customer_identity_crosswalk
                                       where email_normalized is not null
                                       group by 1 having count(*) > 1 order by 1 limit 1)
            order by source, source_record_id limit 1)
    """)
    message = _failure(marts, built_now.as_of)
    assert "a person (one normalized email) split into two or more customers" in message, message
    assert "marts.customer_identity_crosswalk column customers" in message


def test_a_mart_that_lost_most_of_its_rows_since_the_previous_gate_fails(marts: Warehouse, built_now: Built):
    assert quality.run_gate("marts", built_now.as_of - timedelta(hours=1), marts, data_docs=False).success
    _damage(marts, "delete from marts.order_lines where order_line_id in (select order_line_id from "
                   "marts.order_lines order by 1 limit (select count(*) * 9 // 10 from marts.order_lines))")
    message = _failure(marts, built_now.as_of)
    assert "column row_drop" in message and "'order_lines'" in message, message
