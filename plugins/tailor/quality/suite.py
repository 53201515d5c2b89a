"""Gate suites: one YAML file per gate in expectations/ (<gate>.yml), read and checked here. No GX import.

A suite file (expectations/raw.yml documents the format at its top):

    suite: raw
    description: ...
    params: {future_limit: as_of + 15 minutes, alpha: 0.0001}          # {name} in SQL, {$PARAMETER: name} in kwargs
    setup: |                                                            # DuckDB SQL run first (temp tables/views)
      create temp table gate_scope as ...
    assets:
      - name: shopify_orders            # the GX asset; its rows become the temp table gate_shopify_orders
        table: raw.shopify_orders       # named in messages and results
        key: [record_id, updated_at]    # identifies a row (samples, quarantine)
        rows: select ... from raw.shopify_orders where ...   # optional; without it the asset is `table` itself
        expectations:
          - type: expect_column_values_to_be_between
            kwargs: {column: lowest_price, min_value: 0}
            severity: fail              # fail (default) | warn
            quarantine: true            # raw row checks only: quarantine failing rows instead (see tailor.quality.gate)
            notes: a negative price

A list inside `expectations` is spliced in, so YAML anchors can share lists of expectations between assets.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from tailor import settings

SEVERITIES = ("fail", "warn")
QUARANTINE_KEY = ("record_id", "updated_at")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_RELATIVE_TIME = re.compile(r"^as_of\s*([+-])\s*(\d+(?:\.\d+)?)\s*(second|minute|hour|day)s?$")
_SUITE_KEYS = {"suite", "description", "params", "setup", "assets", "shared"}
_ASSET_KEYS = {"name", "table", "key", "rows", "expectations"}
_CHECK_KEYS = {"type", "kwargs", "severity", "quarantine", "notes"}


class SuiteError(ValueError):
    """A suite file that cannot be used: the message names the file and what is wrong in it."""


@dataclass(frozen=True)
class Check:
    """One expectation of an asset, with Tailor's handling of its failure."""

    type: str
    kwargs: dict[str, Any]
    severity: str = "fail"
    quarantine: bool = False
    notes: str = ""

    @property
    def column(self) -> str | None:
        """The column (or columns, comma-joined) the expectation looks at; None for table-level ones."""
        if "column" in self.kwargs:
            return str(self.kwargs["column"])
        for name in ("column_list", "column_set"):
            if name in self.kwargs:
                return ", ".join(str(c) for c in self.kwargs[name])
        if "column_A" in self.kwargs:
            return f"{self.kwargs['column_A']}, {self.kwargs['column_B']}"
        return None

    def parameters(self) -> set[str]:
        """The {$PARAMETER: name} references in the kwargs."""
        return {value["$PARAMETER"] for value in self.kwargs.values()
                if isinstance(value, dict) and "$PARAMETER" in value}


@dataclass(frozen=True)
class Asset:
    """A set of rows to validate: a query materialized as temp table gate_<name>, or a table as it is (through temp
    view gate_<name>: GX's column reflection drops the schema of a table asset)."""

    name: str
    table: str
    checks: tuple[Check, ...]
    key: tuple[str, ...] = ()
    rows: str | None = None

    @property
    def relation(self) -> str:
        """What GX reads: the temp table of `rows`, or the temp view over the table."""
        return f"gate_{self.name}"


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    assets: tuple[Asset, ...]
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    setup: str = ""

    def parameters(self, as_of: datetime) -> dict[str, Any]:
        """as_of and the suite's params, with relative times ("as_of + 15 minutes") resolved against as_of."""
        if as_of.tzinfo is None:
            raise ValueError(f"as_of {as_of} has no timezone")
        resolved: dict[str, Any] = {"as_of": as_of.astimezone(UTC)}
        for name, value in self.params.items():
            match = _RELATIVE_TIME.match(value.strip()) if isinstance(value, str) else None
            if match:
                sign, amount, unit = match.groups()
                offset = timedelta(**{f"{unit}s": float(amount)})
                resolved[name] = resolved["as_of"] + (offset if sign == "+" else -offset)
            else:
                resolved[name] = value
        return resolved

    def render_sql(self, sql: str, parameters: dict[str, Any]) -> str:
        """Replace {name} placeholders by SQL literals (times as TIMESTAMPTZ, text quoted, numbers as they are)."""

        def literal(match: re.Match) -> str:
            name = match.group(1)
            if name not in parameters:
                raise SuiteError(f"{self.path}: unknown placeholder {{{name}}} in SQL "
                                 f"(known: {', '.join(sorted(parameters))})")
            return sql_literal(parameters[name])

        return _PLACEHOLDER.sub(literal, sql)


def sql_literal(value: Any) -> str:
    if isinstance(value, datetime):
        return f"TIMESTAMPTZ '{value.astimezone(UTC).isoformat()}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def gx_parameter(value: Any) -> Any:
    """A parameter as GX's expectation parameters take it (JSON types; times as ISO 8601)."""
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value


def suite_path(gate: str, directory: Path | None = None) -> Path:
    directory = directory or settings.expectations_dir()
    if not _NAME.match(gate):
        raise SuiteError(f"gate name {gate!r} must be lower-case letters, digits and underscores")
    path = directory / f"{gate}.yml"
    if not path.exists():
        known = sorted(p.stem for p in directory.glob("*.yml"))
        raise SuiteError(f"no suite for gate {gate!r}: {path} does not exist "
                         f"(gates in {directory}: {', '.join(known) or 'none'})")
    return path


