# ruff: noqa: S608 -- the SQL here is built from this file's own table names and the suite's params
"""Bench stage `gate`: the GX raw gate (tailor.quality, expectations/raw.yml) against the same checks hand-written in
DuckDB SQL, on the same warehouse, side by side.

The warehouse: raw.* at the size from bench.rawdata (the S world extracted and loaded for real; M and L replicate
it as distinct people), built once per size and seed, untimed.

Timed, alternately, after one untimed warm-up of each (imports, DuckDB's buffer cache):
  gx   run_gate("raw"): materialize the checked rows, GX validation in DuckDB, quarantine, results table, Data Docs
  sql  the same checks as plain DuckDB queries: one pass per raw table, keys, volume, freshness; counts only
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from pathlib import Path

SIZES = ("S", "M", "L")
SEED = 42  # bench.run's default

# What the raw suite checks per table, written out by hand: the JSON fields it reads (parsed once), the required ones,
# the email and lowest-price expressions.
TABLES = {
    ("shopify", "customers"): {
        "fields": '{"id": "VARCHAR", "updatedAt": "VARCHAR", "createdAt": "VARCHAR", '
                  '"defaultEmailAddress": {"emailAddress": "VARCHAR"}}',
        "missing": ["p.id is null", "try_cast(p.updatedAt as timestamptz) is null", "p.createdAt is null"],
        "email": "trim(p.defaultEmailAddress.emailAddress)",
    },
    ("shopify", "orders"): {
        "fields": '{"id": "VARCHAR", "updatedAt": "VARCHAR", "createdAt": "VARCHAR", "currencyCode": "VARCHAR", '
                  '"email": "VARCHAR", "totalPriceSet": {"shopMoney": {"amount": "VARCHAR"}}, '
                  '"lineItems": [{"originalUnitPriceSet": {"shopMoney": {"amount": "VARCHAR"}}}]}',
        "missing": ["p.id is null", "try_cast(p.updatedAt as timestamptz) is null", "p.createdAt is null",
                    "try_cast(p.totalPriceSet.shopMoney.amount as double) is null", "p.currencyCode is null",
                    "p.lineItems is null"],
        "email": "trim(p.email)",
        "price": "least(try_cast(p.totalPriceSet.shopMoney.amount as double), list_min(list_transform(p.lineItems, "
                 "lambda i: try_cast(i.originalUnitPriceSet.shopMoney.amount as double))))",
    },
    ("shopify", "products"): {
        "fields": '{"id": "VARCHAR", "updatedAt": "VARCHAR", "title": "VARCHAR", "variants": [{"price": "VARCHAR"}]}',
        "missing": ["p.id is null", "try_cast(p.updatedAt as timestamptz) is null", "p.title is null",
                    "p.variants is null"],
        "price": "list_min(list_transform(p.variants, lambda v: try_cast(v.price as double)))",
    },
    ("hubspot", "contacts"): {
        "fields": '{"id": "VARCHAR", "updatedAt": "VARCHAR", "properties": "JSON"}',
        "missing": ["p.id is null", "try_cast(p.updatedAt as timestamptz) is null",
                    "json_type(p.properties) is distinct from 'OBJECT'", "p.properties->>'$.email' is null"],
        "email": "trim(p.properties->>'$.email')",
    },
    ("klaviyo", "profiles"): {
        "fields": '{"id": "VARCHAR", "attributes": {"updated": "VARCHAR", "email": "VARCHAR", "phone_number": "VARCHAR"}}',
        "missing": ["p.id is null", "try_cast(p.attributes.updated as timestamptz) is null",
                    "p.attributes.email is null and p.attributes.phone_number is null"],
        "email": "trim(p.attributes.email)",
    },
    ("klaviyo", "events"): {
        "fields": '{"id": "VARCHAR", "attributes": {"datetime": "VARCHAR"}, "relationships": '
                  '{"profile": {"data": {"id": "VARCHAR"}}, "metric": {"data": {"id": "VARCHAR"}}}}',
        "missing": ["p.id is null", "try_cast(p.attributes.datetime as timestamptz) is null",
                    "p.relationships.profile.data.id is null", "p.relationships.metric.data.id is null"],
    },
}


def run_gate_stage(size: str, data_dir: Path, repeats: int | None = None, seed: int = SEED) -> dict:
    """Time the GX raw gate and the same checks in DuckDB SQL on a raw layer at `size` (S, M, L) kept under
    `data_dir`. Returns seconds (median of `repeats` alternating runs), their ratio, and rows per second."""
    import os

    from tailor.quality import run_gate
    from tailor.quality.suite import load_suite

    if size not in SIZES:
        raise ValueError(f"size {size!r}: choose one of {', '.join(SIZES)}")
    from bench.rawdata import warehouse_at_size
    from tailor.warehouse import Warehouse

    path, _, _, clock = warehouse_at_size(Path(data_dir), size, seed)
    as_of = clock + timedelta(seconds=1)  # the end of the loaded window (it includes versions at the clock itself)
    warehouse = Warehouse(path)
    os.environ["TAILOR_DATA_DIR"] = str(path.parent)  # the gate's results and Data Docs go there, not the user's data
    params = load_suite("raw").parameters(as_of)
    repeats = repeats or (3 if size == "S" else 2 if size == "M" else 1)

    gx_runs, gx_validate, sql_runs = [], [], []
    report = run_gate("raw", as_of, warehouse)  # warm-up: GX imports, DuckDB's buffer cache
    sql_counts = sql_checks(warehouse, params)
    for _ in range(repeats):
        started = time.perf_counter()
        report = run_gate("raw", as_of, warehouse)
        gx_runs.append(time.perf_counter() - started)
        gx_validate.append(report.validate_seconds)
        started = time.perf_counter()
        sql_counts = sql_checks(warehouse, params)
        sql_runs.append(time.perf_counter() - started)

    rows = sql_counts["rows"]
    gx_seconds, sql_seconds = statistics.median(gx_runs), statistics.median(sql_runs)
    gx_failed = sorted(f"{o.table}.{o.column}" for o in report.outcomes if o.status != "passed")
    sql_failed = sorted(name for name, count in sql_counts["unexpected"].items() if count)
    return {
        "size": size, "rows": rows, "repeats": repeats,
        "gx_seconds": round(gx_seconds, 3), "gx_validate_seconds": round(statistics.median(gx_validate), 3),
        "sql_seconds": round(sql_seconds, 3), "ratio": round(gx_seconds / sql_seconds, 2),
        "gx_rows_per_second": round(rows / gx_seconds), "sql_rows_per_second": round(rows / sql_seconds),
        "expectations": len(report.outcomes), "checks_agree": gx_failed == sql_failed,
        "gx_not_passed": gx_failed, "sql_failed": sql_failed, "warehouse": str(warehouse.path),
    }


# --- the same checks, hand-written ------------------------------------------------------------------------------


def sql_checks(warehouse, params: dict) -> dict:
    """The raw suite's checks as plain DuckDB queries; returns the scoped row count and unexpected counts."""
    from tailor.quality.suite import load_suite, sql_literal

    as_of, future = sql_literal(params["as_of"]), sql_literal(params["future_limit"])
    regex = sql_literal(params["email_regex"])
    unexpected: dict[str, int] = {}
    total = 0
    ranges = []
    with warehouse.writer() as con:
        con.execute("set enable_progress_bar = false")
        for (source, entity), spec in TABLES.items():
            table = f"raw.{source}_{entity}"
            email = spec.get("email")
            price = spec.get("price")
            missing = " or ".join(f"({condition})" for condition in spec["missing"])
            row = con.execute(f"""
                with scope as (
                    select batch_id from raw._batches
                    where source = '{source}' and entity = '{entity}' and window_end <= {as_of}
                    qualify window_end = max(window_end) over ()
                ), versions as (
                    select record_id, updated_at, is_deleted, json_transform(payload, '{spec["fields"]}') as p
                    from {table} where list_contains((select list(batch_id) from scope), batch_id)
                )
                select count(*), min(updated_at), max(updated_at),
                       count(*) filter (where record_id is null),
                       count(*) filter (where updated_at is null),
                       count(*) filter (where updated_at > {future}),
                       count(*) filter (where not is_deleted and ({missing})),
                       {f"count(*) filter (where {email} is not null and not regexp_matches({email}, {regex}))"
                        if email else "0"},
                       {f"count(*) filter (where {price} < 0)" if price else "0"}
                from versions""").fetchone()
            count, low, high, *checks = row
            total += count
            for name, value in zip(("record_id", "updated_at", "updated_at", "missing_fields", "email",
                                    "lowest_price"), checks, strict=True):
                unexpected[f"{table}.{name}"] = unexpected.get(f"{table}.{name}", 0) + value
            if low is not None:
                ranges.append((source, entity, low, high))
        keys = " union all ".join(
            f"select '{s}_{e}' as raw_table, record_id, updated_at from raw.{s}_{e} where updated_at between ? and ?"
            for s, e, _, _ in ranges)
        unexpected["raw.*.copies"] = con.execute(
            f"select count(*) from (select 1 from ({keys}) group by raw_table, record_id, updated_at having count(*) > 1)",
            [value for _, _, low, high in ranges for value in (low, high)]).fetchone()[0] if ranges else 0
        # Volume is a statistical judgement (expectations/raw.yml explains it): its SQL is the suite's own setup and
        # `extract_volume` rows, run here without GX, so the two sides count the same windows.
        suite = load_suite("raw")
        con.execute(suite.render_sql(suite.setup, params))
        (volume,) = [asset for asset in suite.assets if asset.name == "extract_volume"]
        silent, collapsed = con.execute(
            f"select count(silence), count(volume_drop) from ({suite.render_sql(volume.rows, params)})").fetchone()
        unexpected["raw._batches.silence"], unexpected["raw._batches.volume_drop"] = silent, collapsed
        stale = con.execute(f"""
            with loads as (select source, max(window_end) as loaded_until from raw._batches
                           where window_end <= {as_of} group by source)
            select count(*) filter (where loaded_until is null
                                    or epoch({as_of} - loaded_until) / 3600 > {params["max_hours_since_load"]})
            from (values ('shopify'), ('hubspot'), ('klaviyo')) as sources (source) left join loads using (source)
            """).fetchone()[0]
        unexpected["raw._batches.hours_since_load"] = stale
        latest_updates = " union all ".join(
            f"select '{source}' as source, max(updated_at) as updated_at from raw.{source}_{entity} "
            f"where updated_at <= {future}" for source, entity in TABLES)
        quiet = con.execute(
            f"select count(*) from (select source, max(updated_at) as last from ({latest_updates}) group by source) "
            f"where epoch({as_of} - last) / 3600 > {params['max_hours_since_update']}").fetchone()[0]
        unexpected["raw._batches.hours_since_update"] = quiet
    return {"rows": total, "unexpected": unexpected}
