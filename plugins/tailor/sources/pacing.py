"""Client-side request windows for the vendors that publish "N requests per T seconds" limits (HubSpot, Klaviyo).

A RollingWindow counts this client's own requests and answers how long to wait so that no window of
`seconds` ever holds more than `limit` of them. Counting in a rolling window is at least as strict as the
server's, whether the server's windows roll (HubSpot's ten-secondly limit) or are fixed (Klaviyo's burst and
steady windows): no fixed window can hold more requests than the busiest rolling one.

Time stamps: a request is recorded when it is sent and moved to when its response arrived (`settle`), since
the server counted it somewhere in between; waiting from the later instant is always safe. When a server
reports fewer requests remaining than this client has made (another integration shares the account's quota),
`sync` records the difference as requests made now, which is the conservative reading.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RollingWindow:
    """At most `limit` requests in any `seconds`-long span, plus `pad` seconds of safety against clock skew."""

    def __init__(self, limit: int, seconds: float, pad: float = 0.05,
                 clock: Callable[[], float] = time.monotonic):
        self.limit = max(1, int(limit))
        self.seconds = float(seconds)
        self.pad = pad
        self.clock = clock
        self._hits: deque[float] = deque()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._hits and self._hits[0] <= now - self.seconds - self.pad:
            self._hits.popleft()

    def delay(self, now: float | None = None) -> float:
        """Seconds to wait before one more request fits."""
        now = self.clock() if now is None else now
        with self._lock:
            self._expire(now)
            if len(self._hits) < self.limit:
                return 0.0
            # the request that must leave the window before one more fits
            oldest_to_leave = self._hits[len(self._hits) - self.limit]
            return max(0.0, oldest_to_leave + self.seconds + self.pad - now)

    def hit(self, at: float) -> None:
        with self._lock:
            self._hits.append(at)

    def settle(self, at: float | None = None) -> None:
        """The latest request's response arrived: count it from then (never earlier than it was recorded)."""
        at = self.clock() if at is None else at
        with self._lock:
            if self._hits:
                self._hits[-1] = max(self._hits[-1], at)

    def resize(self, limit: int, seconds: float) -> None:
        """The server told us its actual limit (a header): adopt it."""
        with self._lock:
            self.limit, self.seconds = max(1, int(limit)), float(seconds)

    def sync(self, remaining: int, now: float | None = None) -> None:
        """The server says `remaining` requests are left in the window: count what others used as made now."""
        now = self.clock() if now is None else now
        with self._lock:
            self._expire(now)
            unseen = (self.limit - max(0, remaining)) - len(self._hits)
            for _ in range(max(0, unseen)):
                self._hits.append(now)

    def __len__(self) -> int:
        with self._lock:
            self._expire(self.clock())
            return len(self._hits)


def reserve(windows: list[RollingWindow], clock: Callable[[], float] = time.monotonic) -> float:
    """Seconds to wait until a request fits every window; records the request at its planned send time."""
    now = clock()
    wait = max((w.delay(now) for w in windows), default=0.0)
    for w in windows:
        w.hit(now + wait)
    return wait
