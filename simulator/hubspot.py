"""HubSpot CRM API v3 over the world's contacts: what a private app sees at the simulator clock.

Endpoints (https://developers.hubspot.com/docs/api-reference/crm/contacts and .../search/guide):
  GET  /crm/v3/objects/contacts              list, ordered by id; `after` is the id to resume from
  GET  /crm/v3/objects/contacts/{contactId}  one contact
  POST /crm/v3/objects/contacts/search       filterGroups/sorts/properties, offset paging capped at 10,000

Search pages are evaluated against the current state on every request, as HubSpot's are: `after` is an
offset into the current result order, so an edit between two pages shifts what the next page holds. That is
the hazard connectors must survive, and the simulator reproduces it rather than hiding it.

Auth is a private-app access token (`Authorization: Bearer pat-...`). Rate limits are those of a private app
on the Free/Starter tiers (developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines, raised
for Professional/Enterprise in the Sept 2024 changelog "Increasing our API limits"): a rolling 10-second
burst limit and a daily limit, both reported in X-HubSpot-RateLimit-* headers, plus the CRM search
endpoints' own per-second limit, whose responses carry no rate-limit headers.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from simulator.paging import IdSequence, View, ViewCache, pick, request_key
from simulator.ratelimit import WindowLimiter
from simulator.state import SimState
from simulator.world import World

API_VERSION = "v3"
PATH_PREFIX = f"/crm/{API_VERSION}/"
MEDIA_TYPE = "application/json;charset=utf-8"

BURST_LIMIT = 100  # requests per rolling 10 s (Free/Starter private app; Professional/Enterprise: 190)
BURST_WINDOW_MS = 10_000
DAILY_LIMIT = 250_000  # requests per day (Free/Starter; Professional 650,000, Enterprise 1,000,000)
SEARCH_PER_SECOND = 5  # CRM search endpoints, per account, counted apart from the burst limit

LIST_DEFAULT_LIMIT = 10
LIST_MAX_LIMIT = 100
SEARCH_DEFAULT_LIMIT = 10
SEARCH_MAX_LIMIT = 200
SEARCH_RESULT_CAP = 10_000  # no search can page past its 10,000th result
MAX_FILTER_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS = 5, 10, 25  # since Aug 2024 (changelog)

# Returned when a request names no properties (list, read and search alike).
DEFAULT_PROPERTIES = ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname")
KNOWN_PROPERTIES = frozenset((
    "city", "country", "createdate", "date_of_birth", "email", "firstname", "hs_lead_status", "hs_object_id",
    "hubspot_owner_id", "lastmodifieddate", "lastname", "lifecyclestage", "phone", "state", "zip",
))
# Search can filter and sort on these (the datetimes in epoch milliseconds, as HubSpot compares them).
NUMERIC_PROPERTIES = frozenset(("lastmodifieddate", "createdate", "hs_object_id"))
DATETIME_PROPERTIES = frozenset(("lastmodifieddate", "createdate"))
STRING_PROPERTIES = frozenset(("email",))
OPERATORS = frozenset(("EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
                       "NOT_HAS_PROPERTY"))
DEFAULT_SORT = ("hs_object_id", False)

_fault_ids = IdSequence("hubspot", "faults")


def hubspot_time(ts: int) -> str:
    """Epoch seconds -> HubSpot's ISO form with milliseconds: '2026-01-02T03:04:05.000Z'."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _error_body(correlation_id: str, message: str, category: str | None = None, **extra: object) -> dict:
    body: dict[str, object] = {"status": "error", "message": message, "correlationId": correlation_id}
    if category:
        body["category"] = category
    body.update(extra)
    return body


def _rate_limit_body(correlation_id: str, policy: str) -> dict:
    message = {"TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
               "SECONDLY": "You have reached your secondly limit.",
               "DAILY": "You have reached your daily limit."}[policy]
    return {"status": "error", "message": message, "errorType": "RATE_LIMIT", "correlationId": correlation_id,
            "policyName": policy}


