"""Vectorized generation of a synthetic world from a seed.

The commerce part (products, persons, orders) comes either from `generate_commerce` or from a real
transactions file (history.py); the marketing part (accounts, CRM contacts, ESP profiles, consent, email
and onsite events) is synthesized from it by `complete_world` in both cases, so it stays consistent.

Each stage draws from its own random stream (seed, stage), so changing one stage leaves the others' draws
as they were.
"""

from __future__ import annotations

import numpy as np

from simulator import catalog
from simulator.model import (
    ACCOUNT,
    DAY,
    EMAIL_EXACT,
    EMAIL_PADDED,
    EMAIL_TITLE,
    EMAIL_UPPER,
    HOUR,
    LEAD,
    N_CATEGORIES,
    NEVER,
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
    parse_time,
)

STAGES = {"products": 1, "persons": 2, "orders": 3, "accounts": 4, "contacts": 5, "profiles": 6, "email": 7,
          "onsite": 8, "edits": 9, "ties": 10}

# Id bases: Shopify ids are large and grow with creation time, like the real ones.
PRODUCT_ID_BASE = 8_100_000_000_000
VARIANT_ID_BASE = 42_000_000_000_000
CUSTOMER_ID_BASE = 7_000_000_000_000
ORDER_ID_BASE = 5_900_000_000_000
LINE_ID_BASE = 14_500_000_000_000
REFUND_ID_BASE = 930_000_000_000
CONTACT_ID_BASE = 51_000_000_000


def rng_for(config: WorldConfig, stage: str) -> np.random.Generator:
    return np.random.default_rng([config.seed, STAGES[stage]])


def timeline(config: WorldConfig) -> tuple[int, int, int]:
    now = parse_time(config.now)
    return now - config.history_days * DAY, now, now + config.future_days * DAY


def generate(config: WorldConfig) -> WorldParts:
    if config.customers < 1:
        raise ValueError("customers must be at least 1")
    products = generate_products(config)
    persons = generate_persons(config, products)
    orders = generate_orders(config, persons, products)
    return complete_world(config, products, persons, orders)


# ---- products ---------------------------------------------------------------------------------------
def generate_products(config: WorldConfig) -> Products:
    rng = rng_for(config, "products")
    start, _, end = timeline(config)
    n = config.product_count
    weights = np.array([1.4, 0.8, 1.0, 0.9, 0.9, 0.7, 1.0, 0.9, 0.6, 0.7, 0.6, 0.6])
    category = rng.choice(N_CATEGORIES, size=n, p=weights / weights.sum()).astype(np.int16)
    category[:N_CATEGORIES] = np.arange(N_CATEGORIES)  # the first product of each category is evergreen
    # 70% of the catalog exists when the shop's history starts; the rest launches over time
    launched_later = rng.random(n) < 0.3
    created = np.where(launched_later, rng.integers(start, end, n), start - rng.integers(DAY, 365 * DAY, n))
    created[:N_CATEGORIES] = start - 400 * DAY
    archived = np.where(rng.random(n) < 0.10, created + rng.integers(60 * DAY, 700 * DAY, n), NEVER)
    archived[:N_CATEGORIES] = NEVER
    archived = np.where(archived >= end, NEVER, archived)
    deleted = np.where((archived != NEVER) & (rng.random(n) < 0.10), archived + rng.integers(DAY, 90 * DAY, n), NEVER)
    deleted = np.where(deleted >= end, NEVER, deleted)

    median = np.array([c.median_price_cents for c in catalog.CATEGORIES])[category]
    spread = np.array([c.price_spread for c in catalog.CATEGORIES])[category]
    base_price = np.maximum(299, np.round(median * np.exp(rng.normal(0, spread)) / 100) * 100 - 1).astype(np.int64)

    n_variants = rng.integers(1, 5, n)
    variant_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(n_variants, out=variant_offsets[1:])
    n_var_total = int(variant_offsets[-1])
    variant_product = np.repeat(np.arange(n), n_variants)
    variant_pos = np.arange(n_var_total) - variant_offsets[variant_product]
    # larger variants cost a little more
    variant_price = base_price[variant_product] + variant_pos * np.round(base_price[variant_product] * 0.08 / 100) * 100
    titles, variant_titles = [], []
    adj = rng.integers(0, len(catalog.ADJECTIVES), n)
    noun_pick = rng.integers(0, 1_000, n)
    for i in range(n):
        cat = catalog.CATEGORIES[category[i]]
        titles.append(f"{catalog.ADJECTIVES[adj[i]]} {cat.nouns[noun_pick[i] % len(cat.nouns)]} {i + 1}")
    for v in range(n_var_total):
        kind = catalog.CATEGORIES[category[variant_product[v]]].variant_kind
        values = catalog.VARIANT_VALUES[kind]
        variant_titles.append(values[(variant_pos[v] + variant_product[v]) % len(values)])

    # companion: a product from a complementary category, bought together often
    companion = np.empty(n, dtype=np.int32)
    by_category = [np.flatnonzero(category == c) for c in range(N_CATEGORIES)]
    names = [c.name for c in catalog.CATEGORIES]
    for i in range(n):
        comps = catalog.COMPLEMENTS[names[category[i]]]
        target = names.index(comps[int(rng.integers(0, len(comps)))])
        pool = by_category[target]
        companion[i] = pool[min(int(rng.zipf(1.6)) - 1, len(pool) - 1)]

    order = np.lexsort((np.arange(n), created))  # ids grow with creation time
    product_id = np.empty(n, dtype=np.int64)
    product_id[order] = PRODUCT_ID_BASE + np.arange(n) * 7 + 1
    products = Products(
        n=n, product_id=product_id, category=category, title=titles, vendor=rng.integers(0, 64, n).astype(np.int16),
        created_at=created.astype(np.int64), archived_at=archived.astype(np.int64), deleted_at=deleted.astype(np.int64),
        companion=companion, inventory=rng.integers(0, 400, n),
        variant_offsets=variant_offsets, variant_id=VARIANT_ID_BASE + np.arange(n_var_total, dtype=np.int64) * 3 + 1,
        variant_title=variant_titles, variant_price_cents=variant_price.astype(np.int64),
    )
    return products


