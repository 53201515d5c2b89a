"""Quality gates: GX suites from expectations/ validated inside DuckDB.

    from tailor.quality import run_gate, GateFailed
    report = run_gate("raw", as_of)        # GateFailed names each failed `fail` expectation

    python -m tailor gate raw|marts [--as-of ISO]   ->  tailor.quality.cli_main(gate, as_of)

Modules: suite (the YAML suite files), engine (GX's SQL path made to work on DuckDB), gate (a run: results table,
quarantine, Data Docs), results (the report and the errors). Importing this package does not import GX.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tailor.quality.results import GateError, GateFailed, GateReport

if TYPE_CHECKING:
    from tailor.warehouse import Warehouse

__all__ = ["GateError", "GateFailed", "GateReport", "cli_main", "run_gate"]


def run_gate(gate: str, as_of: datetime, warehouse: Warehouse | None = None, **options) -> GateReport:
    """Run expectations/<gate>.yml as of `as_of` (see tailor.quality.gate.run_gate)."""
    from tailor.quality.gate import run_gate as run

    return run(gate, as_of, warehouse, **options)


def cli_main(gate: str, as_of: str | None) -> int:
    """`python -m tailor gate <gate> [--as-of ISO]`: run the gate, print its results and where the Data Docs are.

    as_of is ISO 8601 (a date, or a time; without a zone, UTC); None means now. Returns 0 when the gate passed,
    1 when it failed (the message names each failed expectation) or could not run, 2 on bad arguments.
    """
    from tailor.quality.suite import SuiteError, available_gates
    from tailor.transform import parse_as_of
    from tailor.warehouse import WarehouseLockTimeout

    try:
        when = parse_as_of(as_of) if as_of else datetime.now(UTC)  # the CLI is where an ad-hoc "now" comes from
    except ValueError as exc:
        print(f"python -m tailor gate: error: {exc}", file=sys.stderr)
        return 2
    print(f"gate {gate}: validating as of {when.strftime('%Y-%m-%dT%H:%M:%SZ')} ...", flush=True)
    logging.getLogger("tailor.quality.gate").setLevel(logging.WARNING)  # the lines below say it all once
    try:
        report = run_gate(gate, when, raise_on_failure=False)
    except SuiteError as exc:
        print(f"python -m tailor gate: error: {exc}\n(gates: {', '.join(available_gates()) or 'none'})",
              file=sys.stderr)
        return 2
    except (GateError, WarehouseLockTimeout) as exc:
        print(f"gate {gate}: error: {exc}", flush=True)
        return 1
    if report.success:
        for line in report.lines():
            print(line, flush=True)
        return 0
    print(report.summary(), flush=True)
    for line in report.lines()[1:]:
        if not line.lstrip().startswith(("FAILED", "Data Docs")):
            print(line, flush=True)  # warnings and quarantines; the failures follow in the error message
    print(GateFailed(report), flush=True)
    return 1

