"""Benchmark stages in pipeline order. Each later issue adds its stage here."""

from __future__ import annotations

import time

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


def serve(ctx: Context) -> StageResult:
    """Records/s the simulator serves, faults and rate limits off: page through each API for a fixed time.

    The server runs in its own forked process (sharing the built world copy-on-write) so the client does not
    compete with it for the GIL.
    """
    import multiprocessing

    import httpx

    from simulator.server import port_free, start_in_thread
    from simulator.state import TOKENS, SimState
    from simulator.tour import API_PAGERS

    world = World.build(world_config(ctx))
    port = next(p for p in range(18_765, 18_865) if port_free("127.0.0.1", p))
    ready = multiprocessing.get_context("fork").Event()

    def run_server() -> None:
        start_in_thread(SimState(world=world, rate_limits=False), port=port)
        ready.set()
        multiprocessing.get_context("fork").Event().wait()  # serve until terminated

    server = multiprocessing.get_context("fork").Process(target=run_server, daemon=True)
    server.start()
    ready.wait(60)
    url = f"http://127.0.0.1:{port}"
    per_api, total, seconds = {}, 0, 0.0
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
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
    finally:
        server.terminate()
    return StageResult(rows=total, unit="records served", seconds=seconds, details=per_api)


SERVE_SECONDS_PER_API = 10


STAGES = {"generate": generate, "export": export, "serve": serve}
