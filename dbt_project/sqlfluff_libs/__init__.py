"""What SQLFluff's jinja templater needs to render our models as dbt would on DuckDB, without running dbt.

SQLFluff (see ../.sqlfluff, `library_path = sqlfluff_libs`) puts this package's public names into the Jinja context
of every model it lints. They are:
  tailor      the project's own macros (macros/**/*.sql), rendered for real; adapter.dispatch picks duckdb__/default__
  dbt         the dbt cross-database macros the project uses, in their DuckDB form (type_string, hash, concat,
              datediff, dateadd, date_trunc, safe_cast, current_timestamp, ...); an unknown one renders as a call
  var         the project's vars with their dbt_project.yml defaults
  adapter, target, modules, run_started_at, execute, log, exceptions, ...  enough of dbt's context for macros
and every project macro under its bare name too. ref, source, config, this and is_incremental come from SQLFluff's
own dbt builtins (apply_dbt_builtins). Nothing here runs dbt or opens a database: linting stays fast.
"""

from __future__ import annotations

import datetime as _datetime
import re as _re
from pathlib import Path as _Path
from typing import Any as _Any

import jinja2 as _jinja2
import yaml as _yaml

_PROJECT = _Path(__file__).resolve().parents[1]
_MACRO_NAME = _re.compile(r"{%-?\s*macro\s+(\w+)\s*\(")
_BLOCKS = _re.compile(r"{%-?\s*(test|materialization|snapshot|docs)\b.*?{%-?\s*end\1\s*-?%}", _re.S)


class _Return(Exception):
    def __init__(self, value: _Any) -> None:
        self.value = value


def _return(value: _Any) -> None:
    raise _Return(value)


class _Macro:
    """A project macro: `{{ return(x) }}` inside it gives x, as in dbt."""

    unsafe_callable = False
    alters_data = False

    def __init__(self, macro: _Any) -> None:
        self.macro = macro

    def __call__(self, *args: _Any, **kwargs: _Any) -> _Any:
        try:
            return self.macro(*args, **kwargs)
        except _Return as returned:
            return returned.value


class _Namespace:
    """`tailor.<macro>` or `dbt.<macro>`: a known macro, else `fallback(name)` (when given)."""

    unsafe_callable = False
    alters_data = False

    def __init__(self, name: str, macros: dict[str, _Any], fallback: _Any = None) -> None:
        self._name = name
        self._macros = macros
        self._fallback = fallback

    def __getattr__(self, item: str) -> _Any:
        if item.startswith("__"):
            raise AttributeError(item)
        if item in self._macros:
            return self._macros[item]
        if self._fallback is not None:
            return self._fallback(item)
        raise AttributeError(f"{self._name} has no macro {item!r}")


def _call_text(name: str):
    def render(*args: _Any, **kwargs: _Any) -> str:
        parts = [str(arg) for arg in args] + [str(value) for value in kwargs.values()]
        return f"{name}({', '.join(parts)})"

    return render


def _datepart(value: _Any) -> str:
    return str(value).strip("'\"")


# dbt's cross-database macros as dbt-duckdb renders them (near enough for linting).
_DBT: dict[str, _Any] = {
    "type_string": lambda: "varchar",
    "type_text": lambda: "varchar",
    "type_timestamp": lambda: "timestamp",
    "type_int": lambda: "integer",
    "type_bigint": lambda: "bigint",
    "type_float": lambda: "double",
    "type_numeric": lambda: "numeric(28, 6)",
    "type_boolean": lambda: "boolean",
    "hash": lambda field: f"md5(cast({field} as varchar))",
    "concat": lambda fields: " || ".join(str(field) for field in fields),
    "datediff": lambda first, second, part: f"date_diff('{_datepart(part)}', {first}, {second})",
    "dateadd": lambda part, interval, from_date: (
        f"{from_date} + ((interval '1 {_datepart(part)}') * ({interval}))"),
    "date_trunc": lambda part, date: f"date_trunc('{_datepart(part)}', {date})",
    "last_day": lambda date, part: f"last_day({date})",
    "safe_cast": lambda field, type: f"try_cast({field} as {type})",
    "cast": lambda field, type: f"cast({field} as {type})",
    "current_timestamp": lambda: "now()",
    "current_timestamp_backcompat": lambda: "now()",
    "string_literal": lambda value: f"'{value}'",
    "escape_single_quotes": lambda value: str(value).replace("'", "''"),
    "split_part": lambda string, delimiter, part: f"split_part({string}, {delimiter}, {part})",
    "position": lambda substring, string: f"position({substring} in {string})",
    "replace": lambda field, old, new: f"replace({field}, {old}, {new})",
    "right": lambda string, length: f"right({string}, {length})",
    "length": lambda expression: f"length({expression})",
    "any_value": lambda expression: f"any_value({expression})",
    "bool_or": lambda expression: f"bool_or({expression})",
    "listagg": lambda measure, delimiter="','", order_by=None, limit=None: (
        f"string_agg({measure}, {delimiter}{f' order by {order_by}' if order_by else ''})"),
    "date": lambda year, month, day: f"make_date({year}, {month}, {day})",
}


