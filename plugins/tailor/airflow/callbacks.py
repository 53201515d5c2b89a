"""Pools shared by every DAG, declared once. The failure and deadline alerts are tailor.airflow.notify's notifier."""

from __future__ import annotations

# DuckDB allows one writing process per file: every task that writes it takes this pool (1 slot).
DUCKDB_POOL = "duckdb"
