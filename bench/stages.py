"""Benchmark stages in pipeline order. Each later issue adds its stage here."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from bench.baskets import baskets
from bench.context import Context, StageResult, mlflow_store, slowest_nodes, tracking_uri
from bench.daily import daily
from bench.hourly import hourly
from bench.serving import served
from simulator.world import World, WorldConfig


def world_config(ctx: Context) -> WorldConfig:
    return WorldConfig(seed=ctx.seed, customers=ctx.customers, products=20_000)  # the issue fixes 20k at every size


def generate(ctx: Context) -> StageResult:
    """Generate the synthetic world in memory: every record of every source, with its versions.

    Also reports the world's realism figures (computed after the timed part).
    """
    from simulator.realism import figures

    started = time.perf_counter()
    world = World.build(world_config(ctx))
    seconds = time.perf_counter() - started
    counts = {
        "customers": world.customers.n, "orders": world.orders.n, "order_lines": len(world.orders.line_id),
        "products": world.products.n, "contacts": world.contacts.n, "profiles": world.profiles.n,
        "events": world.events.n,
    }
    return StageResult(rows=sum(counts.values()), unit="records", seconds=seconds,
                       details={**counts, "realism": figures(world)})


def export(ctx: Context) -> StageResult:
    """Write the world as Parquet files (python -m simulator world)."""
    from simulator.export import write_world

    world = World.build(world_config(ctx))
    started = time.perf_counter()
    manifest = write_world(world, ctx.work_dir / "world")
    return StageResult(rows=sum(manifest["counts"].values()), unit="rows", seconds=time.perf_counter() - started,
                       details={"out": str(ctx.work_dir / "world")})


def serve(ctx: Context) -> StageResult:
    """Records/s the simulator serves, faults and rate limits off: page through each API for a fixed time."""
    import httpx

    from simulator.state import TOKENS
    from simulator.tour import API_PAGERS

    world = World.build(world_config(ctx))
    per_api, total, seconds = {}, 0, 0.0
    with served(world, rate_limits=False) as url, httpx.Client(base_url=url, timeout=120) as client:
        for name, pager in API_PAGERS.items():
            # the first request builds the server's sorted views and indexes: timed apart from the steady state
            started = time.perf_counter()
            pages_iter = pager(client, TOKENS)
            next(pages_iter)
            first = time.perf_counter() - started
            started = time.perf_counter()
            records = pages = 0
            for page in pages_iter:
                records += page
                pages += 1
                if time.perf_counter() - started > SERVE_SECONDS_PER_API:
                    break
            elapsed = time.perf_counter() - started
            per_api[name] = f"{records / elapsed:,.0f} records/s ({pages} pages; first page {first:.1f}s)"
            total += records
            seconds += elapsed
    return StageResult(rows=total, unit="records served", seconds=seconds, details=per_api)


def _shopify_points_available(extractor) -> float | None:
    """Points in the shop's bucket now, as the pacer last saw them (None before the first answer: a full bucket)."""
    bucket, restore = extractor.pacer.bucket()
    wait = extractor.pacer.seconds_until(bucket)
    return None if wait is None else bucket - wait * restore


def _limit_bound_seconds(extractor, entity: str, requests: int, points: float, available: float | None) -> float:
    """The least time the vendor's published limits allow for this many requests (or Shopify points)."""
    from tailor.sources import hubspot, klaviyo

    if extractor.source == "shopify":
        # a query is admitted only while the bucket holds its requested cost, so that much of what the bucket held
        # at the start can never be spent; the rest is spent at once, then points come back at the restore rate
        bucket, restore = extractor.pacer.bucket()
        start = bucket if available is None else available
        spendable = max(0.0, start - extractor.largest_requested_cost())
        return max(0.0, points - spendable) / restore if restore else 0.0
    if extractor.source == "hubspot":
        return requests / hubspot.SEARCH_PER_SECOND
    burst, per_minute = klaviyo.PUBLISHED_LIMITS[klaviyo.PROFILES_PATH if entity == "profiles" else klaviyo.EVENTS_PATH]
    return max(requests / burst, (requests - per_minute) / (per_minute / 60))


