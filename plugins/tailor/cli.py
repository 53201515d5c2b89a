"""python -m tailor <command>: Tailor without Airflow."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tailor", description="Tailor without Airflow.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the pipeline on the embedded defaults against the local simulator")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from tailor import demo

        return demo.run()
    return 2
