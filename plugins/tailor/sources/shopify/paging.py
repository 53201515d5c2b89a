"""Reading a window page by page, and completing the nested connections of what a page holds.

- Small windows are paged: the window's search (windows.window_query), `sortKey: UPDATED_AT`, `first`/`after`
  cursor pagination. Shopify's cursors are keysets (last updatedAt, last id), so hundreds of records sharing one
  updatedAt page through exactly. A page that repeats records of the previous one is harmless: the extractor
  drops repeats.
- Page sizes: 250 records per page (MAX_PAGE_SIZE); nested lineItems 100, refundLineItems 50, variants 100
  (further nested pages are fetched through node(id:), 250 at a time). If a shop prices a page above the
  1000-point single-query cap (MAX_COST_EXCEEDED), the page size is halved until it fits.
- A follow-up request for an order's line items (more than a page of them) checks that the order's updatedAt did
  not move; if it did, that version is skipped: its newer version lies ahead of the cursor or in a later window.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from tailor.sources import Progress, RecordVersion
from tailor.sources.http import SourceError
from tailor.sources.shopify.pacing import MAX_QUERY_COST
from tailor.sources.shopify.selection import EntitySpec, NestedConnection, record_version
from tailor.sources.shopify.transport import GraphqlTransport, QueryCostTooHigh

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 250
MAX_REPEATED_CURSORS = 5  # answers that do not move the cursor before giving up on a connection


class PagedReader:
    """The versions of one entity matching a search, page by page, each with its nested connections complete."""

    def __init__(self, transport: GraphqlTransport, progress: Progress, page_size: int):
        self.transport = transport
        self.progress = progress
        self.page_size = page_size

    def records(self, spec: EntitySpec, search: str) -> Iterator[RecordVersion]:
        query = (f"query TailorPage($first: Int!, $after: String, $query: String) {{ {spec.root}(first: $first, "
                 f"after: $after, query: $query, sortKey: UPDATED_AT) {{ nodes {{ {spec.node_selection(False)} }} "
                 f"pageInfo {{ hasNextPage endCursor }} }} }}")
        page_size, after, repeats = self.page_size, None, 0
        while True:
            try:
                data = self.transport.request(f"page:{spec.entity}:{page_size}", query,
                                              {"first": page_size, "after": after, "query": search})
            except QueryCostTooHigh as exc:
                page_size = self._smaller_page(spec, page_size, exc.cost)
                continue
            connection = data.get(spec.root) or {}
            self.progress.pages += 1
            for node in connection.get("nodes") or ():
                payload = complete_nested_connections(self.transport, spec, node)
                if payload is not None:
                    yield record_version(payload)
            report_progress(self.progress)
            page_info = connection.get("pageInfo") or {}
            if not page_info.get("hasNextPage"):
                return
            cursor = page_info.get("endCursor")
            if not cursor:
                raise SourceError(f"Shopify ({self.transport.conn_id}) said {spec.root} has a next page but gave "
                                  "no cursor")
            if cursor == after:  # the page did not move forward: ask again, a little
                repeats += 1
                if repeats > MAX_REPEATED_CURSORS:
                    raise SourceError(f"Shopify ({self.transport.conn_id}) keeps answering {spec.root} with the "
                                      "same cursor")
                continue
            after, repeats = cursor, 0

    def _smaller_page(self, spec: EntitySpec, page_size: int, cost: int | None) -> int:
        """Half the page size, after Shopify priced a page above its query cap; one record too many is fatal."""
        conn_id = self.transport.conn_id
        if page_size == 1:
            raise SourceError(f"Shopify ({conn_id}) prices one {spec.type_name} at {cost} points, "
                              f"above the {MAX_QUERY_COST}-point query limit: select fewer fields") from None
        page_size = max(1, page_size // 2)
        log.warning("%s: %s page cost %s exceeds %d points, page size now %d", conn_id, spec.entity, cost,
                    MAX_QUERY_COST, page_size)
        return page_size


def complete_nested_connections(transport: GraphqlTransport, spec: EntitySpec, node: dict) -> dict | None:
    """A paged node with nested connections flattened to full lists (None: it changed while being read)."""
    for item in spec.list_fields:
        for entry in node.get(item.key) or ():
            first_page = entry.get(item.connection.key) if isinstance(entry, dict) else None
            if isinstance(first_page, dict):
                nodes = all_connection_nodes(transport, item.connection, entry["id"], first_page, None)
                if nodes is None:
                    raise SourceError(f"Shopify ({transport.conn_id}) could not page {item.connection.key} of "
                                      f"{entry['id']}")
                entry[item.connection.key] = nodes
    for connection in spec.connections:
        first_page = node.get(connection.key)
        if isinstance(first_page, dict):
            nodes = all_connection_nodes(transport, connection, node["id"], first_page, node["updatedAt"])
            if nodes is None:
                log.info("%s: %s changed while its %s were read; its new version is read later",
                         transport.conn_id, node["id"], connection.key)
                return None
            node[connection.key] = nodes
    return node


def all_connection_nodes(transport: GraphqlTransport, connection: NestedConnection, parent_id: str,
                         first_page: dict, parent_updated_at: str | None) -> list[dict] | None:
    """Every node of a nested connection: the first page as given, further pages through node(id:).

    None when the parent vanished, or (connection.check_parent) its updatedAt is no longer `parent_updated_at`."""
    nodes = list(first_page.get("nodes") or ())
    page_info = first_page.get("pageInfo") or {}
    if not page_info.get("hasNextPage"):
        return nodes
    check = "updatedAt " if connection.check_parent else ""
    query = (f"query TailorMore($id: ID!, $after: String) {{ node(id: $id) {{ ... on {connection.parent_type} {{ "
             f"{check}{connection.key}(first: {MAX_PAGE_SIZE}, after: $after) {{ nodes {{ {connection.fields} }} "
             f"pageInfo {{ hasNextPage endCursor }} }} }} }} }}")
    after = page_info.get("endCursor")
    while after:
        data = transport.request(f"more:{connection.parent_type}.{connection.key}", query,
                                 {"id": parent_id, "after": after})
        parent = data.get("node")
        if not parent or (connection.check_parent and parent.get("updatedAt") != parent_updated_at):
            return None
        more = parent.get(connection.key) or {}
        nodes += more.get("nodes") or ()
        page_info = more.get("pageInfo") or {}
        after = page_info.get("endCursor") if page_info.get("hasNextPage") else None
    return nodes


def report_progress(progress: Progress) -> None:
    """Hand the counters to whoever watches this extraction (after each page, or a bulk result)."""
    if progress.report is not None:
        progress.report(progress)