def extract(ctx: Context) -> StageResult:
    """Connectors against the simulator with standard-plan rate limits on: records/s per source and entity next to
    the rate the published limits allow for the same requests, their ratio (goal >= 90%), and 429s met."""
    from datetime import UTC, datetime

    from simulator.state import TOKENS
    from tailor import sources
    from tailor.sources import Credentials, Progress, Window, build_extractor

    world = World.build(world_config(ctx))
    window = Window(datetime.fromtimestamp(world.start, UTC), datetime.fromtimestamp(world.now, UTC))
    details, total, seconds = {}, 0, 0.0
    with served(world, rate_limits=True) as url:
        for source, entities in sources.entities().items():
            options = {"bulk_threshold": None} if source == "shopify" else {}  # measure paging, not bulk
            extractor = build_extractor(source, Credentials(f"bench {source}", url, TOKENS[source]), **options)
            for entity in entities:
                progress = Progress()
                requests_before = extractor.requests_sent
                points_before = getattr(extractor, "points_charged", 0.0)
                available = _shopify_points_available(extractor) if source == "shopify" else None
                started = time.perf_counter()
                records = 0
                versions = extractor.extract(entity, window, progress)
                try:
                    for _ in versions:
                        records += 1
                        if time.perf_counter() - started > EXTRACT_SECONDS_PER_ENTITY:
                            break
                finally:
                    versions.close()  # stopping early: the extractor settles its counters as it closes
                elapsed = time.perf_counter() - started
                requests = extractor.requests_sent - requests_before
                points = getattr(extractor, "points_charged", 0.0) - points_before
                bound = _limit_bound_seconds(extractor, entity, requests, points, available)
                ratio = f"{bound / elapsed:.0%}" if bound > 0 else "n/a (within the initial burst)"
                details[f"{source} {entity}"] = (f"{records / elapsed:,.0f} records/s, limits allow "
                                                 f"{records / bound if bound else float('inf'):,.0f}/s, ratio {ratio}, "
                                                 f"{requests} requests, {progress.throttled} throttled")
                total += records
                seconds += elapsed
    return StageResult(rows=total, unit="records extracted", seconds=seconds, details=details)


EXTRACT_SECONDS_PER_ENTITY = 30
SERVE_SECONDS_PER_API = 10


# --- dbt ---------------------------------------------------------------------------------------------------------


def dbt(ctx: Context) -> StageResult:
    """dbt build of the whole project (every model, seed and test) on raw.* of the size's world, as of its clock, from
    scratch (--full-refresh). The hourly stage then loads the next hour into the same warehouse and builds again."""
    from bench.rawdata import base_inputs, fresh_build_warehouse, return_to_cache
    from tailor import transform
    from tailor.warehouse import Warehouse

    path, factor, in_place = fresh_build_warehouse(ctx)
    run_dir = path.parent
    _, _, now = base_inputs(ctx.work_dir.parent, ctx.seed)
    warehouse = Warehouse(path)
    with warehouse.reader() as con:
        raw_rows = sum(con.execute(f"select count(*) from raw.{name}").fetchone()[0] for (name,) in con.execute(  # noqa: S608
            "select table_name from information_schema.tables where table_schema = 'raw' "
            "and table_name not like '\\_%' escape '\\'").fetchall())

    try:
        full = transform.build(now, duckdb_path=path, state_dir=run_dir / "dbt", full_refresh=True, quiet=True)
    except Exception:
        if in_place:  # a build writes only its own schemas, so raw.* is still the cached one: put it back for a rerun
            return_to_cache(path)
        raise
    with warehouse.reader() as con:
        marts = {name: con.execute(f'select count(*) from marts."{name}"').fetchone()[0] for (name,) in con.execute(  # noqa: S608
            "select table_name from information_schema.tables where table_schema = 'marts' order by 1").fetchall()}
    nodes = {kind: sum(node.unique_id.startswith(f"{kind}.") for node in full.nodes)
             for kind in ("model", "seed", "test", "unit_test")}
    return StageResult(rows=raw_rows, unit="raw record versions", seconds=full.seconds, details={
        "raw_from": f"the S world extracted over HTTP{f', replicated x {factor}' if factor > 1 else ''}",
        "nodes": ", ".join(f"{count} {kind}s" for kind, count in nodes.items()),
        "dbt_threads": os.environ.get("TAILOR_DBT_THREADS", "4 (the profile's default)"),
        "slowest": slowest_nodes(full.nodes, 8),
        "mart_rows": sum(marts.values()),
        "rows_per_mart": "; ".join(f"{name} {count:,}" for name, count in marts.items()),
    })


