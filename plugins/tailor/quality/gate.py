"""Run a gate: validate a suite from expectations/ with GX inside DuckDB, keep the results, quarantine, Data Docs.

    report = run_gate("raw", as_of)        # raises GateFailed naming each failed `fail` expectation

One run, on one DuckDB connection (a writer, opened by tailor.warehouse with its lock retry):

1. the suite's `setup` SQL, then each asset's `rows` query, materialized as temp table gate_<asset> (JSON is parsed
   once; every expectation then scans plain columns);
2. GX validates each asset through tailor.quality.engine (metrics are computed in DuckDB; only counts and a few
   sample rows come back to Python);
3. quarantine: for a failed `quarantine: true` expectation, the failing rows (GX's own unexpected-rows query) go to
   raw._quarantine with the reason. The expectation then passes while the asset's quarantined share stays at or
   under TAILOR_QUARANTINE_MAX_SHARE; staging leaves quarantined versions out;
4. every expectation's outcome goes to quality.gate_results, in the same transaction as the quarantine;
5. GX Data Docs are updated under <data dir>/quality/docs (index.html; the path is logged).

A run is identified by suite and as-of (run_id "raw@2026-11-01T06:00:00Z"): running the same gate for the same
as-of again replaces that run's results and quarantine rows, so a retried task gives the same result.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tailor import settings
from tailor.quality.quarantine import QUARANTINE_DDL
from tailor.quality.results import SAMPLES, GateError, GateFailed, GateReport, Outcome
from tailor.quality.suite import Asset, Check, Suite, SuiteError, gx_parameter, load_suite
from tailor.times import stamp
from tailor.warehouse import Warehouse

log = logging.getLogger(__name__)

DOCS_SITE = "tailor"
KEEP_DAYS = 30  # validation results and their Data Docs pages older than this are pruned
# The Data Docs index lists the latest this many validation results (one per asset and run: the last ~11 hourly raw
# gates). GX reads every result it lists to render the index, so an unbounded index made each run slower than the
# last (after 30 days of hourly runs, ~6,500 results read per run). Older pages stay on disk until pruned, and every
# run's outcome stays in quality.gate_results.
DOCS_INDEX_RESULTS = 100

_RESULTS_DDL = """
create schema if not exists quality;
create table if not exists quality.gate_results (
    run_id varchar not null,
    suite varchar not null,
    as_of timestamptz not null,
    run_at timestamptz not null,
    asset varchar not null,
    table_name varchar not null,
    expectation varchar not null,
    column_name varchar,
    kwargs json not null,
    severity varchar not null,
    status varchar not null,          -- passed | failed | warned | quarantined
    success boolean not null,         -- GX's verdict on the rows, before quarantine
    unexpected_count bigint,
    element_count bigint,
    quarantined_rows bigint not null,
    sample_values json not null,
    observed_value varchar,
    notes varchar,
    error varchar
);
"""

def run_id_for(suite: str, as_of: datetime) -> str:
    return f"{suite}@{stamp(as_of)}"


def docs_index() -> Path:
    return settings.quality_dir() / "docs" / "index.html"


def run_gate(gate: str, as_of: datetime, warehouse: Warehouse | None = None, *,
             suites_dir: Path | None = None, raise_on_failure: bool = True, data_docs: bool = True,
             params: dict[str, Any] | None = None) -> GateReport:
    """Validate expectations/<gate>.yml as of `as_of`; return the report, or raise GateFailed if a `fail`
    expectation failed (GateError if the gate could not run at all). params: values for some of the suite's params
    that live in code elsewhere (the feed gate's list length is the recommender's), replacing the file's defaults."""
    if as_of.tzinfo is None:
        raise ValueError(f"as_of {as_of} has no timezone")
    started = time.monotonic()
    suite = load_suite(gate, suites_dir)
    warehouse = warehouse or Warehouse()
    if not warehouse.exists():
        raise GateError(f"gate {gate}: no warehouse at {warehouse.path}: nothing has been loaded yet")
    as_of = as_of.astimezone(UTC)
    report = GateReport(suite=suite.name, as_of=as_of, run_id=run_id_for(suite.name, as_of),
                        run_at=datetime.now(UTC))  # run_at: when the check ran (metadata, not a business date)
    max_share = settings.quarantine_max_share()

    # GX narrates its imports and metric resolution at INFO: keep task logs to what the gate found
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    from tailor.quality.engine import add_warehouse_datasource

    context = _context(gx)
    source = add_warehouse_datasource(context, "warehouse", warehouse)
    engine = source.get_engine()
    unknown = sorted(set(params or {}) - set(suite.params))
    if unknown:
        raise SuiteError(f"{suite.path}: no param {', '.join(unknown)} to set (params: {', '.join(sorted(suite.params))})")
    parameters = {**suite.parameters(as_of), **(params or {})}
    gx_run = RunIdentifier(run_name=report.run_id, run_time=report.run_at)
    result_ids: list = []
    try:
        with engine.connect() as con:
            _prepare(con, suite, parameters)
        for asset in suite.assets:
            definition = _define(gx, context, source, suite, asset)
            outcomes, result_id = _validate(definition, suite, asset, parameters, gx_run)
            report.outcomes.extend(outcomes)
            result_ids.append(result_id)
        with engine.begin() as con:  # one transaction: quarantined rows and the results that account for them
            _quarantine(con, suite, report, max_share)
            _write_results(con, report)
        report.validate_seconds = time.monotonic() - started
    finally:
        source.close()
    if data_docs:
        report.docs = _build_docs(context, result_ids)
    report.seconds = time.monotonic() - started
    for line in report.lines():
        log.info("%s", line)
    if raise_on_failure and not report.success:
        raise GateFailed(report)
    return report


