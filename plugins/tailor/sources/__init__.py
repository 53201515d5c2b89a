"""Vendor API clients. The only code in Tailor that talks to Shopify, HubSpot and Klaviyo.

Every extractor takes a half-open window [start, end) on the vendor's own "updated" clock, widened backwards
by a lookback overlap for late-arriving updates, and yields RecordVersions: the vendor's id, its updated_at
and the payload exactly as the API returned it. Nothing here imports Airflow or opens the warehouse.

SOURCES below is the one registry of sources: the DAG's tasks, the raw tables and the Connection ids all come
from it, so adding a vendor is one entry there (and its extractor module).
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


@dataclass(frozen=True)
class Source:
    """One vendor: where its extractor lives, what it extracts, and how Tailor authenticates to it."""

    module: str  # the extractor's module, imported on first use
    extractor: str  # the extractor class in that module
    entities: tuple[str, ...]  # each lands in raw.<source>_<entity>
    conn_id: str  # the Airflow Connection with its host and token
    simulator_token: str = field(repr=False)  # what the bundled simulator accepts (README) when no Connection is set
    default_host: str | None = None  # where the vendor's API lives when a Connection gives no host (None: required)


# The one registry of sources: adding a vendor is one entry here. Everything else (the DAG's tasks, the raw tables,
# the Connection ids) is derived from it when asked, so a test can add a source by patching this dict.
SOURCES: dict[str, Source] = {
    "shopify": Source("tailor.sources.shopify", "ShopifyExtractor", ("customers", "orders", "products"),
                      "shopify_default", "shpat_simulator_0000000000000000"),  # each shop has its own host
    "hubspot": Source("tailor.sources.hubspot", "HubSpotExtractor", ("contacts",),
                      "hubspot_default", "pat-na1-simulator-0000-0000-000000000000", "api.hubapi.com"),
    "klaviyo": Source("tailor.sources.klaviyo", "KlaviyoExtractor", ("profiles", "events"),
                      "klaviyo_default", "pk_simulator_0000000000000000000000", "a.klaviyo.com"),
}


def entities() -> dict[str, tuple[str, ...]]:
    """source -> the entities it extracts, from SOURCES as it is now."""
    return {name: source.entities for name, source in SOURCES.items()}


def extractors() -> dict[str, tuple[str, str]]:
    """source -> (module, class) of its extractor, from SOURCES as it is now."""
    return {name: (source.module, source.extractor) for name, source in SOURCES.items()}


def streams() -> list[tuple[str, str]]:
    """Every (source, entity) pair, in registry order."""
    return [(name, entity) for name, source in SOURCES.items() for entity in source.entities]


def source_spec(source: str) -> Source:
    """The registry entry of `source`; a ValueError naming the known sources otherwise."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}: choose one of {', '.join(SOURCES)}")
    return SOURCES[source]


def build_extractor(source: str, credentials: Credentials, **options: object) -> Extractor:
    """The source's extractor (imported on first use, so a DAG parse or a CLI call loads only what it runs).

    The class's own `entities` (it validates the entity it is asked for) is checked against the registry here.
    """
    from importlib import import_module

    spec = source_spec(source)
    cls = getattr(import_module(spec.module), spec.extractor)
    if cls.source != source or tuple(cls.entities) != spec.entities:
        raise TypeError(f"{spec.module}.{spec.extractor} extracts {cls.source} {tuple(cls.entities)}, the registry "
                        f"says {source} {spec.entities}: update tailor.sources.SOURCES")
    return cls(credentials, **options)
