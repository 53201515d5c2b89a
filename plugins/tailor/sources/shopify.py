"""Shopify's GraphQL Admin API (2026-07): customers, orders and products by updatedAt window, with their deletions.

How a window [start, end) is read
---------------------------------
- Search `updated_at:>='<start>' AND updated_at:<'<end>'` with the timestamps QUOTED (Shopify cuts an unquoted
  value at its first colon and silently ignores the rest), `sortKey: UPDATED_AT`, cursor pagination. Shopify's
  cursors are keysets (last updatedAt, last id), so hundreds of records sharing one updatedAt page through
  exactly. A search term Shopify could not apply (reported in `extensions.search`) fails the extraction: a
  silently widened filter would load the wrong window.
- Small windows are paged (`first`/`after`); large ones - first loads, backfills, anything whose
  `<entity>Count(query:)` reaches `bulk_threshold` - run as a bulk operation with the same selection and search
  (bulkOperationRunQuery -> poll bulkOperation(id:) -> download the JSONL at `url` without our token: on Shopify
  it is a presigned storage URL). Nested connection nodes come back as lines of their own with `__parentId`;
  they are put back under their parent so both paths yield identical payloads.
- Deletions come from `events(query: "action:destroy AND subject_type:<CUSTOMER|ORDER|PRODUCT> AND
  created_at:...")`: a deleted record vanishes from its connection, its BasicEvent stays (for a year). Each
  becomes RecordVersion(record_id=subjectId, updated_at=event createdAt, payload=the event node, is_deleted=True).

Exactly once within a window
----------------------------
Every (record_id, updatedAt) is yielded once: repeats across pages (a page that starts on the previous page's
last record, a retried page) are dropped. A record edited while the window is being read leaves its position:
its new updatedAt is later than anything read so far, so the new version is either still ahead of the cursor
(inside the window: read later in this pass) or past `end` (read by the next window, which starts at `end`). A
record read at an old version and edited afterwards is therefore never lost: its newer version lies in a later
position or window. Follow-up requests for an order's line items (more than a page of them) check that the
order's updatedAt did not move; if it did, that version is skipped for the same reason. A window must have
ended (end <= Shopify's clock) when it is read, as the DAG's data intervals have.

Rate limits
-----------
ShopifyPacer reads `extensions.cost.throttleStatus` (currentlyAvailable, restoreRate, maximumAvailable) of every
response and, before each request, waits just long enough for the bucket to hold that query's requested cost
(learned from `requestedQueryCost` per query), so a steady extraction is rarely THROTTLED. A THROTTLED answer
(HTTP 200 with errors[].extensions.code THROTTLED) is not data: it is retried after the time the bucket needs.
Page sizes: 250 records per page; nested lineItems 100, refundLineItems 50, variants 100 (further nested pages
are fetched through node(id:)). Requested costs at 250 are customers 57, orders 541, products 266 points, under
the 1000-point single-query cap; the bucket is charged the actual cost (customers 57, orders ~178 per page of
250), so the Standard plan allows ~440 customers/s or ~140 orders/s once the initial bucket is spent. If a shop
prices a query above the cap (MAX_COST_EXCEEDED), the page size is halved until it fits.

Payload shape (identical on the paged and the bulk path)
--------------------------------------------------------
The node exactly as selected below, with each nested connection flattened to the list of its nodes:
- customers: scalar fields, amountSpent, defaultEmailAddress, emailMarketingConsent, defaultPhoneNumber,
  defaultAddress (objects or null).
- orders: scalar fields, customer {id}, money bags ({shopMoney, presentmentMoney} of {amount, currencyCode}),
  shippingAddress, `refunds`: [Refund {..., refundLineItems: [RefundLineItem]}], `lineItems`: [LineItem].
- products: scalar fields, featuredMedia {preview {image {url}}} (or null), `variants`: [ProductVariant].
Nested lists hold every node (further pages are fetched). Key order follows the selection. Downstream parses the
payload and must tolerate fields that come and go; `extra_fields` / `without_fields` change the selection.
A bulk operation reads the shop as of its creation, after the window's end, so the exactness argument above
holds for it as well. Real Shopify refuses a connection inside a list field in a bulk query, so the bulk path selects refunds without
their refundLineItems and fills those in afterwards with `nodes(ids:)` (refunds are immutable once created).
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tailor.sources import Credentials, Progress, RecordVersion, Window
from tailor.sources.http import HttpClient, Pacer, RetryBudgetExhausted, RetryPolicy, SourceError

log = logging.getLogger(__name__)

API_VERSION = "2026-07"
MAX_QUERY_COST = 1000
MAX_PAGE_SIZE = 250
DEFAULT_BULK_THRESHOLD = 10_000  # records in a window from which a bulk operation beats paging
THROTTLE_ATTEMPTS = 25  # THROTTLED answers in a row before giving up (each waits what the bucket needs)
REFUND_BATCH = 50  # orders per nodes(ids:) request when filling in refund line items after a bulk run

MONEY = "{ amount currencyCode }"
BAG = f"{{ shopMoney {MONEY} presentmentMoney {MONEY} }}"
ADDRESS = "{ id address1 address2 city province provinceCode country countryCodeV2 zip phone }"


# ---- what is selected ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Conn:
    """A nested connection, flattened to a list of its nodes in the payload."""

    key: str  # field name on the parent
    node_type: str  # GraphQL type of its nodes (and of their GIDs: gid://shopify/<node_type>/<n>)
    fields: str  # selection on each node (always starts with id: bulk lines are matched by it)
    first: int  # page size when paged
    parent_type: str  # type of the parent, for follow-up pages through node(id:)
    check_parent: bool  # the parent is the extracted record: a follow-up must see the same updatedAt


@dataclass(frozen=True)
class _ListWithConn:
    """A list field whose items hold a connection (Order.refunds -> refundLineItems)."""

    key: str
    fields: str
    inner: _Conn


@dataclass(frozen=True)
class _Entity:
    entity: str
    root: str  # the QueryRoot connection
    count_field: str
    type_name: str
    subject_type: str  # EventSubjectType of its deletions
    fields: tuple[str, ...]  # top-level selections, in payload order
    lists: tuple[_ListWithConn, ...] = ()
    conns: tuple[_Conn, ...] = ()

    def node_selection(self, bulk: bool) -> str:
        parts = list(self.fields)
        for item in self.lists:
            inner = "" if bulk else " " + _conn_selection(item.inner, bulk=False)
            parts.append(f"{item.key} {{ {item.fields}{inner} }}")
        parts += [_conn_selection(conn, bulk) for conn in self.conns]
        return " ".join(parts)


def _conn_selection(conn: _Conn, bulk: bool) -> str:
    if bulk:  # bulk operations ignore page sizes and need edges/node; nested nodes become lines of their own
        return f"{conn.key} {{ edges {{ node {{ {conn.fields} }} }} }}"
    return f"{conn.key}(first: {conn.first}) {{ nodes {{ {conn.fields} }} pageInfo {{ hasNextPage endCursor }} }}"


CUSTOMER_FIELDS = (
    "id", "legacyResourceId", "createdAt", "updatedAt", "firstName", "lastName", "displayName", "state", "locale",
    "tags", "verifiedEmail", "taxExempt", "numberOfOrders", f"amountSpent {MONEY}",
    "defaultEmailAddress { emailAddress marketingState marketingOptInLevel marketingUpdatedAt validFormat }",
    "emailMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt }",
    "defaultPhoneNumber { phoneNumber marketingState marketingOptInLevel marketingUpdatedAt marketingCollectedFrom }",
    f"defaultAddress {ADDRESS}",
)
ORDER_FIELDS = (
    "id", "legacyResourceId", "name", "createdAt", "processedAt", "updatedAt", "cancelledAt", "cancelReason",
    "closedAt", "test", "email", "sourceName", "tags", "customer { id }", "displayFinancialStatus",
    "displayFulfillmentStatus", "currencyCode", "presentmentCurrencyCode", "subtotalLineItemsQuantity",
    f"subtotalPriceSet {BAG}", f"totalDiscountsSet {BAG}", f"totalShippingPriceSet {BAG}", f"totalTaxSet {BAG}",
    f"totalPriceSet {BAG}", f"totalRefundedSet {BAG}", f"currentSubtotalPriceSet {BAG}", f"currentTotalPriceSet {BAG}",
    "discountCodes", "shippingAddress { city province provinceCode country countryCodeV2 zip }",
)
LINE_ITEM_FIELDS = (
    f"id name title variantTitle sku vendor quantity currentQuantity requiresShipping isGiftCard product {{ id }} "
    f"variant {{ id }} originalUnitPriceSet {BAG} discountedUnitPriceSet {BAG} originalTotalSet {BAG} "
    f"discountedTotalSet {BAG} totalDiscountSet {BAG}"
)
REFUND_FIELDS = f"id createdAt note totalRefundedSet {BAG}"
REFUND_LINE_FIELDS = (
    f"id quantity restockType restocked lineItem {{ id }} priceSet {BAG} subtotalSet {BAG} totalTaxSet {BAG}"
)
PRODUCT_FIELDS = (
    "id", "legacyResourceId", "title", "handle", "productType", "vendor", "status", "tags", "createdAt", "updatedAt",
    "publishedAt", "totalInventory", "onlineStoreUrl", "featuredMedia { preview { image { url } } }",
)
VARIANT_FIELDS = (
    "id title sku barcode price compareAtPrice inventoryQuantity availableForSale position taxable "
    "selectedOptions { name value }"
)

ENTITIES: dict[str, _Entity] = {
    "customers": _Entity("customers", "customers", "customersCount", "Customer", "CUSTOMER", CUSTOMER_FIELDS),
    "orders": _Entity(
        "orders", "orders", "ordersCount", "Order", "ORDER", ORDER_FIELDS,
        lists=(_ListWithConn("refunds", REFUND_FIELDS,
                             _Conn("refundLineItems", "RefundLineItem", REFUND_LINE_FIELDS, 50, "Refund", False)),),
        conns=(_Conn("lineItems", "LineItem", LINE_ITEM_FIELDS, 100, "Order", True),),
    ),
    "products": _Entity(
        "products", "products", "productsCount", "Product", "PRODUCT", PRODUCT_FIELDS,
        conns=(_Conn("variants", "ProductVariant", VARIANT_FIELDS, 100, "Product", True),),
    ),
}
REQUIRED_FIELDS = ("id", "updatedAt")


def _field_name(selection: str) -> str:
    """The payload key a top-level selection produces: its alias, else its field name."""
    return selection.split("{", 1)[0].split("(", 1)[0].split(":", 1)[0].strip()


# ---- pacing -------------------------------------------------------------------------------------------------------
class ShopifyPacer(Pacer):
    """Waits before a request until Shopify's cost bucket can admit it, from the last throttleStatus seen.

    The bucket refills at restoreRate points per second up to maximumAvailable; a query is admitted when the
    bucket holds its requested cost (then charged its actual cost). Between responses the pacer projects the
    bucket forward and reserves each request's cost, so threads sharing one pacer take turns instead of racing.
    Before the first response it knows nothing and waits for nothing.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, margin_points: float = 2.0,
                 margin_seconds: float = 0.02):
        self._clock = clock
        self._lock = threading.Lock()
        self._available: float | None = None
        self._maximum = 0.0
        self._restore = 0.0
        self._at = 0.0
        self.margin_points = margin_points  # currentlyAvailable is rounded down and ages in transit
        self.margin_seconds = margin_seconds

    def observe(self, response: httpx.Response, body: object) -> None:
        status = _throttle_status(body)
        if status is None:
            return
        try:
            available = float(status["currentlyAvailable"])
            restore = float(status["restoreRate"])
            maximum = float(status["maximumAvailable"])
        except (KeyError, TypeError, ValueError):
            return
        with self._lock:
            self._available, self._restore, self._maximum, self._at = available, restore, maximum, self._clock()

    def wait_before(self, request_cost: float) -> float:
        with self._lock:
            if self._available is None or self._restore <= 0:
                return 0.0
            now = self._clock()
            have = min(self._maximum, self._available + (now - self._at) * self._restore)
            need = min(float(request_cost), self._maximum) + self.margin_points - have
            wait = need / self._restore + self.margin_seconds if need > 0 else 0.0
            # reserve this request's points at the moment it will be sent
            self._available = min(self._maximum, have + wait * self._restore) - float(request_cost)
            self._at = now + wait
            return wait

    def bucket(self) -> tuple[float, float]:
        """(maximumAvailable, restoreRate) as last reported by Shopify."""
        with self._lock:
            return self._maximum, self._restore

    def seconds_until(self, points: float) -> float | None:
        """How long until the bucket holds `points`, as last observed (None: nothing observed yet)."""
        with self._lock:
            if self._available is None or self._restore <= 0:
                return None
            have = min(self._maximum, self._available + (self._clock() - self._at) * self._restore)
            return max(0.0, (min(points, self._maximum) - have) / self._restore)


