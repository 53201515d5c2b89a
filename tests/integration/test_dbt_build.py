"""The real `dbt build` on a simulator world extracted over HTTP and loaded into DuckDB, checked against the world's
ground truth: one customer_id per person, orders and net revenue to the cent, consent, the as-of record versions;
the same project on Postgres gives the same figures; a failing build names its failed nodes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import psycopg2
import pytest

from simulator.world import parse_time
from tailor.raw import ensure_control_tables
from tailor.transform import RUNTIME_VARS, BuildFailed, _project_fingerprint, build, models_not_as_of
from tailor.warehouse import Warehouse
from tests.integration import dbt_fixtures
from tests.integration.dbt_fixtures import Built, DbtWorld
from tests.integration.dbtkit import (
    assert_consent_matches_world,
    assert_one_customer_per_person,
    assert_orders_match_world,
    assert_staging_holds_latest_versions,
    copy_raw_to_postgres,
    differences,
    mart_tables,
    normalized,
)
from tests.postgres import drop_database, pg_settings, require_postgres

ROOT = Path(__file__).resolve().parents[2]

dbt_world = dbt_fixtures.dbt_world  # the session's loaded world (built once, shared with the other dbt tests)
built_now = dbt_fixtures.built_now  # the project built on it as of the world's clock

# --- DuckDB ------------------------------------------------------------------------------------------------------


def test_build_runs_every_model_and_test(built_now: Built):
    counts = built_now.result.counts()
    kinds = {node.unique_id.split(".", 1)[0] for node in built_now.result.nodes}
    assert {"model", "test", "seed", "unit_test"} <= kinds
    assert set(counts) <= {"success", "pass"}, counts
    with Warehouse(built_now.path).reader() as con:
        empty = [name for (name,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts'").fetchall()
            if name != "churn_labels"  # empty as of now by design: no label is observable yet
            and con.execute(f'select count(*) from marts."{name}"').fetchone()[0] == 0]
    assert not empty, f"marts built empty: {empty}"


def test_every_person_is_exactly_one_customer(dbt_world: DbtWorld, built_now: Built):
    with Warehouse(built_now.path).reader() as con:
        assert_one_customer_per_person(con, dbt_world.world, dbt_world.world.now)


def test_orders_and_net_sales_per_customer_match_the_world_to_the_cent(dbt_world: DbtWorld, built_now: Built):
    with Warehouse(built_now.path).reader() as con:
        assert_orders_match_world(con, dbt_world.world, dbt_world.world.now)


def test_consent_per_person_matches_the_world(dbt_world: DbtWorld, built_now: Built):
    with Warehouse(built_now.path).reader() as con:
        checked = assert_consent_matches_world(con, dbt_world.world, dbt_world.world.now)
    assert checked > 0.8 * dbt_world.world.profiles.n


def test_staging_holds_each_live_record_in_its_latest_version(dbt_world: DbtWorld, built_now: Built):
    with Warehouse(built_now.path).reader() as con:
        assert_staging_holds_latest_versions(con, dbt_world.world, dbt_world.world.now)


def test_a_failing_build_names_the_failed_nodes(tmp_path: Path):
    empty = tmp_path / "warehouse.duckdb"
    with Warehouse(empty).writer() as con:
        ensure_control_tables(con)  # no record tables: every model reading raw.* (the base layer) fails
    with pytest.raises(BuildFailed) as caught:
        build("2026-11-01T00:00:00Z", select="base_shopify__order_versions base_hubspot__contact_versions",
              duckdb_path=empty, state_dir=tmp_path / "dbt", quiet=True)
    message = str(caught.value)
    assert "model.tailor.base_shopify__order_versions" in message
    assert "model.tailor.base_hubspot__contact_versions" in message
    assert "shopify_orders" in message  # dbt's own message: the missing raw table
    assert {node.unique_id for node in caught.value.failures} >= {"model.tailor.base_shopify__order_versions",
                                                                 "model.tailor.base_hubspot__contact_versions"}


def test_dbt_holds_the_memory_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # the project's profile and plugin (tailor.dbt_guard) hold dbt's DuckDB to TAILOR_DUCKDB_MEMORY_LIMIT too
    from dbt.cli.main import dbtRunner

    monkeypatch.setenv("TAILOR_DUCKDB_MEMORY_LIMIT", "321MiB")
    monkeypatch.setenv("TAILOR_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    with Warehouse(tmp_path / "warehouse.duckdb").writer() as con:
        ensure_control_tables(con)
    project = str(ROOT / "dbt_project")
    shown = dbtRunner().invoke(["show", "--inline", "select current_setting('memory_limit') as memory_limit",
                                "--project-dir", project, "--profiles-dir", project, "--target", "duckdb",
                                "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"),
                                "--quiet"])
    assert shown.success, shown.exception
    assert shown.result.results[0].agate_table.rows[0][0] == "321.0 MiB"


def test_a_build_waits_for_another_process_holding_the_warehouse(dbt_world: DbtWorld, tmp_path: Path):
    path = dbt_world.copy(tmp_path / "warehouse.duckdb")
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(3)", str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = build(dbt_world.now, select="+stg_shopify__products", duckdb_path=path, state_dir=tmp_path / "dbt",
                       quiet=True, lock_timeout=120)
        assert holder.poll() is not None, "the build ran while another process held the file"
    finally:
        holder.wait(timeout=30)
    assert result.counts().get("success") == 2  # the view and the base table under it
    with Warehouse(path).reader() as con:
        assert con.execute("select count(*) from staging.stg_shopify__products").fetchone()[0] > 0


def test_cli_build_exits_1_with_the_failure_and_2_on_bad_input(tmp_path: Path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("TAILOR_")}
    env["TAILOR_DATA_DIR"] = str(tmp_path)
    with Warehouse(tmp_path / "warehouse.duckdb").writer() as con:
        con.execute("create schema raw")
    failed = subprocess.run([sys.executable, "-m", "tailor", "build", "--as-of", "2026-11-01", "--select",
                             "stg_klaviyo__events"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "build: error: dbt build on duckdb as of 2026-11-01T00:00:00+00:00 failed" in failed.stdout
    assert "model.tailor.stg_klaviyo__events" in failed.stdout
    assert (tmp_path / "dbt" / "target" / "manifest.json").exists()  # dbt's output under the data dir
    bad = subprocess.run([sys.executable, "-m", "tailor", "build", "--as-of", "yesterday"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--as-of 'yesterday' is not an ISO 8601" in bad.stderr


# --- Postgres ----------------------------------------------------------------------------------------------------


def _pg_rows(dbname: str, sql: str) -> list[tuple]:
    con = psycopg2.connect(**pg_settings(dbname))
    try:
        with con.cursor() as cur:
            cur.execute("set time zone 'UTC'")
            cur.execute(sql)
            return cur.fetchall()
    finally:
        con.close()


KEY_FIGURES = {
    "customers": "select customer_id, order_count, net_sales_amount, email_consent_state, is_email_marketable, "
                 "first_order_at, last_order_at from marts.customers",
    "orders": "select order_id, customer_id, is_cancelled, net_sales_amount, returns_amount, refunded_amount, "
              "current_total_amount from marts.orders",
    "order_lines": "select order_line_id, customer_id, net_quantity, net_line_amount from marts.order_lines",
    "customer_rfm": "select customer_id, recency_days, frequency, monetary_amount, r_score, f_score, m_score, "
                    "rfm_segment from marts.customer_rfm",
    "crosswalk": "select source, source_record_id, customer_id from marts.customer_identity_crosswalk",
}


def test_postgres_build_gives_the_duckdb_figures(dbt_world: DbtWorld, built_now: Built, tmp_path: Path):
    require_postgres()
    dbname = f"tailor_test_dbt_{os.getpid()}"
    copied = copy_raw_to_postgres(dbt_world.raw_path, dbname)
    try:
        assert copied["shopify_orders"] > 0
        result = build(built_now.as_of, target="postgres", env={"TAILOR_PG_DBNAME": dbname},
                       state_dir=tmp_path / "dbt", quiet=True)
        assert set(result.counts()) <= {"success", "pass"}
        assert len(result.nodes) == len(built_now.result.nodes)
        with Warehouse(built_now.path).reader() as con:
            marts = [name for (name,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts' order by 1").fetchall()]
            duck_counts = {name: con.execute(f'select count(*) from marts."{name}"').fetchone()[0] for name in marts}
            duck = {name: sorted((tuple(map(normalized, row)) for row in con.execute(sql).fetchall()), key=repr)
                    for name, sql in KEY_FIGURES.items()}
        pg_counts = {name: _pg_rows(dbname, f'select count(*) from marts."{name}"')[0][0] for name in marts}
        assert pg_counts == duck_counts
        for name, sql in KEY_FIGURES.items():
            pg = sorted((tuple(map(normalized, row)) for row in _pg_rows(dbname, sql)), key=repr)
            assert pg == duck[name], f"{name}: Postgres and DuckDB differ, e.g. " \
                                     f"{[row for row in pg if row not in set(duck[name])][:3]}"
    finally:
        drop_database(dbname)


def test_build_as_of_uses_the_given_time(built_now: Built):
    with Warehouse(built_now.path).reader() as con:
        (as_of,) = con.execute("select distinct as_of_at from marts.customer_rfm").fetchone()
    assert int(as_of.timestamp()) == parse_time("2026-11-01T00:00:00Z") == int(built_now.as_of.timestamp())


def test_the_parse_builds_reuse_does_not_depend_on_the_as_of_and_an_edit_parses_again(tmp_path: Path,
                                                                                        monkeypatch: pytest.MonkeyPatch):
    # transform.build parses the project once per process and builds as of any time on it (RUNTIME_VARS)
    from dbt.cli.main import dbtRunner

    monkeypatch.setenv("TAILOR_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    project = str(ROOT / "dbt_project")

    def parsed(run_vars: dict[str, str]) -> dict[str, tuple]:
        outcome = dbtRunner().invoke(["parse", "--project-dir", project, "--profiles-dir", project, "--target",
                                      "duckdb", "--target-path", str(tmp_path / "target"), "--log-path",
                                      str(tmp_path / "logs"), "--vars", json.dumps(run_vars), "--quiet"])
        assert outcome.success, outcome.exception
        manifest = outcome.result
        nodes = {unique_id: (node.config.to_dict(), node.depends_on.to_dict(), node.database, node.schema,
                             node.alias, sorted(node.tags), node.raw_code) for unique_id, node in manifest.nodes.items()}
        unit_tests = {unique_id: (test.config.to_dict(), test.depends_on.to_dict(), test.given, test.expect,
                                  test.overrides) for unique_id, test in manifest.unit_tests.items()}
        return {**nodes, **unit_tests}

    july, november = ({name: f"2026-{month}-01T00:00:00+00:00" for name in RUNTIME_VARS} for month in ("07", "11"))
    reproduced = parsed(july)
    assert reproduced == parsed(november) and len(reproduced) > 300
    assert parsed({}) == parsed({"as_of": july["as_of"]})  # without known_at: another parse, the same for every as-of

    copy = tmp_path / "project"
    shutil.copytree(ROOT / "dbt_project", copy, ignore=shutil.ignore_patterns("target", "logs"))
    monkeypatch.setenv("TAILOR_DBT_PROJECT_DIR", str(copy))
    before = _project_fingerprint()
    assert _project_fingerprint() == before
    model = copy / "models" / "marts" / "core" / "customers.sql"
    model.write_text(model.read_text() + "\n-- edited\n")
    assert _project_fingerprint() != before


def test_a_new_process_reads_the_parse_back_for_any_as_of_and_parses_an_edited_model_again(dbt_world: DbtWorld,
                                                                                          tmp_path: Path):
    # each Airflow task is a new process: it reads back the manifest an earlier build of the same warehouse left in
    # its state dir, whatever that build's as-of; a model edited since is parsed again (dbt's partial parse), and built
    project = tmp_path / "project"
    shutil.copytree(ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs"))
    data = tmp_path / "data"
    dbt_world.copy(data / "warehouse.duckdb")
    env = {**os.environ, "TAILOR_DATA_DIR": str(data), "TAILOR_DBT_PROJECT_DIR": str(project)}
    env.pop("TAILOR_DUCKDB_PATH", None)
    dbt_log = data / "dbt" / "logs" / "dbt.log"

    def build_in_a_new_process(as_of: datetime) -> tuple[int, str]:
        """One `python -m tailor build` of the products' staging model and its parents: (how many dbt invocations it
        made, a parse and the build or the build alone; its dbt log lines)."""
        before = len(dbt_log.read_text()) if dbt_log.exists() else 0
        done = subprocess.run([sys.executable, "-m", "tailor", "build", "--as-of", as_of.isoformat(), "--quiet",
                               "--select", "+stg_shopify__products", "--exclude", "resource_type:test",
                               "--exclude", "resource_type:unit_test"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        logged = dbt_log.read_text()[before:]
        return logged.count("Running with dbt="), logged

    def manifests() -> list[Path]:
        return sorted((data / "dbt" / "target").glob("parse-*/manifest-*.pickle"))

    invocations, logged = build_in_a_new_process(dbt_world.earlier_run(7))
    assert invocations == 2 and "Starting full parse" in logged
    [kept] = manifests()
    assert build_in_a_new_process(dbt_world.now)[0] == 1  # another as-of: the build alone, on the manifest read back

    model = project / "models" / "staging" / "shopify" / "stg_shopify__products.sql"
    model.write_text(model.read_text().replace("select * from final", "select *, 1 as edited from final"))
    invocations, logged = build_in_a_new_process(dbt_world.now)
    assert invocations == 2 and "1 files changed" in logged and "Starting full parse" not in logged, logged[-3000:]
    with Warehouse(data / "warehouse.duckdb").reader() as con:
        assert con.execute("select distinct edited from staging.stg_shopify__products").fetchall() == [(1,)]
    [edited] = manifests()  # the manifest of the files before the edit is gone
    assert edited != kept

    edited.write_bytes(edited.read_bytes()[:1000])  # a manifest that does not load costs a parse, never the build
    invocations, logged = build_in_a_new_process(dbt_world.now)
    assert invocations == 2 and "Starting full parse" not in logged
    assert manifests() == [edited] and edited.stat().st_size > 1000


def test_a_layer_builds_on_its_own_day_when_another_days_build_came_between(dbt_world: DbtWorld, built_now: Built,
                                                                            tmp_path: Path):
    # the daily DAG's layers are tasks of their own: with backfilled days in flight, another day's layers can take the
    # warehouse between two of this day's (it happened: a daily layer then tested core marts of another day)
    from tailor.airflow.dbt_layers import build_layer

    path = dbt_world.copy(tmp_path / "warehouse.duckdb")
    options = {"duckdb_path": path, "state_dir": tmp_path / "dbt", "quiet": True}
    other_day = dbt_world.earlier_run(7)
    day = [build_layer("sources", built_now.as_of, **options), build_layer("core", built_now.as_of, **options)]
    build_layer("sources", other_day, **options)  # another day's run between this day's core and daily layers
    build_layer("core", other_day, **options)
    warehouse = Warehouse(path)
    assert "customers" in models_not_as_of(warehouse, built_now.as_of)
    day.append(build_layer("daily", built_now.as_of, **options))
    assert models_not_as_of(warehouse, built_now.as_of) == []
    # together the layers built and tested the plain build's nodes but its unit tests (make test's, not a day's), once
    layered = [node.unique_id for result in day for node in result.nodes]
    plain = {node.unique_id for node in built_now.result.nodes}
    assert len(layered) == len(set(layered)), "a node ran in two layers"
    assert set(layered) == {uid for uid in plain if not uid.startswith("unit_test.")}
    assert any(uid.startswith("unit_test.") for uid in plain)
    # every mart as the day's one plain build made it
    expected = mart_tables(built_now.path)
    assert {"customers", "orders", "customer_features", "customer_rfm"} <= set(expected)
    problems = differences(expected, mart_tables(path))
    assert not problems, "the layers' marts differ from the day's plain build:\n" + "\n".join(problems)
