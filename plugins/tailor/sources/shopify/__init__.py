"""Shopify's GraphQL Admin API (2026-07): customers, orders and products by updatedAt window, with their deletions.

The connector is split by job, each module documenting the Shopify behaviour it relies on:
- extractor: ShopifyExtractor, which reads a window's versions exactly once and picks the paged or bulk path.
- windows: a window as a search with quoted timestamps.
- selection: what is selected per entity, and the payload shape it produces (identical on both paths).
- pacing: the cost bucket (ShopifyPacer) and the requested cost learned per query.
- transport: one GraphQL request, with THROTTLED waits, error handling and the version check.
- paging: cursor paging, page sizes, completing nested connections.
- bulk, reassembly: bulk operations, and their JSONL put back into paged-identical payloads.
- deletions: deleted records, from destroy events.
"""

from tailor.sources.shopify.bulk import DEFAULT_BULK_THRESHOLD
from tailor.sources.shopify.extractor import API_VERSION, ShopifyExtractor
from tailor.sources.shopify.pacing import MAX_QUERY_COST, ShopifyPacer
from tailor.sources.shopify.paging import MAX_PAGE_SIZE
from tailor.sources.shopify.selection import ENTITIES
from tailor.sources.shopify.windows import window_query

__all__ = ["API_VERSION", "DEFAULT_BULK_THRESHOLD", "ENTITIES", "MAX_PAGE_SIZE", "MAX_QUERY_COST", "ShopifyExtractor",
           "ShopifyPacer", "window_query"]
