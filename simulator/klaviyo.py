"""Klaviyo's API (JSON:API, revision 2026-10-15) over the world's profiles, events and metrics.

Endpoints (https://developers.klaviyo.com/en/v2026-10-15/reference):
  GET  /api/profiles, /api/profiles/{id}        filter, sort, page[size]/page[cursor], additional-fields, fields
  GET  /api/events                              filter on datetime/timestamp/metric_id/profile_id, include
  GET  /api/metrics, /api/metrics/{id}
  POST /api/profile-bulk-import-jobs            202 + job; GET /api/profile-bulk-import-jobs/{id} polls it
  GET  /api/profile-bulk-import-jobs            every job: filter on status, sort by created_at, cursor-paged
  GET  /api/profile-bulk-import-jobs/{id}/import-errors   the job's per-profile failures (cursor-paged)

Every request needs `Authorization: Klaviyo-API-Key pk_...` and a `revision` header. Paging is by cursor:
`links.next` carries an opaque page[cursor] naming the sort key and record of the last item returned, so
a page continues after that position however the data moved (keyset paging), never at an offset.

Rate limits are per endpoint, a burst (per second) and a steady (per minute) window each, with the figures
the 2026-10-15 reference gives for every endpoint; successful responses report the steady window in
RateLimit-Limit/-Remaining/-Reset, throttled ones answer 429 with Retry-After.

Without a sort, profiles come in id order. Data-level faults: a follow-up page may repeat the previous page's
last record (duplicates) and, for profiles, one not-yet-returned profile may get a new version at the clock
while the page is read (mid-read updates); events never change, so they only see duplicates.

Imported profiles are kept in this surface's runtime state: edits to world profiles (their `updated` moves
through World.touch) and profiles created for unknown emails, which are listed alongside the world's.
Import jobs advance one step per poll (queued -> processing -> complete), so the lifecycle is observable
and deterministic; a listing of the jobs is one step for every running job (time passes as the account is
watched). A job accepts up to 10,000 profiles and 5 MB of request body (413 past it); each profile is checked on
its own (at most 100 KB as compact UTF-8 JSON, a 'profile' resource, an email): one that fails is
counted in failed_count and listed by import-errors as an `import-error` (code, title, detail, source.pointer
`/data/attributes/profiles/data/<index in the request>`, original_payload: the profile's attributes), and the
others are imported. A profile's `meta.patch_properties.unset` (a key or a list of keys) removes those custom
properties. A transport fault (429, 5xx) is decided before the request reaches the surface, so a refused POST
creates no job; a truncated or slow answer to a POST does create one (the client may send it again: an import
is an upsert, so the second job changes nothing the first did not).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from simulator import catalog
from simulator.paging import (
    IdSequence,
    View,
    ViewCache,
    decode_cursor,
    encode_cursor,
    pick,
    request_key,
    stable_uuid,
)
from simulator.ratelimit import WindowLimiter
from simulator.state import SimState
from simulator.world import BOUNCED, NEVER_SUBSCRIBED, SPAM_COMPLAINT, SUBSCRIBED, UNSUBSCRIBED, World, base62, ulid

REVISION = "2026-10-15"  # the revision served (and the one klaviyo-api 25.0 sends)
FIRST_REVISION = "2022-10-17"  # the first date-versioned revision; older or later dates are refused
PATH_PREFIX = "/api/"
MEDIA_TYPE = "application/vnd.api+json"

# (burst per second, steady per minute) for each endpoint, from the 2026-10-15 API reference.
RATE_LIMITS = {
    "get_profiles": (75, 750),
    "get_profile": (75, 750),
    "get_events": (350, 3500),
    "get_metrics": (10, 150),
    "get_metric": (10, 150),
    "bulk_import_profiles": (10, 150),
    "get_bulk_import_profiles_job": (10, 150),
    "get_bulk_import_profiles_jobs": (10, 150),
    "get_errors_for_bulk_import_profiles_job": (10, 150),
}
PROFILES_PAGE_SIZE = (20, 100)  # (default, max)
EVENTS_PAGE_SIZE = (200, 1000)
IMPORT_ERRORS_PAGE_SIZE = (20, 100)
IMPORT_JOBS_PAGE_SIZE = (20, 100)
BULK_IMPORT_MAX_PROFILES = 10_000
BULK_IMPORT_MAX_BYTES = 5 * 1024 * 1024
BULK_IMPORT_MAX_PROFILE_BYTES = 100 * 1024
BULK_IMPORT_JOB_TTL_DAYS = 7

DATETIME_OPS = ("greater-than", "greater-or-equal", "less-than", "less-or-equal")
# Filterable fields and their operators, as the 2026-10-15 reference lists them.
PROFILE_FILTERS = {"id": ("equals", "any"), "email": ("equals", "any"), "phone_number": ("equals", "any"),
                   "external_id": ("equals", "any"), "created": ("greater-than", "less-than"),
                   "updated": ("greater-than", "less-than")}
EVENT_FILTERS = {"metric_id": ("equals",), "profile_id": ("equals",), "datetime": DATETIME_OPS,
                 "timestamp": DATETIME_OPS}
METRIC_FILTERS = {"integration.name": ("equals",), "integration.category": ("equals",)}
IMPORT_JOB_FILTERS = {"status": ("equals", "any")}
IMPORT_JOB_STATUSES = ("queued", "processing", "complete", "cancelled", "failed")
# Documented by Klaviyo but not simulated (prefixes): refused with a 400 that says so, never ignored.
PROFILE_UNSIMULATED = ("_kx", "subscriptions.")
EVENT_UNSIMULATED = ("profile", "metric")
PROFILE_SORTS = ("id", "created", "updated")
EVENT_SORTS = ("datetime", "timestamp")
FIELDS = {
    "profile": ("email", "phone_number", "external_id", "first_name", "last_name", "organization", "locale", "title",
                "image", "created", "updated", "last_event_date", "location", "properties", "subscriptions"),
    "event": ("timestamp", "event_properties", "datetime", "uuid"),
    "metric": ("name", "created", "updated", "integration"),
    "import-error": ("id", "code", "title", "detail", "source", "source.pointer", "original_payload"),
    "profile-bulk-import-job": ("status", "created_at", "total_count", "completed_count", "failed_count",
                                "completed_at", "expires_at", "started_at"),
}
IMPORTABLE_ATTRIBUTES = ("phone_number", "external_id", "first_name", "last_name", "organization", "locale",
                         "title", "image")
LOCATION_FIELDS = ("address1", "address2", "city", "country", "latitude", "longitude", "region", "zip", "timezone",
                   "ip")
CONSENT = {NEVER_SUBSCRIBED: "NEVER_SUBSCRIBED", SUBSCRIBED: "SUBSCRIBED", UNSUBSCRIBED: "UNSUBSCRIBED",
           BOUNCED: "SUBSCRIBED", SPAM_COMPLAINT: "UNSUBSCRIBED"}  # a hard bounce suppresses, consent stays
SUPPRESSIONS = (("bounced_at", "HARD_BOUNCE"), ("spam_at", "SPAM_COMPLAINT"), ("unsubscribed_at", "UNSUBSCRIBE"))
EMAIL_METRICS = frozenset(range(6))  # catalog.METRICS codes sent by Klaviyo itself; the rest come from the shop
INTEGRATIONS = {"klaviyo": ("Klaviyo", "Internal"), "shopify": ("Shopify", "eCommerce")}

_CROCKFORD_VALUE = {c: i for i, c in enumerate("0123456789ABCDEFGHJKMNPQRSTVWXYZ")}
_REVISION_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(\.[A-Za-z0-9_]+)?$")
_fault_ids = IdSequence("klaviyo", "faults")


def klaviyo_time(ts: int) -> str:
    """Epoch seconds -> Klaviyo's ISO form: '2026-01-02T03:04:05+00:00'."""
    return datetime.fromtimestamp(int(ts), UTC).isoformat()