def product_versions(config: WorldConfig, products: Products, extra: list[tuple[np.ndarray, np.ndarray]]) -> Versions:
    """Creation, price/stock edits (about one a quarter), archival; plus any extra (record, time) pairs."""
    _, _, end = timeline(config)
    edits = _edits(rng_for(config, "edits"), products.created_at, np.minimum(products.deleted_at, end), every_days=90)
    return _versions(products.n, products.created_at, edits, *extra, columns=(products.archived_at,))


def _edits(rng: np.random.Generator, created: np.ndarray, life_end: np.ndarray,
           every_days: float) -> tuple[np.ndarray, np.ndarray]:
    """(record, time) of edits made about once every `every_days` over each record's life."""
    n_edits = rng.poisson(np.maximum(0, (life_end - created) / DAY) / every_days)
    owner = np.repeat(np.arange(len(created)), n_edits)
    times = created[owner] + (rng.random(len(owner)) * (life_end[owner] - created[owner])).astype(np.int64)
    return owner, times


def _versions(n: int, created: np.ndarray, *parts: tuple[np.ndarray, np.ndarray],
              columns: tuple[np.ndarray, ...] = ()) -> Versions:
    """Versions from creation, (record, time) parts, and per-record event-time columns (NEVER: no event)."""
    records, times = [np.arange(n)], [created]
    for column in columns:
        has = np.flatnonzero(column != NEVER)
        records.append(has)
        times.append(column[has])
    for r, t in parts:
        records.append(r)
        times.append(t)
    return Versions(np.concatenate(records), np.concatenate(times), n)


