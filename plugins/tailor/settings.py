"""The one place Tailor reads its environment: paths and choices, with embedded defaults.

Credentials are not here: they come from Airflow Connections (or AIRFLOW_CONN_* variables).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_SIMULATOR_URL = "http://127.0.0.1:8765"


def data_dir() -> Path:
    """Root of all local state: the DuckDB file, lake, outbox, reports (TAILOR_DATA_DIR, default ./data)."""
    return Path(os.environ.get("TAILOR_DATA_DIR", "data")).resolve()


def simulator_url() -> str:
    """Where sources point when no Connection is configured (TAILOR_SIMULATOR_URL)."""
    return os.environ.get("TAILOR_SIMULATOR_URL", DEFAULT_SIMULATOR_URL).rstrip("/")
