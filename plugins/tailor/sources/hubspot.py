"""HubSpot CRM v3 contacts: incremental reads through the search API, full loads and deletes through the list API.

Incremental (the usual case): `POST /crm/v3/objects/contacts/search` on `lastmodifieddate` in [start, end),
sorted ascending, with every property staging needs. HubSpot's search pages by *offset* (`after` is a
position in a result order that is re-evaluated on every request) and refuses to page past the 10,000th
result. Both are avoided by never using `after` at all: every request is a fresh first page of a narrowed
query (keyset paging).

  * Main mode. Ask for the first page of `lastmodifieddate GTE cursor AND LT end`, sorted ascending. All the
    records on the page whose timestamp is below the page's last timestamp T are complete (the sort puts
    every record of [cursor, T) before any record at T). The next query starts at `GTE T`: the records at T
    are read again and deduplicated, so a page may be cut in the middle of a run of equal timestamps without
    losing any of it. Each full page moves the cursor strictly forward.
  * Tie mode. When many records share T (a quarter of a page or more; a whole page of them would otherwise
    never move the cursor), T is read on its own: `lastmodifieddate GTE T AND LT T+1ms AND hs_object_id GT
    last_id`, sorted by hs_object_id, first page each time, until no page follows. Then the cursor moves to
    T+1ms. HubSpot gives no order among equal sort values, so tie mode sorts by id rather than relying on it.
  * The 10,000-result cap applies to `after` offsets; since no request here carries one, a window of any size
    (and any number of records on one millisecond) is read without a 400 and without splitting the window.
    `total` from the first page is only reported.
  * Records edited while the window is read: an edit moves a record to a newer lastmodifieddate. A record not
    read yet either stays ahead of the cursor (read later, at its new time) or leaves the window (the next
    window reads it); one already read keeps the version read, and its new version belongs to a later window.
    Offsets never enter the picture, so an edit can not make the read skip a neighbour. Nothing is missed.

Full loads (a window starting at or before the Unix epoch, or `full=True`) page `GET /crm/v3/objects/contacts`
by id (`after` there is an id, so it is keyset paging too) and keep the versions in the window. HubSpot's list
is cheaper than search for everything (100 per request at the burst limit, 10 req/s, vs 200 per request at the
search limit, 5 req/s, less our margin).

Deletes: archived contacts never appear in search. Every contacts extraction also pages
`GET /crm/v3/objects/contacts?archived=true` (small in practice) and yields each contact archived within the
window as a RecordVersion with is_deleted=True and updated_at = archivedAt.

Pacing (proactive, so a steady extraction rarely sees a 429): the ten-secondly burst limit is tracked from
X-HubSpot-RateLimit-Max / -Remaining / -Interval-Milliseconds on every response that carries them; the
search endpoints' own limit (5 requests per second per account, answered without rate-limit headers) is
tracked client-side. Search requests count toward the burst window too, which is conservative.

Timestamps: HubSpot compares datetimes as epoch milliseconds; filters send epoch-ms strings. A record's
updated_at is its `lastmodifieddate` property (the value the window filters on), falling back to `updatedAt`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx

from tailor.sources import Credentials, Progress, RecordVersion, Window
from tailor.sources.http import HttpClient, Pacer, RetryPolicy, SourceError
from tailor.sources.pacing import RollingWindow, reserve

log = logging.getLogger(__name__)

CONTACTS_PATH = "/crm/v3/objects/contacts"
SEARCH_PATH = "/crm/v3/objects/contacts/search"
PROPERTIES = ("email", "firstname", "lastname", "phone", "lifecyclestage", "hs_lead_status", "hubspot_owner_id",
              "createdate", "lastmodifieddate", "date_of_birth", "city", "country", "zip", "hs_object_id")
SEARCH_PAGE_MAX = 200
LIST_PAGE_MAX = 100
BURST_LIMIT, BURST_SECONDS = 100, 10.0  # Free/Starter private app; replaced by the headers once seen
SEARCH_PER_SECOND = 5
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(value: object) -> datetime:
    """HubSpot's '2026-01-02T03:04:05.123Z' (or epoch milliseconds) -> an aware UTC datetime."""
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a HubSpot timestamp: {value!r}")
    dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def to_ms(dt: datetime) -> int:
    """Epoch milliseconds, rounded down (a window [start, end) in ms covers the same records)."""
    delta = dt.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