# --- GX context ---------------------------------------------------------------------------------------------------


def _context(gx):
    """An ephemeral GX context (no project directory), except that validation results and Data Docs are files
    under <data dir>/quality, so the docs keep a history of runs."""
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    root = settings.quality_dir()
    defaults = InMemoryStoreBackendDefaults()
    stores = dict(defaults.stores)
    stores[defaults.validation_results_store_name] = {
        "class_name": "ValidationResultsStore",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(root / "gx" / "validations")},
    }
    config = DataContextConfig(
        stores=stores,
        expectations_store_name=defaults.expectations_store_name,
        validation_results_store_name=defaults.validation_results_store_name,
        checkpoint_store_name=defaults.checkpoint_store_name,
        data_docs_sites={DOCS_SITE: {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(root / "docs")},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder",
                                   "validation_results_limit": DOCS_INDEX_RESULTS},
        }},
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    from great_expectations.data_context import EphemeralDataContext, set_context

    class GateContext(EphemeralDataContext):
        """An ephemeral context that does not store its config after each change: GX serializes the whole config
        into an in-memory store every time a datasource, asset or batch definition is added (about 15 ms each, 19
        times in the raw gate), and nothing reads that copy back."""

        def _save_project_config(self) -> None:
            return None

    context = GateContext(project_config=config)
    set_context(context)  # as gx.get_context does: GX's factories (suites, validations) find the context this way
    return context


# --- 1. setup and materialized rows -------------------------------------------------------------------------------


def _prepare(con, suite: Suite, parameters: dict[str, Any]) -> None:
    con.exec_driver_sql("set enable_progress_bar = false")  # DuckDB would draw one on a terminal
    con.exec_driver_sql(_RESULTS_DDL)  # suites may compare with earlier runs' results (marts: row counts)
    con.exec_driver_sql(QUARANTINE_DDL)
    if suite.setup:
        _execute(con, suite.render_sql(suite.setup, parameters), f"gate {suite.name}: setup")
    for asset in suite.assets:
        if asset.rows:
            sql = f"create or replace temp table {asset.relation} as\n{suite.render_sql(asset.rows, parameters)}"
        else:
            sql = f"create or replace temp view {asset.relation} as select * from {asset.table}"  # noqa: S608 the suite's
        _execute(con, sql, f"gate {suite.name}: rows of asset {asset.name}")
    con.commit()


def _execute(con, sql: str, what: str) -> None:
    import sqlalchemy as sa

    try:
        con.exec_driver_sql(sql)
    except sa.exc.DBAPIError as exc:
        con.rollback()
        raise GateError(f"{what} failed: {exc.orig}") from None


# --- 2. validation ------------------------------------------------------------------------------------------------


