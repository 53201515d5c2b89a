"""python -m simulator serve|world|tour — bad input gets one clear line on stderr and exit code 2.

serve's clock:
  (no --now)            live: the world is anchored at the wall clock floored to the hour, the clock starts at
                        the wall clock (or --clock-start) and advances with it; the timeline runs a year past
                        the anchor (--future-days 365), so new records keep arriving as the clock passes them
  --now ISO             pinned: world and clock at ISO; the clock moves only through POST /_simulator/clock
  --now ISO --live      live, over the world anchored at ISO (reproduces a live world: its start-up line
                        prints the command)
  --transactions FILE   the world's now is fitted to the file (the day after its last order) and the clock is
                        pinned there, unless --live
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
from pathlib import Path

from simulator.world import DAY, DEFAULT_NOW, HOUR, WorldConfig, iso, parse_time

EXIT_USAGE = 2
PINNED_FUTURE_DAYS = 30  # timeline past now for a pinned clock (and the world command)
LIVE_FUTURE_DAYS = 365  # ... and for a live one: a year of new activity


class UsageError(Exception):
    """Input the user can fix: printed as one line, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulator",
                                     description="A deterministic local Shopify, HubSpot and Klaviyo.")
    sub = parser.add_subparsers(dest="command", required=True)

    def world_args(p: argparse.ArgumentParser, serve: bool) -> None:
        p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
        p.add_argument("--customers", type=int, default=1_000,
                       help="people in the world over its whole timeline, future days included (default 1000)")
        p.add_argument("--products", type=int, default=None, help="catalog size (default: customers/5, 50..20000)")
        if serve:
            p.add_argument("--now", default=None, metavar="ISO",
                           help="the world's anchor (its 'now'), ISO-8601; alone it pins the clock there. "
                                "Default: live, anchored at the wall clock floored to the hour")
        else:
            p.add_argument("--now", default=None, metavar="ISO",
                           help=f"the shop's 'now', ISO-8601 (default {DEFAULT_NOW})")
        p.add_argument("--history-days", type=int, default=730, help="days of history before now (default 730)")
        p.add_argument("--future-days", type=int, default=None,
                       help=f"days of timeline after now, revealed as the clock passes them (default "
                            f"{LIVE_FUTURE_DAYS} with a live clock, else {PINNED_FUTURE_DAYS})")
        p.add_argument("--transactions", default=None, metavar="FILE",
                       help="build customers, products and orders from this CSV export instead of generating them")

    serve = sub.add_parser(
        "serve", help="serve the Shopify, HubSpot and Klaviyo APIs over a world",
        description="Serve the three vendor APIs over a world, as of the simulator's clock. Without --now the "
                    "clock is live: the world is anchored at the wall clock floored to the hour and the clock "
                    "follows the wall clock, so new records keep arriving for a year (--future-days). --now ISO "
                    "pins world and clock at ISO; --now ISO --live anchors the world at ISO with a live clock "
                    "(the start-up line of a live server prints the flags that rebuild its world). With "
                    "--transactions the world's now is fitted to the file and the clock pinned there unless "
                    "--live. Control API: GET /_simulator/health, GET /_simulator/summary, POST /_simulator/clock "
                    "{\"now\": ISO} or {\"advance_seconds\": N}, POST /_simulator/faults {\"faults\": SPEC}.")
    world_args(serve, serve=True)
    serve.add_argument("--live", action="store_true",
                       help="a clock that advances with the wall clock (the default without --now); with --now, "
                            "--now only anchors the world")
    serve.add_argument("--clock-start", default=None, metavar="ISO",
                       help="live clock only: where the clock starts (then it advances with the wall clock); "
                            "default the wall clock")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--faults", default="none",
                       help="none | flaky | hostile, optionally followed by flags, e.g. 'flaky,429=0.2,revoked' "
                            "(flags: 429, 5xx, slow, slow_seconds, truncated, duplicates, midread, ties, revoked, "
                            "silent=VENDOR[+VENDOR...] with vendors shopify, hubspot, klaviyo)")
    serve.add_argument("--no-rate-limits", action="store_true", help="lift the vendors' standard-plan rate limits")

    world = sub.add_parser("world", help="write the world as Parquet files plus its ground truth")
    world_args(world, serve=False)
    world.add_argument("--out", required=True, help="output directory")

    tour = sub.add_parser("tour", help="show what a running simulator serves (a sample from each API)")
    tour.add_argument("--url", default="http://127.0.0.1:8765")
    return parser


def _time(flag: str, value: str) -> int:
    try:
        return parse_time(value)
    except ValueError:
        raise UsageError(f"{flag}: {value!r} is not an ISO-8601 date-time (e.g. 2026-11-01T00:00:00Z)") from None