class HubSpotPacer:
    """The account's two budgets, shared by the search and list clients of one extractor."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.burst = RollingWindow(BURST_LIMIT, BURST_SECONDS, pad=0.1, clock=clock)
        self.search = RollingWindow(SEARCH_PER_SECOND, 1.0, pad=0.05, clock=clock)

    def for_search(self) -> Pacer:
        return _PacerView(self, (self.burst, self.search))

    def for_list(self) -> Pacer:
        return _PacerView(self, (self.burst,))

    def observe_headers(self, headers: httpx.Headers) -> None:
        try:
            limit = int(headers["X-HubSpot-RateLimit-Max"])
            remaining = int(headers["X-HubSpot-RateLimit-Remaining"])
            interval_ms = int(headers.get("X-HubSpot-RateLimit-Interval-Milliseconds", BURST_SECONDS * 1000))
        except (KeyError, ValueError):
            return  # search responses carry none
        self.burst.resize(limit, interval_ms / 1000)
        self.burst.sync(remaining)


class _PacerView(Pacer):
    def __init__(self, owner: HubSpotPacer, windows: tuple[RollingWindow, ...]):
        self.owner, self.windows = owner, list(windows)

    def wait_before(self, request_cost: float) -> float:
        return reserve(self.windows, self.owner.clock)

    def observe(self, response: httpx.Response, body: object) -> None:
        now = self.owner.clock()
        for w in self.windows:
            w.settle(now)
        self.owner.observe_headers(response.headers)


class _Seen:
    """(record_id, updated ms) pairs already yielded in one extraction; pairs below a moving floor are dropped,
    since keyset paging never returns them again."""

    def __init__(self) -> None:
        self._by_ms: dict[int, set[str]] = {}

    def add(self, record_id: str, ms: int) -> bool:
        ids = self._by_ms.setdefault(ms, set())
        if record_id in ids:
            return False
        ids.add(record_id)
        return True

    def forget_below(self, floor_ms: int) -> None:
        for ms in [m for m in self._by_ms if m < floor_ms]:
            del self._by_ms[ms]


class HubSpotExtractor:
    """Contacts from HubSpot CRM v3. See the module docstring for how windows are read."""

    source = "hubspot"
    entities = ("contacts",)

    def __init__(self, credentials: Credentials, *, full: bool = False, deletes: bool = True,
                 policy: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep,
                 search_page_size: int = SEARCH_PAGE_MAX, list_page_size: int = LIST_PAGE_MAX,
                 pacer: HubSpotPacer | None = None):
        if not 1 <= search_page_size <= SEARCH_PAGE_MAX:
            raise ValueError(f"search_page_size must be within 1..{SEARCH_PAGE_MAX}")
        if not 1 <= list_page_size <= LIST_PAGE_MAX:
            raise ValueError(f"list_page_size must be within 1..{LIST_PAGE_MAX}")
        self.credentials = credentials
        self.full = full
        self.deletes = deletes
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.search_page_size = search_page_size
        self.list_page_size = list_page_size
        self.tie_threshold = max(1, search_page_size // 4)
        self.pacer = pacer or HubSpotPacer()
        self.requests_sent = 0  # over every extraction of this extractor

    # ---- the Extractor protocol -------------------------------------------------------------------------
    def extract(self, entity: str, window: Window, progress: Progress | None = None) -> Iterator[RecordVersion]:
        if entity not in self.entities:
            raise ValueError(f"hubspot has no entity {entity!r}: choose one of {', '.join(self.entities)}")
        progress = progress or Progress()
        start_ms, end_ms = to_ms(window.start), to_ms(window.end)
        search = self._client(self.pacer.for_search(), progress)
        listing = self._client(self.pacer.for_list(), progress)
        try:
            if self.full or window.start <= EPOCH:
                yield from self._list(listing, start_ms, end_ms, progress, archived=False)
            else:
                yield from self._search(search, start_ms, end_ms, progress)
            if self.deletes:
                yield from self._list(listing, start_ms, end_ms, progress, archived=True)
        finally:
            self.requests_sent += search.requests_sent + listing.requests_sent
            search.close()
            listing.close()

    def newest(self, entity: str, before: datetime) -> datetime | None:
        """lastmodifieddate of the contact modified last before `before`: one search, `lastmodifieddate LT before`
        sorted DESCENDING, limit 1 (archived contacts are not searched). `before` is cut to the millisecond as
        extract() cuts a window's end."""
        if entity not in self.entities:
            raise ValueError(f"hubspot has no entity {entity!r}: choose one of {', '.join(self.entities)}")
        client = self._client(self.pacer.for_search(), Progress())
        try:
            page, _ = client.request_json("POST", SEARCH_PATH, json_body={
                "filterGroups": [{"filters": [
                    {"propertyName": "lastmodifieddate", "operator": "LT", "value": str(to_ms(before))}]}],
                "sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}],
                "properties": ["lastmodifieddate"], "limit": 1})
        finally:
            self.requests_sent += client.requests_sent
            client.close()
        if not isinstance(page, dict) or not isinstance(page.get("results"), list):
            raise SourceError(f"HubSpot ({self.credentials.conn_id}): search answered without a results list")
        return _dt(self._ms(page["results"][0])) if page["results"] else None

    def _client(self, pacer: Pacer, progress: Progress) -> HttpClient:
        return HttpClient(self.credentials, "HubSpot", {"Authorization": f"Bearer {self.credentials.token}"},
                          policy=self.policy, pacer=pacer, progress=progress, sleep=self.sleep,
                          default_headers={"Accept": "application/json"})

    # ---- search (incremental) ----------------------------------------------------------------------------
    def _search_page(self, client: HttpClient, filters: list[dict], sort: str) -> dict:
        body = {"filterGroups": [{"filters": filters}],
                "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
                "properties": list(PROPERTIES), "limit": self.search_page_size}
        page, _ = client.request_json("POST", SEARCH_PATH, json_body=body)
        if not isinstance(page, dict) or not isinstance(page.get("results"), list):
            raise SourceError(f"HubSpot ({self.credentials.conn_id}): search answered without a results list")
        return page

    def _search(self, client: HttpClient, start_ms: int, end_ms: int, progress: Progress) -> Iterator[RecordVersion]:
        seen = _Seen()
        cursor, first = start_ms, True
        while cursor < end_ms:
            page = self._search_page(client, [
                {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(cursor)},
                {"propertyName": "lastmodifieddate", "operator": "LT", "value": str(end_ms)},
            ], "lastmodifieddate")
            if first:
                log.info("%s: %s contacts modified in [%s, %s)", self.credentials.conn_id, page.get("total"),
                         _iso(start_ms), _iso(end_ms))
                first = False
            results = page["results"]
            stamps = [self._ms(r) for r in results]
            yield from self._emit(results, stamps, seen, start_ms, end_ms, progress)
            if not results or not _has_next(page):
                return
            if any(b < a for a, b in zip(stamps, stamps[1:], strict=False)) or stamps[0] < cursor:
                raise SourceError(f"HubSpot ({self.credentials.conn_id}): search results are not in ascending "
                                  f"lastmodifieddate order from {_iso(cursor)}; refusing to guess what was skipped")
            last = stamps[-1]
            if stamps[0] == last or stamps.count(last) >= self.tie_threshold:
                yield from self._read_tie(client, last, seen, start_ms, end_ms, progress)
                cursor = last + 1
            else:
                cursor = last  # the records at `last` are read again (and deduplicated) with the rest of `last`
            seen.forget_below(cursor)

    def _read_tie(self, client: HttpClient, ms: int, seen: _Seen, start_ms: int, end_ms: int,
                  progress: Progress) -> Iterator[RecordVersion]:
        """Every contact whose lastmodifieddate is exactly `ms`, by id keyset."""
        last_id = 0
        while True:
            page = self._search_page(client, [
                {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(ms)},
                {"propertyName": "lastmodifieddate", "operator": "LT", "value": str(ms + 1)},
                {"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)},
            ], "hs_object_id")
            results = page["results"]
            yield from self._emit(results, [self._ms(r) for r in results], seen, start_ms, end_ms, progress)
            if not results or not _has_next(page):
                return
            ids = [int(r["id"]) for r in results]
            if any(b <= a for a, b in zip(ids, ids[1:], strict=False)) or ids[0] <= last_id:
                raise SourceError(f"HubSpot ({self.credentials.conn_id}): search results at {_iso(ms)} are not in "
                                  "ascending hs_object_id order; refusing to guess what was skipped")
            last_id = ids[-1]

    # ---- list (full loads and archived contacts) ------------------------------------------------------------
    def _list(self, client: HttpClient, start_ms: int, end_ms: int, progress: Progress,
              archived: bool) -> Iterator[RecordVersion]:
        params: dict[str, str] = {"limit": str(self.list_page_size), "properties": ",".join(PROPERTIES)}
        if archived:
            params["archived"] = "true"
        yielded: set[str] = set()  # the list walks ids: one version per contact and listing
        after: str | None = None
        while True:
            page, _ = client.request_json("GET", CONTACTS_PATH, params={**params, **({"after": after} if after else {})})
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise SourceError(f"HubSpot ({self.credentials.conn_id}): contacts list answered without results")
            progress.pages += 1
            for record in page["results"]:
                record_id = str(record["id"])
                if archived:
                    if not record.get("archivedAt"):
                        continue
                    ms = to_ms(parse_time(record["archivedAt"]))
                else:
                    ms = self._ms(record)
                if not start_ms <= ms < end_ms or record_id in yielded:
                    continue
                yielded.add(record_id)
                progress.records += 1
                yield RecordVersion(record_id, _dt(ms), record, is_deleted=archived)
            if progress.report:
                progress.report(progress)
            nxt = (page.get("paging") or {}).get("next") or {}
            new_after = nxt.get("after")
            if not new_after:
                return
            if new_after == after:
                raise SourceError(f"HubSpot ({self.credentials.conn_id}): contacts list returned the same "
                                  f"'after' ({after}) twice; stopping rather than looping")
            after = str(new_after)

    # ---- helpers ------------------------------------------------------------------------------------------------
    def _ms(self, record: dict) -> int:
        value = (record.get("properties") or {}).get("lastmodifieddate") or record.get("updatedAt")
        try:
            return to_ms(parse_time(value))
        except ValueError:
            raise SourceError(f"HubSpot ({self.credentials.conn_id}): contact {record.get('id')} has no readable "
                              f"lastmodifieddate ({value!r})") from None

    def _emit(self, results: list[dict], stamps: list[int], seen: _Seen, start_ms: int, end_ms: int,
              progress: Progress) -> Iterator[RecordVersion]:
        progress.pages += 1
        for record, ms in zip(results, stamps, strict=True):
            # a version outside the window (edited between indexing and rendering) belongs to another window
            if start_ms <= ms < end_ms and seen.add(str(record["id"]), ms):
                progress.records += 1
                yield RecordVersion(str(record["id"]), _dt(ms), record)
        if progress.report:
            progress.report(progress)


def _has_next(page: dict) -> bool:
    return bool(((page.get("paging") or {}).get("next") or {}).get("after"))


def _dt(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def _iso(ms: int) -> str:
    return _dt(ms).isoformat().replace("+00:00", "Z")
