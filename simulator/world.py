"""The synthetic world: one shop's people, catalog, orders, CRM contacts, ESP profiles and email events.

Everything is generated up front, deterministically from the seed, as columnar numpy arrays (so a million
customers fit in memory and generate in seconds), over a timeline [start, end). Every record carries the
times of all its versions; "the world at time t" is derived from those, so the server can answer for any
clock value and tests can ask exactly what existed at t (the ground truth).

Vendor surfaces (shopify/, hubspot.py, klaviyo.py) render the vendor-neutral state dicts returned by the
`*_at` methods; nothing here knows a vendor's field names except the record id formats.

The imports form a DAG: model (types, time helpers) <- generate <- history, and this module on top of all
three: World.build and World.from_transactions take the parts those produce. The model's names are
re-exported here, so `from simulator.world import DAY, WorldConfig, ...` keeps working.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from simulator import catalog
from simulator.generate import generate
from simulator.model import (
    ACCOUNT,
    BOUNCED,
    CONSENT_NAMES,
    DAY,
    DEFAULT_NOW,
    EMAIL_EXACT,
    EMAIL_PADDED,
    EMAIL_TITLE,
    EMAIL_UPPER,
    ENTITIES,
    GUEST,
    HOUR,
    LEAD,
    N_CATEGORIES,
    NEVER,
    NEVER_SUBSCRIBED,
    SPAM_COMPLAINT,
    SUBSCRIBED,
    UNSUBSCRIBED,
    YEAR_DAYS,
    Contacts,
    Customers,
    Events,
    Orders,
    Persons,
    Products,
    Profiles,
    Versions,
    WorldConfig,
    WorldParts,
    base62,
    iso,
    parse_time,
    stable_hash,
    ulid,
)

__all__ = [
    "ACCOUNT", "BOUNCED", "CONSENT_NAMES", "DAY", "DEFAULT_NOW", "EMAIL_EXACT", "EMAIL_PADDED", "EMAIL_TITLE",
    "EMAIL_UPPER", "ENTITIES", "GUEST", "HOUR", "LEAD", "NEVER", "NEVER_SUBSCRIBED", "N_CATEGORIES",
    "SPAM_COMPLAINT", "SUBSCRIBED", "UNSUBSCRIBED", "YEAR_DAYS", "Contacts", "Customers", "Events", "Orders",
    "Persons", "Products", "Profiles", "Versions", "World", "WorldConfig", "WorldParts", "base62", "iso",
    "parse_time", "stable_hash", "ulid",
]


class World:
    """The generated world plus a small runtime overlay (records touched while the server runs)."""

    def __init__(self, config: WorldConfig, products: Products, persons: Persons, orders: Orders,
                 customers: Customers, contacts: Contacts, profiles: Profiles, events: Events,
                 campaign_times: np.ndarray, start: int, end: int, report: dict | None = None):
        self.config = config
        self.products = products
        self.persons = persons
        self.orders = orders
        self.customers = customers
        self.contacts = contacts
        self.profiles = profiles
        self.events = events
        self.campaign_times = campaign_times
        self.start = start
        self.end = end
        self.now = parse_time(config.now)
        self.report = report or {}  # real-history mode: rows rejected per reason
        self._touches: dict[str, dict[int, list[int]]] = {e: {} for e in ENTITIES}
        self._touch_serial = 0
        self._index_cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()
        self.customer_of_person = np.full(persons.n, -1, dtype=np.int64)
        self.customer_of_person[customers.person] = np.arange(customers.n)
        self.profile_of_person = np.full(persons.n, -1, dtype=np.int64)
        self.profile_of_person[profiles.person] = np.arange(profiles.n)

    @property
    def origin(self) -> int:
        """The time of the world's earliest record (or its start, if earlier): nothing exists before it."""
        cached = getattr(self, "_origin", None)
        if cached is None:
            firsts = [self.start] + [int(a.min()) for a in (
                self.products.created_at, self.persons.created_at, self.orders.created_at,
                self.customers.created_at, self.contacts.created_at, self.profiles.created_at, self.events.time)
                if len(a)]
            cached = self._origin = min(firsts)
        return cached

    # ---- construction -------------------------------------------------------------------------------
    @classmethod
    def from_parts(cls, parts: WorldParts) -> World:
        return cls(parts.config, parts.products, parts.persons, parts.orders, parts.customers, parts.contacts,
                   parts.profiles, parts.events, parts.campaign_times, parts.start, parts.end, parts.report)

    @classmethod
    def build(cls, config: WorldConfig) -> World:
        """The synthetic world of a config: the same config gives the same world."""
        return cls.from_parts(generate(config))

    @classmethod
    def from_transactions(cls, path: str | Path, config: WorldConfig) -> World:
        """The world of a shop's exported transactions (history.py); raises history.TransactionsFileError.

        The timeline is fitted to the data: it starts on the day of the first order and "now" is the day after
        the last one, unless config.now was set to something other than the default.
        """
        from simulator.history import load_world_parts  # pandas and pyarrow are imported only when needed

        return cls.from_parts(load_world_parts(path, config))

    # ---- record ids ---------------------------------------------------------------------------------
    def record_id(self, entity: str, i: int) -> str:
        """The id under which the vendor's API presents record i (Shopify as a GID)."""
        if entity == "customers":
            return f"gid://shopify/Customer/{int(self.customers.customer_id[i])}"
        if entity == "orders":
            return f"gid://shopify/Order/{int(self.orders.order_id[i])}"
        if entity == "products":
            return f"gid://shopify/Product/{int(self.products.product_id[i])}"
        if entity == "contacts":
            return str(int(self.contacts.contact_id[i]))
        if entity == "profiles":
            return self.profile_id(i)
        if entity == "events":
            return self.event_id(i)
        raise KeyError(entity)

    def profile_id(self, i: int) -> str:
        return ulid(int(self.profiles.created_at[i]) * 1000, int(self.profiles.id_rand[i]))

    def event_id(self, i: int) -> str:
        return base62(stable_hash(self.config.seed, "event", i), 11)

    def person_email(self, p: int) -> str:
        """A person's canonical (lower-case) email address."""
        persons = self.persons
        if persons.email_override is not None:
            return persons.email_override[p]
        first = catalog.FIRST_NAMES[persons.first_name[p]].lower()
        last = catalog.LAST_NAMES[persons.last_name[p]].lower()
        return f"{first}.{last}{p}@{catalog.EMAIL_DOMAINS[persons.email_domain[p]]}"

    def spelled_email(self, p: int, spelling: int) -> str:
        """The person's email as typed into another system: case and whitespace may differ."""
        email = self.person_email(p)
        if spelling == EMAIL_TITLE:
            local, _, domain = email.partition("@")
            return ".".join(part.capitalize() for part in local.split(".")) + "@" + domain.capitalize()
        if spelling == EMAIL_UPPER:
            return email.upper()
        if spelling == EMAIL_PADDED:
            return f" {email} "
        return email

    # ---- versions and the as-of view -----------------------------------------------------------------
    def _table(self, entity: str):
        return {"customers": self.customers, "orders": self.orders, "products": self.products,
                "contacts": self.contacts, "profiles": self.profiles}[entity]

    def _deleted_at(self, entity: str) -> np.ndarray:
        table = self._table(entity)
        if entity == "contacts":
            return table.archived_at
        if entity == "orders":
            return np.full(table.n, NEVER, dtype=np.int64)
        return table.deleted_at

    def touch(self, entity: str, i: int, t: int) -> None:
        """Record a version of record i at time t made while the server runs (a mid-read edit, an import)."""
        with self._lock:
            times = self._touches[entity].setdefault(int(i), [])
            if int(t) not in times:
                times.append(int(t))
                times.sort()
            self._touch_serial += 1
            self._index_cache.clear()

    def touched(self, entity: str) -> dict[int, list[int]]:
        """Records of the entity edited while the server runs, with those versions' times."""
        return self._touches[entity]

    def has_runtime_edits(self) -> bool:
        return any(self._touches[e] for e in ENTITIES)

    def touches(self, entity: str, i: int, t: int) -> list[int]:
        return [x for x in self._touches[entity].get(int(i), ()) if x <= t]

    def updated_at(self, entity: str, t: int) -> np.ndarray:
        """Per record: the time of its latest version at or before t (-1: not created by t)."""
        if entity == "events":
            return np.where(self.events.time <= t, self.events.time, -1)
        out = self._table(entity).versions.updated_at(t)
        for i, times in self._touches[entity].items():
            upto = [x for x in times if x <= t]
            if upto and out[i] >= 0:
                out[i] = max(out[i], upto[-1])
        return out

    def visible(self, entity: str, t: int) -> np.ndarray:
        """Mask of the records that exist at t: created at or before t and not deleted by then."""
        if entity == "events":
            return self.events.time <= t
        table = self._table(entity)
        return (table.created_at <= t) & (self._deleted_at(entity) > t)

    def index(self, entity: str, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Records existing at t sorted by (updated_at, record order): (record indices, their updated_at).

        Cached per clock value; the runtime overlay clears the cache.
        """
        key = (entity, t)
        with self._lock:
            cached = self._index_cache.get(key)
        if cached is not None:
            return cached
        updated = self.updated_at(entity, t)
        rows = np.flatnonzero(self.visible(entity, t) & (updated >= 0))
        order = np.lexsort((rows, updated[rows]))
        result = (rows[order], updated[rows][order])
        with self._lock:
            if len(self._index_cache) > 64:
                self._index_cache.clear()
            self._index_cache[key] = result
        return result

    def deleted_between(self, entity: str, since: int, until: int) -> np.ndarray:
        """Indices of records deleted (archived) in [since, until)."""
        deleted = self._deleted_at(entity)
        return np.flatnonzero((deleted >= since) & (deleted < until) & (deleted != NEVER))

    def revision(self, entity: str, i: int, t: int) -> int:
        """How many versions record i has at t (1 = as created); renderers derive editable fields from it."""
        times = self._table(entity).versions.of(i)
        return int(np.searchsorted(times, t, side="right")) + len(self.touches(entity, i, t))

    # ---- vendor-neutral state of one record at time t ------------------------------------------------
    def customer_at(self, c: int, t: int) -> dict:
        cust, persons = self.customers, self.persons
        p = int(cust.person[c])
        orders = cust.order_index[cust.order_offsets[c]:cust.order_offsets[c + 1]]
        placed = orders[self.orders.created_at[orders] <= t]
        live = placed[self.orders.cancelled_at[placed] > t]
        spent = int(self.orders.total_cents[live].sum() - self._refunded_by(live, t))
        profile = int(self.profile_of_person[p])
        return {
            "index": c,
            "person": p,
            "customer_id": int(cust.customer_id[c]),
            "created_at": int(cust.created_at[c]),
            "updated_at": self._record_updated_at("customers", c, t),
            "revision": self.revision("customers", c, t),
            "first_name": catalog.FIRST_NAMES[persons.first_name[p]],
            "last_name": catalog.LAST_NAMES[persons.last_name[p]],
            "email": self.person_email(p),
            "phone": self.phone(p),
            "orders_count": int(len(placed)),
            "amount_spent_cents": spent,
            "last_order_index": int(placed[-1]) if len(placed) else -1,
            "address": self.address(p),
            "email_consent": self.consent_at(profile, t) if profile >= 0 else NEVER_SUBSCRIBED,
            "email_consent_updated_at": self.consent_changed_at(profile, t) if profile >= 0 else None,
        }

    def order_at(self, o: int, t: int) -> dict:
        orders, persons = self.orders, self.persons
        p = int(orders.person[o])
        country = catalog.COUNTRIES[persons.country[p]]
        c = int(self.customer_of_person[p])
        if c >= 0 and self.customers.created_at[c] > orders.created_at[o]:
            c = -1  # the account was opened after this order: it stays a guest checkout
        if c >= 0 and self.customers.deleted_at[c] <= t:
            c = -1
        first, last = int(orders.line_offsets[o]), int(orders.line_offsets[o + 1])
        refunded = orders.refund_at[o] <= t
        cancelled = orders.cancelled_at[o] <= t
        lines = []
        for line in range(first, last):
            lines.append({
                "line_id": int(orders.line_id[line]),
                "product": int(orders.line_product[line]),
                "variant": int(orders.line_variant[line]),
                "quantity": int(orders.line_quantity[line]),
                "unit_price_cents": int(orders.line_unit_price_cents[line]),
                "discount_cents": int(orders.line_discount_cents[line]),
                "refunded_quantity": int(orders.line_quantity[line]) if refunded and orders.refund_line[o] == line else 0,
            })
        refunds = []
        if refunded:
            line = int(orders.refund_line[o])
            refunds.append({
                "refund_id": int(orders.refund_id[o]),
                "created_at": int(orders.refund_at[o]),
                "line_id": int(orders.line_id[line]),
                "quantity": int(orders.line_quantity[line]),
                "amount_cents": int(orders.refunded_cents[o]),
            })
        return {
            "index": o,
            "order_id": int(orders.order_id[o]),
            "name": f"#{int(orders.number[o])}",
            "person": p,
            "customer_index": c,
            "email": self.spelled_email(p, int(orders.email_spelling[o])),
            "created_at": int(orders.created_at[o]),
            "updated_at": self._record_updated_at("orders", o, t),
            "revision": self.revision("orders", o, t),
            "cancelled_at": int(orders.cancelled_at[o]) if cancelled else None,
            "fulfilled_at": int(orders.fulfilled_at[o]) if orders.fulfilled_at[o] <= t else None,
            "currency": catalog.SHOP_CURRENCY,
            "presentment_currency": country.currency,
            "fx_per_usd": country.fx_per_usd,
            "discount_code": f"SAVE{int(orders.discount_pct[o])}" if orders.discount_pct[o] else None,
            "subtotal_cents": int(orders.subtotal_cents[o]),
            "discount_cents": int(orders.discount_cents[o]),
            "shipping_cents": int(orders.shipping_cents[o]),
            "tax_cents": int(orders.tax_cents[o]),
            "total_cents": int(orders.total_cents[o]),
            "refunded_cents": int(orders.refunded_cents[o]) if refunded else 0,
            "financial_status": ("voided" if cancelled else
                                 ("refunded" if refunded and orders.refunded_cents[o] >= orders.total_cents[o] else
                                  ("partially_refunded" if refunded else "paid"))),
            "fulfillment_status": "fulfilled" if orders.fulfilled_at[o] <= t else "unfulfilled",
            "shipping_address": self.address(p),
            "lines": lines,
            "refunds": refunds,
        }

    def product_at(self, i: int, t: int) -> dict:
        products = self.products
        category = catalog.CATEGORIES[products.category[i]]
        revision = self.revision("products", i, t)
        variants = []
        for v in range(int(products.variant_offsets[i]), int(products.variant_offsets[i + 1])):
            variants.append({
                "variant_id": int(products.variant_id[v]),
                "title": products.variant_title[v],
                "sku": f"SKU-{int(products.product_id[i]) % 10_000_000:07d}-{v - int(products.variant_offsets[i]) + 1}",
                "price_cents": int(products.variant_price_cents[v]),
                # stock moves with every product version, deterministically
                "inventory_quantity": int((products.inventory[i] + 37 * revision * (v + 1)) % 400),
            })
        return {
            "index": i,
            "product_id": int(products.product_id[i]),
            "title": products.title[i],
            "category": products.category_label[i] if products.category_label is not None else category.name,
            "vendor": catalog.VENDORS[products.vendor[i] % len(catalog.VENDORS)],
            "replenish_days": category.replenish_days,
            "created_at": int(products.created_at[i]),
            "updated_at": self._record_updated_at("products", i, t),
            "revision": revision,
            "status": "archived" if products.archived_at[i] <= t else "active",
            "companion_product": int(products.companion[i]),
            "variants": variants,
        }

    def contact_at(self, k: int, t: int) -> dict:
        contacts, persons = self.contacts, self.persons
        p = int(contacts.person[k])
        first_order = self.first_order_at(p)
        is_customer = first_order <= t
        stage = "customer" if is_customer else catalog.HUBSPOT_PRE_CUSTOMER_STAGES[contacts.initial_stage[k]]
        return {
            "index": k,
            "contact_id": int(contacts.contact_id[k]),
            "person": p,
            "email": self.spelled_email(p, int(contacts.email_spelling[k])),
            "first_name": catalog.FIRST_NAMES[persons.first_name[p]],
            "last_name": catalog.LAST_NAMES[persons.last_name[p]],
            "phone": self.phone(p),
            "created_at": int(contacts.created_at[k]),
            "updated_at": self._record_updated_at("contacts", k, t),
            "revision": self.revision("contacts", k, t),
            "archived": bool(contacts.archived_at[k] <= t),
            "archived_at": int(contacts.archived_at[k]) if contacts.archived_at[k] <= t else None,
            "lifecycle_stage": stage,
            "became_customer_at": int(first_order) if is_customer else None,
            "lead_status": catalog.HUBSPOT_LEAD_STATUSES[contacts.lead_status[k]],
            "owner_id": catalog.HUBSPOT_OWNER_IDS[contacts.owner[k]],
            "birth_date": self._birth_date(p),
            "address": self.address(p),
        }

    def profile_at(self, q: int, t: int) -> dict:
        profiles, persons = self.profiles, self.persons
        p = int(profiles.person[q])
        c = int(self.customer_of_person[p])
        external = bool(profiles.has_external_id[q]) and c >= 0 and self.customers.created_at[c] <= t
        return {
            "index": q,
            "profile_id": self.profile_id(q),
            "person": p,
            "email": self.person_email(p),
            "external_id": str(int(self.customers.customer_id[c])) if external else None,
            "first_name": catalog.FIRST_NAMES[persons.first_name[p]],
            "last_name": catalog.LAST_NAMES[persons.last_name[p]],
            "phone": self.phone(p),
            "created_at": int(profiles.created_at[q]),
            "updated_at": self._record_updated_at("profiles", q, t),
            "revision": self.revision("profiles", q, t),
            "consent": self.consent_at(q, t),
            "consent_changed_at": self.consent_changed_at(q, t),
            "subscribed_at": int(profiles.subscribed_at[q]) if profiles.subscribed_at[q] <= t else None,
            "birth_date": self._birth_date(p),
            "address": self.address(p),
            "timezone": self._timezone(p),
        }

    def event_at(self, e: int) -> dict:
        events = self.events
        return {
            "index": e,
            "event_id": self.event_id(e),
            "profile": int(events.profile[e]),
            "profile_id": self.profile_id(int(events.profile[e])),
            "metric": catalog.METRICS[events.metric[e]],
            "time": int(events.time[e]),
            "campaign": int(events.campaign[e]),
            "campaign_name": self.campaign_name(int(events.campaign[e])) if events.campaign[e] >= 0 else None,
            "product": int(events.product[e]),
            "order": int(events.order[e]),
        }

    def campaign_name(self, c: int) -> str:
        themes = ("New Arrivals", "Weekly Picks", "Restock Alert", "Member Offer", "Seasonal Edit", "Bestsellers")
        return f"{themes[c % len(themes)]} {iso(int(self.campaign_times[c]))[:10]}"

    # ---- helpers shared by the state methods and ground truth ----------------------------------------
    def _record_updated_at(self, entity: str, i: int, t: int) -> int:
        times = self._table(entity).versions.of(i)
        k = int(np.searchsorted(times, t, side="right"))
        base = int(times[k - 1]) if k else -1
        touched = self.touches(entity, i, t)
        return max(base, touched[-1]) if touched else base

    def _refunded_by(self, orders: np.ndarray, t: int) -> int:
        return int(self.orders.refunded_cents[orders][self.orders.refund_at[orders] <= t].sum())

    def first_order_at(self, p: int) -> int:
        return int(self._first_order[p])

    @property
    def _first_order(self) -> np.ndarray:
        cached = getattr(self, "_first_order_cache", None)
        if cached is None:
            cached = np.full(self.persons.n, NEVER, dtype=np.int64)
            np.minimum.at(cached, self.orders.person, self.orders.created_at)
            self._first_order_cache = cached
        return cached

    def consent_at(self, q: int, t: int) -> int:
        pr = self.profiles
        if pr.spam_at[q] <= t:
            return SPAM_COMPLAINT
        if pr.bounced_at[q] <= t:
            return BOUNCED
        if pr.unsubscribed_at[q] <= t:
            return UNSUBSCRIBED
        if pr.subscribed_at[q] <= t:
            return SUBSCRIBED
        return NEVER_SUBSCRIBED

    def consent_changed_at(self, q: int, t: int) -> int | None:
        pr = self.profiles
        times = [int(x[q]) for x in (pr.subscribed_at, pr.unsubscribed_at, pr.bounced_at, pr.spam_at) if x[q] <= t]
        return max(times) if times else None

    def phone(self, p: int) -> str | None:
        if not self.persons.has_phone[p]:
            return None
        return f"+1555{stable_hash(self.config.seed, 'phone', p) % 10_000_000:07d}"

    def _birth_date(self, p: int) -> str | None:
        days = int(self.persons.birth_date[p])
        if days < 0:
            return None
        return datetime.fromtimestamp(days * DAY, UTC).strftime("%Y-%m-%d")

    def address(self, p: int) -> dict:
        country = catalog.COUNTRIES[self.persons.country[p]]
        city, province, zip_code = country.cities[self.persons.city[p] % len(country.cities)]
        return {"city": city, "province_code": province, "zip": zip_code, "country_code": country.code,
                "country": country.name}

    def _timezone(self, p: int) -> str:
        if self.persons.tz_name is not None:
            return self.persons.tz_name[p]
        country = catalog.COUNTRIES[self.persons.country[p]]
        offsets = country.tz_offsets
        return country.tz_names[offsets.index(int(self.persons.tz_offset[p]))]

    # ---- ground truth ---------------------------------------------------------------------------------
    def truth_versions(self, entity: str, t: int, start: int | None = None, end: int | None = None) -> set[tuple[str, str]]:
        """{(record_id, updated_at ISO)} of the records existing at t whose latest version is in [start, end).

        This is what an API read at clock t can possibly return for that window.
        """
        rows, updated = self.index(entity, t)
        lo = 0 if start is None else int(np.searchsorted(updated, start, side="left"))
        hi = len(rows) if end is None else int(np.searchsorted(updated, end, side="left"))
        return {(self.record_id(entity, int(i)), iso(int(u))) for i, u in zip(rows[lo:hi], updated[lo:hi], strict=True)}

    def truth_count(self, entity: str, t: int) -> int:
        return int(len(self.index(entity, t)[0]))

    def traits(self) -> list[dict]:
        """Each person's latent traits with their ids in every source: what the models should recover."""
        persons = self.persons
        contact_ids: dict[int, list[str]] = {}
        for k in range(self.contacts.n):
            contact_ids.setdefault(int(self.contacts.person[k]), []).append(str(int(self.contacts.contact_id[k])))
        out = []
        for p in range(persons.n):
            c = int(self.customer_of_person[p])
            q = int(self.profile_of_person[p])
            out.append({
                "person": p,
                "email": self.person_email(p),
                "kind": ("account", "guest", "lead")[persons.kind[p]],
                "shopify_customer_id": self.record_id("customers", c) if c >= 0 else None,
                "hubspot_contact_ids": contact_ids.get(p, []),
                "klaviyo_profile_id": self.profile_id(q) if q >= 0 else None,
                "created_at": iso(int(persons.created_at[p])),
                "churn_at": iso(int(persons.churn_at[p])) if persons.churn_at[p] != NEVER else None,
                "purchase_rate_per_year": float(persons.purchase_rate[p]),
                "taste": {cat.name: float(persons.taste[p, j]) for j, cat in enumerate(catalog.CATEGORIES)},
                "price_sensitivity": float(persons.price_sensitivity[p]),
                "engagement": float(persons.engagement[p]),
                "preferred_hour_local": int(persons.preferred_hour[p]),
                "timezone": self._timezone(p),
                "utc_offset_hours": int(persons.tz_offset[p]),
                "birth_date": self._birth_date(p),
                "staple_product_id": (f"gid://shopify/Product/{int(self.products.product_id[persons.staple_product[p]])}"
                                      if persons.staple_product[p] >= 0 else None),
            })
        return out

    def lifecycle_stage(self, p: int, t: int) -> str:
        """prospect (never bought by t), new (one order), repeat (two or more), churned (past churn date)."""
        if self.persons.churn_at[p] <= t:
            return "churned"
        placed = int(np.count_nonzero((self.orders.person == p) & (self.orders.created_at <= t)))
        return "prospect" if placed == 0 else ("new" if placed == 1 else "repeat")

    def summary(self, t: int | None = None) -> dict:
        """Counts of what exists at t (default: the world's now)."""
        t = self.now if t is None else t
        return {entity: self.truth_count(entity, t) for entity in ENTITIES}
