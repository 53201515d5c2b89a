"""One GraphQL request to a shop's Admin API: the answer's `data`, or an error that says why there is none.

- A THROTTLED answer (HTTP 200 with errors[].extensions.code THROTTLED) is not data: it is retried after the time
  the cost bucket needs (ShopifyPacer), up to THROTTLE_ATTEMPTS times in a row.
- MAX_COST_EXCEEDED raises QueryCostTooHigh: only the caller can make the query cheaper (a smaller page).
- INTERNAL_SERVER_ERROR alone is retried with backoff, within the retry policy's attempts.
- A search term Shopify could not apply (reported in `extensions.search`) fails the request: a silently widened
  filter would load the wrong window.
- Shopify answers an unsupported version with a newer one and says so in X-Shopify-API-Version: logged once.
HTTP-level retries (5xx, timeouts, 429) and authentication failures are HttpClient's.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tailor.sources import Credentials, Progress
from tailor.sources.http import HttpClient, RetryBudgetExhausted, RetryPolicy, SourceError
from tailor.sources.shopify.pacing import QueryCosts, ShopifyPacer

log = logging.getLogger(__name__)

THROTTLE_ATTEMPTS = 25  # THROTTLED answers in a row before giving up (each waits what the bucket needs)


def endpoint_path(api_version: str) -> str:
    return f"/admin/api/{api_version}/graphql.json"


class QueryCostTooHigh(Exception):
    """Shopify priced a query above its single-query cap (MAX_COST_EXCEEDED)."""

    def __init__(self, cost: int | None):
        super().__init__(f"query cost {cost}")
        self.cost = cost


@dataclass
class ApiUsage:
    """What an extractor's requests have cost, summed over all its extractions (which may run in threads)."""

    requests_sent: int = 0
    throttled_responses: int = 0
    points_charged: float = 0.0  # the sum of actualQueryCost: the rate-limit budget spent
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, requests: int = 0, throttled: int = 0, points: float = 0.0) -> None:
        with self._lock:
            self.requests_sent += requests
            self.throttled_responses += throttled
            self.points_charged += points