class _Adapter:
    unsafe_callable = False
    alters_data = False
    type = staticmethod(lambda: "duckdb")

    def __init__(self, macros: dict[str, _Any]) -> None:
        self._macros = macros

    def dispatch(self, name: str, macro_namespace: str | None = None) -> _Any:
        for candidate in (f"duckdb__{name}", f"default__{name}"):
            if candidate in self._macros:
                return self._macros[candidate]
        if name in _DBT:
            return _DBT[name]
        raise AttributeError(f"adapter.dispatch: no duckdb__{name} or default__{name} macro")

    def quote(self, identifier: str) -> str:
        return f'"{identifier}"'

    def get_relation(self, *args: _Any, **kwargs: _Any) -> None:
        return None

    def get_columns_in_relation(self, *args: _Any, **kwargs: _Any) -> list:
        return []


class _Exceptions:
    unsafe_callable = False
    alters_data = False

    @staticmethod
    def raise_compiler_error(message: str) -> None:
        raise _jinja2.TemplateRuntimeError(message)

    @staticmethod
    def warn(message: str) -> str:
        return ""


def _project_vars() -> dict[str, _Any]:
    try:
        project = _yaml.safe_load((_PROJECT / "dbt_project.yml").read_text()) or {}
    except OSError:
        return {}
    return dict(project.get("vars") or {})


_VARS = _project_vars()


def _var(name: str, default: _Any = None) -> _Any:
    value = _VARS.get(name)
    return default if value is None else value


class _Relation(str):
    """A relation name standing in for ref()/source()/this inside macros."""

    def __getattr__(self, item: str) -> _Any:
        if item.startswith("__"):
            raise AttributeError(item)
        return str(self)


def _late(macros: dict[str, _Any], name: str):
    """A macro looked up when called, so macros may call each other across files in any load order."""

    def call(*args: _Any, **kwargs: _Any) -> _Any:
        return macros[name](*args, **kwargs)

    return call


def _load_macros() -> dict[str, _Any]:
    env = _jinja2.Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"], keep_trailing_newline=True)
    macros: dict[str, _Any] = {}
    sources = {path: _BLOCKS.sub("", path.read_text()) for path in sorted((_PROJECT / "macros").rglob("*.sql"))}
    # Jinja binds a macro's free names when the macro is defined: every name must be in place before any file loads.
    names = {name for text in sources.values() for name in _MACRO_NAME.findall(text)}
    env.globals.update(
        tailor=_Namespace("tailor", macros), dbt=_Namespace("dbt", _DBT, _call_text), adapter=_Adapter(macros),
        var=_var, run_started_at=_datetime.datetime.now(_datetime.UTC), modules=_Modules, execute=False,
        target=_Target, log=lambda *args, **kwargs: "", exceptions=_Exceptions, is_incremental=lambda: False,
        ref=lambda *args, **kwargs: _Relation(args[-1]), source=lambda name, table: _Relation(f"{name}_{table}"),
        this=_Relation("this_model"), run_query=lambda *args, **kwargs: None, **{"return": _return},
        **{name: _late(macros, name) for name in names})
    for text in sources.values():
        try:
            template = env.from_string(text)
            context = template.new_context()
            for _ in template.root_render_func(context):  # defines the file's macros, _private ones included
                pass
        except _jinja2.TemplateError:  # a dbt-only construct here: its macros are not available to the linter
            continue
        for name, value in context.vars.items():
            if isinstance(value, _jinja2.runtime.Macro):
                macros[name] = _Macro(value)
    return macros


class _Modules:
    datetime = _datetime
    re = _re


class _Target:
    name = "duckdb"
    type = "duckdb"
    schema = "main"
    database = "warehouse"
    threads = 4


_MACROS = _load_macros()

tailor = _Namespace("tailor", _MACROS)
dbt = _Namespace("dbt", _DBT, _call_text)
adapter = _Adapter(_MACROS)
var = _var
target = _Target
modules = _Modules
run_started_at = _datetime.datetime.now(_datetime.UTC)
execute = False
exceptions = _Exceptions
globals().update({name: macro for name, macro in _MACROS.items() if not name.startswith("_")})
