"""How Tailor writes a moment as text: always in UTC, in one of two forms.

stamp(): to the second with a Z (2026-11-01T06:00:00Z), for what people read and for ids built from a time (a gate's
run id, an as-of on the command line). iso(): Python's ISO 8601 with +00:00, sub-second digits kept, for values read
back by a program (a batch manifest, dbt's as_of var), where the exact moment must survive the round trip.
"""

from __future__ import annotations

from datetime import UTC, datetime


def stamp(value: datetime) -> str:
    """`value` in UTC to the second: 2026-11-01T06:00:00Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso(value: datetime, timespec: str = "auto") -> str:
    """`value` in UTC as ISO 8601 with +00:00 (timespec as datetime.isoformat's: "auto" drops zero microseconds)."""
    return value.astimezone(UTC).isoformat(timespec=timespec)
