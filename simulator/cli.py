"""python -m simulator serve|world|tour — bad input gets one clear line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from simulator.world import DEFAULT_NOW, WorldConfig, parse_time

EXIT_USAGE = 2


class UsageError(Exception):
    """Input the user can fix: printed as one line, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulator",
                                     description="A deterministic local Shopify, HubSpot and Klaviyo.")
    sub = parser.add_subparsers(dest="command", required=True)

    def world_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
        p.add_argument("--customers", type=int, default=1_000, help="people in the world (default 1000)")
        p.add_argument("--products", type=int, default=None, help="catalog size (default: customers/5, 50..20000)")
        p.add_argument("--now", default=None, help=f"the shop's 'now', ISO-8601 (default {DEFAULT_NOW})")
        p.add_argument("--history-days", type=int, default=730, help="days of history before now (default 730)")
        p.add_argument("--transactions", default=None, metavar="FILE",
                       help="build customers, products and orders from this CSV export instead of generating them")

    serve = sub.add_parser("serve", help="serve the Shopify, HubSpot and Klaviyo APIs over a world")
    world_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--faults", default="none",
                       help="none | flaky | hostile, optionally followed by flags, e.g. 'flaky,429=0.2,revoked' "
                            "(flags: 429, 5xx, slow, slow_seconds, truncated, duplicates, midread, ties, revoked)")
    serve.add_argument("--no-rate-limits", action="store_true", help="lift the vendors' standard-plan rate limits")

    world = sub.add_parser("world", help="write the world as Parquet files plus its ground truth")
    world_args(world)
    world.add_argument("--out", required=True, help="output directory")

    tour = sub.add_parser("tour", help="show what a running simulator serves (a sample from each API)")
    tour.add_argument("--url", default="http://127.0.0.1:8765")
    return parser


def _config(args: argparse.Namespace, tie_burst_size: int = 0) -> WorldConfig:
    if args.customers < 1:
        raise UsageError(f"--customers must be at least 1, got {args.customers}")
    if args.products is not None and args.products < 12:
        raise UsageError(f"--products must be at least 12 (one per category), got {args.products}")
    if args.history_days < 1:
        raise UsageError(f"--history-days must be at least 1, got {args.history_days}")
    now = DEFAULT_NOW
    if args.now is not None:
        try:
            parse_time(args.now)
        except ValueError:
            raise UsageError(f"--now: {args.now!r} is not an ISO-8601 date-time (e.g. 2026-11-01T00:00:00Z)") from None
        now = args.now
    return WorldConfig(seed=args.seed, customers=args.customers, products=args.products, now=now,
                       history_days=args.history_days, tie_burst_size=tie_burst_size)


def _build(args: argparse.Namespace, config: WorldConfig):
    from simulator.world import World

    if args.transactions:
        from simulator.history import TransactionsFileError

        try:
            return World.from_transactions(args.transactions, config)
        except TransactionsFileError as exc:
            raise UsageError(str(exc)) from None
    return World.build(config)


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from simulator.faults import FaultSpecError, parse_faults
    from simulator.server import create_app, port_free
    from simulator.state import SimState

    try:
        faults = parse_faults(args.faults)
    except FaultSpecError as exc:
        raise UsageError(f"--faults: {exc}") from None
    config = _config(args, tie_burst_size=faults.tie_burst_size)  # every argument is checked before the port
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be within 1..65535, got {args.port}")
    if not port_free(args.host, args.port):
        raise UsageError(f"port {args.port} on {args.host} is already in use: stop what runs there or pass --port")
    started = time.monotonic()
    world = _build(args, config)
    state = SimState(world=world, faults=faults, rate_limits=not args.no_rate_limits,
                     public_url=f"http://{args.host}:{args.port}")
    counts = ", ".join(f"{k} {v:,}" for k, v in world.summary().items())
    print(f"simulator: world seed {config.seed} built in {time.monotonic() - started:.1f}s ({counts}); "
          f"serving http://{args.host}:{args.port} (faults {args.faults}, rate limits "
          f"{'on' if state.rate_limits else 'off'})", flush=True)
    if world.report:
        print(f"simulator: transactions file: {json.dumps(world.report)}", flush=True)
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="warning", access_log=False,
                lifespan="off")


def _world(args: argparse.Namespace) -> None:
    from simulator.export import write_world

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    config = _config(args)
    started = time.monotonic()
    world = _build(args, config)
    built = time.monotonic() - started
    manifest = write_world(world, out)
    print(json.dumps({"out": str(out), "build_seconds": round(built, 2), **manifest["counts"]}))


def _tour(args: argparse.Namespace) -> int:
    from simulator.tour import main as tour_main

    return tour_main(["--url", args.url])


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code = {"serve": _serve, "world": _world, "tour": _tour}[args.command](args)
    except UsageError as exc:
        print(f"simulator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 0
    return code or 0