def _throttle_status(body: object) -> dict | None:
    if not isinstance(body, dict):
        return None
    cost = (body.get("extensions") or {}).get("cost") if isinstance(body.get("extensions"), dict) else None
    status = cost.get("throttleStatus") if isinstance(cost, dict) else None
    return status if isinstance(status, dict) else None


# ---- time helpers --------------------------------------------------------------------------------------------------
def _search_time(moment: datetime) -> str:
    """A window bound as Shopify's search wants it: UTC, whole seconds. Shopify's updatedAt has whole seconds,
    so `>= 10:00:00.4` means `>= 10:00:01` and `< 10:00:00.4` means `< 10:00:01`: round up."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def window_query(window: Window, field_name: str = "updated_at") -> str:
    """The search for a window, timestamps quoted: `updated_at:>='...' AND updated_at:<'...'`."""
    return (f"{field_name}:>='{_search_time(window.start)}' AND {field_name}:<'{_search_time(window.end)}'")


# ---- errors internal to a session ----------------------------------------------------------------------------------
class _CostTooHigh(Exception):
    def __init__(self, cost: int | None):
        super().__init__(f"query cost {cost}")
        self.cost = cost


@dataclass
class _BulkOp:
    gid: str
    status: str = "CREATED"
    finished: bool = False


# ---- the extractor -------------------------------------------------------------------------------------------------
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
        self.specs = _customized(extra_fields, without_fields)
        for entity, extra in extra_fields.items():
            nested = [f for f in extra if "nodes" in f or "edges" in f]
            if nested and bulk_threshold is not None:
                raise ValueError(f"extra_fields of {entity} select a connection ({nested[0][:60]}...): a bulk "
                                 "operation would return its nodes as separate lines; pass bulk_threshold=None")
        # cumulative over this extractor's life, for logs, tests and benchmarks
        self.requests_sent = 0
        self.throttled_responses = 0
        self.points_charged = 0.0
        self.duplicates_dropped = 0  # (record_id, updatedAt) served twice within one window
        self.last_path: str | None = None  # "paged" or "bulk": how the last extract read its records
        self._costs: dict[str, float] = {}  # requestedQueryCost per query (name, page size)
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"/admin/api/{self.api_version}/graphql.json"

    def extract(self, entity: str, window: Window, progress: Progress | None = None) -> Iterator[RecordVersion]:
        """Every version of `entity` with updatedAt in `window` that Shopify shows now, then the deletions in it.

        Lazy: requests go out as the iterator is consumed. A bulk operation abandoned by an error while it runs
        (deadline, interrupt) is canceled so it does not hold one of the shop's five slots."""
        if entity not in self.specs:
            raise ValueError(f"shopify has no entity {entity!r}: choose one of {', '.join(self.entities)}")
        return self._extract(self.specs[entity], window, progress if progress is not None else Progress())

    def _extract(self, spec: _Entity, window: Window, progress: Progress) -> Iterator[RecordVersion]:
        entity = spec.entity
        if window.end <= window.start:
            return
        started = time.monotonic()
        seen: set[tuple] = set()
        with _Session(self, progress) as session:
            search = window_query(window)
            use_bulk = session.wants_bulk(spec, search)
            self.last_path = "bulk" if use_bulk else "paged"
            versions = session.bulk(spec, search) if use_bulk else session.paged(spec, search)
            lo, hi = _search_time(window.start), _search_time(window.end)
            for version in versions:
                stamp = version.payload["updatedAt"]
                if not lo <= stamp < hi:  # both are ISO strings of one format: compare as text
                    raise SourceError(f"Shopify ({self.credentials.conn_id}) returned {version.record_id} updated "
                                      f"at {stamp}, outside the window [{lo}, {hi}): the search was not applied")
                key = (version.record_id, stamp)
                if key in seen:
                    self.duplicates_dropped += 1
                    continue
                seen.add(key)
                progress.records += 1
                yield version
            for version in session.deletions(spec, window):
                deletion = (version.record_id, version.payload.get("createdAt", ""), True)
                if deletion in seen:
                    self.duplicates_dropped += 1
                    continue
                seen.add(deletion)
                progress.records += 1
                yield version
        log.info("%s: %s %s %s..%s: %d versions in %d pages, %.1fs (%d THROTTLED so far)",
                 self.credentials.conn_id, entity, self.last_path, _search_time(window.start),
                 _search_time(window.end), len(seen), progress.pages, time.monotonic() - started,
                 self.throttled_responses)

    def newest(self, entity: str, before: datetime) -> datetime | None:
        """updatedAt of the entity's record updated last before `before`: `<root>(first: 1, sortKey: UPDATED_AT,
        reverse: true, query: "updated_at:<'<before>'")` with the timestamp quoted, as extract() bounds a window."""
        if entity not in self.specs:
            raise ValueError(f"shopify has no entity {entity!r}: choose one of {', '.join(self.entities)}")
        spec = self.specs[entity]
        query = (f"query TailorNewest($query: String) {{ {spec.root}(first: 1, sortKey: UPDATED_AT, reverse: true, "
                 f"query: $query) {{ nodes {{ id updatedAt }} }} }}")
        with _Session(self, Progress()) as session:
            data = session.graphql(f"newest:{entity}", query, {"query": f"updated_at:<'{_search_time(before)}'"})
        nodes = (data.get(spec.root) or {}).get("nodes") or []
        if not nodes:
            return None
        stamp = nodes[0].get("updatedAt")
        try:
            return _parse_time(stamp)
        except (AttributeError, TypeError, ValueError):
            raise SourceError(f"Shopify ({self.credentials.conn_id}) answered {spec.root} with an unreadable "
                              f"updatedAt ({stamp!r})") from None

    # ---- shared accounting ------------------------------------------------------------------------------------
    def largest_requested_cost(self) -> float:
        """The largest requestedQueryCost seen: Shopify admits a query only while its bucket holds that much."""
        with self._lock:
            return max(self._costs.values(), default=0.0)

    def _cost_of(self, name: str) -> float:
        with self._lock:
            if name in self._costs:
                return self._costs[name]
            return max(self._costs.values(), default=100.0)

    def _learn_cost(self, name: str, requested: object) -> None:
        if isinstance(requested, int | float):
            with self._lock:
                self._costs[name] = float(requested)


