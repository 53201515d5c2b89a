"""Klaviyo (JSON:API, revision 2026-10-15): profiles by `updated`, events by `datetime`.

Profiles: `GET /api/profiles` with `filter=and(greater-than(updated,S),less-than(updated,E))`, `sort=updated`,
`page[size]=100` and `additional-fields[profile]=subscriptions`, so each payload carries the profile's consent.
Profiles' `updated` accepts only greater-than and less-than, so S is the window start minus one second and the
versions are then kept client-side to [start, end) exactly.

Events: `GET /api/events` with `filter=greater-or-equal(datetime,S),less-than(datetime,E)`, `sort=datetime`,
`page[size]=1000` (the maximum since revision 2026-01-15) and `include=metric`, every metric at once. Events
never change, so a version's updated_at is the event's `datetime`. The stored payload is the event resource
exactly as returned (attributes and relationships) plus one key Tailor adds: `included`, a list holding the
metric resource the response included for the event's `relationships.metric` (so the metric's name is at
`payload.included[0].attributes.name`, found by `type == "metric"`). Events whose metric the response did not
include get `included: []`.

Paging follows `links.next`, but only its `page[cursor]`: the request is rebuilt against the configured base
URL with our own parameters, so the API key is never sent to a host taken from a response body. Klaviyo's
cursors are keyset positions (sort key and record), so records edited while a window is read are not skipped
by offsets shifting; an edit moves a profile to a newer `updated`, which either stays ahead of the cursor
(read later) or leaves the window (the next window reads it). Many profiles on one second are paged through
by the cursor like any others. A cursor that repeats is refused rather than followed forever.

Both: the same (id, updated_at) seen twice in one extraction (a page repeating the previous one's last record)
is yielded once.

Pacing (per endpoint, since Klaviyo limits each endpoint separately): a burst window (1 s) and a steady
window (60 s), seeded with the published figures for the endpoint (profiles 75/s and 750/min, events 350/s
and 3500/min) and corrected from RateLimit-Limit / RateLimit-Remaining on every successful response (those
headers describe the steady window). Requests wait for room in both windows, so a steady extraction sees
almost no 429; the 429s it does see are retried by HttpClient after Retry-After.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx

from tailor.sources import Credentials, Progress, RecordVersion, Window
from tailor.sources.http import HttpClient, Pacer, RetryPolicy, SourceError
from tailor.sources.pacing import RollingWindow, reserve

log = logging.getLogger(__name__)

REVISION = "2026-10-15"
PROFILES_PATH = "/api/profiles"
EVENTS_PATH = "/api/events"
# (burst per second, steady per minute) published for each endpoint in the 2026-10-15 reference.
PUBLISHED_LIMITS = {PROFILES_PATH: (75, 750), EVENTS_PATH: (350, 3500)}
PROFILES_PAGE_MAX = 100
EVENTS_PAGE_MAX = 1000
_FIRST_INT = re.compile(r"\d+")
_WINDOW = re.compile(r"w=(\d+)")


def parse_time(value: object) -> datetime:
    """Klaviyo's '2026-01-02T03:04:05+00:00' (or '...Z', with or without fractions) -> aware UTC datetime."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a Klaviyo timestamp: {value!r}")
    dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def filter_time(dt: datetime) -> str:
    """A filter literal: ISO 8601 in UTC with Z (no '+', which query strings mangle)."""
    dt = dt.astimezone(UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}"
    return text + "Z"