def available_gates(directory: Path | None = None) -> list[str]:
    directory = directory or settings.expectations_dir()
    return sorted(p.stem for p in directory.glob("*.yml"))


def load_suite(gate: str, directory: Path | None = None) -> Suite:
    """Read and check expectations/<gate>.yml."""
    path = suite_path(gate, directory)
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path} is not valid YAML: {exc}") from None
    return parse_suite(document, path)


def parse_suite(document: Any, path: Path) -> Suite:
    def fail(message: str) -> SuiteError:
        return SuiteError(f"{path}: {message}")

    if not isinstance(document, dict):
        raise fail("a suite is a mapping with suite, assets and optionally description, params, setup")
    unknown = set(document) - _SUITE_KEYS
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)} (known: {sorted(_SUITE_KEYS)})")
    name = document.get("suite")
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail("`suite` must be a lower-case name")
    if name != path.stem:
        raise fail(f"`suite: {name}` does not match the file name {path.name}")
    params = document.get("params") or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) and _NAME.match(k) for k in params):
        raise fail("`params` must map lower-case names to values")
    if "as_of" in params:
        raise fail("`as_of` is given by the gate run; it cannot be a param")
    for key, value in params.items():
        if not isinstance(value, str | int | float | bool):
            raise fail(f"param {key}: a number, a string or 'as_of +/- N minutes|hours|days', got {value!r}")
    known_params = {"as_of", *params}

    raw_assets = document.get("assets")
    if not isinstance(raw_assets, list) or not raw_assets:
        raise fail("`assets` must be a non-empty list")
    assets: list[Asset] = []
    for position, raw in enumerate(raw_assets, 1):
        if not isinstance(raw, dict):
            raise fail(f"asset #{position} must be a mapping")
        asset_name = raw.get("name")
        where = f"asset {asset_name or '#' + str(position)}"
        if not isinstance(asset_name, str) or not _NAME.match(asset_name):
            raise fail(f"{where}: `name` must be a lower-case name (it names the temp table gate_<name>)")
        unknown = set(raw) - _ASSET_KEYS
        if unknown:
            raise fail(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(_ASSET_KEYS)})")
        table = raw.get("table")
        if not isinstance(table, str) or not table:
            raise fail(f"{where}: `table` (what the asset checks, e.g. raw.shopify_orders) is required")
        rows = raw.get("rows")
        if rows is not None and (not isinstance(rows, str) or not rows.strip()):
            raise fail(f"{where}: `rows` must be a query")
        key = raw.get("key") or []
        if not isinstance(key, list) or not all(isinstance(k, str) for k in key):
            raise fail(f"{where}: `key` must be a list of column names")
        checks = tuple(_parse_check(item, f"{where}, expectation #{n}", fail)
                       for n, item in enumerate(_flatten(raw.get("expectations"), where, fail), 1))
        if not checks:
            raise fail(f"{where}: no expectations")
        for n, check in enumerate(checks, 1):
            if check.quarantine and tuple(key) != QUARANTINE_KEY:
                raise fail(f"{where}, expectation #{n} ({check.type}): quarantine needs the asset key "
                           f"{list(QUARANTINE_KEY)} (raw tables only)")
            missing = check.parameters() - known_params
            if missing:
                raise fail(f"{where}, expectation #{n} ({check.type}): unknown $PARAMETER {sorted(missing)}")
        assets.append(Asset(name=asset_name, table=table, checks=checks, key=tuple(key),
                            rows=rows.strip() if rows else None))
    names = [a.name for a in assets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise fail(f"asset names must be unique: {duplicates}")
    setup = document.get("setup") or ""
    if not isinstance(setup, str):
        raise fail("`setup` must be SQL text")
    suite = Suite(name=name, path=path, assets=tuple(assets), description=str(document.get("description") or ""),
                  params=dict(params), setup=setup.strip())
    # every {placeholder} must be known: render once against a sample as-of
    sample = suite.parameters(datetime(2000, 1, 1, tzinfo=UTC))
    for sql in [suite.setup, *(a.rows for a in assets if a.rows)]:
        suite.render_sql(sql, sample)
    return suite


def _flatten(items: Any, where: str, fail) -> list:
    if not isinstance(items, list):
        raise fail(f"{where}: `expectations` must be a list")
    flat: list = []
    for item in items:
        flat.extend(_flatten(item, where, fail) if isinstance(item, list) else [item])
    return flat


def _parse_check(item: Any, where: str, fail) -> Check:
    if not isinstance(item, dict):
        raise fail(f"{where}: an expectation is a mapping with type and kwargs")
    unknown = set(item) - _CHECK_KEYS
    if unknown:
        raise fail(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(_CHECK_KEYS)})")
    kind = item.get("type")
    if not isinstance(kind, str) or not kind.startswith("expect_"):
        raise fail(f"{where}: `type` must name a GX expectation (expect_...)")
    kwargs = item.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise fail(f"{where} ({kind}): `kwargs` must be a mapping")
    severity = item.get("severity", "fail")
    if severity not in SEVERITIES:
        raise fail(f"{where} ({kind}): severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    quarantine = item.get("quarantine", False)
    if not isinstance(quarantine, bool):
        raise fail(f"{where} ({kind}): quarantine is true or false")
    # kwargs must survive the trip to GX and to the results table as JSON
    try:
        json.dumps(kwargs)
    except TypeError as exc:
        raise fail(f"{where} ({kind}): kwargs must be plain values: {exc}") from None
    return Check(type=kind, kwargs=dict(kwargs), severity=severity, quarantine=quarantine,
                 notes=str(item.get("notes") or "").strip())