def _hash_int(*parts: object) -> int:
    """A stable 62-bit number from its parts."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2


def _short_id(*parts: object) -> str:
    """Six base62 characters, the shape of Klaviyo's metric, integration and message ids."""
    return base62(_hash_int(*parts), 6)


METRIC_IDS = tuple(_short_id("metric", name) for name in catalog.METRICS)  # stable across worlds and runs


class ApiError(Exception):
    """A request Klaviyo refuses with a JSON:API error object."""

    def __init__(self, status: int, code: str, title: str, detail: str, source: dict | None = None):
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.source = source or {"pointer": "/data/"}


def _invalid(detail: str, parameter: str | None = None, pointer: str | None = None) -> ApiError:
    source = {"parameter": parameter} if parameter else {"pointer": pointer or "/data/"}
    return ApiError(400, "invalid", "Invalid input.", detail, source)


def _error_response(error_id: str, exc: ApiError, headers: dict | None = None) -> Response:
    body = {"errors": [{"id": error_id, "status": exc.status, "code": exc.code, "title": exc.title,
                        "detail": exc.detail, "source": exc.source}]}
    return JSONResponse(body, status_code=exc.status, headers=headers, media_type=MEDIA_TYPE)


def _throttled(error_id: str, retry_after: int) -> Response:
    unit = "second" if retry_after == 1 else "seconds"
    body = {"errors": [{"id": error_id, "status": 429, "code": "throttled", "title": "Request was throttled.",
                        "detail": f"Request was throttled. Expected available in {retry_after} {unit}.",
                        "source": {"pointer": "/data/"},
                        "links": {"type": "https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling"
                                          "#rate-limits"},
                        "meta": {}}]}
    return JSONResponse(body, status_code=429, headers={"Retry-After": str(retry_after)}, media_type=MEDIA_TYPE)


def fault_response(status: int, retry_after: int | None) -> Response:
    """Klaviyo's 429 or 5xx, as the transport-fault middleware injects them."""
    if status == 429:
        return _throttled(_fault_ids.next(), retry_after if retry_after is not None else 1)
    title = {502: "Bad gateway.", 503: "Service unavailable."}.get(status, "A server error occurred.")
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return _error_response(_fault_ids.next(), ApiError(status, "error", title, title), headers)


def unauthorized_response() -> Response:
    return _error_response(_fault_ids.next(), ApiError(
        401, "authentication_failed", "Incorrect authentication credentials.", "Incorrect authentication credentials."))


# ---- filters ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    op: str
    field: str
    value: object  # epoch seconds (float) for datetimes, a number, a string, or a tuple of strings for any()


