"""A short tour of what a running simulator serves (for `make demo`), and page walkers for the benchmark.

Requests are made as any API client would make them: over HTTP, with the documented tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator

import httpx

from simulator import klaviyo, shopify
from simulator.state import TOKENS

SHOPIFY_PATH = f"/admin/api/{shopify.API_VERSION}/graphql.json"
SHOPIFY_PAGE = {
    "customers": "id updatedAt numberOfOrders",
    "orders": "id updatedAt name lineItems(first: 10) { nodes { id quantity } }",
    "products": "id updatedAt title variants(first: 10) { nodes { id price } }",
}


def _shopify_headers(tokens: dict) -> dict:
    return {"X-Shopify-Access-Token": tokens["shopify"], "Content-Type": "application/json"}


def _klaviyo_headers(tokens: dict) -> dict:
    return {"Authorization": f"Klaviyo-API-Key {tokens['klaviyo']}", "revision": klaviyo.REVISION,
            "Accept": "application/vnd.api+json"}


def shopify_pages(entity: str) -> Callable[[httpx.Client, dict], Iterator[int]]:
    def pages(client: httpx.Client, tokens: dict) -> Iterator[int]:
        after = None
        query = (f"query($after: String) {{ {entity}(first: 250, after: $after, sortKey: UPDATED_AT) "
                 f"{{ pageInfo {{ hasNextPage endCursor }} nodes {{ {SHOPIFY_PAGE[entity]} }} }} }}")
        while True:
            body = client.post(SHOPIFY_PATH, headers=_shopify_headers(tokens),
                               json={"query": query, "variables": {"after": after}}).raise_for_status().json()
            connection = body["data"][entity]
            yield len(connection["nodes"])
            if not connection["pageInfo"]["hasNextPage"]:
                return
            after = connection["pageInfo"]["endCursor"]
    return pages


def hubspot_contacts(client: httpx.Client, tokens: dict) -> Iterator[int]:
    params: dict = {"limit": 100}
    while True:
        body = client.get("/crm/v3/objects/contacts", params=params,
                          headers={"Authorization": f"Bearer {tokens['hubspot']}"}).raise_for_status().json()
        yield len(body["results"])
        after = body.get("paging", {}).get("next", {}).get("after")
        if not after:
            return
        params["after"] = after


def klaviyo_pages(path: str, page_size: int) -> Callable[[httpx.Client, dict], Iterator[int]]:
    def pages(client: httpx.Client, tokens: dict) -> Iterator[int]:
        url: str | None = f"{path}?page[size]={page_size}"
        while url:
            body = client.get(url, headers=_klaviyo_headers(tokens)).raise_for_status().json()
            yield len(body["data"])
            url = body.get("links", {}).get("next")
    return pages


API_PAGERS: dict[str, Callable[[httpx.Client, dict], Iterator[int]]] = {
    "shopify customers": shopify_pages("customers"),
    "shopify orders": shopify_pages("orders"),
    "shopify products": shopify_pages("products"),
    "hubspot contacts": hubspot_contacts,
    "klaviyo profiles": klaviyo_pages("/api/profiles", 100),
    "klaviyo events": klaviyo_pages("/api/events", 200),
}


def tour(url: str, tokens: dict = TOKENS) -> None:
    def show(title: str, value: object) -> None:
        print(f"\n== {title}\n{json.dumps(value, indent=2)[:1500]}")

    with httpx.Client(base_url=url, timeout=30) as client:
        health = client.get("/_simulator/health").raise_for_status().json()
        summary = client.get("/_simulator/summary").raise_for_status().json()
        mode = f" ({health['clock_mode']})" if "clock_mode" in health else ""
        print(f"simulator at {url}: seed {health['seed']}, {health['customers']:,} people, clock "
              f"{health['clock']}{mode}")
        if health.get("faults_spec", "none") != "none":
            print(f"  faults: {health['faults_spec']}")
        for entity, count in summary["records"].items():
            print(f"  {entity:>10}: {count:>10,} records existing at the clock")
        query = ("{ customers(first: 2, sortKey: UPDATED_AT, reverse: true) { nodes { id displayName "
                 "numberOfOrders amountSpent { amount currencyCode } updatedAt } } }")
        body = client.post(SHOPIFY_PATH, headers=_shopify_headers(tokens), json={"query": query}).raise_for_status()
        show(f"Shopify GraphQL Admin {shopify.API_VERSION}: POST {SHOPIFY_PATH}", body.json())
        search = {"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "LT",
                                                  "value": summary["clock"]}]}],
                  "sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}],
                  "properties": ["email", "lifecyclestage", "lastmodifieddate"], "limit": 2}
        body = client.post("/crm/v3/objects/contacts/search", json=search,
                           headers={"Authorization": f"Bearer {tokens['hubspot']}"})
        show("HubSpot CRM v3: POST /crm/v3/objects/contacts/search (latest modified)", body.raise_for_status().json())
        body = client.get("/api/profiles", params={"page[size]": 2, "additional-fields[profile]": "subscriptions"},
                          headers=_klaviyo_headers(tokens)).raise_for_status()
        show(f"Klaviyo (revision {klaviyo.REVISION}): GET /api/profiles", body.json())
        body = client.get("/api/events", params={"page[size]": 2, "include": "metric"},
                          headers=_klaviyo_headers(tokens)).raise_for_status()
        show("Klaviyo: GET /api/events", body.json())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator tour")
    parser.add_argument("--url", default="http://127.0.0.1:8765")
    args = parser.parse_args(argv)
    try:
        tour(args.url)
    except httpx.HTTPError as exc:
        print(f"simulator tour: error: {exc}", file=sys.stderr)
        return 1
    return 0