def fault_response(status: int, retry_after: int | None) -> Response:
    """HubSpot's 429 (the ten-secondly policy) or a 5xx, as the transport-fault middleware injects them."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if status == 429:
        body = _rate_limit_body(_fault_ids.next(), "TEN_SECONDLY_ROLLING")
    else:
        message = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "error")
        body = _error_body(_fault_ids.next(), message)
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def _unauthorized(correlation_id: str) -> Response:
    return JSONResponse(_error_body(
        correlation_id,
        "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more "
        "details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        "INVALID_AUTHENTICATION"), status_code=401, media_type=MEDIA_TYPE)


def unauthorized_response() -> Response:
    return _unauthorized(_fault_ids.next())


class _DailyCounter:
    """Requests per UTC day (HubSpot resets at midnight in the account's time zone)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._day = ""
        self._count = 0
        self._lock = threading.Lock()

    def try_hit(self) -> tuple[bool, int]:
        with self._lock:
            today = datetime.now(UTC).strftime("%Y-%m-%d")
            if today != self._day:
                self._day, self._count = today, 0
            if self._count >= self.limit:
                return False, 0
            self._count += 1
            return True, self.limit - self._count

    def remaining(self) -> int:
        with self._lock:
            return self.limit - self._count


class Rejected(Exception):
    """A request HubSpot answers with a 400 VALIDATION_ERROR."""


@dataclass(frozen=True)
class Filter:
    prop: str
    operator: str
    values: tuple  # numbers (ms or ids) for numeric properties, normalized strings for email


@dataclass(frozen=True)
class Search:
    groups: tuple[tuple[Filter, ...], ...]
    sort: tuple[str, bool]  # (property, descending)
    properties: tuple[str, ...]
    limit: int
    after: int


def _parse_number(prop: str, raw: object) -> int:
    """A filter value: epoch milliseconds (number or digits) or ISO-8601 for datetimes, an integer id."""
    if isinstance(raw, bool) or raw is None:
        raise Rejected(f"filter value {raw!r} for {prop} is not a valid value")
    if isinstance(raw, int | float):
        return int(raw)
    text = str(raw).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if prop in DATETIME_PROPERTIES:
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise Rejected(f"filter value {text!r} for {prop} is not a valid datetime") from None
        dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
        return round(dt.timestamp() * 1000)
    raise Rejected(f"filter value {text!r} for {prop} is not a valid number")


def _parse_filter(raw: object) -> Filter:
    if not isinstance(raw, dict):
        raise Rejected("each filter must be an object with propertyName and operator")
    prop, operator = raw.get("propertyName"), raw.get("operator")
    if operator not in OPERATORS:
        raise Rejected(f"filter operator {operator!r} is not supported; use one of {', '.join(sorted(OPERATORS))}")
    if prop not in NUMERIC_PROPERTIES | STRING_PROPERTIES:
        raise Rejected(f"searching contacts by property {prop!r} is not supported; filter on "
                       f"{', '.join(sorted(NUMERIC_PROPERTIES | STRING_PROPERTIES))}")
    if operator in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        return Filter(prop, operator, ())
    if operator in ("IN", "NOT_IN"):
        raw_values = raw.get("values")
        if not isinstance(raw_values, list) or not raw_values:
            raise Rejected(f"operator {operator} needs a non-empty 'values' list")
    elif operator == "BETWEEN":
        if raw.get("value") is None or raw.get("highValue") is None:
            raise Rejected("operator BETWEEN needs 'value' and 'highValue'")
        raw_values = [raw["value"], raw["highValue"]]
    else:
        if raw.get("value") is None:
            raise Rejected(f"operator {operator} needs a 'value'")
        raw_values = [raw["value"]]
    if prop in STRING_PROPERTIES:
        if operator not in ("EQ", "NEQ", "IN", "NOT_IN"):
            raise Rejected(f"operator {operator} is not supported for {prop}")
        return Filter(prop, operator, tuple(str(v).strip().lower() for v in raw_values))
    return Filter(prop, operator, tuple(_parse_number(prop, v) for v in raw_values))


def _parse_sort(raw: object) -> tuple[str, bool]:
    if isinstance(raw, str):  # the SDK's model types sorts as strings: "prop" or "-prop"
        prop, descending = raw.lstrip("-"), raw.startswith("-")
    elif isinstance(raw, dict):
        prop, direction = raw.get("propertyName"), raw.get("direction", "ASCENDING")
        if direction not in ("ASCENDING", "DESCENDING"):
            raise Rejected(f"sort direction {direction!r} must be ASCENDING or DESCENDING")
        descending = direction == "DESCENDING"
    else:
        raise Rejected("each sort must be an object with propertyName and direction")
    if prop not in NUMERIC_PROPERTIES:
        raise Rejected(f"sorting contacts by {prop!r} is not supported; sort by {', '.join(sorted(NUMERIC_PROPERTIES))}")
    return prop, descending


def _parse_search(body: bytes) -> Search:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise Rejected("Invalid input JSON: the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Rejected("Invalid input JSON: the request body must be an object")
    if data.get("query"):
        raise Rejected("free-text 'query' search is not supported by the simulator; use filterGroups")
    limit = data.get("limit", SEARCH_DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= SEARCH_MAX_LIMIT:
        raise Rejected(f"limit must be an integer between 1 and {SEARCH_MAX_LIMIT}")
    after_raw = data.get("after") or 0
    try:
        after = int(after_raw)
    except (TypeError, ValueError):
        raise Rejected(f"after {after_raw!r} is not a valid paging token") from None
    if after < 0:
        raise Rejected(f"after {after_raw!r} is not a valid paging token")
    raw_groups = data.get("filterGroups") or []
    if not isinstance(raw_groups, list) or len(raw_groups) > MAX_FILTER_GROUPS:
        raise Rejected(f"filterGroups must be a list of at most {MAX_FILTER_GROUPS} groups")
    groups = []
    for group in raw_groups:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list) or len(filters) > MAX_FILTERS_PER_GROUP:
            raise Rejected(f"each filter group needs a 'filters' list of at most {MAX_FILTERS_PER_GROUP} filters")
        groups.append(tuple(_parse_filter(f) for f in filters))
    if sum(len(g) for g in groups) > MAX_FILTERS:
        raise Rejected(f"a search may use at most {MAX_FILTERS} filters in all")
    sorts = data.get("sorts") or []
    if not isinstance(sorts, list) or len(sorts) > 1:
        raise Rejected("a search may use only one sort rule")
    properties = data.get("properties") or list(DEFAULT_PROPERTIES)
    if not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
        raise Rejected("properties must be a list of property names")
    return Search(groups=tuple(g for g in groups if g), sort=_parse_sort(sorts[0]) if sorts else DEFAULT_SORT,
                  properties=tuple(properties), limit=limit, after=after)


def _filter_mask(view: View, f: Filter, emails: tuple[dict[str, int], np.ndarray] | None) -> np.ndarray:
    """The view's records that pass one filter; emails compare as codes of their normalized form."""
    if f.operator == "HAS_PROPERTY":
        return np.ones(len(view), dtype=bool)
    if f.operator == "NOT_HAS_PROPERTY":
        return np.zeros(len(view), dtype=bool)
    if f.prop in STRING_PROPERTIES:
        vocab, contact_code = emails
        column, values = contact_code[view.records], [vocab.get(v, -1) for v in f.values]
    else:
        column, values = view.columns[f.prop], list(f.values)
    if f.operator in ("IN", "NOT_IN"):
        inside = np.isin(column, np.asarray(values, dtype=np.int64))
        return inside if f.operator == "IN" else ~inside
    v = values[0]
    if f.operator == "BETWEEN":
        return (column >= v) & (column <= values[1])
    return {"EQ": column == v, "NEQ": column != v, "LT": column < v, "LTE": column <= v, "GT": column > v,
            "GTE": column >= v}[f.operator]


class HubSpotSurface:
    """The runtime side of one simulator's HubSpot: limits, derived views, id sequences."""

    def __init__(self, state: SimState):
        self.state = state
        self.world: World = state.world
        self.ids = IdSequence("hubspot", state.world.config.seed)
        self.burst = WindowLimiter(BURST_LIMIT, BURST_WINDOW_MS / 1000)
        self.search_limiter = WindowLimiter(SEARCH_PER_SECOND, 1.0)
        self.daily = _DailyCounter(DAILY_LIMIT)
        self.views = ViewCache()
        self._email_code: dict[str, int] | None = None
        self._contact_email_code: np.ndarray | None = None
        self._lock = threading.Lock()
        contacts = self.world.contacts
        self._by_id = np.argsort(contacts.contact_id, kind="stable")
        self._sorted_ids = contacts.contact_id[self._by_id]

    # ---- responses -------------------------------------------------------------------------------------
    def json(self, body: dict, status: int = 200, headers: dict | None = None) -> Response:
        return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)

    def validation_error(self, message: str) -> Response:
        return self.json(_error_body(self.ids.next(), message, "VALIDATION_ERROR"), 400)

    def guard(self, request: Request, search: bool = False) -> Response | dict[str, str]:
        """Auth and rate limits: an error response, or the rate-limit headers for the success response."""
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if not self.state.token_ok("hubspot", token):
            return _unauthorized(self.ids.next())
        if not self.state.rate_limits:
            return {}
        if search:
            allowed, _, _ = self.search_limiter.try_hit()
            if not allowed:
                return self.json(_rate_limit_body(self.ids.next(), "SECONDLY"), 429)
        else:
            allowed, remaining, _ = self.burst.try_hit()
            if not allowed:
                return self.json(_rate_limit_body(self.ids.next(), "TEN_SECONDLY_ROLLING"), 429,
                                 self._limit_headers(0, self.daily.remaining()))
        daily_ok, daily_remaining = self.daily.try_hit()
        if not daily_ok:
            return self.json(_rate_limit_body(self.ids.next(), "DAILY"), 429)
        return {} if search else self._limit_headers(remaining, daily_remaining)

    @staticmethod
    def _limit_headers(remaining: int, daily_remaining: int) -> dict[str, str]:
        return {"X-HubSpot-RateLimit-Daily": str(DAILY_LIMIT),
                "X-HubSpot-RateLimit-Daily-Remaining": str(daily_remaining),
                "X-HubSpot-RateLimit-Interval-Milliseconds": str(BURST_WINDOW_MS),
                "X-HubSpot-RateLimit-Max": str(BURST_LIMIT),
                "X-HubSpot-RateLimit-Remaining": str(remaining)}

    # ---- rendering ---------------------------------------------------------------------------------------
    def contact_object(self, k: int, t: int, properties: tuple[str, ...]) -> dict:
        c = self.world.contact_at(k, t)
        address = c["address"]
        values = {
            "city": address["city"], "country": address["country"], "createdate": hubspot_time(c["created_at"]),
            "date_of_birth": c["birth_date"], "email": c["email"], "firstname": c["first_name"],
            "hs_lead_status": c["lead_status"], "hs_object_id": str(c["contact_id"]),
            "hubspot_owner_id": c["owner_id"], "lastmodifieddate": hubspot_time(c["updated_at"]),
            "lastname": c["last_name"], "lifecyclestage": c["lifecycle_stage"], "phone": c["phone"],
            "state": address["province_code"], "zip": address["zip"],
        }
        obj: dict[str, object] = {
            "id": str(c["contact_id"]),
            "properties": {name: values[name] for name in sorted(set(properties) & KNOWN_PROPERTIES)},
            "createdAt": hubspot_time(c["created_at"]),
            "updatedAt": hubspot_time(c["updated_at"]),
            "archived": c["archived"],
        }
        if c["archived"]:
            obj["archivedAt"] = hubspot_time(c["archived_at"])
        return obj

    # ---- views ---------------------------------------------------------------------------------------------
    def email_codes(self) -> tuple[dict[str, int], np.ndarray]:
        """Contacts' emails as integer codes of their normalized (trimmed, lower-case) form, for search."""
        with self._lock:
            if self._contact_email_code is None:
                contacts, world = self.world.contacts, self.world
                people = np.unique(contacts.person)
                vocab: dict[str, int] = {}
                person_code = np.full(world.persons.n, -1, dtype=np.int64)
                for p in people.tolist():
                    person_code[p] = vocab.setdefault(world.person_email(p).strip().lower(), len(vocab))
                self._email_code, self._contact_email_code = vocab, person_code[contacts.person]
            return self._email_code, self._contact_email_code

    def list_view(self, t: int, archived: bool) -> View:
        """Contacts existing (or archived) at t, by id; visibility depends on the clock only."""
        def build() -> View:
            contacts = self.world.contacts
            k = self._by_id
            created = contacts.created_at[k] <= t
            gone = contacts.archived_at[k] <= t
            k = k[created & (gone if archived else ~gone)]
            return View((contacts.contact_id[k],), k, {})
        return self.views.get(("list", t, archived), (), build)

    def search_view(self, t: int, search: Search) -> View:
        """The contacts matching a search at t, in its sort order (ties by id)."""
        rows, updated = self.world.index("contacts", t)
        prop, descending = search.sort

        def build_sorted() -> View:
            contacts = self.world.contacts
            ids = contacts.contact_id[rows]
            columns = {"lastmodifieddate": updated * 1000, "createdate": contacts.created_at[rows] * 1000,
                       "hs_object_id": ids}
            primary = columns[prop]
            return View.sorted_by((-primary if descending else primary, ids), rows, columns)

        def build_selection() -> View:
            view = self.views.get(("sorted", t, prop, descending), (rows,), build_sorted)
            if not search.groups:
                return view
            emails = self.email_codes() if any(f.prop in STRING_PROPERTIES for g in search.groups for f in g) else None
            mask = np.zeros(len(view), dtype=bool)
            for group in search.groups:
                group_mask = np.ones(len(view), dtype=bool)
                for f in group:
                    group_mask &= _filter_mask(view, f, emails)
                mask |= group_mask
            return view.subset(mask)

        return self.views.get(("search", t, search.groups, prop, descending), (rows,), build_selection)

    # ---- endpoints ---------------------------------------------------------------------------------------------
    def list_contacts(self, request: Request) -> Response:
        guard = self.guard(request)
        if isinstance(guard, Response):
            return guard
        params = request.query_params
        try:
            limit = int(params.get("limit", LIST_DEFAULT_LIMIT))
            after = int(params["after"]) if params.get("after") else None
        except ValueError:
            return self.validation_error("limit and after must be integers")
        if not 1 <= limit <= LIST_MAX_LIMIT:
            return self.validation_error(f"limit must be between 1 and {LIST_MAX_LIMIT}")
        archived = params.get("archived", "false").lower() == "true"
        properties = tuple(p for value in params.getlist("properties") for p in value.split(",") if p) \
            or DEFAULT_PROPERTIES
        t = self.state.read_time("hubspot")
        key = request_key("GET", request.url.path, request.url.query)
        view = self.list_view(t, archived)
        follow_up = after is not None
        start = int(np.searchsorted(view.levels[0], after, "left")) if follow_up else 0
        faults, dice = self.state.faults, self.state.dice
        if follow_up and start < len(view) and dice.hits("mid_read_updates", key, faults.mid_read_updates):
            chosen = pick(dice.draw("mid_read_pick", key), start, len(view))
            self.world.touch("contacts", int(view.records[chosen]), t)
        repeat = follow_up and limit > 1 and start > 0 and dice.hits("duplicates", key, faults.duplicates)
        end = min(start + limit - repeat, len(view))
        records = view.records[start - repeat:end]  # a repeat re-serves the last record of the previous page
        body: dict[str, object] = {"results": [self.contact_object(int(k), t, properties) for k in records]}
        if end < len(view):
            next_after = str(int(view.levels[0][end]))
            query = [(k, v) for k, v in params.multi_items() if k != "after"] + [("after", next_after)]
            link = f"{self.state.public_url}{request.url.path}?{urlencode(query)}"
            body["paging"] = {"next": {"after": next_after, "link": link}}
        return self.json(body, headers=guard)

    def get_contact(self, request: Request, contact_id: str) -> Response:
        guard = self.guard(request)
        if isinstance(guard, Response):
            return guard
        params = request.query_params
        properties = tuple(p for value in params.getlist("properties") for p in value.split(",") if p) \
            or DEFAULT_PROPERTIES
        archived = params.get("archived", "false").lower() == "true"
        t = self.state.read_time("hubspot")
        k = -1
        if contact_id.isdigit():
            i = int(np.searchsorted(self._sorted_ids, int(contact_id)))
            if i < len(self._sorted_ids) and self._sorted_ids[i] == int(contact_id):
                k = int(self._by_id[i])
        contacts = self.world.contacts
        if k < 0 or contacts.created_at[k] > t or (contacts.archived_at[k] <= t) != archived:
            return self.json(_error_body(self.ids.next(), "resource not found", "OBJECT_NOT_FOUND",
                                         context={"id": [contact_id]}), 404, guard)
        return self.json(self.contact_object(k, t, properties), headers=guard)

    async def search_contacts(self, request: Request) -> Response:
        guard = self.guard(request, search=True)
        if isinstance(guard, Response):
            return guard
        body = await request.body()
        try:
            search = _parse_search(body)
        except Rejected as exc:
            return self.validation_error(str(exc))
        key = request_key("POST", request.url.path, request.url.query, body)
        return await run_in_threadpool(self._search, search, key)

    def _search(self, search: Search, key: str) -> Response:
        if search.after >= SEARCH_RESULT_CAP:
            return self.validation_error(
                f"Search results are limited to {SEARCH_RESULT_CAP} total results for any given query; "
                f"paging past the {SEARCH_RESULT_CAP}th result (after={search.after}) is not supported.")
        t = self.state.read_time("hubspot")
        view = self.search_view(t, search)
        faults, dice = self.state.faults, self.state.dice
        follow_up = search.after > 0
        if follow_up and search.after < len(view) and dice.hits("mid_read_updates", key, faults.mid_read_updates):
            chosen = pick(dice.draw("mid_read_pick", key), search.after, min(len(view), SEARCH_RESULT_CAP))
            self.world.touch("contacts", int(view.records[chosen]), t)
            view = self.search_view(t, search)
        start = search.after
        if follow_up and search.limit > 1 and dice.hits("duplicates", key, faults.duplicates):
            start -= 1  # the page overlaps the previous one by a record, as a shifted offset would
        end = min(start + search.limit, len(view), SEARCH_RESULT_CAP)
        body: dict[str, object] = {
            "total": len(view),
            "results": [self.contact_object(int(k), t, search.properties) for k in view.records[start:end]],
        }
        if end < len(view):
            body["paging"] = {"next": {"after": str(end)}}
        return self.json(body)


def router(state: SimState) -> APIRouter:
    surface = HubSpotSurface(state)
    state.vendor_state["hubspot"] = surface
    api = APIRouter()
    api.add_api_route(f"{PATH_PREFIX}objects/contacts", surface.list_contacts, methods=["GET"])
    api.add_api_route(f"{PATH_PREFIX}objects/contacts/search", surface.search_contacts, methods=["POST"])
    api.add_api_route(f"{PATH_PREFIX}objects/contacts/{{contact_id}}", surface.get_contact, methods=["GET"])
    return api
