"""Bench stage `hourly`: one hour of an hourly run at the size, on the warehouse the dbt stage built.

The hour is the S world's next hour, extracted over HTTP (bench.rawdata) and, at M and L, replicated to the size as
distinct people the way raw.* was (so at L it brings 100 times the S hour's changes). Three steps, each in its own
forked process so that its peak RSS is its own:
  load   the hour's batches into raw.* (tailor.pipeline.load_batches, one transaction per batch)
  gate   the raw gate as of the hour's end (its row checks see only the hour's batches)
  build  the hourly dbt build as of the hour's end: selector `hourly` (dbt_project/selectors.yml), i.e. every model
         but the daily ones (the marketing and ml marts), tested only where rows are carried from one run to the next
         (no unit tests, no feed)
Run the dbt stage first: it leaves its warehouse built as of the world's clock, without the hour.
"""

from __future__ import annotations

from datetime import timedelta

from bench.context import Context, StageResult, in_child, slowest_nodes

# the hour's window ends a second after the hour (bench.rawdata extracts versions up to and including its end)
_HOUR_END = timedelta(seconds=1)


def hourly(ctx: Context) -> StageResult:
    from bench.rawdata import NEW_DATA_SECONDS, hour_at_size
    from tailor.lake import Lake
    from tailor.warehouse import Warehouse

    run_dir = ctx.work_dir / "dbt-run"
    warehouse = Warehouse(run_dir / "warehouse.duckdb")
    lake_dir, now = hour_at_size(ctx.work_dir.parent, ctx.size, ctx.seed)
    hour_ids = [ref.batch_id for ref in Lake.from_url(str(lake_dir)).batches()]
    if not warehouse.exists():
        raise RuntimeError(f"no warehouse at {warehouse.path}: run the dbt stage first at size {ctx.size}")
    with warehouse.reader() as con:
        loaded = con.execute("select count(*) from raw._batches where batch_id in (select unnest(?))",
                             [hour_ids]).fetchone()[0]
    if loaded:
        raise RuntimeError(f"{warehouse.path} already holds the hour's batches: run the dbt stage again first")
    hour_end = now + timedelta(seconds=NEW_DATA_SECONDS) + _HOUR_END
    steps = {"load": (_load, str(warehouse.path), str(lake_dir)),
             "gate": (_gate, str(warehouse.path), hour_end),
             "build": (_build, str(warehouse.path), hour_end, str(run_dir / "dbt"))}
    seconds, peaks, details = {}, {}, {}
    for name, (step, *args) in steps.items():
        ok, outcome, seconds[name], peaks[name] = in_child(step, *args)
        if not ok:
            raise RuntimeError(f"the step {name} failed:\n{outcome}")
        details.update(outcome)
    return StageResult(rows=details["hour_rows_loaded"], unit="raw record versions loaded", seconds=sum(seconds.values()),
                       details={
                           "seconds": "; ".join(f"{name} {value:,.1f}" for name, value in seconds.items()),
                           "peak_rss_mb": "; ".join(f"{name} {value:,.0f}" for name, value in peaks.items()),
                           **details})


def _load(path: str, lake_dir: str) -> dict:
    from tailor.lake import Lake
    from tailor.pipeline import load_batches
    from tailor.warehouse import Warehouse

    report = load_batches(Warehouse(path), Lake.from_url(lake_dir))
    return {"hour_batches": len(report.loaded), "hour_rows_loaded": report.rows_inserted}


def _gate(path: str, hour_end) -> dict:
    from tailor.quality import run_gate
    from tailor.warehouse import Warehouse

    report = run_gate("raw", hour_end, Warehouse(path), raise_on_failure=False)
    return {"gate": "passed" if report.success else f"failed: {report.summary()}"}


def _build(path: str, hour_end, state_dir: str) -> dict:
    from tailor import transform

    result = transform.build(hour_end, selector="hourly", duckdb_path=path, state_dir=state_dir, quiet=True)
    counts = {kind: sum(node.unique_id.startswith(f"{kind}.") for node in result.nodes)
              for kind in ("model", "test", "unit_test")}
    return {"build_nodes": ", ".join(f"{count} {kind}s" for kind, count in counts.items()),
            "slowest_build": slowest_nodes(result.nodes, 8)}
