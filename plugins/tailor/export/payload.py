"""One customer's feed row as the ESP receives it, and the result of sending a batch of them.

Every sink (the local outbox, the S3 drop, Klaviyo's bulk import) sends the same payloads: `fields` holds the
ESP-facing names (see tailor.export.feed.ESP_FIELDS), JSON-safe values, `recommendations` a list of dicts in rank
order. `row_hash` is the sha256 of the canonical JSON of `fields`: a delta sync sends a customer again only when it
changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: the same content always gives the same text (and hash)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class Payload:
    customer_id: str
    email: str
    fields: dict[str, Any]
    known_hash: str | None = field(default=None, repr=False, compare=False)  # row_hash when already known

    @classmethod
    def of(cls, customer_id: str, email: str, fields: dict[str, Any]) -> Payload:
        return cls(customer_id, email, fields)

    @cached_property
    def row_hash(self) -> str:
        """Computed when first asked (a delta sync asks; writing the outbox does not, and a million rows' canonical
        JSON is a tenth of the export's time)."""
        return self.known_hash or hashlib.sha256(canonical_json(self.fields).encode()).hexdigest()


@dataclass
class BatchOutcome:
    """What one batch did, reported by a sink once the batch is durably accepted (an S3 object written, a Klaviyo
    import job complete): the caller records it at once, so a delivery killed later resumes after it."""

    sent: list[Payload] = field(default_factory=list)  # accepted by the ESP
    failed: list[tuple[Payload, str]] = field(default_factory=list)  # rejected by the ESP, with its reason
    skipped: list[tuple[Payload, str]] = field(default_factory=list)  # never sent, with why (e.g. over 100 KB)
    batch_id: str | None = None  # the sink's name for the batch, when it has one (a Klaviyo import job's id)