# ---- persons ----------------------------------------------------------------------------------------
def generate_persons(config: WorldConfig, products: Products) -> Persons:
    rng = rng_for(config, "persons")
    start, _, end = timeline(config)
    n = config.customers
    kind = rng.choice(3, size=n, p=[0.80, 0.08, 0.12]).astype(np.int8)
    # the shop grows: sign-ups are denser later in the timeline
    created = start + ((end - start) * np.sqrt(rng.random(n))).astype(np.int64)
    # about 70% churn on a known date (mean lifetime ~9 months); the rest stay active throughout
    churns = rng.random(n) < 0.7
    lifetime_days = rng.exponential(250, n) + 20
    churn_at = np.where(churns, created + (lifetime_days * DAY).astype(np.int64), NEVER)
    churn_at = np.where(churn_at >= end, NEVER, churn_at)
    # heavy-tailed: most buyers order once, a loyal few often (public repeat-purchase rates are ~25-30%)
    rate = rng.gamma(0.25, 1.0, n)
    rate[kind == LEAD] = 0
    rate[(kind == ACCOUNT) & (rng.random(n) < 0.15)] = 0  # signed up, never bought
    taste = rng.dirichlet(np.full(N_CATEGORIES, 0.35), n).astype(np.float32)
    country_weights = np.array([c.weight for c in catalog.COUNTRIES])
    country = rng.choice(len(catalog.COUNTRIES), size=n, p=country_weights / country_weights.sum()).astype(np.int8)
    tz_pick = rng.integers(0, 4, n)
    tz_offset = np.array([catalog.COUNTRIES[c].tz_offsets[tz_pick[i] % len(catalog.COUNTRIES[c].tz_offsets)]
                          for i, c in enumerate(country)], dtype=np.int8)
    hour_modes = rng.choice([8, 12, 19, 21], size=n, p=[0.25, 0.2, 0.35, 0.2])
    preferred_hour = ((hour_modes + np.round(rng.normal(0, 1.0, n))) % 24).astype(np.int8)
    birth = np.where(rng.random(n) < 0.45,
                     (parse_time("1950-01-01T00:00:00Z") // DAY) + rng.integers(0, 55 * 365, n), -1)
    staple = _staples(rng, taste, products, n)
    return Persons(
        n=n, kind=kind, created_at=created.astype(np.int64), churn_at=churn_at.astype(np.int64), purchase_rate=rate,
        taste=taste, price_sensitivity=rng.beta(2, 2, n), engagement=rng.beta(1.2, 2.4, n),
        preferred_hour=preferred_hour, country=country, tz_offset=tz_offset, tz_name=None,
        city=rng.integers(0, 6, n).astype(np.int8), birth_date=birth.astype(np.int32),
        first_name=rng.integers(0, len(catalog.FIRST_NAMES), n).astype(np.int16),
        last_name=rng.integers(0, len(catalog.LAST_NAMES), n).astype(np.int16),
        email_domain=rng.choice(len(catalog.EMAIL_DOMAINS), size=n,
                                p=[0.38, 0.12, 0.12, 0.14, 0.1, 0.06, 0.03, 0.05]).astype(np.int8),
        has_phone=rng.random(n) < 0.55, staple_product=staple,
    )


def _staples(rng: np.random.Generator, taste: np.ndarray, products: Products, n: int) -> np.ndarray:
    """People whose favourite category is a consumable re-order one product of it (the evergreen one or a popular one)."""
    replenishable = np.array([c.replenish_days > 0 for c in catalog.CATEGORIES])
    top = taste.argmax(axis=1)
    staple = np.full(n, -1, dtype=np.int32)
    has = replenishable[top] & (rng.random(n) < 0.6)
    pools = [np.flatnonzero((products.category == c) & (products.archived_at == NEVER)) for c in range(N_CATEGORIES)]
    pick = rng.integers(0, 1 << 30, n)
    for c in np.flatnonzero(replenishable):
        members = np.flatnonzero(has & (top == c))
        pool = pools[c][:8]  # a handful of bestsellers
        staple[members] = pool[pick[members] % len(pool)]
    return staple


# ---- orders -----------------------------------------------------------------------------------------
def generate_orders(config: WorldConfig, persons: Persons, products: Products) -> Orders:
    rng = rng_for(config, "orders")
    _, _, end = timeline(config)
    n = persons.n
    buyer = persons.purchase_rate > 0
    first_at = persons.created_at + np.where(rng.random(n) < 0.6, 0, rng.exponential(25 * DAY, n)).astype(np.int64)
    active_end = np.minimum(persons.churn_at, end)
    buys = buyer & (first_at < active_end)
    span_years = np.where(buys, (active_end - first_at) / (YEAR_DAYS * DAY), 0.0)
    # scale rates so the world averages the configured orders per person
    target = config.orders_per_customer * n
    mass = float((persons.purchase_rate * span_years).sum())
    scale = max(0.0, (target - buys.sum()) / mass) if mass > 0 else 0.0
    persons.purchase_rate[:] = persons.purchase_rate * scale
    repeat = rng.poisson(persons.purchase_rate * span_years)
    count = np.where(buys, 1 + repeat, 0)
    person = np.repeat(np.arange(n), count)
    is_first = np.zeros(len(person), dtype=bool)
    first_pos = np.concatenate(([0], np.cumsum(count)[:-1]))[count > 0]
    is_first[first_pos] = True
    u = rng.random(len(person))
    created = np.where(is_first, first_at[person], first_at[person] + (u * (active_end[person] - first_at[person])).astype(np.int64))
    # a third of orders are placed around the person's preferred local hour
    at_hour = ~is_first & (rng.random(len(person)) < 0.35)
    day_start = created - created % DAY
    hour_utc = (persons.preferred_hour[person].astype(np.int64) - persons.tz_offset[person]) % 24
    shifted = day_start + hour_utc * HOUR + rng.integers(0, HOUR, len(person))
    created = np.where(at_hour & (shifted > first_at[person]) & (shifted < active_end[person]), shifted, created)
    order = np.lexsort((person, created))
    person, created = person[order], created[order]
    return build_orders_from_lines(config, rng, persons, products, person, created,
                                   *_choose_lines(rng, persons, products, person, created))


def _choose_lines(rng, persons: Persons, products: Products, order_person: np.ndarray, order_created: np.ndarray):
    n_orders = len(order_person)
    n_lines = 1 + rng.poisson(1.5, n_orders)
    line_order = np.repeat(np.arange(n_orders), n_lines)
    offsets = np.zeros(n_orders + 1, dtype=np.int64)
    np.cumsum(n_lines, out=offsets[1:])
    pos = np.arange(len(line_order)) - offsets[line_order]
    line_person = order_person[line_order]
    line_time = order_created[line_order]
    category = _sample_categories(rng, persons.taste, line_person)
    product = _sample_products(rng, products, category, line_time)
    # bought together: later lines of an order are often the first line's companion
    first_product = product[offsets[line_order]]
    companion = products.companion[first_product]
    use_companion = (pos > 0) & (rng.random(len(product)) < 0.3) & _available(products, companion, line_time)
    product = np.where(use_companion, companion, product)
    # consumables: the person's staple often opens a repeat order
    staple = persons.staple_product[line_person]
    first_order = np.zeros(n_orders, dtype=bool)
    _, first_idx = np.unique(order_person, return_index=True)
    first_order[first_idx] = True
    use_staple = (pos == 0) & (staple >= 0) & ~first_order[line_order] & (rng.random(len(product)) < 0.55)
    use_staple &= _available(products, np.maximum(staple, 0), line_time)
    product = np.where(use_staple, staple, product)
    n_var = products.variant_offsets[product + 1] - products.variant_offsets[product]
    variant = products.variant_offsets[product] + (rng.random(len(product)) * n_var).astype(np.int64)
    quantity = rng.choice([1, 2, 3], size=len(product), p=[0.82, 0.14, 0.04])
    return offsets, product.astype(np.int32), variant.astype(np.int32), quantity.astype(np.int32)


def _sample_categories(rng, taste: np.ndarray, people: np.ndarray, chunk: int = 2_000_000) -> np.ndarray:
    out = np.empty(len(people), dtype=np.int16)
    for lo in range(0, len(people), chunk):
        sl = slice(lo, lo + chunk)
        cum = np.cumsum(taste[people[sl]], axis=1)
        u = rng.random(len(cum))[:, None] * cum[:, -1:]
        out[sl] = np.minimum((cum < u).sum(axis=1), N_CATEGORIES - 1)
    return out


def _available(products: Products, product: np.ndarray, t: np.ndarray) -> np.ndarray:
    return (products.created_at[product] <= t) & (products.archived_at[product] > t)


def _sample_products(rng, products: Products, category: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Popularity-skewed pick within the category; products not on sale at t are re-drawn, then the evergreen one."""
    pools = [np.flatnonzero(products.category == c) for c in range(N_CATEGORIES)]
    out = np.empty(len(category), dtype=np.int64)
    for c in range(N_CATEGORIES):
        members = np.flatnonzero(category == c)
        pool = pools[c]
        if not len(members):  # a real-history shop may sell nothing in some categories
            continue
        weights = 1.0 / np.arange(1, len(pool) + 1) ** 0.9
        cum = np.cumsum(weights) / weights.sum()
        pick = pool[np.minimum(np.searchsorted(cum, rng.random(len(members))), len(pool) - 1)]
        for _ in range(4):
            bad = ~_available(products, pick, t[members])
            if not bad.any():
                break
            pick[bad] = pool[np.minimum(np.searchsorted(cum, rng.random(int(bad.sum()))), len(pool) - 1)]
        bad = ~_available(products, pick, t[members])
        pick[bad] = pool[0]  # the category's evergreen product is always on sale
        out[members] = pick
    return out


def build_orders_from_lines(config: WorldConfig, rng, persons: Persons, products: Products, person: np.ndarray,
                            created: np.ndarray, line_offsets: np.ndarray, line_product: np.ndarray,
                            line_variant: np.ndarray, quantity: np.ndarray,
                            unit_price: np.ndarray | None = None, discount_pct: np.ndarray | None = None,
                            lifecycle: bool = True) -> Orders:
    """Money, fulfilment, cancellations and refunds for orders given their lines (orders sorted by time)."""
    _, _, end = timeline(config)
    n = len(person)
    line_order = np.repeat(np.arange(n), np.diff(line_offsets))
    if unit_price is None:
        unit_price = products.variant_price_cents[line_variant]
    unit_price = unit_price.astype(np.int64)
    if discount_pct is None:
        takes_discount = rng.random(n) < (0.08 + 0.3 * persons.price_sensitivity[person])
        discount_pct = np.where(takes_discount, rng.choice([10, 15, 20], size=n), 0).astype(np.int8)
    line_subtotal = unit_price * quantity
    line_discount = np.round(line_subtotal * discount_pct[line_order] / 100).astype(np.int64)
    starts = line_offsets[:-1]
    subtotal = np.add.reduceat(line_subtotal, starts) if n else np.zeros(0, np.int64)
    discount = np.add.reduceat(line_discount, starts) if n else np.zeros(0, np.int64)
    tax_rate = np.array([c.tax_rate for c in catalog.COUNTRIES])[persons.country[person]]
    net = subtotal - discount
    shipping = np.where(net >= 7_500, 0, 795).astype(np.int64)
    tax = np.round(net * tax_rate).astype(np.int64)
    total = net + shipping + tax
    if lifecycle:
        cancelled = np.where(rng.random(n) < 0.02, created + rng.integers(10 * 60, 2 * DAY, n), NEVER)
        fulfilled = np.where(cancelled == NEVER, created + rng.integers(6 * HOUR, 3 * DAY, n), NEVER)
        refunds = (cancelled == NEVER) & (rng.random(n) < 0.07)
        refund_at = np.where(refunds, fulfilled + rng.integers(3 * DAY, 30 * DAY, n), NEVER)
    else:  # real history: the file says nothing of fulfilment or refunds
        cancelled = np.full(n, NEVER, dtype=np.int64)
        fulfilled = created + DAY
        refund_at = np.full(n, NEVER, dtype=np.int64)
    fulfilled = np.where(fulfilled >= end, NEVER, fulfilled)
    refund_at = np.where((refund_at >= end) | (fulfilled == NEVER), NEVER, refund_at)
    n_lines = np.diff(line_offsets)
    refund_line = np.where(refund_at != NEVER, starts + (rng.random(n) * n_lines).astype(np.int64), -1)
    safe = np.maximum(refund_line, 0)
    refunded = np.where(refund_line >= 0, line_subtotal[safe] - line_discount[safe], 0).astype(np.int64)
    spelling = np.where(rng.random(n) < 0.2, EMAIL_TITLE, EMAIL_EXACT).astype(np.int8)

    orders = Orders(
        n=n, order_id=ORDER_ID_BASE + np.arange(n, dtype=np.int64) * 11 + 3, number=1001 + np.arange(n),
        person=person.astype(np.int64), created_at=created.astype(np.int64), fulfilled_at=fulfilled.astype(np.int64),
        cancelled_at=cancelled.astype(np.int64), refund_at=refund_at.astype(np.int64), refund_line=refund_line,
        refund_id=REFUND_ID_BASE + np.arange(n, dtype=np.int64) * 5 + 2, email_spelling=spelling,
        discount_pct=discount_pct, line_offsets=line_offsets, subtotal_cents=subtotal, discount_cents=discount,
        shipping_cents=shipping, tax_cents=tax, total_cents=total, refunded_cents=refunded,
        line_id=LINE_ID_BASE + np.arange(len(line_product), dtype=np.int64) * 13 + 5,
        line_product=line_product, line_variant=line_variant, line_quantity=quantity,
        line_unit_price_cents=unit_price, line_discount_cents=line_discount,
    )
    return orders


# ---- the marketing side, synthesized from commerce ------------------------------------------------
def complete_world(config: WorldConfig, products: Products, persons: Persons, orders: Orders,
                   report: dict | None = None) -> WorldParts:
    start, _, end = timeline(config)
    customers = _accounts(config, persons, orders)
    contacts = _contacts(config, persons)
    profiles = _profiles(config, persons)
    events, campaign_times = _events(config, persons, profiles, orders, products)
    ties = _tie_bursts(config, customers, orders, products, contacts, profiles)

    orders.versions = _order_versions(orders, ties.get("orders", []))
    customers.versions = _customer_versions(config, customers, orders, profiles, persons, ties.get("customers", []))
    products.versions = product_versions(config, products, ties.get("products", []))
    contacts.versions = _contact_versions(config, contacts, orders, persons, ties.get("contacts", []))
    profiles.versions = _profile_versions(config, profiles, ties.get("profiles", []))
    return WorldParts(config, products, persons, orders, customers, contacts, profiles, events, campaign_times,
                      start, end, report)


def _accounts(config: WorldConfig, persons: Persons, orders: Orders) -> Customers:
    rng = rng_for(config, "accounts")
    _, _, end = timeline(config)
    person = np.flatnonzero(persons.kind == ACCOUNT)
    n = len(person)
    created = persons.created_at[person]
    order_by_time = np.lexsort((orders.created_at, orders.person))
    person_of_order = orders.person[order_by_time]
    customer_of_person = np.full(persons.n, -1, dtype=np.int64)
    customer_of_person[person] = np.arange(n)
    owner = customer_of_person[person_of_order]
    mine = owner >= 0
    owner, order_idx = owner[mine], order_by_time[mine]
    counts = np.bincount(owner, minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    # only customers without orders can be deleted (Shopify refuses to delete the others)
    deletes = (counts == 0) & (rng.random(n) < 0.05)
    deleted = np.where(deletes, created + rng.integers(DAY, 300 * DAY, n), NEVER)
    deleted = np.where(deleted >= end, NEVER, deleted)
    order = np.lexsort((person, created))
    customer_id = np.empty(n, dtype=np.int64)
    customer_id[order] = CUSTOMER_ID_BASE + np.arange(n, dtype=np.int64) * 9 + 4
    return Customers(n=n, person=person, customer_id=customer_id, created_at=created.astype(np.int64),
                     deleted_at=deleted.astype(np.int64), order_offsets=offsets, order_index=order_idx)


def _contacts(config: WorldConfig, persons: Persons) -> Contacts:
    rng = rng_for(config, "contacts")
    _, _, end = timeline(config)
    share = np.array([0.70, 0.40, 0.90])[persons.kind]
    has = rng.random(persons.n) < share
    person = np.flatnonzero(has)
    # some people get a second contact (a form fill with another spelling of the same address)
    dup = person[rng.random(len(person)) < 0.04]
    person = np.concatenate((person, dup))
    is_dup = np.concatenate((np.zeros(len(person) - len(dup), bool), np.ones(len(dup), bool)))
    n = len(person)
    lead_first = persons.kind[person] == LEAD
    created = persons.created_at[person] - np.where(lead_first, 0, rng.integers(0, 30 * DAY, n))
    created = np.where(is_dup, persons.created_at[person] + rng.integers(10 * DAY, 300 * DAY, n), created)
    keep = created < end
    person, created, is_dup = person[keep], created[keep], is_dup[keep]
    n = len(person)
    spelling = rng.choice([EMAIL_EXACT, EMAIL_TITLE, EMAIL_UPPER, EMAIL_PADDED], size=n, p=[0.72, 0.15, 0.05, 0.08])
    spelling = np.where(is_dup & (spelling == EMAIL_EXACT), EMAIL_TITLE, spelling)
    archived = np.where(rng.random(n) < np.where(is_dup, 0.25, 0.015), created + rng.integers(DAY, 200 * DAY, n), NEVER)
    archived = np.where(archived >= end, NEVER, archived)
    order = np.lexsort((person, created))
    contact_id = np.empty(n, dtype=np.int64)
    contact_id[order] = CONTACT_ID_BASE + np.arange(n, dtype=np.int64) * 3 + 1
    return Contacts(
        n=n, person=person, contact_id=contact_id, created_at=created.astype(np.int64), archived_at=archived.astype(np.int64),
        email_spelling=spelling.astype(np.int8),
        initial_stage=rng.choice(len(catalog.HUBSPOT_PRE_CUSTOMER_STAGES), size=n, p=[0.35, 0.3, 0.12, 0.08, 0.05, 0.1]).astype(np.int8),
        lead_status=rng.integers(0, len(catalog.HUBSPOT_LEAD_STATUSES), n).astype(np.int8),
        owner=rng.integers(0, len(catalog.HUBSPOT_OWNER_IDS), n).astype(np.int8),
    )


def _profiles(config: WorldConfig, persons: Persons) -> Profiles:
    rng = rng_for(config, "profiles")
    _, _, end = timeline(config)
    share = np.array([0.92, 0.60, 0.95])[persons.kind]
    person = np.flatnonzero(rng.random(persons.n) < share)
    n = len(person)
    created = persons.created_at[person] + rng.integers(0, HOUR, n)
    opt_in = np.array([0.62, 0.45, 0.85])[persons.kind[person]]
    subscribed = np.where(rng.random(n) < opt_in, created, NEVER)
    # some who never subscribed opt in later (a pop-up, a checkout box)
    late = (subscribed == NEVER) & (rng.random(n) < 0.10)
    subscribed = np.where(late, created + rng.integers(DAY, 400 * DAY, n), subscribed)
    subscribed = np.where(subscribed >= end, NEVER, subscribed)
    never = np.full(n, NEVER, dtype=np.int64)
    return Profiles(
        n=n, person=person, created_at=created.astype(np.int64),
        id_rand=rng.integers(0, 1 << 62, n, dtype=np.int64), has_external_id=rng.random(n) < 0.7,
        subscribed_at=subscribed.astype(np.int64), unsubscribed_at=never.copy(), bounced_at=never.copy(),
        spam_at=never.copy(), deleted_at=never.copy(),
    )


def _events(config: WorldConfig, persons: Persons, profiles: Profiles, orders: Orders,
            products: Products) -> tuple[Events, np.ndarray]:
    """Campaign sends with opens, clicks, bounces, unsubscribes and spam complaints (which also move each
    profile's consent timeline), then onsite browsing: product views, cart adds, started checkouts."""
    rng = rng_for(config, "email")
    start, _, end = timeline(config)
    interval = int(7 * DAY / config.campaigns_per_week) if config.campaigns_per_week > 0 else end - start
    first = start - start % DAY + DAY + 15 * HOUR
    campaign_times = np.arange(first, end, interval, dtype=np.int64)
    person = profiles.person
    engagement = persons.engagement[person]
    churn = persons.churn_at[person]
    pref_utc = (persons.preferred_hour[person].astype(np.int64) - persons.tz_offset[person]) % 24
    parts: list[tuple[np.ndarray, ...]] = []

    def add(profile_idx, metric, times, campaign):
        parts.append((profile_idx, np.full(len(profile_idx), metric, np.int8), times,
                      np.full(len(profile_idx), campaign, np.int32)))

    suppressed = np.zeros(profiles.n, dtype=bool)
    # hard bounces come from a few dead addresses, on their first send, not from a per-send lottery
    dead_address = rng.random(profiles.n) < 0.02
    for c, tc in enumerate(campaign_times):
        eligible = (profiles.subscribed_at <= tc) & ~suppressed & (profiles.created_at <= tc)
        candidates = np.flatnonzero(eligible)
        recipients = candidates[rng.random(len(candidates)) < config.campaign_audience_share]
        if not len(recipients):
            continue
        m = len(recipients)
        received = tc + rng.integers(0, 900, m)
        add(recipients, 0, received, c)
        bounced = dead_address[recipients]
        add(recipients[bounced], 3, received[bounced] + 2, c)
        profiles.bounced_at[recipients[bounced]] = received[bounced] + 2
        ok = ~bounced
        p_open = (0.05 + 0.7 * engagement[recipients]) * np.where(churn[recipients] <= tc, 0.3, 1.0)
        opened = ok & (rng.random(m) < p_open)
        # opens cluster at the person's preferred hour
        next_pref = received - received % DAY + pref_utc[recipients] * HOUR
        next_pref = np.where(next_pref <= received, next_pref + DAY, next_pref)
        at_pref = rng.random(m) < 0.6
        open_t = np.where(at_pref, next_pref + rng.integers(0, 2400, m),
                          received + rng.exponential(4 * HOUR, m).astype(np.int64) + 30)
        add(recipients[opened], 1, open_t[opened], c)
        clicked = opened & (rng.random(m) < 0.03 + 0.12 * engagement[recipients])
        add(recipients[clicked], 2, open_t[clicked] + rng.exponential(180, m).astype(np.int64)[clicked] + 5, c)
        unsub = opened & ~clicked & (rng.random(m) < 0.006 * (1.6 - engagement[recipients]))
        add(recipients[unsub], 4, open_t[unsub] + 40, c)
        profiles.unsubscribed_at[recipients[unsub]] = open_t[unsub] + 40
        spam = ok & ~opened & (rng.random(m) < 0.0006)
        spam_t = received + rng.integers(HOUR, 6 * HOUR, m)
        add(recipients[spam], 5, spam_t[spam], c)
        profiles.spam_at[recipients[spam]] = spam_t[spam]
        suppressed[recipients[bounced | unsub | spam]] = True

    email = [np.concatenate(x) for x in zip(*parts, strict=True)] if parts else [np.zeros(0, t) for t in (np.int64, np.int8, np.int64, np.int32)]
    onsite = _onsite_events(config, persons, profiles, orders, products)
    profile_idx = np.concatenate((email[0], onsite[0]))
    metric = np.concatenate((email[1], onsite[1]))
    times = np.concatenate((email[2], onsite[2]))
    campaign = np.concatenate((email[3], np.full(len(onsite[0]), -1, np.int32)))
    product = np.concatenate((np.full(len(email[0]), -1, np.int32), onsite[3]))
    order_ref = np.concatenate((np.full(len(email[0]), -1, np.int64), onsite[4]))
    keep = times < end
    order = np.lexsort((metric[keep], profile_idx[keep], times[keep]))
    sel = np.flatnonzero(keep)[order]
    events = Events(n=len(sel), profile=profile_idx[sel].astype(np.int32), metric=metric[sel], time=times[sel].astype(np.int64),
                    campaign=campaign[sel], product=product[sel].astype(np.int32), order=order_ref[sel])
    # consent changes after the end of the timeline did not happen
    for arr in (profiles.unsubscribed_at, profiles.bounced_at, profiles.spam_at):
        arr[arr >= end] = NEVER
    return events, campaign_times


def _onsite_events(config: WorldConfig, persons: Persons, profiles: Profiles, orders: Orders, products: Products):
    rng = rng_for(config, "onsite")
    _, _, end = timeline(config)
    profile_of_person = np.full(persons.n, -1, dtype=np.int64)
    profile_of_person[profiles.person] = np.arange(profiles.n)
    out = []
    # sessions that ended in an order: view each product, add it to the cart, start checkout
    lines = np.arange(len(orders.line_product))
    line_order = np.repeat(np.arange(orders.n), np.diff(orders.line_offsets))
    line_profile = profile_of_person[orders.person[line_order]]
    known = (line_profile >= 0) & (profiles.created_at[np.maximum(line_profile, 0)] <= orders.created_at[line_order])
    lines, line_order, line_profile = lines[known], line_order[known], line_profile[known]
    t_order = orders.created_at[line_order]
    out.append((line_profile, 6, t_order - rng.integers(20 * 60, 2 * DAY, len(lines)), orders.line_product[lines], line_order))
    out.append((line_profile, 7, t_order - rng.integers(2 * 60, 20 * 60, len(lines)), orders.line_product[lines], line_order))
    first_line = np.unique(line_order, return_index=True)[1]
    lo = line_order[first_line]
    out.append((line_profile[first_line], 8, orders.created_at[lo] - rng.integers(30, 120, len(lo)),
                orders.line_product[lines[first_line]], lo))
    # browsing that did not end in an order: views, some cart adds, some abandoned checkouts
    pr_person = profiles.person
    active_end = np.minimum(np.minimum(persons.churn_at[pr_person], end) + 60 * DAY, end)
    years = np.maximum(0, (active_end - profiles.created_at) / (YEAR_DAYS * DAY))
    rate = 1.5 + 4 * persons.engagement[pr_person]
    n_sessions = rng.poisson(rate * years)
    s_profile = np.repeat(np.arange(profiles.n), n_sessions)
    s_time = profiles.created_at[s_profile] + (rng.random(len(s_profile)) * (active_end[s_profile] - profiles.created_at[s_profile])).astype(np.int64)
    s_person = pr_person[s_profile]
    category = _sample_categories(rng, persons.taste, s_person)
    product = _sample_products(rng, products, category, s_time)
    n_views = 1 + rng.poisson(0.8, len(s_profile))
    v_session = np.repeat(np.arange(len(s_profile)), n_views)
    v_companion = np.arange(len(v_session)) % 2 == 1
    v_product = np.where(v_companion, products.companion[product[v_session]], product[v_session])
    v_time = s_time[v_session] + np.arange(len(v_session)) % 5 * 90
    none = np.full(len(v_session), -1, np.int64)
    out.append((s_profile[v_session], 6, v_time, v_product, none))
    carted = rng.random(len(s_profile)) < 0.3
    cs = np.flatnonzero(carted)
    out.append((s_profile[cs], 7, s_time[cs] + 600, product[cs], np.full(len(cs), -1, np.int64)))
    checkout = cs[rng.random(len(cs)) < 0.4]
    out.append((s_profile[checkout], 8, s_time[checkout] + 900, product[checkout], np.full(len(checkout), -1, np.int64)))
    profile_idx = np.concatenate([o[0] for o in out])
    metric = np.concatenate([np.full(len(o[0]), o[1], np.int8) for o in out])
    times = np.concatenate([o[2] for o in out])
    prod = np.concatenate([o[3] for o in out]).astype(np.int32)
    order_ref = np.concatenate([o[4] for o in out]).astype(np.int64)
    # no event before its profile existed, nor on a product not yet in the catalog
    valid = (times >= profiles.created_at[profile_idx]) & (products.created_at[prod] <= times)
    return profile_idx[valid], metric[valid], times[valid], prod[valid], order_ref[valid]


def _tie_bursts(config: WorldConfig, customers, orders, products, contacts, profiles) -> dict[str, list]:
    """Mass updates: many records of an entity get a version at one and the same second."""
    if config.tie_burst_size <= 0:
        return {}
    rng = rng_for(config, "ties")
    _, now, _ = timeline(config)
    out = {}
    for name, table in (("customers", customers), ("orders", orders), ("products", products),
                        ("contacts", contacts), ("profiles", profiles)):
        existing = np.flatnonzero(table.created_at < now - 2 * DAY)
        if not len(existing):
            continue
        size = min(config.tie_burst_size, len(existing))
        members = rng.choice(existing, size=size, replace=False)
        at = now - DAY - int(rng.integers(0, 12 * HOUR))
        out[name] = [(members.astype(np.int64), np.full(size, at, np.int64))]
    return out


def _order_versions(orders: Orders, extra) -> Versions:
    """Creation, fulfilment, refund, cancellation."""
    return _versions(orders.n, orders.created_at, *extra,
                     columns=(orders.fulfilled_at, orders.refund_at, orders.cancelled_at))


def _customer_versions(config, customers: Customers, orders: Orders, profiles: Profiles, persons: Persons, extra) -> Versions:
    """Creation, every order placed or cancelled (counts and spend change), profile edits, consent changes;
    nothing after the account's deletion."""
    _, _, end = timeline(config)
    n = customers.n
    owner = np.repeat(np.arange(n), np.diff(customers.order_offsets))
    cancelled_at = orders.cancelled_at[customers.order_index]
    cancelled = cancelled_at != NEVER
    edits = _edits(rng_for(config, "edits"), customers.created_at, np.minimum(customers.deleted_at, end), every_days=200)
    profile_of_person = np.full(persons.n, -1, dtype=np.int64)
    profile_of_person[profiles.person] = np.arange(profiles.n)
    q = profile_of_person[customers.person]
    has_q = np.flatnonzero(q >= 0)
    consent_parts = []
    for col in (profiles.subscribed_at, profiles.unsubscribed_at, profiles.bounced_at, profiles.spam_at):
        vals = col[q[has_q]]
        ok = (vals != NEVER) & (vals >= customers.created_at[has_q])
        consent_parts.append((has_q[ok], vals[ok]))
    every = _versions(n, customers.created_at, (owner, orders.created_at[customers.order_index]),
                      (owner[cancelled], cancelled_at[cancelled]), edits, *consent_parts, *extra)
    recs = np.repeat(np.arange(n), np.diff(every.offsets))
    alive = (every.times < np.minimum(customers.deleted_at[recs], end)) | (every.times == customers.created_at[recs])
    return Versions(recs[alive], every.times[alive], n)


def _contact_versions(config, contacts: Contacts, orders: Orders, persons: Persons, extra) -> Versions:
    """Creation, lifecycle stage moving to customer at the first order, edits by owners, archival."""
    _, _, end = timeline(config)
    first_order = np.full(persons.n, NEVER, dtype=np.int64)
    np.minimum.at(first_order, orders.person, orders.created_at)
    became = np.maximum(first_order[contacts.person], contacts.created_at)
    has = np.flatnonzero((first_order[contacts.person] != NEVER) & (became < contacts.archived_at))
    edits = _edits(rng_for(config, "edits"), contacts.created_at, np.minimum(contacts.archived_at, end), every_days=150)
    return _versions(contacts.n, contacts.created_at, (has, became[has]), edits, *extra,
                     columns=(contacts.archived_at,))


def _profile_versions(config, profiles: Profiles, extra) -> Versions:
    """Creation, edits about once a year, every consent change."""
    _, _, end = timeline(config)
    edits = _edits(rng_for(config, "edits"), profiles.created_at, np.full(profiles.n, end, dtype=np.int64), every_days=365)
    return _versions(profiles.n, profiles.created_at, edits, *extra,
                     columns=(profiles.subscribed_at, profiles.unsubscribed_at, profiles.bounced_at, profiles.spam_at))
