"""Great Expectations on DuckDB, computed inside DuckDB.

GX 1.x has no DuckDB support. Its SQL path runs over any SQLAlchemy dialect, and duckdb-engine provides one, but
two things break on it, and both are fixed here, in our own types, without patching GX:

1. Results. `SqlAlchemyExecutionEngine.execute_query` executes inside `with engine.connect()` and returns the cursor
   result *after* the block, to be fetched later. Leaving the block returns the connection to the pool, whose reset
   (a rollback) makes DuckDB drop the pending result: every metric comes back empty and GX fails later with an
   IndexError in `resolve_metric_bundle`. `DuckDBExecutionEngine` reads the rows while the connection is still held
   (SQLAlchemy's `Result.freeze()`) and returns a buffered result with the same interface. GX only fetches whole
   results from bounded queries (aggregates, or `LIMIT`ed samples of unexpected values), so buffering costs nothing.
2. Regular expressions. `get_dialect_regex_expression` has no DuckDB branch, so `expect_column_values_to_match_regex`
   and its kin raise NotImplementedError. The metric providers below register DuckDB's own functions for exactly
   `DuckDBExecutionEngine` (GX looks a provider up by engine class first): `regexp_matches`, which like GX's other
   backends (pandas `str.contains`, PostgreSQL `~`) finds the pattern anywhere; anchor it with ^...$ to match whole.

`DuckDBDatasource` is a GX fluent datasource type ("tailor_duckdb", registered with GX when this module is imported)
that builds that engine over a SQLAlchemy engine from `tailor.warehouse.Warehouse.sqlalchemy_engine` -- so GX's
connections are opened, like every other DuckDB connection in Tailor, by warehouse.py with its lock retry.

    context = gx.get_context(mode="ephemeral")
    source = add_warehouse_datasource(context, "warehouse", Warehouse())
    asset = source.add_query_asset("orders", "select ... from raw.shopify_orders")
    ...
    source.close()        # closes the one DuckDB connection

At exit this module takes duckdb-engine's SQL compiler for `TRY_CAST` back out of SQLAlchemy (`deregister`).
duckdb-engine registers it on SQLAlchemy's own `TryCast` class, so that class reaches duckdb-engine's module and, from
there, all of duckdb. Once GX is loaded, SQLAlchemy's classes outlive the interpreter's last garbage collection, and
duckdb's bindings (nanobind) then print some forty "leaked instance/type/function" lines at every exit of a process
that ran a gate. No connection is involved: importing GX and duckdb-engine is enough.
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa
from great_expectations.datasource.fluent import SQLDatasource
from great_expectations.execution_engine import SqlAlchemyExecutionEngine
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)

from tailor.warehouse import Warehouse

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext

DATASOURCE_TYPE = "tailor_duckdb"


def _release_duckdb_engine_from_sqlalchemy() -> None:
    """Unhook duckdb-engine's TRY_CAST compiler from SQLAlchemy, so duckdb is freed at exit (module docstring)."""
    from sqlalchemy.ext.compiler import deregister
    from sqlalchemy.sql.elements import TryCast

    deregister(TryCast)  # nothing compiles SQL once the interpreter exits


atexit.register(_release_duckdb_engine_from_sqlalchemy)


class DuckDBExecutionEngine(SqlAlchemyExecutionEngine):
    """GX's SQLAlchemy execution engine for DuckDB: results are read while their connection is still held."""

    @staticmethod
    def _buffered(result: sa.CursorResult) -> sa.Result:
        # Rows are fetched now, inside the connection; the returned Result offers fetchall/fetchmany/scalar/...
        return result.freeze()() if result.returns_rows else result

    def execute_query(self, query):
        with self.get_connection() as connection:
            return self._buffered(self._execute_query_with_recovery(connection, query))

    def execute_query_in_transaction(self, query):
        with self.get_connection() as connection:
            result = self._execute_query_with_recovery(connection, query)
            buffered = self._buffered(result)
            if connection.in_transaction():
                connection.commit()
        return buffered


# --- regular expressions in DuckDB -------------------------------------------------------------------------------
# Each class adds a DuckDB condition for a metric GX already defines; GX derives the unexpected count, values and
# index query from the condition. DuckDB's regexp_matches searches (like Python's re.search): anchor to match whole.


