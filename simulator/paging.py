"""Helpers shared by the vendor surfaces: sorted views with keyset positions, opaque cursors, request
identities for the fault dice and deterministic ids.

A view is the set of records a query can return, sorted by its sort keys with the record number as the
last key, so every position in it is unique and a cursor can name the last record it returned by value
(keyset paging) rather than by offset. Views are derived from the world's cached index and are cached
themselves while the world is unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class View:
    """Records sorted ascending by `levels` (lexicographically; the last level is unique per record).

    `records` are the record numbers to render, aligned with the levels; `columns` holds further aligned
    arrays that filters look at.
    """

    levels: tuple[np.ndarray, ...]
    records: np.ndarray
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.records)

    @classmethod
    def sorted_by(cls, levels: Sequence[np.ndarray], records: np.ndarray, columns: dict[str, np.ndarray]) -> View:
        order = np.lexsort(tuple(reversed(levels)))
        return cls(tuple(level[order] for level in levels), records[order], {k: v[order] for k, v in columns.items()})

    def subset(self, mask: np.ndarray) -> View:
        return View(tuple(level[mask] for level in self.levels), self.records[mask],
                    {k: v[mask] for k, v in self.columns.items()})

    def key_at(self, i: int) -> list[int]:
        return [int(level[i]) for level in self.levels]

    def position_after(self, key: Sequence[int]) -> int:
        """Index of the first record sorting after `key` (a key_at() value), whether or not `key` is still in
        the view: records edited since the cursor was issued are then found where they now sort."""
        lo, hi = 0, len(self.records)
        for level, value in zip(self.levels, key, strict=True):
            segment = level[lo:hi]
            lo, hi = lo + int(np.searchsorted(segment, value, "left")), lo + int(np.searchsorted(segment, value, "right"))
            if lo == hi:
                break
        return hi


def encode_cursor(*values: object) -> str:
    """An opaque, URL-safe cursor carrying JSON values."""
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> list | None:
    """The values of a cursor made by encode_cursor, or None when the token is not one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return values if isinstance(values, list) else None


def request_key(method: str, path: str, query: str, body: bytes = b"") -> str:
    """A request's identity for the fault dice: the same request meets the same (n-th) draw."""
    return f"{method} {path}?{query} {hashlib.blake2b(body, digest_size=8).hexdigest()}"


def pick(draw: float, lo: int, hi: int) -> int:
    """The position in [lo, hi) that a dice draw in [0, 1) selects."""
    return lo + min(hi - lo - 1, int(draw * (hi - lo)))


def stable_uuid(*parts: object) -> str:
    """A UUID derived from its parts: the same parts give the same id on every run."""
    h = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).hexdigest()
    variant = "89ab"[int(h[16], 16) & 3]  # RFC 4122 variant, version 4, as uuid.UUID(version=4) would set
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


class IdSequence:
    """Deterministic request-scoped ids (correlation ids, error ids): the n-th id of a sequence is fixed."""

    def __init__(self, *namespace: object):
        self.namespace = namespace
        self._n = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._n += 1
            n = self._n
        return stable_uuid(*self.namespace, n)


class ViewCache:
    """A small LRU of derived views. Entries are validated against the objects they were derived from (by
    identity), so a world edit, which replaces the world's index arrays, invalidates them."""

    def __init__(self, size: int = 32):
        self.size = size
        self._entries: OrderedDict[object, tuple[tuple, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: object, sources: tuple, build: Callable[[], object]) -> object:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and len(entry[0]) == len(sources) and all(
                    a is b for a, b in zip(entry[0], sources, strict=True)):
                self._entries.move_to_end(key)
                return entry[1]
        value = build()
        with self._lock:
            self._entries[key] = (sources, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value