def _tokens(text: str) -> list[tuple[str, str]]:
    """('punct', '(' ...), ('str', quoted text) and ('bare', unquoted word) tokens of a filter expression."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "(),[]":
            out.append(("punct", ch))
            i += 1
        elif ch in "\"'":
            j, chars = i + 1, []
            while j < len(text) and text[j] != ch:
                if text[j] == "\\" and j + 1 < len(text):
                    j += 1
                chars.append(text[j])
                j += 1
            if j >= len(text):
                raise _invalid("Invalid filter: unterminated string.", "filter")
            out.append(("str", "".join(chars)))
            i = j + 1
        else:
            j = i
            while j < len(text) and text[j] not in "(),[]" and not text[j].isspace():
                j += 1
            out.append(("bare", text[i:j]))
            i = j
    return out


def _parse_datetime(text: str) -> float:
    value = text.strip()
    try:
        dt = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        raise _invalid(f"Invalid filter: {text!r} is not an ISO 8601 datetime.", "filter") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def parse_filter(text: str, allowed: dict[str, tuple[str, ...]],
                 unsimulated: tuple[str, ...] = ()) -> tuple[Condition, ...]:
    """Klaviyo's filter syntax: comma-separated (implicitly and-ed) calls such as
    `greater-than(updated,2024-01-01T00:00:00Z)`, `equals(email,"a@b.com")`, `any(id,["x","y"])`, `and(...)`."""
    tokens = _tokens(text)
    pos = 0

    def take(kind: str | None = None, value: str | None = None) -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise _invalid("Invalid filter: unexpected end of expression.", "filter")
        token = tokens[pos]
        if (kind and token[0] != kind) or (value and token[1] != value):
            raise _invalid(f"Invalid filter: unexpected {token[1]!r}.", "filter")
        pos += 1
        return token

    def literal(name: str) -> object:
        if tokens[pos] == ("punct", "["):
            take()
            items = []
            while tokens[pos] != ("punct", "]"):
                items.append(take("str")[1])
                if tokens[pos] == ("punct", ","):
                    take()
            take("punct", "]")
            return tuple(items)
        kind, raw = take()
        if name in ("created", "updated", "datetime"):
            return _parse_datetime(raw)
        if name == "timestamp":
            try:
                return float(raw)
            except ValueError:
                raise _invalid(f"Invalid filter: {raw!r} is not a number.", "filter") from None
        if kind != "str":
            raise _invalid(f"Invalid filter: the value for '{name}' must be a quoted string, got {raw}.", "filter")
        return raw

    def call() -> list[Condition]:
        op = take("bare")[1]
        take("punct", "(")
        if op == "and":
            conditions = call()
            while tokens[pos] == ("punct", ","):
                take()
                conditions += call()
            take("punct", ")")
            return conditions
        if op in ("or", "not"):
            raise _invalid(f"Invalid filter: the '{op}' operator is not supported by the simulator.", "filter")
        name = take("bare")[1]
        if name not in allowed:
            if any(name == p or (p.endswith(".") and name.startswith(p)) for p in unsimulated):
                raise _invalid(f"Invalid filter: filtering on '{name}' is not supported by the simulator.", "filter")
            raise _invalid(f"Invalid filter: '{name}' is not a valid field for this endpoint. Valid fields: "
                           f"{', '.join(allowed)}.", "filter")
        if op not in allowed[name]:
            raise _invalid(f"Invalid filter: operator '{op}' is not allowed for field '{name}'. Allowed "
                           f"operators: {', '.join(allowed[name])}.", "filter")
        take("punct", ",")
        value = literal(name)
        take("punct", ")")
        if (op == "any") != isinstance(value, tuple):
            raise _invalid(f"Invalid filter: '{op}' on '{name}' takes {'a list' if op == 'any' else 'one value'}.",
                           "filter")
        return [Condition(op, name, value)]

    if not tokens:
        return ()
    try:
        conditions = call()
        while pos < len(tokens):
            take("punct", ",")
            conditions += call()
    except IndexError:
        raise _invalid("Invalid filter: unexpected end of expression.", "filter") from None
    return tuple(conditions)


def _compare(column: np.ndarray, op: str, value: float) -> np.ndarray:
    return {"greater-than": column > value, "greater-or-equal": column >= value, "less-than": column < value,
            "less-or-equal": column <= value}[op]


# ---- runtime state ------------------------------------------------------------------------------------------
@dataclass
class ImportedProfile:
    """A profile a bulk import created (its email matched no profile of the world)."""

    row: int  # world.profiles.n + its creation order: its place after the world's records
    profile_id: str
    email: str
    created: int
    updated: int
    rand: int  # the random part of its ULID id, which orders ids created in the same second
    attributes: dict = field(default_factory=dict)
    location: dict = field(default_factory=dict)
    properties: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ImportFailure:
    """Why one profile of a bulk import was not imported (an import-error)."""

    code: str
    title: str
    detail: str


@dataclass
class ImportJob:
    job_id: str
    seq: int  # its place in the order the jobs were created: the listing's order and its cursor's position
    created_at: int
    profiles: list
    list_ids: list
    status: str = "queued"
    started_at: int | None = None
    completed_at: int | None = None
    completed_count: int = 0
    failed_count: int = 0
    errors: list[tuple[int, ImportFailure]] = field(default_factory=list)  # (index in the request, why)


class _EventSet:
    """Candidate events, ascending by record number (= by time): either the range [lo, hi) of all events or
    members[lo:hi] of a sorted subset."""

    def __init__(self, lo: int, hi: int, members: np.ndarray | None = None):
        self.lo, self.hi, self.members = lo, max(lo, hi), members

    def __len__(self) -> int:
        return self.hi - self.lo

    def rank(self, e: int) -> int:
        """How many candidates are at or before event e."""
        if self.members is None:
            return min(len(self), max(0, e + 1 - self.lo))
        return int(np.searchsorted(self.members[self.lo:self.hi], e, "right"))

    def take(self, start: int, stop: int) -> np.ndarray:
        if self.members is None:
            return np.arange(self.lo + start, self.lo + stop, dtype=np.int64)
        return self.members[self.lo + start:self.lo + stop]


class KlaviyoSurface:
    """The runtime side of one simulator's Klaviyo: limits, imports, derived views and lookups."""

    def __init__(self, state: SimState):
        self.state = state
        self.world: World = state.world
        self.ids = IdSequence("klaviyo", state.world.config.seed)
        self.limiters = {name: (WindowLimiter(burst, 1.0), WindowLimiter(steady, 60.0))
                         for name, (burst, steady) in RATE_LIMITS.items()}
        self.views = ViewCache()
        self._lock = threading.RLock()
        self.edits: dict[int, dict] = {}  # world profile -> imported {"attributes", "location", "properties"}
        self.imported: list[ImportedProfile] = []
        self.imported_by_email: dict[str, ImportedProfile] = {}
        self.imported_by_id: dict[str, ImportedProfile] = {}
        self.overlay_version = 0
        self.jobs: dict[str, ImportJob] = {}
        profiles = self.world.profiles
        self._id_order = np.lexsort((profiles.id_rand, profiles.created_at))  # ULID order: (ms, random)
        self._id_created = profiles.created_at[self._id_order]
        self._id_rand = profiles.id_rand[self._id_order]
        self._lazy: dict[str, object] = {}
        self._profile_ids: dict[int, str] = {}
        self._campaigns: dict[int, tuple[str, str]] = {}

    # ---- lazily built lookups over the world -----------------------------------------------------------------
    def _cached(self, name: str, build):
        with self._lock:
            if name not in self._lazy:
                self._lazy[name] = build()
            return self._lazy[name]

    def events_by_profile(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR: profile q's events are order[offsets[q]:offsets[q+1]], ascending."""
        def build():
            events = self.world.events
            order = np.argsort(events.profile, kind="stable")
            offsets = np.zeros(self.world.profiles.n + 1, dtype=np.int64)
            np.cumsum(np.bincount(events.profile, minlength=self.world.profiles.n), out=offsets[1:])
            return order, offsets
        return self._cached("events_by_profile", build)

    def events_of_metric(self, m: int) -> np.ndarray:
        return self._cached(f"events_of_metric_{m}", lambda: np.flatnonzero(self.world.events.metric == m))

    def profile_by_email(self) -> dict[str, int]:
        world = self.world
        return self._cached("profile_by_email", lambda: {
            world.person_email(int(p)).strip().lower(): q for q, p in enumerate(world.profiles.person.tolist())})

    def profile_by_phone(self) -> dict[str, int]:
        world = self.world
        return self._cached("profile_by_phone", lambda: {
            phone: q for q, p in enumerate(world.profiles.person.tolist()) if (phone := world.phone(p))})

    def profile_row(self, profile_id: str, t: int) -> int:
        """The record number of a profile id existing at t (world or imported), or -1."""
        imported = self.imported_by_id.get(profile_id)
        if imported is not None:
            return imported.row if imported.created <= t else -1
        if len(profile_id) != 26 or any(c not in _CROCKFORD_VALUE for c in profile_id):
            return -1
        value = 0
        for c in profile_id:
            value = value * 32 + _CROCKFORD_VALUE[c]
        ms, rand = value >> 80, value & ((1 << 80) - 1)
        if ms % 1000:
            return -1
        lo = int(np.searchsorted(self._id_created, ms // 1000, "left"))
        hi = int(np.searchsorted(self._id_created, ms // 1000, "right"))
        i = lo + int(np.searchsorted(self._id_rand[lo:hi], rand))
        if i >= hi or int(self._id_rand[i]) != rand:
            return -1
        q = int(self._id_order[i])
        profiles = self.world.profiles
        return q if profiles.created_at[q] <= t < profiles.deleted_at[q] else -1

    # ---- request plumbing ------------------------------------------------------------------------------------
    def error(self, exc: ApiError, headers: dict | None = None) -> Response:
        return _error_response(self.ids.next(), exc, headers)

    def json(self, body: dict, status: int = 200, headers: dict | None = None) -> Response:
        return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)

    def guard(self, request: Request, endpoint: str) -> Response | dict[str, str]:
        """Auth, revision and the endpoint's rate limits: an error response, or the headers for success."""
        auth = request.headers.get("authorization")
        if not auth:
            return self.error(ApiError(401, "not_authenticated", "Authentication credentials were not provided.",
                                       "Missing or invalid private key."))
        scheme, _, key = auth.partition(" ")
        if scheme != "Klaviyo-API-Key" or not self.state.token_ok("klaviyo", key.strip()):
            return self.error(ApiError(401, "authentication_failed", "Incorrect authentication credentials.",
                                       "Incorrect authentication credentials."))
        revision = request.headers.get("revision")
        if not revision:
            return self.error(_invalid("The 'revision' header is required. Pass the API revision as a date, "
                                       f"for example: revision: {REVISION}.", "revision"))
        match = _REVISION_RE.match(revision.strip())
        if not match or not FIRST_REVISION <= match.group(1) <= REVISION or not _is_date(match.group(1)):
            return self.error(_invalid(f"'{revision}' is not a valid revision. Revisions are dates such as "
                                       f"{REVISION}.", "revision"))
        if not self.state.rate_limits:
            return {}
        burst, steady = self.limiters[endpoint]
        for limiter in (burst, steady):
            if limiter.remaining() <= 0:
                _, _, reset = limiter.try_hit()
                return _throttled(self.ids.next(), max(1, math.ceil(reset)))
        burst.try_hit()
        _, remaining, reset = steady.try_hit()
        return {"RateLimit-Limit": str(steady.limit), "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(math.ceil(reset))}

    def url(self, path: str, query: list[tuple[str, str]] | None = None) -> str:
        return f"{self.state.public_url}{path}" + (f"?{urlencode(query)}" if query else "")

    @staticmethod
    def page_size(request: Request, default_max: tuple[int, int]) -> int:
        raw = request.query_params.get("page[size]")
        default, most = default_max
        if raw is None:
            return default
        if not raw.isdigit() or not 1 <= int(raw) <= most:
            raise _invalid(f"page[size] must be an integer between 1 and {most}.", "page[size]")
        return int(raw)

    @staticmethod
    def listed(request: Request, name: str) -> list[str]:
        return [v for raw in request.query_params.getlist(name) for v in raw.split(",") if v]

    def fields(self, request: Request, kind: str) -> list[str]:
        """A sparse fieldset, fields[kind]=a,b: the attributes to keep (empty: all)."""
        names = self.listed(request, f"fields[{kind}]")
        bad = [n for n in names if n not in FIELDS[kind]]
        if bad:
            raise _invalid(f"fields[{kind}] value(s) {', '.join(bad)} are not valid {kind} fields.", f"fields[{kind}]")
        return names

    def keyset_page(self, request: Request, items: list, size: int, listing: list, *, position: Callable[[Any], int],
                    after: Callable[[Any, int], bool]) -> tuple[list, str | None]:
        """One page of `items` (in the listing's order) and the next page's cursor: page[cursor] names the listing
        and the position of the last item returned, and the page starts at the first item `after` it. With the
        duplicates fault, a follow-up page may repeat the previous page's last item."""
        token = request.query_params.get("page[cursor]")
        start, repeat = 0, False
        if token:
            values = decode_cursor(token)
            if (not values or values[:-1] != listing or len(values) != len(listing) + 1
                    or not isinstance(values[-1], int)):
                raise _invalid("The page[cursor] is invalid or belongs to another query.", "page[cursor]")
            start = next((n for n, item in enumerate(items) if after(item, values[-1])), len(items))
            key = request_key("GET", request.url.path, request.url.query)
            repeat = start > 0 and size > 1 and self.state.dice.hits("duplicates", key, self.state.faults.duplicates)
        end = min(len(items), start + size - repeat)
        page = items[start - 1:end] if repeat else items[start:end]
        return page, (encode_cursor(*listing, position(items[end - 1])) if end < len(items) else None)

    def collection_links(self, request: Request, cursor: str | None) -> dict:
        links: dict[str, str | None] = {"self": self.url(request.url.path, request.query_params.multi_items()),
                                        "next": None}
        if cursor is not None:
            query = [(k, v) for k, v in request.query_params.multi_items() if k != "page[cursor]"]
            links["next"] = self.url(request.url.path, query + [("page[cursor]", cursor)])
        return links

    # ---- rendering ---------------------------------------------------------------------------------------------
    def last_event_date(self, q: int, t: int) -> int | None:
        order, offsets = self.events_by_profile()
        mine = order[offsets[q]:offsets[q + 1]]
        before = int(np.searchsorted(mine, int(np.searchsorted(self.world.events.time, t, "right")), "left"))
        return int(self.world.events.time[mine[before - 1]]) if before else None

    def subscriptions(self, q: int | None, t: int) -> dict:
        """The profile's consent, mapped from the world's consent timeline (None: an imported profile)."""
        sms = {"can_receive_sms_marketing": False, "consent": "NEVER_SUBSCRIBED", "consent_timestamp": None,
               "method": None, "method_detail": "", "last_updated": None}
        marketing: dict[str, object] = {"can_receive_email_marketing": True, "consent": "NEVER_SUBSCRIBED",
                                        "consent_timestamp": None, "last_updated": None, "method": None,
                                        "method_detail": "", "custom_method_detail": None, "double_optin": None,
                                        "suppression": [], "list_suppressions": []}
        if q is not None:
            world, profiles = self.world, self.world.profiles
            code = world.consent_at(q, t)
            suppression = sorted((int(getattr(profiles, column)[q]), reason)
                                 for column, reason in SUPPRESSIONS if getattr(profiles, column)[q] <= t)
            consent_at = {SUBSCRIBED: profiles.subscribed_at, BOUNCED: profiles.subscribed_at,
                          UNSUBSCRIBED: profiles.unsubscribed_at, SPAM_COMPLAINT: profiles.spam_at}.get(code)
            changed = world.consent_changed_at(q, t)
            marketing.update({
                "can_receive_email_marketing": not suppression,
                "consent": CONSENT[code],
                "consent_timestamp": klaviyo_time(consent_at[q]) if consent_at is not None else None,
                "last_updated": klaviyo_time(changed) if changed is not None else None,
                "method": "FORM" if CONSENT[code] == "SUBSCRIBED" else None,
                "suppression": [{"reason": reason, "timestamp": klaviyo_time(ts)} for ts, reason in suppression],
            })
        return {"email": {"marketing": marketing}, "sms": {"marketing": sms}}

    def profile_object(self, row: int, t: int, fields: list[str], with_subscriptions: bool) -> dict:
        n = self.world.profiles.n
        if row < n:
            p = self.world.profile_at(row, t)
            address = p["address"]
            edits = self.edits.get(row, {})
            last_event = self.last_event_date(row, t)
            properties = {"birthday": p["birth_date"]} if p["birth_date"] else {}
            attributes = {
                "email": p["email"], "phone_number": p["phone"], "external_id": p["external_id"],
                "first_name": p["first_name"], "last_name": p["last_name"], "organization": None, "locale": None,
                "title": None, "image": None, "created": klaviyo_time(p["created_at"]),
                "updated": klaviyo_time(p["updated_at"]),
                "last_event_date": klaviyo_time(last_event) if last_event is not None else None,
                "location": {"address1": None, "address2": None, "city": address["city"],
                             "country": address["country"], "latitude": None, "longitude": None,
                             "region": address["province_code"], "zip": address["zip"], "timezone": p["timezone"],
                             "ip": None},
                "properties": properties,
            }
            profile_id, q = p["profile_id"], row
        else:
            imported = self.imported[row - n]
            edits = {"attributes": imported.attributes, "location": imported.location,
                     "properties": imported.properties}
            attributes = {"email": imported.email, **dict.fromkeys(IMPORTABLE_ATTRIBUTES),
                          "created": klaviyo_time(imported.created), "updated": klaviyo_time(imported.updated),
                          "last_event_date": None, "location": dict.fromkeys(LOCATION_FIELDS), "properties": {}}
            profile_id, q = imported.profile_id, None
        attributes.update(edits.get("attributes", {}))
        attributes["location"] = {**attributes["location"], **edits.get("location", {})}
        attributes["properties"] = {**attributes["properties"], **edits.get("properties", {})}
        for key in edits.get("unset", ()):  # removed by an import's meta.patch_properties.unset
            attributes["properties"].pop(key, None)
        if with_subscriptions:
            attributes["subscriptions"] = self.subscriptions(q, t)
        if fields:
            attributes = {k: v for k, v in attributes.items() if k in fields}
        base = self.url(f"/api/profiles/{profile_id}/")
        return {"type": "profile", "id": profile_id, "attributes": attributes,
                "relationships": {name: {"links": {"self": f"{base}relationships/{name}/", "related": f"{base}{name}/"}}
                                  for name in ("lists", "segments")},
                "links": {"self": base}}

    def metric_object(self, m: int, fields: list[str]) -> dict:
        key = "klaviyo" if m in EMAIL_METRICS else "shopify"
        name, category = INTEGRATIONS[key]
        start = klaviyo_time(self.world.start)
        attributes = {"name": catalog.METRICS[m], "created": start, "updated": start,
                      "integration": {"object": "integration", "id": _short_id("integration", key), "key": key,
                                      "name": name, "category": category}}
        if fields:
            attributes = {k: v for k, v in attributes.items() if k in fields}
        base = self.url(f"/api/metrics/{METRIC_IDS[m]}/")
        return {"type": "metric", "id": METRIC_IDS[m], "attributes": attributes,
                "relationships": {"flow-triggers": {"links": {"self": f"{base}relationships/flow-triggers/",
                                                              "related": f"{base}flow-triggers/"}}},
                "links": {"self": base}}

    def profile_id(self, q: int) -> str:
        """World profile ids, memoized: events name their profile on every row and ULIDs are slow to spell."""
        profile_id = self._profile_ids.get(q)
        if profile_id is None:
            if len(self._profile_ids) >= 200_000:
                self._profile_ids.clear()
            profile_id = self._profile_ids[q] = self.world.profile_id(q)
        return profile_id

    def campaign(self, c: int) -> tuple[str, str]:
        """(name, message id) of a campaign."""
        found = self._campaigns.get(c)
        if found is None:
            found = self._campaigns[c] = (self.world.campaign_name(c), _short_id("message", self.world.config.seed, c))
        return found

    def event_properties(self, e: int, event_id: str) -> dict:
        world, events = self.world, self.world.events
        props: dict[str, object] = {}
        if events.campaign[e] >= 0:
            name, message = self.campaign(int(events.campaign[e]))
            props.update({"Campaign Name": name, "Subject": name, "$message": message})
        if events.product[e] >= 0:
            products, p = world.products, int(events.product[e])
            category = (products.category_label[p] if products.category_label is not None
                        else catalog.CATEGORIES[products.category[p]].name)
            price = int(products.variant_price_cents[products.variant_offsets[p]]) / 100
            props.update({"ProductID": str(int(products.product_id[p])), "ProductName": products.title[p],
                          "Categories": [category], "Brand": catalog.VENDORS[products.vendor[p] % len(catalog.VENDORS)],
                          "Price": price, "$value": price})
            if events.order[e] >= 0 and catalog.METRICS[events.metric[e]] == "Started Checkout":
                props["$value"] = int(world.orders.total_cents[events.order[e]]) / 100
        props["$event_id"] = event_id
        return props

    def event_object(self, e: int, fields: list[str]) -> dict:
        """An event rendered from the world's event columns (what World.event_at returns, without its cost per
        row: pages hold up to a thousand events)."""
        events = self.world.events
        event_id, ts = self.world.event_id(e), int(events.time[e])
        attributes = {"timestamp": ts, "event_properties": self.event_properties(e, event_id),
                      "datetime": klaviyo_time(ts), "uuid": stable_uuid(self.world.config.seed, "event", e)}
        if fields:
            attributes = {k: v for k, v in attributes.items() if k in fields}
        base = self.url(f"/api/events/{event_id}/")
        return {"type": "event", "id": event_id, "attributes": attributes,
                "relationships": {
                    "profile": {"data": {"type": "profile", "id": self.profile_id(int(events.profile[e]))},
                                "links": {"self": f"{base}relationships/profile/", "related": f"{base}profile/"}},
                    "metric": {"data": {"type": "metric", "id": METRIC_IDS[int(events.metric[e])]},
                               "links": {"self": f"{base}relationships/metric/", "related": f"{base}metric/"}}},
                "links": {"self": base}}

    # ---- profiles ------------------------------------------------------------------------------------------------
    def profiles_view(self, t: int, sort: str) -> View:
        """Every profile existing at t (world and imported), in the sort's order, ties by record number."""
        rows_w, updated_w = self.world.index("profiles", t)
        with self._lock:
            version, imported = self.overlay_version, [p for p in self.imported if p.created <= t]

        def build() -> View:
            profiles = self.world.profiles
            rows = np.concatenate((rows_w, np.array([p.row for p in imported], dtype=np.int64)))
            updated = np.concatenate((updated_w, np.array([p.updated for p in imported], dtype=np.int64)))
            created = np.concatenate((profiles.created_at[rows_w],
                                      np.array([p.created for p in imported], dtype=np.int64)))
            rand = np.concatenate((profiles.id_rand[rows_w], np.array([p.rand for p in imported], dtype=np.int64)))
            sign = -1 if sort.startswith("-") else 1
            levels = {"updated": (sign * updated, rows), "created": (sign * created, rows),
                      "id": (sign * created, sign * rand, rows)}[sort.lstrip("-")]
            return View.sorted_by(levels, rows, {"updated": updated, "created": created})

        return self.views.get(("profiles", t, sort, version), (rows_w,), build)

    def equality_rows(self, condition: Condition, t: int) -> np.ndarray:
        """Record numbers of the profiles an equals()/any() condition names."""
        values = condition.value if condition.op == "any" else (condition.value,)
        rows: list[int] = []
        for value in map(str, values):
            if condition.field == "id":
                rows.append(self.profile_row(value, t))
            elif condition.field == "email":
                imported = self.imported_by_email.get(value.strip().lower())
                rows.append(imported.row if imported else self.profile_by_email().get(value.strip().lower(), -1))
            elif condition.field == "phone_number":
                rows.append(self.profile_by_phone().get(value.strip(), -1))
            else:  # external_id: the shop's customer id, shown once the customer account exists
                customers = self.world.customers
                match = np.flatnonzero(customers.customer_id == int(value)) if value.isdigit() else []
                for c in match:
                    q = int(self.world.profile_of_person[customers.person[c]])
                    if q >= 0 and self.world.profile_at(q, t)["external_id"] == value:
                        rows.append(q)
        return np.asarray([r for r in rows if r >= 0], dtype=np.int64)

    def profiles_selection(self, t: int, sort: str, conditions: tuple[Condition, ...]) -> View:
        view = self.profiles_view(t, sort)
        if not conditions:
            return view

        def build() -> View:
            mask = np.ones(len(view), dtype=bool)
            for condition in conditions:
                if condition.field in ("created", "updated"):
                    mask &= _compare(view.columns[condition.field], condition.op, float(condition.value))
                else:
                    mask &= np.isin(view.records, self.equality_rows(condition, t))
            return view.subset(mask)

        return self.views.get(("profiles-selection", t, sort, conditions), (view,), build)

    def profile_options(self, request: Request) -> tuple[list[str], bool]:
        additional = self.listed(request, "additional-fields[profile]")
        unknown = [a for a in additional if a != "subscriptions"]
        if unknown:
            raise _invalid(f"additional-fields[profile] value(s) {', '.join(unknown)} not supported by the simulator; "
                           "supported: subscriptions.", "additional-fields[profile]")
        fields = self.fields(request, "profile")
        if request.query_params.get("include"):
            raise _invalid("include is not supported on profiles by the simulator.", "include")
        return fields, bool(additional)

    def get_profiles(self, request: Request) -> Response:
        guard = self.guard(request, "get_profiles")
        if isinstance(guard, Response):
            return guard
        try:
            return self._get_profiles(request, guard)
        except ApiError as exc:
            return self.error(exc, guard)

    def _get_profiles(self, request: Request, headers: dict) -> Response:
        params = request.query_params
        fields, with_subscriptions = self.profile_options(request)
        size = self.page_size(request, PROFILES_PAGE_SIZE)
        sort = params.get("sort") or "id"
        if sort.lstrip("-") not in PROFILE_SORTS:
            raise _invalid(f"'{sort}' is not a supported sort for profiles by the simulator; use one of "
                           f"{', '.join(s + ', -' + s for s in PROFILE_SORTS)}.", "sort")
        conditions = parse_filter(params.get("filter", ""), PROFILE_FILTERS, PROFILE_UNSIMULATED)
        t = self.state.read_time("klaviyo")
        view = self.profiles_selection(t, sort, conditions)
        cursor_key = self.cursor_key(params.get("page[cursor]"), "profiles", sort, len(view.levels))
        start = view.position_after(cursor_key) if cursor_key else 0
        repeat = False
        if cursor_key is not None:
            key = request_key("GET", request.url.path, request.url.query)
            faults, dice = self.state.faults, self.state.dice
            if start < len(view) and dice.hits("mid_read_updates", key, faults.mid_read_updates):
                self.touch_profile(int(view.records[pick(dice.draw("mid_read_pick", key), start, len(view))]), t)
                view = self.profiles_selection(t, sort, conditions)
                start = view.position_after(cursor_key)
            repeat = size > 1 and dice.hits("duplicates", key, faults.duplicates) and \
                self.row_exists(cursor_key[-1], t)
        end = min(start + size - repeat, len(view))
        rows = ([cursor_key[-1]] if repeat else []) + view.records[start:end].tolist()
        data = [self.profile_object(int(r), t, fields, with_subscriptions) for r in rows]
        cursor = encode_cursor("profiles", sort, *view.key_at(end - 1)) if end < len(view) else None
        return self.json({"data": data, "links": self.collection_links(request, cursor)}, headers=headers)

    def get_profile(self, request: Request, profile_id: str) -> Response:
        guard = self.guard(request, "get_profile")
        if isinstance(guard, Response):
            return guard
        try:
            fields, with_subscriptions = self.profile_options(request)
        except ApiError as exc:
            return self.error(exc, guard)
        t = self.state.read_time("klaviyo")
        row = self.profile_row(profile_id, t)
        if row < 0:
            return self.error(ApiError(404, "not_found", "Not found.", f"A profile with id {profile_id} does not exist."),
                              guard)
        return self.json({"data": self.profile_object(row, t, fields, with_subscriptions),
                          "links": {"self": self.url(f"/api/profiles/{profile_id}/")}}, headers=guard)

    def cursor_key(self, token: str | None, kind: str, sort: str, width: int) -> list[int] | None:
        if not token:
            return None
        values = decode_cursor(token)
        if (not values or values[:2] != [kind, sort] or len(values) != width + 2
                or not all(isinstance(v, int) for v in values[2:])):
            raise _invalid("The page[cursor] is invalid or belongs to another query.", "page[cursor]")
        return values[2:]

    def row_exists(self, row: int, t: int) -> bool:
        n = self.world.profiles.n
        if row < n:
            return bool(row >= 0 and self.world.profiles.created_at[row] <= t < self.world.profiles.deleted_at[row])
        return row - n < len(self.imported) and self.imported[row - n].created <= t

    def touch_profile(self, row: int, t: int) -> None:
        """A new version of a profile at t: world profiles through the world's overlay, imported ones here."""
        n = self.world.profiles.n
        if row < n:
            self.world.touch("profiles", row, t)
            return
        with self._lock:
            self.imported[row - n].updated = max(self.imported[row - n].updated, t)
            self.overlay_version += 1

    # ---- events ---------------------------------------------------------------------------------------------------
    def event_set(self, t: int, conditions: tuple[Condition, ...]) -> _EventSet:
        events = self.world.events
        n_t = int(np.searchsorted(events.time, t, "right"))
        members: np.ndarray | None = None
        for condition in conditions:
            if condition.field == "profile_id":
                row = self.profile_row(str(condition.value), t)
                order, offsets = self.events_by_profile()
                mine = order[offsets[row]:offsets[row + 1]] if 0 <= row < self.world.profiles.n else order[:0]
                members = mine if members is None else np.intersect1d(members, mine, assume_unique=True)
            elif condition.field == "metric_id":
                m = METRIC_IDS.index(condition.value) if condition.value in METRIC_IDS else -1
                mine = self.events_of_metric(m) if m >= 0 else np.zeros(0, dtype=np.int64)
                members = mine if members is None else np.intersect1d(members, mine, assume_unique=True)
        times = events.time if members is None else events.time[members]
        lo, hi = 0, n_t if members is None else int(np.searchsorted(members, n_t, "left"))
        for condition in conditions:
            if condition.field in ("datetime", "timestamp"):
                value, op = float(condition.value), condition.op
                if op in ("greater-than", "greater-or-equal"):
                    lo = max(lo, int(np.searchsorted(times, value, "right" if op == "greater-than" else "left")))
                else:
                    hi = min(hi, int(np.searchsorted(times, value, "left" if op == "less-than" else "right")))
        return _EventSet(lo, hi, members)

    def get_events(self, request: Request) -> Response:
        guard = self.guard(request, "get_events")
        if isinstance(guard, Response):
            return guard
        try:
            return self._get_events(request, guard)
        except ApiError as exc:
            return self.error(exc, guard)

    def _get_events(self, request: Request, headers: dict) -> Response:
        params = request.query_params
        size = self.page_size(request, EVENTS_PAGE_SIZE)
        sort = params.get("sort") or "datetime"
        if sort.lstrip("-") not in EVENT_SORTS:
            raise _invalid(f"'{sort}' is not a valid sort for events; use datetime, -datetime, timestamp or "
                           "-timestamp.", "sort")
        descending = sort.startswith("-")
        include = self.listed(request, "include")
        if any(i not in ("metric", "profile") for i in include):
            raise _invalid("include supports metric and profile in the simulator.", "include")
        fields = {kind: self.fields(request, kind) for kind in ("event", "metric", "profile")}
        conditions = parse_filter(params.get("filter", ""), EVENT_FILTERS, EVENT_UNSIMULATED)
        t = self.state.read_time("klaviyo")
        candidates = self.event_set(t, conditions)
        direction = "desc" if descending else "asc"
        cursor_key = self.cursor_key(params.get("page[cursor]"), "events", direction, 2)
        repeat = False
        if cursor_key is not None:
            key = request_key("GET", request.url.path, request.url.query)
            repeat = size > 1 and self.state.dice.hits("duplicates", key, self.state.faults.duplicates)
        if descending:
            stop = candidates.rank(cursor_key[1] - 1) if cursor_key else len(candidates)
            start = max(0, stop - (size - repeat))
            page, more = candidates.take(start, stop)[::-1], start > 0
        else:
            start = candidates.rank(cursor_key[1]) if cursor_key else 0
            stop = min(len(candidates), start + size - repeat)
            page, more = candidates.take(start, stop), stop < len(candidates)
        records = ([cursor_key[1]] if repeat else []) + page.tolist()
        data = [self.event_object(int(e), fields["event"]) for e in records]
        cursor = None
        if more and len(page):
            last = int(page[-1])
            cursor = encode_cursor("events", direction, int(self.world.events.time[last]), last)
        body: dict[str, object] = {"data": data, "links": self.collection_links(request, cursor)}
        if include:
            body["included"] = self.included(records, include, fields, t)
        return self.json(body, headers=headers)

    def included(self, records: list[int], include: list[str], fields: dict[str, list[str]], t: int) -> list[dict]:
        events, out = self.world.events, []
        if "metric" in include:
            metrics = dict.fromkeys(int(events.metric[e]) for e in records)
            out += [self.metric_object(m, fields["metric"]) for m in metrics]
        if "profile" in include:
            profiles = dict.fromkeys(int(events.profile[e]) for e in records)
            out += [self.profile_object(q, t, fields["profile"], False) for q in profiles]
        return out

    # ---- metrics ------------------------------------------------------------------------------------------------
    def get_metrics(self, request: Request) -> Response:
        guard = self.guard(request, "get_metrics")
        if isinstance(guard, Response):
            return guard
        try:
            conditions = parse_filter(request.query_params.get("filter", ""), METRIC_FILTERS)
            fields = self.fields(request, "metric")
        except ApiError as exc:
            return self.error(exc, guard)
        data = [self.metric_object(m, []) for m in range(len(catalog.METRICS))]
        for condition in conditions:
            attribute = condition.field.split(".")[1]
            data = [d for d in data if d["attributes"]["integration"][attribute] == condition.value]
        if fields:
            data = [{**d, "attributes": {k: v for k, v in d["attributes"].items() if k in fields}} for d in data]
        return self.json({"data": data, "links": self.collection_links(request, None)}, headers=guard)

    def get_metric(self, request: Request, metric_id: str) -> Response:
        guard = self.guard(request, "get_metric")
        if isinstance(guard, Response):
            return guard
        try:
            fields = self.fields(request, "metric")
        except ApiError as exc:
            return self.error(exc, guard)
        if metric_id not in METRIC_IDS:
            return self.error(ApiError(404, "not_found", "Not found.", f"A metric with id {metric_id} does not exist."),
                              guard)
        return self.json({"data": self.metric_object(METRIC_IDS.index(metric_id), fields),
                          "links": {"self": self.url(f"/api/metrics/{metric_id}/")}}, headers=guard)

    # ---- bulk profile import ----------------------------------------------------------------------------------------
    def job_object(self, job: ImportJob, fields: list[str] | None = None) -> dict:
        base = self.url(f"/api/profile-bulk-import-jobs/{job.job_id}/")
        attributes = {
            "status": job.status, "created_at": klaviyo_time(job.created_at), "total_count": len(job.profiles),
            "completed_count": job.completed_count, "failed_count": job.failed_count,
            "completed_at": klaviyo_time(job.completed_at) if job.completed_at is not None else None,
            "expires_at": klaviyo_time(job.created_at + BULK_IMPORT_JOB_TTL_DAYS * 86_400),
            "started_at": klaviyo_time(job.started_at) if job.started_at is not None else None,
        }
        if fields:
            attributes = {k: v for k, v in attributes.items() if k in fields}
        return {
            "type": "profile-bulk-import-job", "id": job.job_id, "attributes": attributes,
            "relationships": {
                "lists": {"data": [{"type": "list", "id": i} for i in job.list_ids],
                          "links": {"self": f"{base}relationships/lists/", "related": f"{base}lists/"}},
                "profiles": {"links": {"self": f"{base}relationships/profiles/", "related": f"{base}profiles/"}},
                # the reference gives this relationship only a related link (no relationships/import-errors)
                "import-errors": {"links": {"related": f"{base}import-errors/"}},
            },
            "links": {"self": base},
        }

    async def bulk_import_profiles(self, request: Request) -> Response:
        guard = self.guard(request, "bulk_import_profiles")
        if isinstance(guard, Response):
            return guard
        body = await request.body()
        try:
            job = await run_in_threadpool(self.new_job, body)
        except ApiError as exc:
            return self.error(exc, guard)
        return self.json({"data": self.job_object(job), "links": {"self": self.url(request.url.path)}}, 202, guard)

    def new_job(self, body: bytes) -> ImportJob:
        if len(body) > BULK_IMPORT_MAX_BYTES:
            raise ApiError(413, "request_too_large", "Request entity too large.",
                           f"The request payload of {len(body)} bytes exceeds the maximum allowed size of 5MB "
                           f"({BULK_IMPORT_MAX_BYTES} bytes).")
        try:
            data = json.loads(body)
        except ValueError:
            raise _invalid("The request body is not valid JSON.") from None
        resource = data.get("data") if isinstance(data, dict) else None
        if not isinstance(resource, dict) or resource.get("type") != "profile-bulk-import-job":
            raise _invalid("data.type must be 'profile-bulk-import-job'.", pointer="/data/type")
        profiles = ((resource.get("attributes") or {}).get("profiles") or {}).get("data")
        if not isinstance(profiles, list) or not profiles:
            raise _invalid("data.attributes.profiles.data must be a non-empty list of profiles.",
                           pointer="/data/attributes/profiles/data")
        if len(profiles) > BULK_IMPORT_MAX_PROFILES:
            raise _invalid(f"A bulk import job accepts at most {BULK_IMPORT_MAX_PROFILES} profiles; got "
                           f"{len(profiles)}.", pointer="/data/attributes/profiles/data")
        lists = (((resource.get("relationships") or {}).get("lists") or {}).get("data")) or []
        list_ids = [str(item.get("id")) for item in lists if isinstance(item, dict)]
        t = self.state.now()
        with self._lock:
            job_id = ulid(t * 1000, _hash_int("job", self.world.config.seed, len(self.jobs)))
            job = ImportJob(job_id, len(self.jobs), t, profiles, list_ids)
            self.jobs[job_id] = job
        return job

    def get_import_job(self, request: Request, job_id: str) -> Response:
        guard = self.guard(request, "get_bulk_import_profiles_job")
        if isinstance(guard, Response):
            return guard
        with self._lock:
            job = self.jobs.get(job_id)
            if job is not None:
                self.advance(job)
        if job is None:
            return self.error(ApiError(404, "not_found", "Not found.",
                                       f"A profile bulk import job with id {job_id} does not exist."), guard)
        return self.json({"data": self.job_object(job), "links": {"self": self.url(request.url.path)}}, headers=guard)

    def get_import_jobs(self, request: Request) -> Response:
        """Every import job of the account, oldest first (sort=-created_at: newest first), filtered on status; the
        listing first moves every running job one step, as a poll of each would."""
        guard = self.guard(request, "get_bulk_import_profiles_jobs")
        if isinstance(guard, Response):
            return guard
        try:
            return self._get_import_jobs(request, guard)
        except ApiError as exc:
            return self.error(exc, guard)

    def _get_import_jobs(self, request: Request, headers: dict) -> Response:
        params = request.query_params
        size = self.page_size(request, IMPORT_JOBS_PAGE_SIZE)
        fields = self.fields(request, "profile-bulk-import-job")
        wanted = set(IMPORT_JOB_STATUSES)
        for condition in parse_filter(params.get("filter", ""), IMPORT_JOB_FILTERS):
            values = set(condition.value) if isinstance(condition.value, tuple) else {condition.value}
            unknown = sorted(values - set(IMPORT_JOB_STATUSES))
            if unknown:
                raise _invalid(f"Invalid filter: {', '.join(map(repr, unknown))} is not a job status. Valid "
                               f"statuses: {', '.join(IMPORT_JOB_STATUSES)}.", "filter")
            wanted &= values
        sort = params.get("sort", "created_at")
        if sort not in ("created_at", "-created_at"):
            raise _invalid(f"'{sort}' is not a valid sort for this endpoint. Valid sorts: created_at, -created_at.",
                           "sort")
        with self._lock:
            for job in self.jobs.values():
                self.advance(job)  # a step for each running job (an ended one stays as it is)
            jobs = [job for job in self.jobs.values() if job.status in wanted]  # in creation order
        descending = sort.startswith("-")
        if descending:
            jobs.reverse()
        page, cursor = self.keyset_page(request, jobs, size, ["profile-bulk-import-jobs", sort],
                                        position=lambda job: job.seq,
                                        after=lambda job, seq: job.seq < seq if descending else job.seq > seq)
        return self.json({"data": [self.job_object(job, fields) for job in page],
                          "links": self.collection_links(request, cursor)}, headers=headers)

    def advance(self, job: ImportJob) -> None:
        """One lifecycle step per poll: queued -> processing -> complete (applied to the profiles)."""
        t = self.state.now()
        if job.status == "queued":
            job.status, job.started_at, job.completed_count = "processing", t, len(job.profiles) // 2
        elif job.status == "processing":
            job.errors = [(i, failure) for i, p in enumerate(job.profiles)
                          if (failure := self.import_profile(p, t)) is not None]
            job.status, job.completed_at = "complete", t
            job.completed_count, job.failed_count = len(job.profiles) - len(job.errors), len(job.errors)

    def import_profile(self, resource: object, t: int) -> ImportFailure | None:
        """Upsert one profile by email: why it failed, or None. Nulls never clear a field; meta.patch_properties.unset
        removes custom properties."""
        attributes = resource.get("attributes") if isinstance(resource, dict) else None
        if not isinstance(attributes, dict) or resource.get("type") != "profile":
            return ImportFailure("invalid", "Invalid input.",
                                 "Each profile must be a 'profile' resource with attributes.")
        size = len(json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode())
        if size > BULK_IMPORT_MAX_PROFILE_BYTES:
            return ImportFailure("invalid", "Profile too large.",
                                 f"The profile is {size} bytes, over the maximum size of 100KB "
                                 f"({BULK_IMPORT_MAX_PROFILE_BYTES} bytes).")
        email = attributes.get("email")
        if not isinstance(email, str) or "@" not in email.strip():
            return ImportFailure("invalid", "Invalid email address.",
                                 f"{email!r} is not a valid email address; the simulator imports profiles by email.")
        for part in ("properties", "location"):
            if attributes.get(part) is not None and not isinstance(attributes[part], dict):
                return ImportFailure("invalid", "Invalid input.", f"attributes.{part} must be an object.")
        meta = resource.get("meta")
        patch = meta.get("patch_properties") if isinstance(meta, dict) else None
        unset = patch.get("unset") if isinstance(patch, dict) else None
        unset = [unset] if isinstance(unset, str) else unset
        if unset is not None and (not isinstance(unset, list) or not all(isinstance(k, str) for k in unset)):
            return ImportFailure("invalid", "Invalid input.",
                                 "meta.patch_properties.unset must be a property name or a list of them.")
        unset = unset or []
        email = email.strip().lower()
        edit = {"attributes": {k: attributes[k] for k in IMPORTABLE_ATTRIBUTES if attributes.get(k) is not None},
                "location": {k: v for k, v in (attributes.get("location") or {}).items()
                             if k in LOCATION_FIELDS and v is not None},
                "properties": {k: v for k, v in (attributes.get("properties") or {}).items() if v is not None}}
        q = self.profile_by_email().get(email, -1)
        if q >= 0 and self.world.profiles.created_at[q] <= t:
            merged = self.edits.setdefault(q, {"attributes": {}, "location": {}, "properties": {}})
            removed = merged.setdefault("unset", set())
            for key in unset:
                merged["properties"].pop(key, None)
                removed.add(key)
            removed.difference_update(edit["properties"])
            for part, values in edit.items():
                merged[part].update(values)
            self.world.touch("profiles", q, t)
            return None
        imported = self.imported_by_email.get(email)
        if imported is None:
            rand = _hash_int("imported", self.world.config.seed, email)
            imported = ImportedProfile(row=self.world.profiles.n + len(self.imported),
                                       profile_id=ulid(t * 1000, rand), email=email, created=t, updated=t, rand=rand)
            self.imported.append(imported)
            self.imported_by_email[email] = imported
            self.imported_by_id[imported.profile_id] = imported
        imported.updated = max(imported.updated, t)
        imported.attributes.update(edit["attributes"])
        imported.location.update(edit["location"])
        for key in unset:
            imported.properties.pop(key, None)
        imported.properties.update(edit["properties"])
        self.overlay_version += 1
        return None

    def get_import_errors(self, request: Request, job_id: str) -> Response:
        """A job's import-errors, in the order of the request's profiles; page[cursor] names the last one returned."""
        guard = self.guard(request, "get_errors_for_bulk_import_profiles_job")
        if isinstance(guard, Response):
            return guard
        try:
            return self._get_import_errors(request, job_id, guard)
        except ApiError as exc:
            return self.error(exc, guard)

    def _get_import_errors(self, request: Request, job_id: str, headers: dict) -> Response:
        size = self.page_size(request, IMPORT_ERRORS_PAGE_SIZE)
        fields = self.fields(request, "import-error")
        with self._lock:
            job = self.jobs.get(job_id)
            errors = list(job.errors) if job is not None else []
        if job is None:
            raise ApiError(404, "not_found", "Not found.", f"A profile bulk import job with id {job_id} does not exist.")
        page, cursor = self.keyset_page(request, errors, size, ["import-errors", job_id],
                                        position=lambda error: error[0], after=lambda error, index: error[0] > index)
        data = [self.import_error_object(job, index, failure, fields) for index, failure in page]
        return self.json({"data": data, "links": self.collection_links(request, cursor)}, headers=headers)

    def import_error_object(self, job: ImportJob, index: int, failure: ImportFailure, fields: list[str]) -> dict:
        resource = job.profiles[index]
        original = resource.get("attributes") if isinstance(resource, dict) else None
        attributes = {"code": failure.code, "title": failure.title, "detail": failure.detail,
                      "source": {"pointer": f"/data/attributes/profiles/data/{index}"},
                      "original_payload": original if isinstance(original, dict) else {}}
        wanted = {f.split(".")[0] for f in fields if f != "id"}
        if wanted:
            attributes = {k: v for k, v in attributes.items() if k in wanted}
        return {"type": "import-error", "id": stable_uuid(self.world.config.seed, "import-error", job.job_id, index),
                "attributes": attributes}


def _is_date(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return False
    return True


def router(state: SimState) -> APIRouter:
    surface = KlaviyoSurface(state)
    state.vendor_state["klaviyo"] = surface
    api = APIRouter()
    # Klaviyo serves every path with and without the trailing slash; no redirects.
    for path, endpoint, methods in (
        ("profiles", surface.get_profiles, ["GET"]),
        ("profiles/{profile_id}", surface.get_profile, ["GET"]),
        ("events", surface.get_events, ["GET"]),
        ("metrics", surface.get_metrics, ["GET"]),
        ("metrics/{metric_id}", surface.get_metric, ["GET"]),
        ("profile-bulk-import-jobs", surface.bulk_import_profiles, ["POST"]),
        ("profile-bulk-import-jobs", surface.get_import_jobs, ["GET"]),
        ("profile-bulk-import-jobs/{job_id}", surface.get_import_job, ["GET"]),
        ("profile-bulk-import-jobs/{job_id}/import-errors", surface.get_import_errors, ["GET"]),
    ):
        api.add_api_route(f"{PATH_PREFIX}{path}", endpoint, methods=methods)
        api.add_api_route(f"{PATH_PREFIX}{path}/", endpoint, methods=methods, include_in_schema=False)
    return api
