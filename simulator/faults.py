"""Fault plans: what the simulator does wrong, deterministically for a seed.

A decision depends on (seed, fault kind, the request's identity, how many times that identical request was
seen), never on timing or thread order: the same sequence of requests meets the same faults, and a retried
request gets a fresh draw.

Where each kind is applied: transport faults (429, 5xx, slow, truncated, revoked) by the server's
FaultMiddleware for every vendor at once; data-level faults (duplicates, midread) by each vendor's paging;
`silent` by the clock the vendors read the world at (SimState.read_time); `ties` when the world is built.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, fields, replace


class FaultSpecError(ValueError):
    """A --faults value that names an unknown profile or flag, or a value out of range."""


@dataclass(frozen=True)
class Faults:
    rate_429: float = 0.0  # share of requests answered 429 with Retry-After
    rate_5xx: float = 0.0  # share answered 500/502/503
    rate_slow: float = 0.0  # share answered after slow_seconds (past a sensible client timeout)
    slow_seconds: float = 3.0
    rate_truncated: float = 0.0  # share whose JSON body is cut short
    duplicates: float = 0.0  # share of pages that repeat a record of the previous page
    mid_read_updates: float = 0.0  # share of follow-up pages during which a not-yet-read record is edited
    tie_burst_size: int = 0  # records sharing one updated_at in a mass update (world-level)
    revoked_token: bool = False  # every documented token answers 401
    # vendors that answer every data read with no records (HTTP 200, well-formed empty pages), as when a
    # permission scope or a filter silently broke
    silent: frozenset[str] = frozenset()

    @property
    def any_http(self) -> bool:
        return bool(self.rate_429 or self.rate_5xx or self.rate_slow or self.rate_truncated or self.revoked_token)

    def spec(self) -> str:
        """The plan as a --faults spec (flags only, in FLAGS order): parse_faults(spec()) == self."""
        default = Faults()
        parts = []
        for flag, name in FLAGS.items():
            value = getattr(self, name)
            if value == getattr(default, name):
                continue
            if name == "silent":
                parts.append(f"{flag}={'+'.join(v for v in VENDORS if v in value)}")
            elif isinstance(value, bool):
                parts.append(flag)
            else:
                parts.append(f"{flag}={value!r}")
        return ",".join(parts) or "none"

    def as_json(self) -> dict:
        """The plan as JSON-ready values (what /_simulator/health reports)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["silent"] = [v for v in VENDORS if v in self.silent]
        return out


PROFILES: dict[str, Faults] = {
    "none": Faults(),
    "flaky": Faults(rate_429=0.03, rate_5xx=0.03, rate_slow=0.01, slow_seconds=3.0, rate_truncated=0.01,
                    duplicates=0.03, mid_read_updates=0.02, tie_burst_size=400),
    "hostile": Faults(rate_429=0.10, rate_5xx=0.08, rate_slow=0.03, slow_seconds=3.0, rate_truncated=0.03,
                      duplicates=0.08, mid_read_updates=0.05, tie_burst_size=600),
}

# Flag names accepted in a --faults spec, mapped to Faults fields.
FLAGS = {
    "429": "rate_429", "5xx": "rate_5xx", "slow": "rate_slow", "slow_seconds": "slow_seconds",
    "truncated": "rate_truncated", "duplicates": "duplicates", "midread": "mid_read_updates",
    "ties": "tie_burst_size", "revoked": "revoked_token", "silent": "silent",
}

# The vendors a `silent=` flag can name (joined by '+': silent=klaviyo+hubspot).
VENDORS = ("shopify", "hubspot", "klaviyo")


def parse_faults(spec: str | None) -> Faults:
    """'none' | 'flaky' | 'hostile' | 'PROFILE,flag=value,...' | 'flag=value,...'.

    Flags: 429, 5xx, slow, truncated, duplicates, midread (shares 0..1), slow_seconds (s), ties (records),
    revoked (no value), silent (vendors joined by '+': shopify, hubspot, klaviyo).
    """
    if spec is None or not spec.strip():
        return PROFILES["none"]
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    faults = Faults()
    if parts and "=" not in parts[0] and parts[0] != "revoked":
        name = parts.pop(0)
        if name not in PROFILES:
            raise FaultSpecError(f"unknown fault profile {name!r}: choose one of {', '.join(PROFILES)} "
                                 f"or flags {', '.join(FLAGS)}")
        faults = PROFILES[name]
    changes: dict[str, object] = {}
    for part in parts:
        key, _, value = part.partition("=")
        if key not in FLAGS:
            raise FaultSpecError(f"unknown fault flag {key!r} in {spec!r}: known flags are {', '.join(FLAGS)}")
        name = FLAGS[key]
        kind = {f.name: f.type for f in fields(Faults)}[name]
        if name == "silent":
            changes[name] = _vendors(value)
            continue
        try:
            if kind == "bool":
                changes[name] = value.lower() not in ("0", "false", "no") if value else True
            elif kind == "int":
                changes[name] = int(value)
            else:
                changes[name] = float(value)
        except ValueError:
            raise FaultSpecError(f"fault flag {key!r} needs a number, got {value!r}") from None
        if name.startswith("rate_") or name in ("duplicates", "mid_read_updates"):
            if not 0.0 <= float(changes[name]) <= 1.0:
                raise FaultSpecError(f"fault flag {key!r} is a share and must be within 0..1, got {value}")
        elif isinstance(changes[name], int | float) and float(changes[name]) < 0:
            raise FaultSpecError(f"fault flag {key!r} must not be negative, got {value}")
    return replace(faults, **changes)


def _vendors(value: str) -> frozenset[str]:
    names = [v.strip().lower() for v in value.split("+")]
    if not value.strip() or not all(names):
        raise FaultSpecError(f"fault flag 'silent' names vendors joined by '+' (e.g. silent=klaviyo+hubspot), "
                             f"got {value!r}")
    unknown = [v for v in names if v not in VENDORS]
    if unknown:
        raise FaultSpecError(f"fault flag 'silent': unknown vendor {unknown[0]!r}: choose from {', '.join(VENDORS)}")
    return frozenset(names)


class FaultDice:
    """Seeded, per-request-identity draws."""

    def __init__(self, seed: int):
        self.seed = seed
        self._seen: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def draw(self, kind: str, key: str) -> float:
        """A number in [0, 1) for the nth time this (kind, key) is asked about."""
        with self._lock:
            nth = self._seen.get((kind, key), 0)
            self._seen[(kind, key)] = nth + 1
        digest = hashlib.blake2b(f"{self.seed}|{kind}|{key}|{nth}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def hits(self, kind: str, key: str, share: float) -> bool:
        return share > 0 and self.draw(kind, key) < share
