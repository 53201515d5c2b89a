"""ShopifyExtractor: one entity's versions in an updatedAt window, then its deletions, each exactly once.

A window is searched by updatedAt (windows), read page by page (paging) or, when its count reaches the bulk
threshold, as one bulk operation (bulk, reassembly); then its deletions are read from events (deletions).

Exactly once within a window
----------------------------
Every (record_id, updatedAt) is yielded once: repeats across pages (a page that starts on the previous page's
last record, a retried page) are dropped. A record edited while the window is being read leaves its position:
its new updatedAt is later than anything read so far, so the new version is either still ahead of the cursor
(inside the window: read later in this pass) or past `end` (read by the next window, which starts at `end`). A
record read at an old version and edited afterwards is therefore never lost: its newer version lies in a later
position or window (which is also why paging skips an order whose updatedAt moved while its line items were
read). A version outside the window means Shopify did not apply the search: the extraction fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime

from tailor.sources import Credentials, Progress, RecordVersion, Window
from tailor.sources.http import RetryPolicy, SourceError
from tailor.sources.shopify.bulk import DEFAULT_BULK_THRESHOLD, BulkPolling, BulkReader, reaches_bulk_threshold
from tailor.sources.shopify.deletions import read_deletions
from tailor.sources.shopify.pacing import QueryCosts, ShopifyPacer
from tailor.sources.shopify.paging import MAX_PAGE_SIZE, PagedReader
from tailor.sources.shopify.selection import EntitySpec, customized_specs
from tailor.sources.shopify.transport import ApiUsage, GraphqlTransport, endpoint_path
from tailor.sources.shopify.windows import parse_time, search_time, window_query

log = logging.getLogger(__name__)

API_VERSION = "2026-07"


class ShopifyExtractor:
    """Extracts Shopify customers, orders and products (and their deletions) for an updatedAt window.

    bulk_threshold: a window whose record count reaches it runs as a bulk operation (0: always, None: never).
    page_size: records per top-level page (at most 250). sleep: how every wait happens (tests pass a fast one).
    extra_fields / without_fields: per entity, top-level selections added to / payload keys removed from the
    default selection (id and updatedAt stay). Extra connections are only allowed with bulk_threshold=None.
    Counters (cumulative): requests_sent, throttled_responses, duplicates_dropped, points_charged (the sum of
    actualQueryCost: the rate-limit budget spent); last_path says "paged"/"bulk".
    """

    source = "shopify"
    entities = ("customers", "orders", "products")

    def __init__(self, credentials: Credentials, *, api_version: str = API_VERSION, page_size: int = MAX_PAGE_SIZE,
                 bulk_threshold: int | None = DEFAULT_BULK_THRESHOLD, http_policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 bulk_poll_interval: float = 0.5, bulk_poll_max: float = 10.0, bulk_timeout: float = 6 * 3600,
                 extra_fields: Mapping[str, Iterable[str]] | None = None,
                 without_fields: Mapping[str, Iterable[str]] | None = None):
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be within 1..{MAX_PAGE_SIZE}, got {page_size}")
        self.credentials = credentials
        self.api_version = api_version
        self.page_size = page_size
        self.bulk_threshold = bulk_threshold
        self.http_policy = http_policy or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self.bulk_poll_interval = bulk_poll_interval
        self.bulk_poll_max = bulk_poll_max
        self.bulk_timeout = bulk_timeout
        self.pacer = ShopifyPacer(clock)
        extra_fields = {entity: tuple(fields) for entity, fields in (extra_fields or {}).items()}
        without_fields = {entity: tuple(fields) for entity, fields in (without_fields or {}).items()}
        self.specs = customized_specs(extra_fields, without_fields)
        if bulk_threshold is not None:
            _reject_extra_connections(extra_fields)
        # shared by every extraction of this extractor (threads included): for logs, tests and benchmarks
        self.usage = ApiUsage()
        self.query_costs = QueryCosts()
        self.duplicates_dropped = 0  # (record_id, updatedAt) served twice within one window
        self.last_path: str | None = None  # "paged" or "bulk": how the last extract read its records

    @property
    def endpoint(self) -> str:
        return endpoint_path(self.api_version)

    @property
    def requests_sent(self) -> int:
        return self.usage.requests_sent

    @property
    def throttled_responses(self) -> int:
        return self.usage.throttled_responses

    @property
    def points_charged(self) -> float:
        return self.usage.points_charged

    def largest_requested_cost(self) -> float:
        """The largest requestedQueryCost seen: Shopify admits a query only while its bucket holds that much."""
        return self.query_costs.largest()

    def extract(self, entity: str, window: Window, progress: Progress | None = None) -> Iterator[RecordVersion]:
        """Every version of `entity` with updatedAt in `window` that Shopify shows now, then the deletions in it.

        Lazy: requests go out as the iterator is consumed. A bulk operation abandoned by an error while it runs
        (deadline, interrupt) is canceled so it does not hold one of the shop's five slots."""
        if entity not in self.specs:
            raise ValueError(f"shopify has no entity {entity!r}: choose one of {', '.join(self.entities)}")
        return self._read_window(self.specs[entity], window, progress if progress is not None else Progress())

    def _read_window(self, spec: EntitySpec, window: Window, progress: Progress) -> Iterator[RecordVersion]:
        if window.end <= window.start:
            return
        started = time.monotonic()
        seen: set[tuple] = set()
        with self._transport(progress) as transport:
            search = window_query(window)
            use_bulk = reaches_bulk_threshold(transport, spec, search, self.bulk_threshold)
            self.last_path = "bulk" if use_bulk else "paged"
            reader = (BulkReader(transport, progress, self._bulk_polling(), self.http_policy, self.sleep, self.clock)
                      if use_bulk else PagedReader(transport, progress, self.page_size))
            for version in _inside(window, reader.records(spec, search), transport.conn_id):
                if self._first_time(seen, (version.record_id, version.payload["updatedAt"])):
                    progress.records += 1
                    yield version
            for version in read_deletions(transport, progress, spec, window):
                if self._first_time(seen, (version.record_id, version.payload.get("createdAt", ""), True)):
                    progress.records += 1
                    yield version
        log.info("%s: %s %s %s..%s: %d versions in %d pages, %.1fs (%d THROTTLED so far)",
                 self.credentials.conn_id, spec.entity, self.last_path, search_time(window.start),
                 search_time(window.end), len(seen), progress.pages, time.monotonic() - started,
                 self.throttled_responses)

    def _first_time(self, seen: set[tuple], key: tuple) -> bool:
        """Whether `key` is new in this window (counting the repeats dropped)."""
        if key in seen:
            self.duplicates_dropped += 1
            return False
        seen.add(key)
        return True

    def newest(self, entity: str, before: datetime) -> datetime | None:
        """updatedAt of the entity's record updated last before `before`: `<root>(first: 1, sortKey: UPDATED_AT,
        reverse: true, query: "updated_at:<'<before>'")` with the timestamp quoted, as extract() bounds a window."""
        if entity not in self.specs:
            raise ValueError(f"shopify has no entity {entity!r}: choose one of {', '.join(self.entities)}")
        spec = self.specs[entity]
        query = (f"query TailorNewest($query: String) {{ {spec.root}(first: 1, sortKey: UPDATED_AT, reverse: true, "
                 f"query: $query) {{ nodes {{ id updatedAt }} }} }}")
        with self._transport(Progress()) as transport:
            data = transport.request(f"newest:{entity}", query, {"query": f"updated_at:<'{search_time(before)}'"})
        nodes = (data.get(spec.root) or {}).get("nodes") or []
        if not nodes:
            return None
        stamp = nodes[0].get("updatedAt")
        try:
            return parse_time(stamp)
        except (AttributeError, TypeError, ValueError):
            raise SourceError(f"Shopify ({self.credentials.conn_id}) answered {spec.root} with an unreadable "
                              f"updatedAt ({stamp!r})") from None

    def _transport(self, progress: Progress) -> GraphqlTransport:
        """A connection for one call, built from the settings as they are now (tests change http_policy)."""
        return GraphqlTransport(self.credentials, api_version=self.api_version, policy=self.http_policy,
                                pacer=self.pacer, query_costs=self.query_costs, usage=self.usage, progress=progress,
                                sleep=self.sleep)

    def _bulk_polling(self) -> BulkPolling:
        return BulkPolling(self.bulk_poll_interval, self.bulk_poll_max, self.bulk_timeout)


def _reject_extra_connections(extra_fields: Mapping[str, tuple[str, ...]]) -> None:
    """Extra connections cannot go through a bulk operation: it would return their nodes as separate lines."""
    for entity, extra in extra_fields.items():
        nested = [f for f in extra if "nodes" in f or "edges" in f]
        if nested:
            raise ValueError(f"extra_fields of {entity} select a connection ({nested[0][:60]}...): a bulk "
                             "operation would return its nodes as separate lines; pass bulk_threshold=None")


def _inside(window: Window, versions: Iterator[RecordVersion], conn_id: str) -> Iterator[RecordVersion]:
    """The versions, failing at the first one outside the window: Shopify did not apply the search."""
    low, high = search_time(window.start), search_time(window.end)
    for version in versions:
        stamp = version.payload["updatedAt"]
        if not low <= stamp < high:  # both are ISO strings of one format: compare as text
            raise SourceError(f"Shopify ({conn_id}) returned {version.record_id} updated at {stamp}, outside the "
                              f"window [{low}, {high}): the search was not applied")
        yield version
