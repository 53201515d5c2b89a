"""How a window [start, end) becomes a Shopify search, and how Shopify's timestamps are read back.

A window is searched as `updated_at:>='<start>' AND updated_at:<'<end>'` with the timestamps QUOTED: Shopify cuts
an unquoted value at its first colon and silently ignores the rest. Shopify's timestamps have whole seconds, so a
bound is rounded up to the next whole second (see search_time). A window must have ended (end <= Shopify's clock)
when it is read, as the DAG's data intervals have.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tailor.sources import Window


def search_time(moment: datetime) -> str:
    """A window bound as Shopify's search wants it: UTC, whole seconds. Shopify's updatedAt has whole seconds,
    so `>= 10:00:00.4` means `>= 10:00:01` and `< 10:00:00.4` means `< 10:00:01`: round up."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """A Shopify DateTime (ISO 8601, `Z` for UTC) as an aware UTC datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def window_query(window: Window, field_name: str = "updated_at") -> str:
    """The search for a window, timestamps quoted: `updated_at:>='...' AND updated_at:<'...'`."""
    return (f"{field_name}:>='{search_time(window.start)}' AND {field_name}:<'{search_time(window.end)}'")