def _define(gx, context, source, suite: Suite, asset: Asset):
    """The GX objects of one asset: a table asset over its relation, a GX suite of its checks, a validation."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.expectations.metadata_types import FailureSeverity

    schema, _, table = asset.relation.rpartition(".")
    try:
        gx_asset = source.add_table_asset(name=asset.name, table_name=table, schema_name=schema or None)
    except Exception as exc:  # GX's TestConnectionError and kin: the relation is not readable
        raise GateError(f"gate {suite.name}: asset {asset.name} cannot read {asset.relation}: {exc}") from None
    batch = gx_asset.add_batch_definition_whole_table("all rows")
    # Filled before it is added to the context: each expectation added to a stored suite is written to the store
    # on its own, and save() writes it all again.
    gx_suite = gx.ExpectationSuite(name=f"{suite.name}.{asset.name}", meta={"table": asset.table})
    for index, check in enumerate(asset.checks):
        config = ExpectationConfiguration(
            type=check.type, kwargs=check.kwargs, notes=check.notes or None,
            severity=FailureSeverity.CRITICAL if check.severity == "fail" else FailureSeverity.WARNING,
            meta={"tailor_check": index, "table": asset.table, "quarantine": check.quarantine})
        try:
            gx_suite.add_expectation(config.to_domain_obj())
        except Exception as exc:  # an unknown expectation type or kwargs GX refuses
            raise GateError(f"gate {suite.name}: asset {asset.name}, {check.type} {check.kwargs}: {exc}") from None
    gx_suite = context.suites.add(gx_suite)
    return context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite.name}.{asset.name}", data=batch, suite=gx_suite))


def _validate(definition, suite: Suite, asset: Asset, parameters: dict[str, Any], gx_run):
    """Run one asset's validation; return its outcomes and GX's result id (for the Data Docs).

    First with GX's BASIC result format (counts and a few values: the least work). Only if something failed, again
    with SUMMARY and the asset's key, for samples that name their rows and GX's query for the failing rows.
    """
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    expectation_parameters = {name: gx_parameter(value) for name, value in parameters.items()}
    result = definition.run(expectation_parameters=expectation_parameters, run_id=gx_run,
                            result_format={"result_format": "BASIC", "partial_unexpected_count": SAMPLES})
    if asset.key and not result.success:
        result = definition.run(expectation_parameters=expectation_parameters, run_id=gx_run, result_format={
            "result_format": "SUMMARY", "partial_unexpected_count": SAMPLES,
            "unexpected_index_column_names": list(asset.key), "return_unexpected_index_query": True})
    result_id = ValidationResultIdentifier(expectation_suite_identifier=ExpectationSuiteIdentifier(definition.suite.name),
                                           run_id=gx_run, batch_identifier=result.batch_id)
    by_index = {r.expectation_config.meta.get("tailor_check"): r for r in result.results}
    return [_outcome(suite, asset, check, by_index.get(index)) for index, check in enumerate(asset.checks)], result_id


def _outcome(suite: Suite, asset: Asset, check: Check, result) -> Outcome:
    outcome = Outcome(suite=suite.name, asset=asset.name, table=asset.table, expectation=check.type,
                      column=check.column, severity=check.severity, notes=check.notes, success=False,
                      quarantine=check.quarantine, kwargs=check.kwargs)
    if result is None:
        outcome.error = "GX returned no result for it"
        return outcome
    info = result.exception_info or {}
    # GX reports an exception either flat or per metric ({metric id: {raised_exception, exception_message, ...}})
    raised = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for exception in raised:
        if exception.get("raised_exception"):
            outcome.error = str(exception.get("exception_message") or "an exception in GX").splitlines()[0]
            return outcome
    outcome.success = bool(result.success)
    details = result.result or {}
    outcome.unexpected_count = details.get("unexpected_count")
    outcome.element_count = details.get("element_count")
    if "observed_value" in details:
        outcome.observed = _text(details["observed_value"])
    outcome.samples = _samples(details, asset.key, check.column)
    outcome.index_query = details.get("unexpected_index_query")
    return outcome


def _samples(details: dict, key: tuple[str, ...], column: str | None) -> list[str]:
    rows = details.get("partial_unexpected_index_list") or []
    if rows and key:
        samples = []
        for row in rows[:SAMPLES]:
            ident = " @ ".join(_text(row.get(k)) for k in key)
            value = row.get(column) if column in row and column not in key else None
            samples.append(f"{ident}: {_text(value)}" if value is not None else ident)
        return samples
    return [_text(value) for value in (details.get("partial_unexpected_list") or [])[:SAMPLES]]


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return stamp(value) if value.tzinfo else value.isoformat()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return repr(value)
    return str(value)


# --- 3. quarantine ------------------------------------------------------------------------------------------------


def _quarantine(con, suite: Suite, report: GateReport, max_share: float) -> None:
    """Send the failing rows of failed quarantine expectations to raw._quarantine; set each one's share."""
    import sqlalchemy as sa

    if not any(check.quarantine for asset in suite.assets for check in asset.checks):
        return
    con.execute(sa.text("delete from raw._quarantine where run_id = :run_id"), {"run_id": report.run_id})
    by_asset: dict[str, list[Outcome]] = {}
    for outcome in report.outcomes:
        if outcome.quarantine and outcome.error is None:
            by_asset.setdefault(outcome.asset, []).append(outcome)
    for outcomes in by_asset.values():
        failing = [o for o in outcomes if not o.success and o.unexpected_count]
        if not failing:
            continue
        for outcome in failing:
            if not outcome.index_query:
                outcome.error = "GX gave no query for the failing rows, so they could not be quarantined"
                continue
            outcome.quarantined_rows = _insert_quarantine(con, outcome, report)
        table = outcomes[0].table
        quarantined = con.execute(sa.text(
            "select count(*) from (select distinct record_id, updated_at from raw._quarantine "
            "where run_id = :run_id and table_name = :table_name)"),
            {"run_id": report.run_id, "table_name": table}).scalar_one()
        checked = max(o.element_count or 0 for o in outcomes) or 1
        for outcome in outcomes:
            outcome.quarantined_share = quarantined / checked
            outcome.max_share = max_share