def _customized(extra: Mapping[str, Iterable[str]], without: Mapping[str, Iterable[str]]) -> dict[str, _Entity]:
    specs = dict(ENTITIES)
    for entity in set(extra) | set(without):
        if entity not in specs:
            raise ValueError(f"shopify has no entity {entity!r}: choose one of {', '.join(specs)}")
        spec = specs[entity]
        drop = set(without.get(entity, ()))
        if drop & set(REQUIRED_FIELDS):
            raise ValueError(f"{', '.join(sorted(drop & set(REQUIRED_FIELDS)))} cannot be dropped: "
                             "records are keyed by them")
        fields = tuple(f for f in spec.fields if _field_name(f) not in drop) + tuple(extra.get(entity, ()))
        specs[entity] = replace(spec, fields=fields, lists=tuple(x for x in spec.lists if x.key not in drop),
                                conns=tuple(c for c in spec.conns if c.key not in drop))
    return specs


class _Session:
    """One extract call: an HttpClient bound to its Progress, sharing the extractor's pacer and cost table."""

    def __init__(self, extractor: ShopifyExtractor, progress: Progress):
        self.ext = extractor
        self.progress = progress
        self.conn_id = extractor.credentials.conn_id
        self.http = HttpClient(extractor.credentials, "Shopify",
                               {"X-Shopify-Access-Token": extractor.credentials.token},
                               policy=extractor.http_policy, pacer=extractor.pacer, progress=progress,
                               sleep=extractor.sleep, default_headers={"Accept": "application/json",
                                                                       "User-Agent": "tailor-extract"})
        self._counted = 0
        self._version_checked = False

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self._count_requests()
        self.http.close()

    def _count_requests(self) -> None:
        with self.ext._lock:
            self.ext.requests_sent += self.http.requests_sent - self._counted
        self._counted = self.http.requests_sent

    # ---- one GraphQL request ------------------------------------------------------------------------------------
    def graphql(self, name: str, query: str, variables: dict | None = None) -> dict:
        """`data` of a successful answer. THROTTLED answers are waited out and retried; MAX_COST_EXCEEDED raises
        _CostTooHigh; other errors raise SourceError with Shopify's messages."""
        transient = 0
        for attempt in range(1, THROTTLE_ATTEMPTS + 1):
            body, response = self.http.request_json(
                "POST", self.ext.endpoint, json_body={"query": query, "variables": variables or {}},
                cost=self.ext._cost_of(name))
            self._count_requests()
            self._check_version(response)
            if not isinstance(body, dict):
                raise SourceError(f"Shopify ({self.conn_id}) answered {name} with a non-object JSON body")
            cost = (body.get("extensions") or {}).get("cost") or {}
            self.ext._learn_cost(name, cost.get("requestedQueryCost"))
            errors = body.get("errors")
            if errors:
                codes = _error_codes(errors)
                if "THROTTLED" in codes:
                    self._throttled(name, attempt, cost)
                    continue
                if "MAX_COST_EXCEEDED" in codes:
                    raise _CostTooHigh(cost.get("requestedQueryCost") or _max_cost_of(errors))
                if codes and codes <= {"INTERNAL_SERVER_ERROR"} and transient + 1 < self.ext.http_policy.attempts:
                    transient += 1
                    self.progress.retries += 1
                    delay = min(self.ext.http_policy.max_delay, self.ext.http_policy.base_delay * 2 ** transient)
                    log.info("%s: %s got INTERNAL_SERVER_ERROR, retry in %.1fs", self.conn_id, name, delay)
                    self.ext.sleep(delay)
                    continue
                raise SourceError(f"Shopify ({self.conn_id}) refused {name}: {_messages(errors)}")
            search = (body.get("extensions") or {}).get("search")
            if search:
                raise SourceError(f"Shopify ({self.conn_id}) could not apply the search of {name}: "
                                  f"{json.dumps(search)[:500]}")
            data = body.get("data")
            if not isinstance(data, dict):
                raise SourceError(f"Shopify ({self.conn_id}) answered {name} without data")
            with self.ext._lock:
                self.ext.points_charged += float(cost.get("actualQueryCost") or 0)
            return data
        raise RetryBudgetExhausted(f"Shopify ({self.conn_id}): {name} still THROTTLED after {THROTTLE_ATTEMPTS} "
                                   "attempts; another app may be draining this shop's rate limit")

    def _throttled(self, name: str, attempt: int, cost: dict) -> None:
        """Wait until the bucket holds the refused query's cost (from the THROTTLED answer's throttleStatus)."""
        with self.ext._lock:
            self.ext.throttled_responses += 1
        self.progress.throttled += 1
        self.progress.retries += 1
        requested = float(cost.get("requestedQueryCost") or self.ext._cost_of(name))
        wait = self.ext.pacer.seconds_until(requested)
        if wait is None:  # no throttleStatus in the answer: back off blindly
            wait = min(self.ext.http_policy.max_delay, self.ext.http_policy.base_delay * 2 ** attempt)
        else:
            wait += self.ext.pacer.margin_seconds
        log.info("%s: %s THROTTLED (requested %.0f points), retry in %.2fs", self.conn_id, name, requested, wait)
        self.progress.rate_waits += 1
        self.progress.rate_wait_seconds += wait
        self.ext.sleep(wait)

    def _check_version(self, response: httpx.Response) -> None:
        if self._version_checked:
            return
        self._version_checked = True
        served = response.headers.get("X-Shopify-API-Version")
        if served and served != self.ext.api_version:
            log.warning("%s: asked for Shopify API %s, served %s (the asked version is no longer supported)",
                        self.conn_id, self.ext.api_version, served)

    # ---- choosing the path --------------------------------------------------------------------------------------
    def wants_bulk(self, spec: _Entity, search: str) -> bool:
        threshold = self.ext.bulk_threshold
        if threshold is None:
            return False
        if threshold <= 0:
            return True
        query = (f"query TailorCount($query: String, $limit: Int) {{ {spec.count_field}(query: $query, "
                 f"limit: $limit) {{ count precision }} }}")
        data = self.graphql(f"count:{spec.entity}", query, {"query": search, "limit": threshold})
        counted = data.get(spec.count_field) or {}
        return int(counted.get("count") or 0) >= threshold

    # ---- paged path ---------------------------------------------------------------------------------------------
    def paged(self, spec: _Entity, search: str) -> Iterator[RecordVersion]:
        query = (f"query TailorPage($first: Int!, $after: String, $query: String) {{ {spec.root}(first: $first, "
                 f"after: $after, query: $query, sortKey: UPDATED_AT) {{ nodes {{ {spec.node_selection(False)} }} "
                 f"pageInfo {{ hasNextPage endCursor }} }} }}")
        first, after, stalls = self.ext.page_size, None, 0
        while True:
            try:
                data = self.graphql(f"page:{spec.entity}:{first}", query,
                                    {"first": first, "after": after, "query": search})
            except _CostTooHigh as exc:
                if first == 1:
                    raise SourceError(f"Shopify ({self.conn_id}) prices one {spec.type_name} at {exc.cost} points, "
                                      f"above the {MAX_QUERY_COST}-point query limit: select fewer fields") from None
                first = max(1, first // 2)
                log.warning("%s: %s page cost %s exceeds %d points, page size now %d", self.conn_id, spec.entity,
                            exc.cost, MAX_QUERY_COST, first)
                continue
            conn = data.get(spec.root) or {}
            self.progress.pages += 1
            for node in conn.get("nodes") or ():
                payload = self._complete(spec, node)
                if payload is not None:
                    yield _version(payload)
            self._report()
            info = conn.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                return
            cursor = info.get("endCursor")
            if not cursor:
                raise SourceError(f"Shopify ({self.conn_id}) said {spec.root} has a next page but gave no cursor")
            if cursor == after:  # the page did not move forward: ask again, a little
                stalls += 1
                if stalls > 5:
                    raise SourceError(f"Shopify ({self.conn_id}) keeps answering {spec.root} with the same cursor")
                continue
            after, stalls = cursor, 0

    def _complete(self, spec: _Entity, node: dict) -> dict | None:
        """A paged node with nested connections flattened to full lists (None: it changed while being read)."""
        for item in spec.lists:
            for entry in node.get(item.key) or ():
                inner = entry.get(item.inner.key) if isinstance(entry, dict) else None
                if isinstance(inner, dict):
                    nodes = self._rest(item.inner, entry["id"], inner, None)
                    if nodes is None:
                        raise SourceError(f"Shopify ({self.conn_id}) could not page {item.inner.key} of {entry['id']}")
                    entry[item.inner.key] = nodes
        for conn in spec.conns:
            value = node.get(conn.key)
            if isinstance(value, dict):
                nodes = self._rest(conn, node["id"], value, node["updatedAt"])
                if nodes is None:
                    log.info("%s: %s changed while its %s were read; its new version is read later",
                             self.conn_id, node["id"], conn.key)
                    return None
                node[conn.key] = nodes
        return node

    def _rest(self, conn: _Conn, parent_id: str, page: dict, updated_at: str | None) -> list[dict] | None:
        """All nodes of a nested connection: the first page as given, further pages through node(id:)."""
        nodes = list(page.get("nodes") or ())
        info = page.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            return nodes
        check = "updatedAt " if conn.check_parent else ""
        query = (f"query TailorMore($id: ID!, $after: String) {{ node(id: $id) {{ ... on {conn.parent_type} {{ "
                 f"{check}{conn.key}(first: {MAX_PAGE_SIZE}, after: $after) {{ nodes {{ {conn.fields} }} "
                 f"pageInfo {{ hasNextPage endCursor }} }} }} }} }}")
        after = info.get("endCursor")
        while after:
            data = self.graphql(f"more:{conn.parent_type}.{conn.key}", query, {"id": parent_id, "after": after})
            parent = data.get("node")
            if not parent or (conn.check_parent and parent.get("updatedAt") != updated_at):
                return None
            more = parent.get(conn.key) or {}
            nodes += more.get("nodes") or ()
            info = more.get("pageInfo") or {}
            after = info.get("endCursor") if info.get("hasNextPage") else None
        return nodes

    # ---- bulk path ----------------------------------------------------------------------------------------------
    def bulk(self, spec: _Entity, search: str) -> Iterator[RecordVersion]:
        text = (f"{{ {spec.root}(query: {json.dumps(search)}, sortKey: UPDATED_AT) {{ edges {{ node {{ "
                f"{spec.node_selection(True)} }} }} }} }}")
        deadline = self.ext.clock() + self.ext.bulk_timeout
        op = self._bulk_start(text, deadline)
        try:
            info = self._bulk_wait(op, deadline)
        finally:
            if not op.finished:
                self._bulk_cancel(op)
        url = info.get("url")
        if not url:  # COMPLETED with no objects: Shopify gives no file
            return
        with tempfile.TemporaryDirectory(prefix="tailor-shopify-bulk-") as tmp:
            path = Path(tmp) / "result.jsonl"
            self._download(url, path)
            self.progress.pages += 1
            yield from self._reassemble(spec, path)
        self._report()

    def _bulk_start(self, text: str, deadline: float) -> _BulkOp:
        mutation = ("mutation TailorBulkRun($query: String!) { bulkOperationRunQuery(query: $query, "
                    "groupObjects: false) { bulkOperation { id status } userErrors { field message code } } }")
        delay = self.ext.bulk_poll_interval
        while True:
            data = self.graphql("bulk:run", mutation, {"query": text})
            payload = data.get("bulkOperationRunQuery") or {}
            errors = payload.get("userErrors") or []
            operation = payload.get("bulkOperation")
            if operation and not errors:
                log.info("%s: bulk operation %s started", self.conn_id, operation["id"])
                return _BulkOp(operation["id"], operation.get("status", "CREATED"))
            busy = {e.get("code") for e in errors} & {"LIMIT_REACHED", "OPERATION_IN_PROGRESS"}
            if not busy:
                raise SourceError(f"Shopify ({self.conn_id}) refused the bulk query: "
                                  + "; ".join(str(e.get("message")) for e in errors))
            if self.ext.clock() + delay > deadline:
                raise SourceError(f"Shopify ({self.conn_id}): no bulk operation slot became free in "
                                  f"{self.ext.bulk_timeout:.0f}s ({', '.join(sorted(busy))})")
            log.info("%s: bulk operations busy (%s), trying again in %.1fs", self.conn_id, ", ".join(sorted(busy)),
                     delay)
            self.progress.rate_waits += 1
            self.progress.rate_wait_seconds += delay
            self.ext.sleep(delay)
            delay = min(self.ext.bulk_poll_max, delay * 1.5)

    def _bulk_wait(self, op: _BulkOp, deadline: float) -> dict:
        query = ("query TailorBulkPoll($id: ID!) { bulkOperation(id: $id) { id status errorCode objectCount "
                 "rootObjectCount fileSize url partialDataUrl } }")
        delay = self.ext.bulk_poll_interval
        while True:
            info = self.graphql("bulk:poll", query, {"id": op.gid}).get("bulkOperation")
            if not info:
                raise SourceError(f"Shopify ({self.conn_id}) no longer knows bulk operation {op.gid}")
            op.status = info.get("status", "")
            if op.status == "COMPLETED":
                op.finished = True
                log.info("%s: bulk operation %s completed: %s objects, %s bytes", self.conn_id, op.gid,
                         info.get("objectCount"), info.get("fileSize"))
                return info
            if op.status in ("FAILED", "CANCELED", "EXPIRED"):
                op.finished = True
                partial = " (partial data exists; not used)" if info.get("partialDataUrl") else ""
                raise SourceError(f"Shopify ({self.conn_id}) bulk operation {op.gid} ended {op.status} with error "
                                  f"code {info.get('errorCode')}{partial}")
            if self.ext.clock() + delay > deadline:
                raise SourceError(f"Shopify ({self.conn_id}) bulk operation {op.gid} still {op.status} after "
                                  f"{self.ext.bulk_timeout:.0f}s; canceled")
            self.ext.sleep(delay)
            delay = min(self.ext.bulk_poll_max, delay * 1.5)

    def _bulk_cancel(self, op: _BulkOp) -> None:
        mutation = ("mutation TailorBulkCancel($id: ID!) { bulkOperationCancel(id: $id) { bulkOperation { status } "
                    "userErrors { message } } }")
        with suppress(SourceError):  # best effort: the operation is abandoned either way
            self.graphql("bulk:cancel", mutation, {"id": op.gid})
            log.info("%s: bulk operation %s canceled", self.conn_id, op.gid)

    def _download(self, url: str, path: Path) -> None:
        """The result file, streamed to disk. The URL is presigned storage: no Shopify token goes there."""
        policy = self.ext.http_policy
        host = urlsplit(url).netloc
        with httpx.Client(timeout=policy.timeout, follow_redirects=True) as client:
            for attempt in range(1, policy.attempts + 1):
                try:
                    with client.stream("GET", url) as response:
                        if response.status_code >= 400 and response.status_code < 500:
                            raise SourceError(f"Shopify ({self.conn_id}) bulk result at {host} answered HTTP "
                                              f"{response.status_code} (expired link?)")
                        if response.status_code >= 500:
                            raise httpx.HTTPStatusError("server error", request=response.request,
                                                        response=response)
                        expected = response.headers.get("Content-Length")
                        written = 0
                        with open(path, "wb") as out:
                            for chunk in response.iter_bytes(1 << 20):
                                out.write(chunk)
                                written += len(chunk)
                        if expected is not None and int(expected) != written:
                            raise httpx.ReadError(f"got {written} of {expected} bytes")
                        return
                except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                    if attempt == policy.attempts:
                        raise RetryBudgetExhausted(f"Shopify ({self.conn_id}): downloading the bulk result from "
                                                   f"{host} failed {attempt} times: {type(exc).__name__}") from None
                    delay = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
                    self.progress.retries += 1
                    log.info("%s: bulk download from %s failed (%s), retry in %.1fs", self.conn_id, host,
                             type(exc).__name__, delay)
                    self.ext.sleep(delay)

    def _reassemble(self, spec: _Entity, path: Path) -> Iterator[RecordVersion]:
        """Parents in file order, each with its nested connection nodes (lines carrying __parentId) put back.

        Two passes over the file on disk: the first notes where each line starts (children by parent id), the
        second reads each parent and its children; memory holds offsets, not records.
        """
        by_type = {conn.node_type: conn.key for conn in spec.conns}
        parents: list[int] = []
        children: dict[str, list[int]] = {}
        with open(path, "rb") as f:
            offset = 0
            for line in f:
                if b'"__parentId"' in line:
                    children.setdefault(json.loads(line)["__parentId"], []).append(offset)
                elif line.strip():
                    parents.append(offset)
                offset += len(line)
            batch: list[dict] = []
            pending = 0  # parents in the batch that need a follow-up request
            for start in parents:
                f.seek(start)
                parent = json.loads(f.readline())
                nested: dict[str, list[dict]] = {conn.key: [] for conn in spec.conns}
                for child_at in children.pop(parent["id"], ()):
                    f.seek(child_at)
                    child = json.loads(f.readline())
                    child.pop("__parentId", None)
                    kind = str(child.get("id", "")).split("/")[-2:-1]
                    key = by_type.get(kind[0]) if kind else None
                    if key is None:
                        raise SourceError(f"Shopify ({self.conn_id}) bulk result holds an unexpected child "
                                          f"{child.get('id')!r} of {parent['id']}")
                    nested[key].append(child)
                parent.update(nested)  # nested connections are last in the selection: same key order as paged
                batch.append(parent)
                pending += any(parent.get(item.key) for item in spec.lists)
                if pending >= REFUND_BATCH or len(batch) >= 2000:
                    yield from self._finish(spec, batch)
                    batch, pending = [], 0
            yield from self._finish(spec, batch)
        if children:
            log.warning("%s: bulk result had children of %d parents not in the file; ignored", self.conn_id,
                        len(children))

    def _finish(self, spec: _Entity, batch: list[dict]) -> Iterator[RecordVersion]:
        """Fill in what a bulk query cannot carry (connections inside list fields), then yield."""
        for item in spec.lists:
            wanted = [p["id"] for p in batch if p.get(item.key)]
            if not wanted:
                continue
            found = self._inner_lists(spec, item, wanted)
            keep = []
            for parent in batch:
                entries = parent.get(item.key) or []
                if entries and parent["id"] not in found:
                    log.warning("%s: %s vanished before its %s could be read; skipped", self.conn_id, parent["id"],
                                item.inner.key)
                    continue
                for entry in entries:
                    lines = found.get(parent["id"], {}).get(entry["id"])
                    if lines is None:
                        raise SourceError(f"Shopify ({self.conn_id}) did not return {item.key} {entry['id']} of "
                                          f"{parent['id']}")
                    entry[item.inner.key] = lines
                keep.append(parent)
            batch = keep
        for parent in batch:
            yield _version(parent)

    def _inner_lists(self, spec: _Entity, item: _ListWithConn,
                     parent_ids: list[str]) -> dict[str, dict[str, list[dict]]]:
        """{parent id: {list entry id: inner connection nodes}} through nodes(ids:)."""
        query = (f"query TailorInner($ids: [ID!]!) {{ nodes(ids: $ids) {{ ... on {spec.type_name} {{ id {item.key} {{ "
                 f"id {_conn_selection(item.inner, bulk=False)} }} }} }} }}")
        out: dict[str, dict[str, list[dict]]] = {}
        data = self.graphql(f"inner:{item.key}", query, {"ids": parent_ids})
        for node in data.get("nodes") or ():
            if not node or "id" not in node:
                continue
            entries = {}
            for entry in node.get(item.key) or ():
                lines = self._rest(item.inner, entry["id"], entry.get(item.inner.key) or {}, None)
                if lines is None:
                    raise SourceError(f"Shopify ({self.conn_id}) could not page {item.inner.key} of {entry['id']}")
                entries[entry["id"]] = lines
            out[node["id"]] = entries
        return out

    # ---- deletions ----------------------------------------------------------------------------------------------
    def deletions(self, spec: _Entity, window: Window) -> Iterator[RecordVersion]:
        """Deletions of the entity's records in the window, from BasicEvents (kept by Shopify for a year)."""
        query = ("query TailorDeletions($first: Int!, $after: String, $query: String) { events(first: $first, "
                 "after: $after, query: $query, sortKey: CREATED_AT) { nodes { id action createdAt message "
                 "... on BasicEvent { subjectId subjectType } } pageInfo { hasNextPage endCursor } } }")
        search = f"action:destroy AND subject_type:{spec.subject_type} AND {window_query(window, 'created_at')}"
        after = None
        while True:
            data = self.graphql("deletions", query, {"first": MAX_PAGE_SIZE, "after": after, "query": search})
            conn = data.get("events") or {}
            self.progress.pages += 1
            for event in conn.get("nodes") or ():
                if event.get("action") != "destroy" or event.get("subjectType") != spec.subject_type:
                    continue
                if not event.get("subjectId"):
                    continue
                yield RecordVersion(record_id=event["subjectId"], updated_at=_parse_time(event["createdAt"]),
                                    payload=event, is_deleted=True)
            info = conn.get("pageInfo") or {}
            if not info.get("hasNextPage") or not info.get("endCursor") or info.get("endCursor") == after:
                return
            after = info["endCursor"]

    def _report(self) -> None:
        if self.progress.report is not None:
            self.progress.report(self.progress)


def _version(payload: dict) -> RecordVersion:
    return RecordVersion(record_id=payload["id"], updated_at=_parse_time(payload["updatedAt"]), payload=payload)


def _error_codes(errors: object) -> set[str]:
    codes = set()
    for error in errors if isinstance(errors, list) else [errors]:
        if isinstance(error, dict):
            code = (error.get("extensions") or {}).get("code")
            if code:
                codes.add(str(code))
    return codes


def _max_cost_of(errors: list) -> int | None:
    for error in errors:
        if isinstance(error, dict):
            cost = (error.get("extensions") or {}).get("cost")
            if isinstance(cost, int):
                return cost
    return None


def _messages(errors: object) -> str:
    if isinstance(errors, list):
        text = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
    else:
        text = str(errors)
    return text[:500]
