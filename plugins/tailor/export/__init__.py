"""The feed's way out: built and gated in the warehouse, exported to the outbox, delivered to the ESP.

Modules: feed (exports.esp_feed: build, gate, read as payloads), payload (one customer's row as the ESP receives it),
outbox (the local sink: files and manifest per as-of date, atomic), s3 (the S3 drop), klaviyo (Klaviyo's bulk profile
import), deliveries (delta and full syncs, the delivery log, resuming), steps (the four steps `python -m tailor feed`
runs). Only this package talks to the ESP.
"""
