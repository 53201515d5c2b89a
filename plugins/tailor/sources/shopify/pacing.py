"""Shopify's cost-based rate limit: a bucket of points that queries are admitted from.

ShopifyPacer reads `extensions.cost.throttleStatus` (currentlyAvailable, restoreRate, maximumAvailable) of every
response and, before each request, waits just long enough for the bucket to hold that query's requested cost
(learned from `requestedQueryCost` per query, QueryCosts), so a steady extraction is rarely THROTTLED.
Requested costs at 250 records per page are customers 57, orders 541, products 266 points, under the
1000-point single-query cap (MAX_QUERY_COST); the bucket is charged the actual cost (customers 57, orders ~178
per page of 250), so the Standard plan allows ~440 customers/s or ~140 orders/s once the initial bucket is spent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from tailor.sources.http import Pacer

MAX_QUERY_COST = 1000  # Shopify refuses a single query priced above this (MAX_COST_EXCEEDED)
UNKNOWN_QUERY_COST = 100.0  # assumed for a query before any requested cost has been learned


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


class QueryCosts:
    """requestedQueryCost per query name (a query and its page size), learned from responses.

    Shared by every extraction of one extractor (and its threads): the pacer is asked to make room for a query's
    requested cost before it is sent, and the first time a query is sent that cost is not known yet.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requested: dict[str, float] = {}

    def learn(self, name: str, requested: object) -> None:
        if isinstance(requested, int | float):
            with self._lock:
                self._requested[name] = float(requested)

    def of(self, name: str) -> float:
        """The query's requested cost as last seen; before that, the largest seen of any query."""
        with self._lock:
            if name in self._requested:
                return self._requested[name]
            return max(self._requested.values(), default=UNKNOWN_QUERY_COST)

    def largest(self) -> float:
        """The largest requested cost seen (0 before any): Shopify admits a query only while its bucket holds it."""
        with self._lock:
            return max(self._requested.values(), default=0.0)
