"""Rate-limit primitives the vendor surfaces build their published limits from. Real (monotonic) time."""

from __future__ import annotations

import threading
import time
from collections import deque


class LeakyBucket:
    """Shopify-style cost bucket: holds up to `capacity` points, refills at `restore_rate` points/second."""

    def __init__(self, capacity: float, restore_rate: float):
        self.capacity = float(capacity)
        self.restore_rate = float(restore_rate)
        self._available = float(capacity)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._available = min(self.capacity, self._available + (now - self._at) * self.restore_rate)
        self._at = now

    def available(self) -> float:
        with self._lock:
            self._refill()
            return self._available

    def try_take(self, cost: float) -> tuple[bool, float]:
        """Take `cost` points if there are that many; returns (taken, points available afterwards)."""
        with self._lock:
            self._refill()
            if cost <= self._available:
                self._available -= cost
                return True, self._available
            return False, self._available

    def give_back(self, points: float) -> float:
        """Refund points (the actual cost was lower than requested); returns points available."""
        with self._lock:
            self._refill()
            self._available = min(self.capacity, self._available + points)
            return self._available


class WindowLimiter:
    """At most `limit` requests in any rolling `window` seconds (HubSpot's per-10-seconds limit, Klaviyo's
    burst/steady windows)."""

    def __init__(self, limit: int, window: float):
        self.limit = int(limit)
        self.window = float(window)
        self._hits: deque[float] = deque()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._hits and self._hits[0] <= now - self.window:
            self._hits.popleft()

    def try_hit(self) -> tuple[bool, int, float]:
        """Count one request if allowed: (allowed, remaining after it, seconds until a slot frees up)."""
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            if len(self._hits) < self.limit:
                self._hits.append(now)
                reset = self._hits[0] + self.window - now
                return True, self.limit - len(self._hits), max(0.0, reset)
            reset = self._hits[0] + self.window - now
            return False, 0, max(0.0, reset)

    def remaining(self) -> int:
        with self._lock:
            self._expire(time.monotonic())
            return self.limit - len(self._hits)
