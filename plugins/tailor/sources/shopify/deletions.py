"""Deletions in a window, which no connection shows: a deleted record vanishes from its connection.

They come from `events(query: "action:destroy AND subject_type:<CUSTOMER|ORDER|PRODUCT> AND created_at:...")`:
the record's BasicEvent stays (Shopify keeps events for a year). Each becomes RecordVersion(record_id=subjectId,
updated_at=event createdAt, payload=the event node, is_deleted=True).
"""

from __future__ import annotations

from collections.abc import Iterator

from tailor.sources import Progress, RecordVersion, Window
from tailor.sources.shopify.paging import MAX_PAGE_SIZE
from tailor.sources.shopify.selection import EntitySpec
from tailor.sources.shopify.transport import GraphqlTransport
from tailor.sources.shopify.windows import parse_time, window_query


def read_deletions(transport: GraphqlTransport, progress: Progress, spec: EntitySpec,
                   window: Window) -> Iterator[RecordVersion]:
    """Deletions of the entity's records in the window, from BasicEvents (kept by Shopify for a year)."""
    query = ("query TailorDeletions($first: Int!, $after: String, $query: String) { events(first: $first, "
             "after: $after, query: $query, sortKey: CREATED_AT) { nodes { id action createdAt message "
             "... on BasicEvent { subjectId subjectType } } pageInfo { hasNextPage endCursor } } }")
    search = f"action:destroy AND subject_type:{spec.subject_type} AND {window_query(window, 'created_at')}"
    after = None
    while True:
        data = transport.request("deletions", query, {"first": MAX_PAGE_SIZE, "after": after, "query": search})
        events = data.get("events") or {}
        progress.pages += 1
        for event in events.get("nodes") or ():
            if event.get("action") != "destroy" or event.get("subjectType") != spec.subject_type:
                continue
            if not event.get("subjectId"):
                continue
            yield RecordVersion(record_id=event["subjectId"], updated_at=parse_time(event["createdAt"]),
                                payload=event, is_deleted=True)
        page_info = events.get("pageInfo") or {}
        if not page_info.get("hasNextPage") or not page_info.get("endCursor") or page_info.get("endCursor") == after:
            return
        after = page_info["endCursor"]
