"""Assets that connect Tailor's DAGs, declared once. A DAG that reads a layer is scheduled on its asset."""

from __future__ import annotations

from airflow.sdk import Asset

# The raw layer (raw.*) passed the raw gate: emitted by the raw_gate task of tailor_extract_hourly and tailor_daily,
# only when it succeeds.
TAILOR_RAW = Asset(name="tailor_raw", uri="tailor://warehouse/raw", group="tailor")
# The marts (every model but the feed, built by the daily dbt layers) passed the marts gate: emitted by
# tailor_daily's marts_gate, only when it succeeds.
TAILOR_MARTS = Asset(name="tailor_marts", uri="tailor://warehouse/marts", group="tailor")
# The day's feed (exports.esp_feed) was gated, exported to the outbox and delivered to every configured sink:
# emitted by tailor_daily's deliver, only when every sink took it.
TAILOR_FEED = Asset(name="tailor_feed", uri="tailor://warehouse/exports/esp_feed", group="tailor")