def _insert_quarantine(con, outcome: Outcome, report: GateReport) -> int:
    """Insert the rows GX counted as unexpected, through GX's own query for them (key columns, then the checked
    column), so the quarantine can never disagree with the validation."""
    import sqlalchemy as sa

    select = outcome.index_query.strip().rstrip(";").strip().replace(":", "\\:")  # its literals are no bind params
    reason = f"{outcome.expectation} on {outcome.column}" + (f": {outcome.notes}" if outcome.notes else "")
    sql = ("insert into raw._quarantine select :table_name, q.k1, q.k2, :reason, cast(q.checked as varchar), "  # noqa: S608 (GX's own query)
           f":suite, :run_id, :as_of, now() from ({select}) as q(k1, k2, checked)")
    return con.execute(sa.text(sql), {"table_name": outcome.table, "reason": reason, "suite": report.suite,
                                      "run_id": report.run_id, "as_of": report.as_of}).rowcount


# --- 4. results ---------------------------------------------------------------------------------------------------


def _write_results(con, report: GateReport) -> None:
    import sqlalchemy as sa

    con.execute(sa.text("delete from quality.gate_results where run_id = :run_id"), {"run_id": report.run_id})
    rows = [{
        "run_id": report.run_id, "suite": report.suite, "as_of": report.as_of, "run_at": report.run_at,
        "asset": o.asset, "table_name": o.table, "expectation": o.expectation, "column_name": o.column,
        "kwargs": json.dumps(o.kwargs), "severity": o.severity, "status": o.status,
        "success": o.success, "unexpected_count": o.unexpected_count, "element_count": o.element_count,
        "quarantined_rows": o.quarantined_rows, "sample_values": json.dumps(o.samples), "observed_value": o.observed,
        "notes": o.notes or None, "error": o.error,
    } for o in report.outcomes]
    if rows:
        columns = list(rows[0])
        con.execute(sa.text(f"insert into quality.gate_results ({', '.join(columns)}) "  # noqa: S608 (fixed names)
                            f"values ({', '.join(':' + c for c in columns)})"), rows)


# --- 5. Data Docs -------------------------------------------------------------------------------------------------


def _build_docs(context, result_ids: list) -> str | None:
    """Render this run's validation pages and the index; prune pages and results older than KEEP_DAYS."""
    try:
        _prune(settings.quality_dir(), KEEP_DAYS)
        context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=result_ids, build_index=True)
    except Exception as exc:  # docs are a report: failing to write them must not hide the gate's verdict
        log.warning("could not build the Data Docs under %s: %s", docs_index().parent, exc)
        return None
    return str(docs_index())


def _prune(root: Path, keep_days: int) -> None:
    cutoff = time.time() - timedelta(days=keep_days).total_seconds()  # housekeeping by file age, not a business date
    for folder in (root / "gx" / "validations", root / "docs" / "validations"):
        if not folder.exists():
            continue
        for path in folder.rglob("*"):
            if path.is_file() and not path.name.startswith(".") and path.stat().st_mtime < cutoff:
                path.unlink()
