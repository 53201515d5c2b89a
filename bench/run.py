"""Benchmark harness: runs stages at a size, each in a forked child so its peak memory is its own.

A stage is a function `stage(ctx) -> StageResult`, registered in bench.stages.STAGES in pipeline order.
Results go to <TAILOR_DATA_DIR>/bench/bench-<size>.json and .md; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import sys
from dataclasses import asdict
from datetime import UTC, datetime

from bench.context import SIZES, Context, StageResult, in_child
from tailor import settings


def _stage(stage_name: str, ctx: Context) -> StageResult:
    from bench.stages import STAGES

    return STAGES[stage_name](ctx)


def run_stage(stage_name: str, ctx: Context) -> dict:
    ok, outcome, elapsed, peak_mb = in_child(_stage, stage_name, ctx)
    if not ok:  # the parent marks the run failed
        return {"ok": False, "error": outcome, "stage": stage_name}
    timed = asdict(outcome)
    timed["seconds"] = elapsed if outcome.seconds is None else outcome.seconds
    rate = timed["rows"] / timed["seconds"] if timed["seconds"] > 0 else None
    return {"ok": True, "peak_rss_mb": peak_mb, **timed, "stage": stage_name, "rows_per_second": rate}


def markdown(report: dict) -> str:
    lines = [f"# Tailor benchmark, size {report['size']} ({report['customers']:,} customers)", "",
             f"{report['started_at']} on {report['machine']}", "",
             "| stage | seconds | rows | rows/s | peak RSS MB | details |", "|---|---:|---:|---:|---:|---|"]
    for r in report["stages"]:
        if not r.get("ok"):
            lines.append(f"| {r['stage']} | failed | | | | see JSON |")
            continue
        details = ", ".join(f"{k}: {v}" for k, v in r["details"].items())
        lines.append(f"| {r['stage']} | {r['seconds']:.2f} | {r['rows']:,} {r['unit']} | "
                     f"{r['rows_per_second']:,.0f} | {r['peak_rss_mb']:,.0f} | {details} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench.stages import STAGES

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--size", default="S", choices=sorted(SIZES), help="S 10k, M 100k, L 1M customers")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        print(f"bench: error: unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    out_dir = settings.data_dir() / "bench"
    ctx = Context(size=args.size, customers=SIZES[args.size], seed=args.seed, work_dir=out_dir / f"work-{args.size}")
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    report = {"size": args.size, "customers": ctx.customers, "seed": args.seed,
              "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "machine": f"{platform.machine()}, {multiprocessing.cpu_count()} cores, Python {platform.python_version()}",
              "stages": []}
    for name in stages:
        print(f"bench: {name} at size {args.size} ...", flush=True)
        result = run_stage(name, ctx)
        report["stages"].append(result)
        if not result["ok"]:
            print(f"bench: stage {name} failed:\n{result['error']}", file=sys.stderr)
            break
        print(f"bench: {name}: {result['seconds']:.2f}s, {result['rows']:,} {result['unit']} "
              f"({result['rows_per_second']:,.0f}/s), peak {result['peak_rss_mb']:,.0f} MB {result['details']}",
              flush=True)
    from bench.rawdata import return_to_cache

    cache = return_to_cache(ctx.work_dir / "dbt-run" / "warehouse.duckdb")
    if cache is not None:
        print(f"bench: the warehouse built in place is back in its cache, raw.* as it was: {cache}", flush=True)
    (out_dir / f"bench-{args.size}.json").write_text(json.dumps(report, indent=2))
    (out_dir / f"bench-{args.size}.md").write_text(markdown(report))
    print(f"bench: report in {out_dir / f'bench-{args.size}.md'}")
    return 0 if all(r["ok"] for r in report["stages"]) else 1
