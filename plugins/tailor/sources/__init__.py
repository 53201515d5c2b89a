"""Vendor API clients. The only code in Tailor that talks to Shopify, HubSpot and Klaviyo.

Every extractor takes a half-open window [start, end) on the vendor's own "updated" clock, widened backwards
by a lookback overlap for late-arriving updates, and yields RecordVersions: the vendor's id, its updated_at
and the payload exactly as the API returned it. Nothing here imports Airflow or opens the warehouse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value.tzinfo is None:
                raise ValueError(f"window {name} {value.isoformat()} has no timezone: give UTC times")
        if self.end < self.start:
            raise ValueError(f"window end {self.end.isoformat()} is before its start {self.start.isoformat()}")

    def widened(self, lookback: timedelta) -> Window:
        return Window(self.start - lookback, self.end)

    def label(self) -> str:
        """The window start as a path-safe label: 20261101T000000Z."""
        return self.start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True)
class RecordVersion:
    record_id: str  # the vendor's id, as its API presents it (Shopify: a GID)
    updated_at: datetime  # UTC, the vendor's own "last modified" value for this version
    payload: dict  # exactly as the API returned it
    is_deleted: bool = False


@dataclass(frozen=True)
class Credentials:
    """Where a source is and how to authenticate; built from an Airflow Connection or the simulator defaults."""

    conn_id: str
    base_url: str
    token: str = field(repr=False)  # never printed


@dataclass
class Progress:
    """Counters a long extraction reports (records, pages, seconds spent waiting on rate limits)."""

    records: int = 0
    pages: int = 0
    rate_waits: int = 0
    rate_wait_seconds: float = 0.0
    retries: int = 0
    throttled: int = 0  # 429s (and Shopify's THROTTLED) met despite pacing
    report: Callable[[Progress], None] | None = None


class Extractor(Protocol):
    source: str
    entities: tuple[str, ...]

    def extract(self, entity: str, window: Window, progress: Progress | None = None) -> Iterator[RecordVersion]:
        """Every version of `entity` with updated_at in `window` that the API shows now."""
        ...

    def newest(self, entity: str, before: datetime) -> datetime | None:
        """The updated_at of the entity's most recently updated record with updated_at < `before`, as the API shows
        it now (None: no such record). One cheap request (a page of one, sorted newest first); deletions are not
        looked at. pipeline.extract_window asks it when a window came back empty, to tell a quiet source from one
        that had records in the window and did not deliver them."""
        ...


# The one registry of sources: module and class of each extractor, and the entities it extracts.
EXTRACTORS = {
    "shopify": ("tailor.sources.shopify", "ShopifyExtractor"),
    "hubspot": ("tailor.sources.hubspot", "HubSpotExtractor"),
    "klaviyo": ("tailor.sources.klaviyo", "KlaviyoExtractor"),
}
ENTITIES = {"shopify": ("customers", "orders", "products"), "hubspot": ("contacts",), "klaviyo": ("profiles", "events")}


def build_extractor(source: str, credentials: Credentials, **options: object) -> Extractor:
    """The source's extractor (imported on first use, so a DAG parse or a CLI call loads only what it runs)."""
    from importlib import import_module

    if source not in EXTRACTORS:
        raise ValueError(f"unknown source {source!r}: choose one of {', '.join(EXTRACTORS)}")
    module, name = EXTRACTORS[source]
    return getattr(import_module(module), name)(credentials, **options)