def _matches(column, regex: str):
    return sa.func.regexp_matches(column, sa.literal(regex))


class DuckDBColumnValuesMatchRegex(ColumnMapMetricProvider):
    condition_metric_name = "column_values.match_regex"
    condition_value_keys = ("regex",)

    @column_condition_partial(engine=DuckDBExecutionEngine)
    def _duckdb(cls, column, regex, **kwargs):
        return _matches(column, regex)


class DuckDBColumnValuesNotMatchRegex(ColumnMapMetricProvider):
    condition_metric_name = "column_values.not_match_regex"
    condition_value_keys = ("regex",)

    @column_condition_partial(engine=DuckDBExecutionEngine)
    def _duckdb(cls, column, regex, **kwargs):
        return sa.not_(_matches(column, regex))


def _regex_list(column, regex_list, match_on: str, positive: bool):
    if match_on not in ("any", "all"):
        raise ValueError("match_on must be 'any' or 'all'")
    if not regex_list:
        raise ValueError("at least one regex must be supplied in regex_list")
    conditions = [_matches(column, regex) if positive else sa.not_(_matches(column, regex)) for regex in regex_list]
    return sa.or_(*conditions) if match_on == "any" else sa.and_(*conditions)


class DuckDBColumnValuesMatchRegexList(ColumnMapMetricProvider):
    condition_metric_name = "column_values.match_regex_list"
    condition_value_keys = ("regex_list", "match_on")
    default_kwarg_values = {"match_on": "any"}

    @column_condition_partial(engine=DuckDBExecutionEngine)
    def _duckdb(cls, column, regex_list, match_on, **kwargs):
        return _regex_list(column, regex_list, match_on, positive=True)


class DuckDBColumnValuesNotMatchRegexList(ColumnMapMetricProvider):
    condition_metric_name = "column_values.not_match_regex_list"
    condition_value_keys = ("regex_list",)

    @column_condition_partial(engine=DuckDBExecutionEngine)
    def _duckdb(cls, column, regex_list, **kwargs):
        return _regex_list(column, regex_list, "all", positive=False)


# --- the datasource ------------------------------------------------------------------------------------------------


class DuckDBDatasource(SQLDatasource):
    """A GX SQL datasource over Tailor's DuckDB warehouse.

    connection_string names the file (duckdb:///<absolute path>); the SQLAlchemy engine itself comes from
    tailor.warehouse (one connection, opened with the lock retry), and GX computes through DuckDBExecutionEngine.
    """

    type: Literal["tailor_duckdb"] = "tailor_duckdb"  # type: ignore[assignment]
    read_only: bool = False

    @property
    def execution_engine_type(self) -> type[SqlAlchemyExecutionEngine]:
        return DuckDBExecutionEngine

    @property
    def warehouse_path(self) -> Path:
        url = sa.engine.make_url(str(self.connection_string))
        if url.get_backend_name() != "duckdb" or not url.database:
            raise ValueError(f"{self.name}: connection_string must be duckdb:///<path>, got {self.connection_string}")
        return Path(url.database)

    def _create_engine(self) -> sa.Engine:
        return Warehouse(self.warehouse_path).sqlalchemy_engine(read_only=self.read_only)

    def get_execution_engine(self) -> SqlAlchemyExecutionEngine:
        # One SQLAlchemy engine (so one DuckDB connection) for the datasource and its execution engine, as GX's
        # Snowflake datasource does; the default would build a second engine from the connection string.
        if self._execution_engine is None:
            self._execution_engine = DuckDBExecutionEngine(name=self.name, engine=self.get_engine(),
                                                           create_temp_table=self.create_temp_table,
                                                           data_context=self._data_context)
        return self._execution_engine

    def close(self) -> None:
        """Close the DuckDB connection (the engine reopens one if used again)."""
        if self._engine is not None:
            self._engine.dispose()


def add_warehouse_datasource(context: AbstractDataContext, name: str, warehouse: Warehouse,
                             read_only: bool = False) -> DuckDBDatasource:
    """Add a DuckDBDatasource over `warehouse` to a GX context (create_temp_table off: DuckDB needs none)."""
    return context.data_sources.add_tailor_duckdb(name=name, connection_string=f"duckdb:///{warehouse.path}",
                                                  read_only=read_only, create_temp_table=False)