class EndpointPacer(Pacer):
    """One endpoint's burst and steady windows."""

    def __init__(self, burst: int, steady: int, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.burst = RollingWindow(burst, 1.0, pad=0.05, clock=clock)
        self.steady = RollingWindow(steady, 60.0, pad=0.1, clock=clock)

    def wait_before(self, request_cost: float) -> float:
        return reserve([self.burst, self.steady], self.clock)

    def observe(self, response: httpx.Response, body: object) -> None:
        now = self.clock()
        self.burst.settle(now)
        self.steady.settle(now)
        limit, remaining = response.headers.get("RateLimit-Limit"), response.headers.get("RateLimit-Remaining")
        if limit is None or remaining is None:
            return
        try:
            # '750' or the IETF draft forms '750, 75;w=1, 750;w=60' / '750;w=60': the first number is the limit
            # of the window the headers describe, which Klaviyo documents as the steady one
            steady = int(_FIRST_INT.search(limit).group())
            remaining_count = int(_FIRST_INT.search(remaining).group())
        except (AttributeError, ValueError):
            return
        windows = [int(w) for w in _WINDOW.findall(limit)]
        self.steady.resize(steady, float(max(windows)) if windows else 60.0)
        self.steady.sync(remaining_count, now)


class KlaviyoExtractor:
    """Profiles and events from Klaviyo. See the module docstring for how windows are read."""

    source = "klaviyo"
    entities = ("profiles", "events")

    def __init__(self, credentials: Credentials, revision: str = REVISION, *,
                 policy: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep,
                 profiles_page_size: int = PROFILES_PAGE_MAX, events_page_size: int = EVENTS_PAGE_MAX,
                 pacers: dict[str, EndpointPacer] | None = None):
        if not 1 <= profiles_page_size <= PROFILES_PAGE_MAX:
            raise ValueError(f"profiles_page_size must be within 1..{PROFILES_PAGE_MAX}")
        if not 1 <= events_page_size <= EVENTS_PAGE_MAX:
            raise ValueError(f"events_page_size must be within 1..{EVENTS_PAGE_MAX}")
        self.credentials = credentials
        self.revision = revision
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.page_sizes = {PROFILES_PATH: profiles_page_size, EVENTS_PATH: events_page_size}
        self.pacers = pacers or {path: EndpointPacer(*limits) for path, limits in PUBLISHED_LIMITS.items()}
        self.requests_sent = 0  # over every extraction of this extractor

    # ---- the Extractor protocol -------------------------------------------------------------------------
    def extract(self, entity: str, window: Window, progress: Progress | None = None) -> Iterator[RecordVersion]:
        if entity not in self.entities:
            raise ValueError(f"klaviyo has no entity {entity!r}: choose one of {', '.join(self.entities)}")
        progress = progress or Progress()
        path = PROFILES_PATH if entity == "profiles" else EVENTS_PATH
        client = self._client(path, progress)
        try:
            if entity == "profiles":
                params = {
                    "filter": f"and(greater-than(updated,{filter_time(window.start - timedelta(seconds=1))}),"
                              f"less-than(updated,{filter_time(window.end)}))",
                    "sort": "updated",
                    "additional-fields[profile]": "subscriptions",
                }
                yield from self._collection(client, path, params, window, progress, "updated")
            else:
                params = {
                    "filter": f"greater-or-equal(datetime,{filter_time(window.start)}),"
                              f"less-than(datetime,{filter_time(window.end)})",
                    "sort": "datetime",
                    "include": "metric",
                }
                yield from self._collection(client, path, params, window, progress, "datetime")
        finally:
            self.requests_sent += client.requests_sent
            client.close()

    def newest(self, entity: str, before: datetime) -> datetime | None:
        """The newest `updated` (profiles) or `datetime` (events) before `before`: one page of one, sorted
        descending (`sort=-updated` / `sort=-datetime`) with a less-than filter and only that field."""
        if entity not in self.entities:
            raise ValueError(f"klaviyo has no entity {entity!r}: choose one of {', '.join(self.entities)}")
        path, kind, field = ((PROFILES_PATH, "profile", "updated") if entity == "profiles"
                             else (EVENTS_PATH, "event", "datetime"))
        client = self._client(path, Progress())
        try:
            body, _ = client.request_json("GET", path, params={
                "filter": f"less-than({field},{filter_time(before)})", "sort": f"-{field}", "page[size]": "1",
                f"fields[{kind}]": field})
        finally:
            self.requests_sent += client.requests_sent
            client.close()
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise SourceError(f"Klaviyo ({self.credentials.conn_id}): GET {path} answered without a data list")
        if not body["data"]:
            return None
        resource = body["data"][0]
        raw = (resource.get("attributes") or {}).get(field)
        try:
            return parse_time(raw)
        except ValueError:
            raise SourceError(f"Klaviyo ({self.credentials.conn_id}): {kind} {resource.get('id')} has no readable "
                              f"{field} ({raw!r})") from None

    def _client(self, path: str, progress: Progress) -> HttpClient:
        return HttpClient(self.credentials, "Klaviyo", {"Authorization": f"Klaviyo-API-Key {self.credentials.token}"},
                          policy=self.policy, pacer=self.pacers[path], progress=progress, sleep=self.sleep,
                          default_headers={"revision": self.revision, "Accept": "application/vnd.api+json"})

    # ---- paging ----------------------------------------------------------------------------------------------
    def _collection(self, client: HttpClient, path: str, params: dict[str, str], window: Window,
                    progress: Progress, time_field: str) -> Iterator[RecordVersion]:
        params = {**params, "page[size]": str(self.page_sizes[path])}
        seen: dict[datetime, set[str]] = {}  # versions yielded, by time; pruned as the sorted read moves on
        cursors: set[str] = set()
        cursor: str | None = None
        while True:
            body, _ = client.request_json("GET", path, params={**params, **({"page[cursor]": cursor} if cursor else {})})
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise SourceError(f"Klaviyo ({self.credentials.conn_id}): GET {path} answered without a data list")
            progress.pages += 1
            included = {(r.get("type"), r.get("id")): r for r in body.get("included") or [] if isinstance(r, dict)}
            page_times: list[datetime] = []
            for resource in body["data"]:
                record_id = str(resource["id"])
                raw = (resource.get("attributes") or {}).get(time_field)
                try:
                    updated_at = parse_time(raw)
                except ValueError:
                    raise SourceError(f"Klaviyo ({self.credentials.conn_id}): {resource.get('type')} {record_id} "
                                      f"has no readable {time_field} ({raw!r})") from None
                page_times.append(updated_at)
                if not window.start <= updated_at < window.end or record_id in seen.get(updated_at, ()):
                    continue
                seen.setdefault(updated_at, set()).add(record_id)
                progress.records += 1
                yield RecordVersion(record_id, updated_at, self._payload(resource, included))
            if progress.report:
                progress.report(progress)
            if page_times:  # sorted ascending: a later page can only repeat versions from this page on
                floor = min(page_times)
                for stale in [t for t in seen if t < floor]:
                    del seen[stale]
            cursor = _next_cursor(body)
            if cursor is None:
                return
            if cursor in cursors:
                raise SourceError(f"Klaviyo ({self.credentials.conn_id}): GET {path} handed out the same page "
                                  "cursor twice; stopping rather than looping")
            cursors.add(cursor)

    @staticmethod
    def _payload(resource: dict, included: dict[tuple[str, str], dict]) -> dict:
        """Events get `included`: the metric resource their relationship names (see the module docstring)."""
        if resource.get("type") != "event":
            return resource
        metric = ((resource.get("relationships") or {}).get("metric") or {}).get("data") or {}
        found = included.get(("metric", metric.get("id")))
        return {**resource, "included": [found] if found else []}


def _next_cursor(body: dict) -> str | None:
    """page[cursor] of links.next, or None on the last page."""
    link = (body.get("links") or {}).get("next")
    if not link:
        return None
    values = parse_qs(urlsplit(link).query).get("page[cursor]")
    if not values or not values[0]:
        raise SourceError("Klaviyo's links.next carries no page[cursor]; cannot continue the listing")
    return values[0]