def dbt_layers(ctx: Context) -> StageResult:
    """The daily DAG's dbt build as Airflow runs it, one task per layer of tailor.airflow.dbt_layers, against one plain
    build of the same nodes (every model, seed and data test; no unit tests, as the layers) as one task: both from
    scratch (--full-refresh) on the warehouse the dbt stage built (alone: on raw.* of the size), as of the same time,
    each starting from the project's parse an earlier run left. A task is a process forked from one that imported
    Tailor's task libraries first, as Tailor's executors run them (tailor.airflow.executor), and, for Airflow's own
    executors, a fresh process. The ratio is what per-layer visibility in the Airflow UI costs."""
    import json
    import subprocess
    import sys

    from bench.rawdata import base_inputs, fresh_build_warehouse
    from tailor.airflow.dbt_layers import LAYER_NAMES, UNIT_TESTS

    path = ctx.work_dir / "dbt-run" / "warehouse.duckdb"
    if not path.exists():  # alone, or the dbt stage failed: raw.* of the size, nothing built
        path, _, _ = fresh_build_warehouse(ctx)
    run_dir = path.parent
    _, _, now = base_inputs(ctx.work_dir.parent, ctx.seed)
    where = f"duckdb_path={str(path)!r}, state_dir={str(run_dir / 'dbt')!r}"
    options = f"{now.isoformat()!r}, {where}, full_refresh=True, quiet=True"
    builds = {"plain": f"from tailor import transform; transform.build({options}, exclude=[{UNIT_TESTS!r}])",
              **{name: f"from tailor.airflow.dbt_layers import build_layer; build_layer({name!r}, {options})"
                 for name in LAYER_NAMES}}

    def fresh_process(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - started

    # as each day's tasks find it: dbt's partial parse that the day before left (tailor.transform._parsed)
    fresh_process(f"from tailor import transform; "
                  f"transform.selected_models(['resource_type:seed'], as_of={now.isoformat()!r}, {where})")
    forked = json.loads(subprocess.run([sys.executable, "-c", _FORKED_BUILDS, json.dumps(builds)], check=True,
                                       stdout=subprocess.PIPE, text=True).stdout.splitlines()[-1])
    fresh = {name: fresh_process(code) for name, code in builds.items()}
    figures = {}
    for mode, seconds in (("forked", forked), ("fresh", fresh)):
        layered = sum(seconds[name] for name in LAYER_NAMES)
        figures |= {f"{mode}_plain_seconds": round(seconds["plain"], 1),
                    f"{mode}_layers_seconds": "; ".join(f"{name} {seconds[name]:,.1f}" for name in LAYER_NAMES),
                    f"{mode}_layered_over_plain": f"{layered / seconds['plain']:.2f}"}
    return StageResult(rows=len(LAYER_NAMES), unit="layers", seconds=sum(forked[name] for name in LAYER_NAMES),
                       details={**figures, "peak_rss_mb_of_the_builds": round(
                           resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)})


# One process imports what Tailor's executors preload, then forks one child per build (the code in argv[1], by name),
# one after another, as the executor forks task processes; prints each build's seconds as JSON.
_FORKED_BUILDS = """
import json, os, sys, time
from tailor.airflow.executor import preload_task_modules
preload_task_modules()
seconds = {}
for name, code in json.loads(sys.argv[1]).items():
    started = time.perf_counter()
    child = os.fork()
    if child == 0:
        try:
            exec(code)
        except BaseException:
            import traceback
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    if status:
        sys.exit(f"the {name} build failed")
    seconds[name] = time.perf_counter() - started
print(json.dumps(seconds))
"""


# --- gate --------------------------------------------------------------------------------------------------------


def gate(ctx: Context) -> StageResult:
    """The GX raw gate against the same checks hand-written in DuckDB SQL (bench/gate_stage.py)."""
    from bench.gate_stage import run_gate_stage

    figures = run_gate_stage(ctx.size, ctx.work_dir.parent, seed=ctx.seed)
    return StageResult(rows=figures["rows"], unit="raw rows gated", seconds=figures["gx_seconds"],
                       details={key: figures[key] for key in ("gx_seconds", "sql_seconds", "ratio", "gx_rows_per_second",
                                                              "sql_rows_per_second", "expectations", "checks_agree")})


# --- train and score ----------------------------------------------------------------------------------------------


def train(ctx: Context) -> StageResult:
    """Train every customer model as of the world's clock (churn candidates validated on a later window, CLV
    back-test and fit, segments, MLflow logging and promotion) on the size's model inputs, snapshots already built
    (bench/modeldata.py): the time is the models', not dbt's. Setup, untimed: a fresh copy of the inputs and an empty
    MLflow store in the work dir, which the score stage then uses."""
    import shutil

    from bench.modeldata import made, models_at_size
    from ml import training
    from ml.registry import Registry
    from tailor.warehouse import Warehouse

    source, now = models_at_size(ctx.work_dir.parent, ctx.size, ctx.seed)
    run_dir = _models_dir(ctx)
    shutil.rmtree(run_dir, ignore_errors=True)  # the previous run's warehouse copy, MLflow store and reports
    run_dir.mkdir(parents=True)
    warehouse = Warehouse(run_dir / "warehouse.duckdb")
    shutil.copyfile(source, warehouse.path)
    os.environ["TAILOR_DATA_DIR"] = str(run_dir)  # this child's only: the training report goes to <data dir>/reports
    registry = Registry(tracking_uri(run_dir))  # artifacts beside the sqlite file (ml.registry._artifact_location)

    started = time.perf_counter()
    result = training.train(now, warehouse=warehouse, registry=registry, allow_build=False, say=_clocked_say())
    seconds = time.perf_counter() - started

    with warehouse.reader() as con:
        customers = con.execute("select count(*) from marts.customer_features where as_of_date = ?",
                                [now.date()]).fetchone()[0]
        training_examples = con.execute(
            "select coalesce(sum(labelled_customers), 0) from ml.churn_label_snapshot_runs "
            "where as_of_date in (select unnest(?))", [[t.date() for t in result.models.training_as_of]]).fetchone()[0]
    churn = result.churn_metrics
    clv = result.clv_metrics
    net_sales = clv[clv["metric"] == "net_sales"].set_index("model")["mae"] if len(clv) else None
    segments = result.segments
    inputs = made(ctx.work_dir.parent, ctx.size, ctx.seed)
    replicated = f", replicated x {inputs['factor']}" if inputs["factor"] > 1 else ""
    return StageResult(rows=customers, unit="customers", seconds=seconds, details={
        "served_churn_model": result.models.churn_model,
        **{f"churn_{row.candidate}": f"validation ROC-AUC {row.roc_auc:.3f}, PR-AUC {row.pr_auc:.3f}"
           for row in churn.itertuples()},
        "training_examples": int(training_examples),
        "validation_examples": int(churn["customers"].iloc[0]) if len(churn) else 0,
        "clv_net_sales_mae": (f"model {net_sales['bgnbd_gamma_gamma']:,.2f} vs last period "
                              f"{net_sales['last_period']:,.2f}") if net_sales is not None else "no back-test",
        "segments": f"{len(segments)} (k {result.models.segments.chosen_k})",
        "segment_sizes": "; ".join(f"{row.segment_name} {row.customers:,}" for row in segments.itertuples()),
        "promoted": result.promoted,
        "reason": result.reason,
        "model_version": result.candidate.model_version,
        "notes": "; ".join(result.notes) or "none",
        "inputs": f"the S world built with dbt{replicated} (made once in {inputs['seconds']:,.0f} s, untimed)",
        "omp_threads": _omp_threads(),
    })


def score(ctx: Context) -> StageResult:
    """Score every customer as of the world's clock with the model the train stage promoted in this work dir (into
    ml.customer_scores, drift into ml.model_monitoring)."""
    from bench.modeldata import models_at_size
    from ml import training
    from ml.registry import Registry
    from tailor.warehouse import Warehouse

    run_dir = _models_dir(ctx)
    warehouse = Warehouse(run_dir / "warehouse.duckdb")
    if not warehouse.exists() or not mlflow_store(run_dir).exists():
        raise RuntimeError(f"no trained models in {run_dir}: the score stage scores with the train stage's, so run "
                           f"train first at size {ctx.size} (e.g. --stages train,score)")
    _, now = models_at_size(ctx.work_dir.parent, ctx.size, ctx.seed)  # made already: the train stage made them
    os.environ["TAILOR_DATA_DIR"] = str(run_dir)
    registry = Registry(tracking_uri(run_dir))

    started = time.perf_counter()
    result = training.score(now, warehouse=warehouse, registry=registry, allow_build=False, say=_clocked_say())
    seconds = time.perf_counter() - started

    drift = result.drift
    worst = drift.iloc[0] if len(drift) else None
    return StageResult(rows=result.customers, unit="customers scored", seconds=seconds, details={
        "model_version": result.model_version,
        "drift_worst": f"{worst['kind']} {worst['name']} PSI {worst['psi']:.3f} ({worst['status']})" if worst is not None
        else "none",
        "drift_warn_fail": f"{(drift['status'] == 'warn').sum()} warn, {(drift['status'] == 'fail').sum()} fail",
        "needs_retraining": result.needs_retraining,
        "omp_threads": _omp_threads(),
    })


def train_personalization(ctx: Context) -> StageResult:
    """Validate the recommenders (item-item BM25 and cosine, implicit ALS, popularity) and the send-time model on the
    later window, refit them as of the world's clock, log and promote: on the train stage's warehouse copy and MLflow
    store (the same size's inputs; snapshots already built)."""
    from ml import personalization

    run_dir, warehouse, now = _trained_dir(ctx)
    started = time.perf_counter()
    result = personalization.train(now, warehouse=warehouse, allow_build=False, say=_clocked_say(),
                                   **_personalization_registries(run_dir))
    seconds = time.perf_counter() - started
    metrics = result.rec_metrics
    return StageResult(rows=result.customers, unit="customers", seconds=seconds, details={
        "seconds": "; ".join(f"{part} {value:,.1f}" for part, value in result.seconds.items()),
        "served_recommender": result.recipe.candidate,
        **{f"rec_{row.candidate}": (f"HitRate@10 {row.hit_rate:.3f}, Recall@10 {row.recall:.3f}, NDCG@10 "
                                    f"{row.ndcg:.3f}, coverage {row.coverage:.3f}")
           for row in metrics.itertuples()},
        "rec_customers_evaluated": int(metrics["customers"].iloc[0]) if len(metrics) else 0,
        **{f"send_{row.method}": f"within 1 h {row.hit_share:.3f}" for row in result.send_metrics.itertuples()},
        "interactions": f"{result.interactions:,}", "products": f"{result.products:,}",
        "engagements": f"{result.engagements:,}",
        "promoted": f"recommendations {result.recommendations_promoted}, send times {result.send_times_promoted}",
        "omp_threads": _omp_threads(),
    })


def score_personalization(ctx: Context) -> StageResult:
    """Lists and send hours for every customer as of the world's clock with the versions train_personalization
    promoted (into ml.customer_recommendations and ml.customer_send_times)."""
    from ml import personalization

    run_dir, warehouse, now = _trained_dir(ctx)
    started = time.perf_counter()
    result = personalization.score(now, warehouse=warehouse, allow_build=False, say=_clocked_say(),
                                   **_personalization_registries(run_dir))
    seconds = time.perf_counter() - started
    return StageResult(rows=result.customers, unit="customers", seconds=seconds, details={
        "seconds": "; ".join(f"{part} {value:,.1f}" for part, value in result.seconds.items()),
        "recommendation_rows": f"{result.recommendation_rows:,}", "send_time_rows": f"{result.send_time_rows:,}",
        "versions": f"recommendations {result.recommendations_version}, send times {result.send_times_version}",
        "omp_threads": _omp_threads(),
    })


def feed(ctx: Context) -> StageResult:
    """Build (dbt, selector feed), gate and export the feed as of the world's clock, on the warehouse the score stages
    wrote (score and score_personalization first): the consented customers' rows, their lists joined to the
    catalogue, the feed gate, and the outbox files."""
    from tailor.export import feed as feed_steps
    from tailor.export import steps

    run_dir, warehouse, now = _trained_dir(ctx)
    seconds, peak_mb = {}, {}
    last = time.perf_counter()

    def done(name: str) -> None:  # the step's seconds, and the stage's peak so far: which step raised it
        nonlocal last
        clock = time.perf_counter()
        seconds[name], last = clock - last, clock
        peak_mb[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    feed_steps.build_feed(now, warehouse=warehouse)
    done("build")
    report = feed_steps.gate_feed(now, warehouse=warehouse, raise_on_failure=False)
    done("gate")
    if not report.success:
        raise RuntimeError(f"the feed gate failed: {report.summary()}")
    exported = steps.export(now, warehouse=warehouse, outbox_dir=run_dir / "outbox")
    done("export")
    return StageResult(rows=exported.rows, unit="feed rows", seconds=sum(seconds.values()), details={
        "seconds": "; ".join(f"{part} {value:,.1f}" for part, value in seconds.items()),
        "peak_rss_mb_after": "; ".join(f"{part} {value:,.0f}" for part, value in peak_mb.items()),
        "files": "; ".join(f"{item['name']} {item['bytes'] / 1e6:,.1f} MB" for item in exported.manifest["files"]),
        "export_rows_per_second": f"{exported.rows / seconds['export']:,.0f}",
    })


def deliver(ctx: Context) -> StageResult:
    """Deliver the feed stage's export to Klaviyo's bulk profile import (the simulator's, over HTTP, rate limits on,
    in its own process), as a first full sync; then the same day again as a delta, which must send nothing. The
    import limits bound the pace: each job is one POST, on an endpoint of 10 requests a second and 150 a minute, and
    the status of every job in flight comes from one listing a round; the least time the limits allow for the
    delivery's POSTs, and the ratio to it, are reported."""
    from simulator.state import TOKENS
    from tailor.export import deliveries, steps
    from tailor.export.klaviyo import ENDPOINT_LIMITS, KlaviyoSink
    from tailor.sources import Credentials

    run_dir, warehouse, now = _trained_dir(ctx)
    deliveries.ensure_tables(warehouse)
    with warehouse.writer() as con:  # a first delivery each time the stage runs
        con.execute(f"delete from {deliveries.DELIVERED_ROWS} where sink = 'klaviyo'")  # noqa: S608 constant
        con.execute(f"delete from {deliveries.DELIVERIES} where sink = 'klaviyo'")  # noqa: S608 constant
    world = World.build(WorldConfig(customers=100, seed=ctx.seed))  # the profiles are imported as new ones
    with served(world, rate_limits=True) as url:
        sink = KlaviyoSink(Credentials("bench klaviyo", url, TOKENS["klaviyo"]))
        started = time.perf_counter()
        result = steps.deliver(now, "klaviyo", warehouse=warehouse, outbox_dir=run_dir / "outbox", full=True,
                               sink_object=sink, say=lambda line: None)
        seconds = time.perf_counter() - started
        again = steps.deliver(now, "klaviyo", warehouse=warehouse, outbox_dir=run_dir / "outbox",
                              sink_object=sink, say=lambda line: None)
    least = _least_seconds(result.batches, *ENDPOINT_LIMITS["submit"])
    return StageResult(rows=result.sent, unit="profiles delivered", seconds=seconds, details={
        "jobs": f"{result.batches:,} ({result.sent / max(result.batches, 1):,.0f} profiles each)",
        "jobs_per_minute": f"{result.batches / seconds * 60:,.1f}",
        "least_seconds_the_limits_allow": f"{least:,.1f} for {result.batches:,} POSTs "
                                          f"(the delivery took {seconds / max(least, 1e-9):.2f} times that)",
        "failed_skipped": f"{result.failed:,} failed, {result.skipped:,} skipped",
        "delta_of_the_same_day": f"{again.sent:,} sent, {again.plan.rows_unchanged:,} unchanged",
    })


def _least_seconds(requests: int, burst: int, steady: int) -> float:
    """The least time `requests` calls take under `burst` a second and `steady` a minute (sliding windows): each
    minute's `steady` calls, `burst` a second; the last one counted from the first call."""
    if requests <= 0:
        return 0.0
    full_minutes, rest = divmod(requests - 1, steady)
    return 60.0 * full_minutes + rest // burst


def _personalization_registries(run_dir: Path) -> dict:
    """The recommendations' and send times' registered models in the train stage's MLflow store."""
    from ml import personalization
    from ml.registry import Registry

    return {"rec_registry": Registry(tracking_uri(run_dir), model=personalization.RECOMMENDATIONS_MODEL),
            "send_registry": Registry(tracking_uri(run_dir), model=personalization.SEND_TIMES_MODEL)}


def _trained_dir(ctx: Context):
    """The train stage's run dir, its warehouse copy and the clock; the data dir pointed at it (reports go there)."""
    from bench.modeldata import models_at_size
    from tailor.warehouse import Warehouse

    run_dir = _models_dir(ctx)
    warehouse = Warehouse(run_dir / "warehouse.duckdb")
    if not warehouse.exists() or not mlflow_store(run_dir).exists():
        raise RuntimeError(f"no trained models in {run_dir}: the personalization stages use the train stage's "
                           f"warehouse copy and MLflow store, so run train first at size {ctx.size}")
    _, now = models_at_size(ctx.work_dir.parent, ctx.size, ctx.seed)
    os.environ["TAILOR_DATA_DIR"] = str(run_dir)
    return run_dir, warehouse, now


def _models_dir(ctx: Context) -> Path:
    return ctx.work_dir / "models"


def _omp_threads() -> str:
    # scikit-learn's gradient boosting and k-means run on OpenMP threads: on a busy 2-core machine their count matters
    return os.environ.get("OMP_NUM_THREADS", "one per core (OMP_NUM_THREADS unset)")


def _clocked_say():
    """The models' progress lines, each with the seconds since the timed call began: where a slow run spends them."""
    started = time.perf_counter()

    def say(line: str) -> None:
        print(f"bench: {time.perf_counter() - started:8.1f} s  {line}", flush=True)

    return say


STAGES = {"generate": generate, "export": export, "serve": serve, "extract": extract, "dbt": dbt,
          "dbt_layers": dbt_layers, "hourly": hourly,
          "baskets": baskets, "gate": gate, "train": train, "score": score, "train_personalization": train_personalization,
          "score_personalization": score_personalization, "feed": feed, "deliver": deliver,
          "daily": daily}
