"""Sorted views of the world's records and Relay cursor paging over them.

A listing holds the records existing at clock t in the order of a sort key with the numeric id as tiebreak,
as Shopify orders a connection. Cursors encode that position - base64 of {"last_id": id, "last_value": key},
the shape of Shopify's own cursors - never an offset, so a page boundary stays put while other records
change, and hundreds of records sharing one updated_at page through without loss or repeats.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

import numpy as np

from simulator.shopify import search
from simulator.world import iso, parse_time

# Sort key -> (record column it sorts by, how its value appears in a cursor).
SORT_COLUMNS = {
    "ID": ("id", "int"),
    "RELEVANCE": ("id", "int"),
    "CREATED_AT": ("created_at", "time"),
    "PROCESSED_AT": ("created_at", "time"),
    "UPDATED_AT": ("updated_at", "time"),
    "ORDER_NUMBER": ("number", "int"),
    "TOTAL_PRICE": ("total_cents", "money"),
    "COMPLETED_AT": ("completed_at", "time"),
    "STATUS": ("status_rank", "int"),
}


class CursorError(ValueError):
    """A cursor that is not one this connection handed out."""


def encode_cursor(key: int, ident: int, kind: str) -> str:
    if kind == "time":
        value = f'"{iso(key)}"'
    elif kind == "money":
        value = f'"{key // 100}.{key % 100:02d}"'
    else:
        value = str(int(key))
    raw = f'{{"last_id":{int(ident)},"last_value":{value}}}'
    return base64.b64encode(raw.encode()).decode()


def decode_cursor(cursor: str, kind: str) -> tuple[int, int]:
    try:
        payload = json.loads(base64.b64decode(cursor.encode(), validate=True))
        ident, value = payload["last_id"], payload["last_value"]
        if not isinstance(ident, int):
            raise CursorError(cursor)
        if kind == "time":
            if not isinstance(value, str):
                raise CursorError(cursor)
            return parse_time(value), ident
        if kind == "money":
            whole, _, cents = str(value).partition(".")
            return int(whole) * 100 + int((cents + "00")[:2]), ident
        if not isinstance(value, int):
            raise CursorError(cursor)
        return value, ident
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise CursorError(cursor) from exc


@dataclass
class Listing:
    """Records sorted ascending by (keys, ids); columns are aligned with rows."""

    rows: np.ndarray
    keys: np.ndarray
    ids: np.ndarray
    kind: str
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, mask: np.ndarray | None) -> Listing:
        if mask is None:
            return self
        keep = np.flatnonzero(mask)
        return Listing(self.rows[keep], self.keys[keep], self.ids[keep], self.kind,
                       {name: col[keep] for name, col in self.columns.items()})

    def bounds(self, key: int, ident: int) -> tuple[int, int]:
        """(first index >= (key, id), first index > (key, id)) in ascending order."""
        lo = int(np.searchsorted(self.keys, key, side="left"))
        hi = int(np.searchsorted(self.keys, key, side="right"))
        same = self.ids[lo:hi]
        return lo + int(np.searchsorted(same, ident, side="left")), lo + int(np.searchsorted(same, ident, side="right"))

    def cursor(self, position: int) -> str:
        return encode_cursor(int(self.keys[position]), int(self.ids[position]), self.kind)

    def search_fields(self) -> dict[str, search.FieldSpec]:
        fields = {"id": search.FieldSpec("int", lambda: self.columns["id"])}
        for name in ("created_at", "updated_at", "processed_at", "occurred_at", "completed_at"):
            if name in self.columns:
                fields[name] = search.FieldSpec("time", lambda c=name: self.columns[c])
        for name, column in self.columns.items():
            if column.dtype.kind == "U" and name not in fields:
                fields[name] = search.FieldSpec("text", lambda c=name: self.columns[c])
        return fields


def make_listing(rows: np.ndarray, ids: np.ndarray, columns: dict[str, np.ndarray], sort_key: str) -> Listing:
    column, kind = SORT_COLUMNS[sort_key]
    keys = ids if column == "id" else columns[column]
    order = np.lexsort((ids, keys))
    columns = {"id": ids, **columns}
    return Listing(rows[order], keys[order], ids[order], kind, {k: v[order] for k, v in columns.items()})


@dataclass
class Page:
    positions: np.ndarray  # ascending-listing indices, in the order returned
    has_next: bool
    has_previous: bool
    window_start: int  # sequence position where the requested range starts (after the `after` cursor)


def page(listing: Listing, *, first: int | None, last: int | None, after: str | None, before: str | None,
         reverse: bool, repeat_previous: bool = False) -> Page:
    """Relay paging over a listing; `repeat_previous` starts a follow-up page on the record at `after`."""
    n = len(listing)
    lo, hi = 0, n
    at_after = None
    if after is not None:
        left, right = listing.bounds(*decode_cursor(after, listing.kind))
        lo = n - left if reverse else right
        if right > left:  # the record the cursor points at is still there
            at_after = lo - 1
    if before is not None:
        left, right = listing.bounds(*decode_cursor(before, listing.kind))
        hi = n - right if reverse else left
    hi = max(hi, lo)
    a, b = lo, hi
    if repeat_previous and at_after is not None:
        a = at_after
    if first is not None:
        b = min(b, a + first)
    if last is not None:
        a = max(a, b - last)
    seq = np.arange(a, b, dtype=np.int64)
    positions = n - 1 - seq if reverse else seq
    return Page(positions, has_next=b < n, has_previous=a > 0, window_start=lo)
