"""The world's data model: time helpers, the configuration, and the columnar tables a world is made of.

Nothing here generates or serves anything. generate.py (a synthetic shop) and history.py (a shop's exported
transactions) fill these tables and hand them over as WorldParts; world.World wraps them with the as-of-t
view, ground truth and the runtime overlay. simulator.world re-exports every name defined here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from simulator import catalog

NEVER = np.iinfo(np.int64).max
DAY = 86_400
HOUR = 3_600
YEAR_DAYS = 365.25
N_CATEGORIES = len(catalog.CATEGORIES)
DEFAULT_NOW = "2026-11-01T00:00:00Z"

# Entity names, as used by ground truth, the world export and the runtime overlay.
ENTITIES = ("customers", "orders", "products", "contacts", "profiles", "events")

# Consent codes kept per profile (the timeline lives in subscribed_at / unsubscribed_at / ...).
NEVER_SUBSCRIBED, SUBSCRIBED, UNSUBSCRIBED, BOUNCED, SPAM_COMPLAINT = range(5)
CONSENT_NAMES = ("never_subscribed", "subscribed", "unsubscribed", "bounced", "spam_complaint")

# Person kinds: a Shopify account holder, a guest-checkout buyer with no account, a lead who never bought.
ACCOUNT, GUEST, LEAD = 0, 1, 2

# Email spellings a contact or a guest checkout may use for the same address.
EMAIL_EXACT, EMAIL_TITLE, EMAIL_UPPER, EMAIL_PADDED = range(4)


def parse_time(value: str | int | float | datetime) -> int:
    """ISO-8601 (with Z or offset), epoch seconds or datetime -> epoch seconds (UTC)."""
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(dt.timestamp())
    if isinstance(value, int | float):
        return int(value)
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def iso(ts: int) -> str:
    """Epoch seconds -> '2026-01-02T03:04:05Z'."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 42
    customers: int = 1_000
    now: str = DEFAULT_NOW
    history_days: int = 730
    future_days: int = 30
    products: int | None = None  # default: scales with customers, 50 .. 20,000
    orders_per_customer: float = 4.0
    campaigns_per_week: float = 2.5
    campaign_audience_share: float = 0.6
    # More records sharing one updated_at than a page holds: mass updates (imports, bulk edits) of this
    # many records at a single second, once per entity. 0 turns them off.
    tie_burst_size: int = 0

    @property
    def product_count(self) -> int:
        if self.products is not None:
            return self.products
        return int(min(20_000, max(50, self.customers // 5)))


class Versions:
    """Per-record version times in CSR form: record i's versions are times[offsets[i]:offsets[i+1]], sorted.

    The first version of every record is its creation.
    """

    def __init__(self, record_of_time: np.ndarray, times: np.ndarray, n: int):
        order = np.lexsort((times, record_of_time))
        rec = record_of_time[order]
        t = times[order]
        keep = np.ones(len(t), dtype=bool)
        keep[1:] = (rec[1:] != rec[:-1]) | (t[1:] != t[:-1])  # one version per record and second
        rec, t = rec[keep], t[keep]
        counts = np.bincount(rec, minlength=n)
        self.offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=self.offsets[1:])
        self.times = t.astype(np.int64)
        self.n = n

    def updated_at(self, t: int) -> np.ndarray:
        """Latest version time at or before t per record; -1 where the record did not exist yet."""
        upto = (self.times <= t).astype(np.int64)
        cum = np.concatenate(([0], np.cumsum(upto)))
        count = cum[self.offsets[1:]] - cum[self.offsets[:-1]]
        last = self.offsets[:-1] + count - 1
        out = np.full(self.n, -1, dtype=np.int64)
        has = count > 0
        out[has] = self.times[last[has]]
        return out

    def of(self, i: int) -> np.ndarray:
        return self.times[self.offsets[i]:self.offsets[i + 1]]


def stable_hash(*parts: object) -> int:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def ulid(ms: int, rand80: int) -> str:
    """A ULID string (Crockford base32 of 48-bit ms time + 80 random bits), as Klaviyo profile ids are."""
    value = (int(ms) << 80) | (rand80 & ((1 << 80) - 1))
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        chars.append(_BASE62[value % 62])
        value //= 62
    return "".join(reversed(chars))


@dataclass
class Products:
    n: int
    product_id: np.ndarray
    category: np.ndarray
    title: list[str]
    vendor: np.ndarray
    created_at: np.ndarray
    archived_at: np.ndarray
    deleted_at: np.ndarray
    companion: np.ndarray  # a product often bought with this one
    inventory: np.ndarray
    variant_offsets: np.ndarray  # CSR products -> variants
    variant_id: np.ndarray
    variant_title: list[str]
    variant_price_cents: np.ndarray
    versions: Versions | None = None
    category_label: list[str] | None = None  # real-history mode: the file's own category names


@dataclass
class Persons:
    n: int
    kind: np.ndarray
    created_at: np.ndarray
    churn_at: np.ndarray  # NEVER: stays active through the whole timeline
    purchase_rate: np.ndarray  # orders per year while active
    taste: np.ndarray  # (n, categories) probabilities
    price_sensitivity: np.ndarray
    engagement: np.ndarray  # 0..1, drives opens and clicks
    preferred_hour: np.ndarray  # local hour 0..23
    country: np.ndarray
    tz_offset: np.ndarray  # hours from UTC
    tz_name: list[str] | None
    city: np.ndarray
    birth_date: np.ndarray  # days since 1970-01-01, -1 unknown
    first_name: np.ndarray
    last_name: np.ndarray
    email_domain: np.ndarray
    has_phone: np.ndarray
    staple_product: np.ndarray  # a consumable re-ordered regularly, -1 none
    email_override: list[str] | None = None  # real-history mode: the emails of the file
    source_customer_ref: list[str] | None = None  # real-history mode: the file's customer column


@dataclass
class Orders:
    n: int
    order_id: np.ndarray
    number: np.ndarray  # the "#1001" name's number
    person: np.ndarray
    created_at: np.ndarray
    fulfilled_at: np.ndarray
    cancelled_at: np.ndarray
    refund_at: np.ndarray
    refund_line: np.ndarray  # global line index refunded in full, -1 none
    refund_id: np.ndarray
    email_spelling: np.ndarray
    discount_pct: np.ndarray
    line_offsets: np.ndarray  # CSR orders -> lines
    subtotal_cents: np.ndarray
    discount_cents: np.ndarray
    shipping_cents: np.ndarray
    tax_cents: np.ndarray
    total_cents: np.ndarray
    refunded_cents: np.ndarray
    versions: Versions | None = None
    # per line
    line_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    line_product: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    line_variant: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    line_quantity: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    line_unit_price_cents: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    line_discount_cents: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class Customers:
    """Shopify customer accounts (persons of kind ACCOUNT)."""

    n: int
    person: np.ndarray
    customer_id: np.ndarray
    created_at: np.ndarray
    deleted_at: np.ndarray
    order_offsets: np.ndarray  # CSR customers -> their orders (indices into Orders), by time
    order_index: np.ndarray
    versions: Versions | None = None


@dataclass
class Contacts:
    """HubSpot contacts; a person may have two (duplicates) or none."""

    n: int
    person: np.ndarray
    contact_id: np.ndarray
    created_at: np.ndarray
    archived_at: np.ndarray
    email_spelling: np.ndarray
    initial_stage: np.ndarray  # index into HUBSPOT_PRE_CUSTOMER_STAGES
    lead_status: np.ndarray
    owner: np.ndarray
    versions: Versions | None = None


@dataclass
class Profiles:
    """Klaviyo profiles with their email consent timeline."""

    n: int
    person: np.ndarray
    created_at: np.ndarray
    id_rand: np.ndarray  # random bits of the ULID
    has_external_id: np.ndarray
    subscribed_at: np.ndarray
    unsubscribed_at: np.ndarray
    bounced_at: np.ndarray
    spam_at: np.ndarray
    deleted_at: np.ndarray
    versions: Versions | None = None


@dataclass
class Events:
    """Klaviyo events, sorted by (time, profile)."""

    n: int
    profile: np.ndarray
    metric: np.ndarray
    time: np.ndarray
    campaign: np.ndarray  # -1 for onsite events
    product: np.ndarray  # -1 for email events
    order: np.ndarray  # the order an onsite session led to, -1 none


@dataclass
class WorldParts:
    """Everything a World is made of, as generate.generate and history.build_world_parts produce it."""

    config: WorldConfig
    products: Products
    persons: Persons
    orders: Orders
    customers: Customers
    contacts: Contacts
    profiles: Profiles
    events: Events
    campaign_times: np.ndarray
    start: int
    end: int
    report: dict | None = None
