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


STAGES = {"generate": generate, "export": export}
