"""What one running simulator holds: the world, its clock, the fault plan, limits and tokens.

The clock is pinned (it moves only when told to, through set_now) or live (it advances with the wall clock
from where it started: clock = base + (wall clock - wall clock when base was set)). The world itself never
depends on the clock: it holds its whole timeline, and the vendors serve it as of the clock.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from simulator.faults import FaultDice, Faults
from simulator.files import make_files_dir
from simulator.world import World, parse_time

# The credentials the simulator accepts (documented in README.md). Anything else gets the vendor's 401.
TOKENS = {
    "shopify": "shpat_simulator_0000000000000000",
    "hubspot": "pat-na1-simulator-0000-0000-000000000000",
    "klaviyo": "pk_simulator_0000000000000000000000",
}


@dataclass
class SimState:
    world: World
    faults: Faults = field(default_factory=Faults)
    rate_limits: bool = True
    public_url: str = "http://127.0.0.1:8765"  # base of URLs the simulator hands out (bulk result files)
    # where bulk result files are written; by default a temporary directory the state removes on close()
    files_dir: Path | None = None
    tokens: dict[str, str] = field(default_factory=lambda: dict(TOKENS))
    live: bool = False  # the clock advances with the wall clock
    # where the clock starts (ISO-8601, epoch seconds or datetime); default: the world's now when pinned, the
    # wall clock when live
    clock_start: int | float | str | datetime | None = None
    wall_clock: Callable[[], float] = time.time  # what a live clock follows (tests may pass a fake)

    def __post_init__(self) -> None:
        self._clock_lock = threading.Lock()
        wall = self.wall_clock()
        if self.clock_start is not None:
            base = float(parse_time(self.clock_start))
        else:
            base = wall if self.live else float(self.world.now)
        self._base, self._base_wall, self._last = base, wall, math.floor(base)
        self.dice = FaultDice(self.world.config.seed)
        self._owns_files = self.files_dir is None
        if self.files_dir is None:
            self.files_dir = make_files_dir()
            # removed at close() and, whatever happens, when the state is collected or the process exits
            weakref.finalize(self, shutil.rmtree, str(self.files_dir), True)
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.vendor_state: dict[str, object] = {}  # each vendor surface keeps its runtime state here

    @property
    def clock_mode(self) -> str:
        return "live" if self.live else "pinned"

    def now(self) -> int:
        """The simulated clock (epoch seconds): the world is served as it exists at this time.

        A live clock never runs backwards: should the wall clock step back, it holds until the wall clock
        catches up.
        """
        with self._clock_lock:
            if not self.live:
                return self._last
            t = math.floor(self._base + (self.wall_clock() - self._base_wall))
            self._last = max(self._last, t)
            return self._last

    def set_now(self, t: int) -> None:
        """Move the clock to t; a live clock keeps advancing from there with the wall clock."""
        with self._clock_lock:
            self._base, self._base_wall, self._last = float(int(t)), self.wall_clock(), int(t)

    def read_time(self, vendor: str, now: int | None = None) -> int:
        """The time a vendor's data reads see the world at: the clock (`now` if given), except for a vendor
        the `silent` fault names, which reads the world as of before its first record and so finds nothing
        (HTTP 200, well-formed empty pages). Writes and timestamps use now(), never this."""
        if vendor in self.faults.silent:
            return self.world.origin - 1
        return self.now() if now is None else now

    def token_ok(self, vendor: str, presented: str | None) -> bool:
        return not self.faults.revoked_token and presented == self.tokens[vendor]

    def close(self) -> None:
        """Remove the bulk result files directory if this state made it (the state may still be served
        again: the directory is made anew)."""
        if self._owns_files and self.files_dir is not None:
            shutil.rmtree(self.files_dir, ignore_errors=True)