def live_anchor(wall: float) -> str:
    """A live world's anchor: the wall clock floored to the hour, as ISO-8601."""
    return iso(int(wall) // HOUR * HOUR)


def _is_live(args: argparse.Namespace) -> bool:
    """serve's clock mode: live with --live, or without --now for a generated world."""
    return args.command == "serve" and (args.live or (args.now is None and not args.transactions))


def _config(args: argparse.Namespace, tie_burst_size: int = 0) -> WorldConfig:
    if args.customers < 1:
        raise UsageError(f"--customers must be at least 1, got {args.customers}")
    if args.products is not None and args.products < 12:
        raise UsageError(f"--products must be at least 12 (one per category), got {args.products}")
    if args.history_days < 1:
        raise UsageError(f"--history-days must be at least 1, got {args.history_days}")
    if args.future_days is not None and args.future_days < 0:
        raise UsageError(f"--future-days must not be negative, got {args.future_days}")
    live = _is_live(args)
    now = DEFAULT_NOW
    if args.now is not None:
        _time("--now", args.now)
        now = args.now
    elif live:
        now = live_anchor(time.time())
    future_days = args.future_days
    if future_days is None:
        future_days = LIVE_FUTURE_DAYS if live else PINNED_FUTURE_DAYS
    return WorldConfig(seed=args.seed, customers=args.customers, products=args.products, now=now,
                       history_days=args.history_days, future_days=future_days, tie_burst_size=tie_burst_size)


def _clock_start(args: argparse.Namespace) -> int | None:
    """--clock-start as epoch seconds (None: not given), checked against the combination of flags."""
    if args.clock_start is None:
        return None
    if not _is_live(args):
        raise UsageError("--clock-start needs a live clock: drop --now, or add --live to anchor the world at "
                         "--now with a live clock")
    return _time("--clock-start", args.clock_start)


def _check_clock(clock: int, start: int, end: int) -> None:
    """A live clock must start inside the world's timeline, or it would serve a world that never changes."""
    if not start <= clock < end:
        raise UsageError(f"the live clock would start at {iso(clock)}, outside the world's timeline "
                         f"{iso(start)} .. {iso(end)}: pick another --now/--clock-start or more --future-days")


def _reproduce(args: argparse.Namespace, config: WorldConfig) -> str:
    """The serve flags that rebuild this world."""
    flags = [f"--seed {config.seed}", f"--customers {config.customers}"]
    if args.products is not None:
        flags.append(f"--products {args.products}")
    if args.transactions:
        flags.append(f"--transactions {shlex.quote(args.transactions)}")
    if config.history_days != 730:
        flags.append(f"--history-days {config.history_days}")
    if config.future_days != LIVE_FUTURE_DAYS:
        flags.append(f"--future-days {config.future_days}")
    if config.tie_burst_size:
        flags.append(f"--faults {shlex.quote(args.faults)}")
    return " ".join([*flags, f"--now {config.now}", "--live"])


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
    # every argument is checked before the port
    live = _is_live(args)
    config = _config(args, tie_burst_size=faults.tie_burst_size)
    clock_start = _clock_start(args)  # None: the wall clock (live) or the world's now (pinned)
    if live and not args.transactions:  # a transactions world's timeline is known once the file is read
        _check_clock(int(time.time()) if clock_start is None else clock_start,
                     parse_time(config.now) - config.history_days * DAY,
                     parse_time(config.now) + config.future_days * DAY)
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be within 1..65535, got {args.port}")
    if not port_free(args.host, args.port):
        raise UsageError(f"port {args.port} on {args.host} is already in use: stop what runs there or pass --port")
    started = time.monotonic()
    world = _build(args, config)
    if live:
        _check_clock(int(time.time()) if clock_start is None else clock_start, world.start, world.end)
    state = SimState(world=world, faults=faults, rate_limits=not args.no_rate_limits,
                     public_url=f"http://{args.host}:{args.port}", live=live, clock_start=clock_start)
    counts = ", ".join(f"{k} {v:,}" for k, v in world.summary().items())
    print(f"simulator: world seed {config.seed} built in {time.monotonic() - started:.1f}s ({counts} at "
          f"{iso(world.now)}); serving http://{args.host}:{args.port} (faults {args.faults}, rate limits "
          f"{'on' if state.rate_limits else 'off'})", flush=True)
    if state.live:
        print(f"simulator: live clock from {iso(state.now())}, advancing with the wall clock; world anchored at "
              f"{config.now}, timeline {iso(world.start)} .. {iso(world.end)}; reproduce this world with "
              f"`python -m simulator serve {_reproduce(args, world.config)}`", flush=True)
    else:
        print(f"simulator: clock pinned at {iso(state.now())} (POST /_simulator/clock moves it); timeline "
              f"{iso(world.start)} .. {iso(world.end)}", flush=True)
    if world.report:
        print(f"simulator: transactions file: {json.dumps(world.report)}", flush=True)
    # SIGTERM ends the process through Python (uvicorn re-raises it once it has shut down), so the state's
    # temporary files are removed as on Ctrl-C; the exit code stays 128 + 15
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="warning", access_log=False,
                    lifespan="off")
    finally:
        state.close()


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
