"""Shopify's GraphQL Admin API, version 2026-07, served over the simulated world.

Endpoint: POST /admin/api/<version>/graphql.json with the X-Shopify-Access-Token header, a JSON body
{"query", "variables", "operationName"} or the bare query with Content-Type application/graphql.

Choices where Shopify's behaviour had to be pinned down (sources in the module docstrings):
- Versions: any quarterly version name (YYYY-01/04/07/10) and `unstable` are answered with the pinned
  schema and say so in X-Shopify-API-Version, as Shopify falls forward from versions it no longer serves;
  anything else under /admin/api/ is a 404 {"errors": "Not Found"}. A bad token is a 401
  {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}.
- Rate limits: the Standard plan's leaky bucket (2000 points, 100 restored per second), a single query capped
  at 1000 points (MAX_COST_EXCEEDED), THROTTLED with HTTP 200 and the cost extension when the bucket cannot
  cover the requested cost, and the bucket charged with the actual cost. With rate limits off nothing is
  throttled and throttleStatus reports a full bucket minus this request's actual cost (deterministic).
- Deleted records: deleted customers and products vanish from their connections, as on Shopify. Their
  deletions are served as `events` (BasicEvent, action "destroy", subjectType CUSTOMER / PRODUCT, kept one
  year) and, for products, by the deprecated `deletionEvents`. Archived products stay, with status ARCHIVED.
- Customer email and consent are `defaultEmailAddress` / `emailMarketingConsent` (the deprecated `email` and
  `phone` fields are not served, so connectors use the current ones); bounces map to INVALID, spam
  complaints to UNSUBSCRIBED. Tags derive from the record's version count, so every new version visibly
  changes the record. The shop's time zone is UTC. The REST Admin API is not served (404).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
import uuid

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from simulator.shopify.errors import UNAUTHORIZED
from simulator.shopify.runtime import API_VERSION, ShopifyRuntime

PATH_PREFIX = "/admin/api/"
VERSION = re.compile(r"^\d{4}-(01|04|07|10)$")
JSON_TYPE = "application/json; charset=utf-8"
MISSING_QUERY = {"errors": {"query": "Required parameter missing or invalid"}}
RATE_429 = "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."

_request_numbers = itertools.count(1)
_request_lock = threading.Lock()


def _json(status: int, body, headers: dict | None = None) -> Response:
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(payload, status_code=status, media_type=JSON_TYPE, headers=headers)


def _request_id() -> str:
    with _request_lock:
        n = next(_request_numbers)
    return str(uuid.UUID(bytes=hashlib.blake2b(f"shopify-request-{n}".encode(), digest_size=16).digest()))


def unauthorized_response() -> Response:
    return _json(401, {"errors": UNAUTHORIZED})


def fault_response(status: int, retry_after: int | None) -> Response:
    """A transport fault shaped as Shopify sends it (Retry-After is a decimal string, e.g. "2.0")."""
    if status == 429:
        headers = {"Retry-After": f"{float(retry_after or 1):.1f}"}
        return _json(429, {"errors": RATE_429}, headers)
    if status == 500:
        rid = _request_id()
        message = (f"Internal error. Looks like something went wrong on our end.\nRequest ID: {rid} "
                   "(include this in support requests).")
        return _json(500, {"errors": [{"message": message, "extensions": {"code": "INTERNAL_SERVER_ERROR",
                                                                           "requestId": rid}}]})
    reason = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}.get(status, "Server Error")
    html = f"<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1></body></html>"
    return Response(html, status_code=status, media_type="text/html; charset=utf-8")


def served_version(requested: str) -> str | None:
    """The version that answers a request for `requested`, None for a path Shopify does not know."""
    if requested == "unstable" or VERSION.match(requested):
        return API_VERSION
    return None


def runtime_for(state) -> ShopifyRuntime:
    runtime = state.vendor_state.get("shopify")
    if runtime is None:
        runtime = state.vendor_state["shopify"] = ShopifyRuntime(state)
    return runtime


def router(state) -> APIRouter:
    runtime = runtime_for(state)
    api = APIRouter()

    @api.post(PATH_PREFIX + "{version}/graphql.json", include_in_schema=False)
    async def graphql(version: str, request: Request) -> Response:
        if not state.token_ok("shopify", request.headers.get("x-shopify-access-token")):
            return unauthorized_response()
        served = served_version(version)
        if served is None:
            return _json(404, {"errors": "Not Found"})
        raw = await request.body()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/graphql":
            query, variables, operation = raw.decode("utf-8", "replace"), None, None
        else:
            try:
                payload = json.loads(raw or b"{}")
            except ValueError:
                return _json(400, MISSING_QUERY)
            if not isinstance(payload, dict):
                return _json(400, MISSING_QUERY)
            query, variables, operation = payload.get("query"), payload.get("variables"), payload.get("operationName")
        if not isinstance(query, str) or not query.strip():
            return _json(400, MISSING_QUERY)
        body = await run_in_threadpool(runtime.handle, query, variables, operation)
        return _json(200, body, {"X-Shopify-API-Version": served})

    @api.api_route(PATH_PREFIX + "{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                   include_in_schema=False)
    async def unknown(rest: str, request: Request) -> Response:
        if not state.token_ok("shopify", request.headers.get("x-shopify-access-token")):
            return unauthorized_response()
        return _json(404, {"errors": "Not Found"})

    return api


__all__ = ["API_VERSION", "PATH_PREFIX", "fault_response", "router", "unauthorized_response"]
