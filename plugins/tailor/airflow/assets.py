"""Assets that connect Tailor's DAGs, declared once. A DAG that reads a layer is scheduled on its asset."""

from __future__ import annotations

from airflow.sdk import Asset

# The raw layer (raw.*) passed the raw gate: emitted by tailor_extract_hourly's raw_gate task, only when it succeeds.
TAILOR_RAW = Asset(name="tailor_raw", uri="tailor://warehouse/raw", group="tailor")
