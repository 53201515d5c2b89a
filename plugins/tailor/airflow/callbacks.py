"""Callbacks and pools shared by every DAG, declared once."""

from __future__ import annotations

import logging

log = logging.getLogger("tailor")

# DuckDB allows one writing process per file: every task that writes it takes this pool (1 slot).
DUCKDB_POOL = "duckdb"


def on_task_failure(context) -> None:
    """One line that says which task failed, for which interval, and why (the exception's own message)."""
    ti = context.get("ti") or context.get("task_instance")
    error = context.get("exception")
    log.error("tailor: %s.%s failed for interval [%s, %s): %s", ti.dag_id if ti else "?", ti.task_id if ti else "?",
              context.get("data_interval_start"), context.get("data_interval_end"), error)
