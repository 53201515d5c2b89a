"""Quality gates: GX suites from expectations/ validated inside DuckDB.

    from tailor.quality import run_gate, GateFailed
    report = run_gate("raw", as_of)        # GateFailed names each failed `fail` expectation

    python -m tailor gate raw|marts [--as-of ISO]   (tailor.cli.gate_command)

Modules: suite (the YAML suite files), engine (GX's SQL path made to work on DuckDB), gate (a run: results table,
quarantine, Data Docs), quarantine (the raw._quarantine table's DDL), results (the report and the errors). Importing
this package does not import GX.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from tailor.quality.results import GateError, GateFailed, GateReport

if TYPE_CHECKING:
    from tailor.warehouse import Warehouse

__all__ = ["GateError", "GateFailed", "GateReport", "run_gate"]


def run_gate(gate: str, as_of: datetime, warehouse: Warehouse | None = None, **options) -> GateReport:
    """Run expectations/<gate>.yml as of `as_of` (see tailor.quality.gate.run_gate)."""
    from tailor.quality.gate import run_gate as run

    return run(gate, as_of, warehouse, **options)