class GraphqlTransport:
    """One extraction's connection to a shop: an HttpClient bound to that extraction's Progress, sharing the
    extractor's pacer, learned query costs and usage counters. Use as a context manager: it closes the client."""

    def __init__(self, credentials: Credentials, *, api_version: str, policy: RetryPolicy, pacer: ShopifyPacer,
                 query_costs: QueryCosts, usage: ApiUsage, progress: Progress, sleep: Callable[[float], None]):
        self.conn_id = credentials.conn_id
        self._api_version = api_version
        self._endpoint = endpoint_path(api_version)
        self._policy = policy
        self._pacer = pacer
        self._query_costs = query_costs
        self._usage = usage
        self._progress = progress
        self._sleep = sleep
        self._http = HttpClient(credentials, "Shopify", {"X-Shopify-Access-Token": credentials.token},
                                policy=policy, pacer=pacer, progress=progress, sleep=sleep,
                                default_headers={"Accept": "application/json", "User-Agent": "tailor-extract"})
        self._requests_counted = 0
        self._version_checked = False

    def __enter__(self) -> GraphqlTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self._count_requests()  # a request that raised (401, retries exhausted) was sent all the same
        self._http.close()

    def _count_requests(self) -> None:
        self._usage.add(requests=self._http.requests_sent - self._requests_counted)
        self._requests_counted = self._http.requests_sent

    def request(self, name: str, query: str, variables: dict | None = None) -> dict:
        """`data` of a successful answer. `name` identifies the query (and its page size) for cost learning and
        messages. THROTTLED answers are waited out and retried; MAX_COST_EXCEEDED raises QueryCostTooHigh; other
        errors raise SourceError with Shopify's messages."""
        server_errors = 0
        for attempt in range(1, THROTTLE_ATTEMPTS + 1):
            body = self._post(name, query, variables)
            cost = (body.get("extensions") or {}).get("cost") or {}
            self._query_costs.learn(name, cost.get("requestedQueryCost"))
            errors = body.get("errors")
            if not errors:
                return self._data_of(name, body, cost)
            codes = _error_codes(errors)
            if "THROTTLED" in codes:
                self._wait_out_throttling(name, attempt, cost)
                continue
            if "MAX_COST_EXCEEDED" in codes:
                raise QueryCostTooHigh(cost.get("requestedQueryCost") or _max_cost_in(errors))
            if codes and codes <= {"INTERNAL_SERVER_ERROR"} and server_errors + 1 < self._policy.attempts:
                server_errors += 1
                self._back_off_server_error(name, server_errors)
                continue
            raise SourceError(f"Shopify ({self.conn_id}) refused {name}: {_error_messages(errors)}")
        raise RetryBudgetExhausted(f"Shopify ({self.conn_id}): {name} still THROTTLED after {THROTTLE_ATTEMPTS} "
                                   "attempts; another app may be draining this shop's rate limit")

    def _post(self, name: str, query: str, variables: dict | None) -> dict:
        body, response = self._http.request_json(
            "POST", self._endpoint, json_body={"query": query, "variables": variables or {}},
            cost=self._query_costs.of(name))
        self._count_requests()
        self._check_version(response)
        if not isinstance(body, dict):
            raise SourceError(f"Shopify ({self.conn_id}) answered {name} with a non-object JSON body")
        return body

    def _data_of(self, name: str, body: dict, cost: dict) -> dict:
        """`data` of an answer without errors, once it is sure the search was applied."""
        search = (body.get("extensions") or {}).get("search")
        if search:
            raise SourceError(f"Shopify ({self.conn_id}) could not apply the search of {name}: "
                              f"{json.dumps(search)[:500]}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise SourceError(f"Shopify ({self.conn_id}) answered {name} without data")
        self._usage.add(points=float(cost.get("actualQueryCost") or 0))
        return data

    def _wait_out_throttling(self, name: str, attempt: int, cost: dict) -> None:
        """Wait until the bucket holds the refused query's cost (from the THROTTLED answer's throttleStatus)."""
        self._usage.add(throttled=1)
        self._progress.throttled += 1
        self._progress.retries += 1
        requested = float(cost.get("requestedQueryCost") or self._query_costs.of(name))
        wait = self._pacer.seconds_until(requested)
        if wait is None:  # no throttleStatus in the answer: back off blindly
            wait = min(self._policy.max_delay, self._policy.base_delay * 2 ** attempt)
        else:
            wait += self._pacer.margin_seconds
        log.info("%s: %s THROTTLED (requested %.0f points), retry in %.2fs", self.conn_id, name, requested, wait)
        self._progress.rate_waits += 1
        self._progress.rate_wait_seconds += wait
        self._sleep(wait)

    def _back_off_server_error(self, name: str, server_errors: int) -> None:
        self._progress.retries += 1
        delay = min(self._policy.max_delay, self._policy.base_delay * 2 ** server_errors)
        log.info("%s: %s got INTERNAL_SERVER_ERROR, retry in %.1fs", self.conn_id, name, delay)
        self._sleep(delay)

    def _check_version(self, response: httpx.Response) -> None:
        if self._version_checked:
            return
        self._version_checked = True
        served = response.headers.get("X-Shopify-API-Version")
        if served and served != self._api_version:
            log.warning("%s: asked for Shopify API %s, served %s (the asked version is no longer supported)",
                        self.conn_id, self._api_version, served)


def _error_codes(errors: object) -> set[str]:
    codes = set()
    for error in errors if isinstance(errors, list) else [errors]:
        if isinstance(error, dict):
            code = (error.get("extensions") or {}).get("code")
            if code:
                codes.add(str(code))
    return codes


def _max_cost_in(errors: list) -> int | None:
    for error in errors:
        if isinstance(error, dict):
            cost = (error.get("extensions") or {}).get("cost")
            if isinstance(cost, int):
                return cost
    return None


def _error_messages(errors: object) -> str:
    if isinstance(errors, list):
        text = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
    else:
        text = str(errors)
    return text[:500]
