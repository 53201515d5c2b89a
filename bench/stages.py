"""Benchmark stages in pipeline order. Each later issue adds its stage here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.run import Context, StageResult
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


@contextmanager
def served(world: World, rate_limits: bool) -> Iterator[str]:
    """The simulator over `world` in its own forked process (sharing the world copy-on-write, so the client does
    not compete with it for the GIL); yields its URL."""
    import multiprocessing

    from simulator.server import port_free, start_in_thread
    from simulator.state import SimState

    fork = multiprocessing.get_context("fork")
    port = next(p for p in range(18_765, 18_865) if port_free("127.0.0.1", p))
    ready = fork.Event()

    def run_server() -> None:
        start_in_thread(SimState(world=world, rate_limits=rate_limits), port=port)
        ready.set()
        fork.Event().wait()  # serve until terminated

    server = fork.Process(target=run_server, daemon=True)
    server.start()
    try:
        if not ready.wait(120):
            raise RuntimeError("the simulator did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()


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
    from tailor.sources import ENTITIES, Credentials, Progress, Window, build_extractor

    world = World.build(world_config(ctx))
    window = Window(datetime.fromtimestamp(world.start, UTC), datetime.fromtimestamp(world.now, UTC))
    details, total, seconds = {}, 0, 0.0
    with served(world, rate_limits=True) as url:
        for source, entities in ENTITIES.items():
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


STAGES = {"generate": generate, "export": export, "serve": serve, "extract": extract}
