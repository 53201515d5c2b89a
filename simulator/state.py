"""What one running simulator holds: the world, its clock, the fault plan, limits and tokens."""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from simulator.faults import FaultDice, Faults
from simulator.world import World

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
    files_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tailor-sim-")))
    tokens: dict[str, str] = field(default_factory=lambda: dict(TOKENS))

    def __post_init__(self) -> None:
        self._clock = self.world.now
        self._clock_lock = threading.Lock()
        self.dice = FaultDice(self.world.config.seed)
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.vendor_state: dict[str, object] = {}  # each vendor surface keeps its runtime state here

    def now(self) -> int:
        """The simulated clock (epoch seconds): the world is served as it exists at this time."""
        with self._clock_lock:
            return self._clock

    def set_now(self, t: int) -> None:
        with self._clock_lock:
            self._clock = int(t)

    def token_ok(self, vendor: str, presented: str | None) -> bool:
        return not self.faults.revoked_token and presented == self.tokens[vendor]
