"""python -m ml <train|score|evaluate> --as-of T: the customer and personalization models without Airflow, with
progress output. Each command runs the customer models (segments, churn, CLV), then the personalization models
(recommendations, send times)."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime

import pandas as pd

from ml.errors import ModelInputError

_DESCRIPTION = {
    "train": "Train segments, churn, CLV and next-order models, product recommenders and send times as of --as-of on "
             "time-based splits, score the baselines on the same window, log everything to MLflow and promote each "
             "candidate that beats production. Missing feature and label snapshots of past dates are built with dbt "
             "first (unless --no-build).",
    "score": "Score every customer as of --as-of with the models in production then (or --model-version for the customer "
             "models) into ml.customer_scores, ml.customer_recommendations and ml.customer_send_times, and record "
             "feature and score drift in ml.model_monitoring.",
    "evaluate": "Score production's models and their baselines on the latest window labelled by --as-of.",
}


def _table(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4f}") if len(frame) else "  (none)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml", description="Tailor's customer models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in _DESCRIPTION.items():
        command = sub.add_parser(name, help=text.split(".")[0], description=text)
        command.add_argument("--as-of", required=True, help="the time to train or score as of, ISO 8601 (UTC)")
        command.add_argument("--no-build", action="store_true",
                             help="never run dbt: fail naming the snapshots the warehouse lacks")
        if name != "train":
            command.add_argument("--model-version", help="a registered version (e.g. v3) instead of production")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from ml import io, personalization, training
    from tailor.transform import parse_as_of
    from tailor.warehouse import Warehouse

    try:
        as_of = parse_as_of(args.as_of)
    except ValueError as exc:
        print(f"ml: {exc}", file=sys.stderr)
        return 2
    if as_of > datetime.now(UTC):
        print(f"ml: --as-of {args.as_of} is in the future", file=sys.stderr)
        return 2
    try:
        if args.command == "train":
            result = training.train(as_of, allow_build=not args.no_build)
            print("\nml: churn on the validation window (higher ROC-AUC and PR-AUC, lower Brier are better):")
            print(_table(result.churn_metrics))
            print("\nml: CLV and next order back-test (mean absolute error; lower is better):")
            print(_table(result.clv_metrics))
            if len(result.clv_deciles):
                print("\nml: CLV calibration by decile of predicted net sales (1 = highest):")
                print(_table(result.clv_deciles[result.clv_deciles["metric"] == "net_sales"].drop(columns="metric")))
            print("\nml: segments:")
            print(_table(result.segments[["segment_id", "segment_name", "customers", "share"]]))
            for note in result.notes:
                print(f"ml: note: {note}")
            print(f"\nml: {result.candidate.model_version} {'promoted' if result.promoted else 'rejected'}: "
                  f"{result.reason}\nml: report: {result.report_path}\n")
            chosen = personalization.train(as_of, allow_build=not args.no_build)
            print("\nml: recommenders and the popularity baseline on new-to-customer purchases of the validation "
                  "window (@10; higher is better):")
            print(_table(chosen.rec_metrics))
            print("\nml: send times: share of later opens and clicks within +-1 h of each method's hour:")
            print(_table(chosen.send_metrics))
            for note in chosen.notes:
                print(f"ml: note: {note}")
            print(f"\nml: recommendations {chosen.recommendations.model_version} "
                  f"{'promoted' if chosen.recommendations_promoted else 'rejected'}: {chosen.recommendations_reason}"
                  f"\nml: send times {chosen.send_times.model_version} "
                  f"{'promoted' if chosen.send_times_promoted else 'rejected'}: {chosen.send_times_reason}"
                  f"\nml: report: {chosen.report_path}")
        elif args.command == "score":
            scored = training.score(as_of, model_version=args.model_version, allow_build=not args.no_build)
            print("\nml: segments scored:")
            sizes = scored.scores.groupby(["segment_id", "segment_name"]).size().rename("customers").reset_index()
            print(_table(sizes))
            print("\nml: drift (PSI) of the five most moved inputs:")
            print(_table(scored.drift.head(5)))
            listed = personalization.score(as_of, allow_build=not args.no_build)
            samples = io.read_samples(Warehouse(), as_of.date(), listed.recommendations_version,
                                      listed.send_times_version)
            for customer_id, rows in samples.groupby("customer_id", sort=False):
                first = rows.iloc[0]
                zone = (f"{first['timezone']} ({first['send_hour_utc']:02d}:00 UTC)" if first["timezone_known"]
                        else "UTC (timezone unknown)")
                print(f"\nml: customer {customer_id} ({first['history']}): send at {first['send_hour_local']:02d}:00 "
                      f"{zone}")
                shown = rows.assign(price=rows["price_amount"].map(lambda v: "" if pd.isna(v) else f"{v:,.2f}"))
                print(shown[["rank", "product_title", "category", "price", "reason"]].to_string(index=False))
        else:
            evaluation = training.evaluate(as_of, model_version=args.model_version, allow_build=not args.no_build)
            print(_table(evaluation.metrics))
            checked = personalization.evaluate(as_of, allow_build=not args.no_build)
            print(f"\nml: recommendations {checked.recommendations_version} against the popularity baseline:")
            print(_table(checked.rec_metrics))
            print(f"\nml: send times {checked.send_times_version} against one hour for everyone and each customer's "
                  "mode:")
            print(_table(checked.send_metrics))
    except ModelInputError as exc:
        print(f"ml: {exc}", file=sys.stderr)
        return 1
    return 0
