"""Shopify's object types over the world: how a vendor-neutral record state becomes a Customer, an Order...

Each GraphQL object type has a table of field resolvers `fn(source, args, ctx) -> value`. Sources are small
wrappers that fetch the world's `*_at` state dict lazily (an `id` alone never builds one). Leaf values are
returned already serialized the way Shopify serializes them: DateTime as 2026-01-02T03:04:05Z, Decimal as
"29.9" / "0.0", Money as "29.90", UnsignedInt64 as a string, enums by name.
"""

from __future__ import annotations

import bisect
import re
import time
from collections.abc import Callable

from simulator import catalog
from simulator.shopify import listing as listing_mod
from simulator.world import BOUNCED, NEVER, SPAM_COMPLAINT, SUBSCRIBED, UNSUBSCRIBED

SHOP = {
    "id": "gid://shopify/Shop/68817617058",
    "name": "Tailor Simulated Store",
    "email": "owner@tailor-simulated-store.example",
    "myshopifyDomain": "tailor-simulated-store.myshopify.com",
    "currencyCode": catalog.SHOP_CURRENCY,
    "ianaTimezone": "Etc/UTC",
}

# Disjoint id ranges for objects the world does not number itself.
CUSTOMER_ADDRESS_OFFSET = 2_000_000_000_000
ORDER_ADDRESS_OFFSET = 3_000_000_000_000
MEDIA_IMAGE_OFFSET = 22_000_000_000_000  # a product's featured image: product id + offset

# Where the simulated shop's storefront and its files live (Product.onlineStoreUrl, featured images).
STOREFRONT_URL = f"https://{SHOP['myshopifyDomain']}"
CDN_FILES_URL = "https://cdn.shopify.com/s/files/1/0000/0001"

CUSTOMER_TAGS = ("newsletter", "loyalty", "vip", "wholesale", "returning", "gift-buyer", "eco", "early-access")
ORDER_TAGS = ("web", "priority", "gift", "repeat", "promo", "wholesale", "review-requested", "ship-later")
PRODUCT_TAGS = ("new", "bestseller", "sale", "limited", "restocked", "staff-pick")

STREETS = ("Main St", "Oak Ave", "Maple Rd", "High St", "Station Rd", "Park Lane", "Elm St", "Church St")

# World consent code -> Shopify email marketing state (both consent enums use these names); never: NOT_SUBSCRIBED.
EMAIL_STATES = {
    SUBSCRIBED: "SUBSCRIBED",
    UNSUBSCRIBED: "UNSUBSCRIBED",
    BOUNCED: "INVALID",
    SPAM_COMPLAINT: "UNSUBSCRIBED",
}

FINANCIAL = {"paid": "PAID", "partially_refunded": "PARTIALLY_REFUNDED", "refunded": "REFUNDED", "voided": "VOIDED"}


class FieldError(Exception):
    """An error confined to one field: the field becomes null and the error is reported with its path."""

    def __init__(self, message: str, code: str = "BAD_REQUEST"):
        super().__init__(message)
        self.message = message
        self.code = code


# ---- value formatting --------------------------------------------------------------------------------
_FRACTIONS = [f"{frac:02d}".rstrip("0") or "0" for frac in range(100)]


def decimal(cents: int) -> str:
    """Shopify's Decimal: shortest form with at least one decimal digit ("29.9", "0.0", "12.34")."""
    cents = int(cents)
    if cents < 0:
        return "-" + decimal(-cents)
    whole, frac = divmod(cents, 100)
    return f"{whole}.{_FRACTIONS[frac]}"


_DAYS: dict[int, str] = {}
_CLOCK = [f"T{h:02d}:{m:02d}:{s:02d}Z" for h in range(24) for m in range(60) for s in range(60)]


def iso(ts: int) -> str:
    """'2026-01-02T03:04:05Z', as simulator.world.iso writes it but from cached pieces: bulk exports
    format millions of timestamps."""
    day, secs = divmod(int(ts), 86_400)
    date = _DAYS.get(day)
    if date is None:
        date = _DAYS[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
    return date + _CLOCK[secs]


def money(cents: int) -> str:
    """Shopify's Money scalar: two decimals ("29.90")."""
    cents = int(cents)
    return f"{cents // 100}.{cents % 100:02d}"


def tags(vocabulary: tuple[str, ...], ident: int, revision: int, extra: tuple[str, ...] = ()) -> list[str]:
    """A deterministic tag set that changes with every version of the record."""
    n = len(vocabulary)
    picked = {vocabulary[(ident + revision) % n], vocabulary[(ident // 7 + 3 * revision) % n], *extra}
    return sorted(picked)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def duration_words(seconds: int) -> str:
    """Rails' distance_of_time_in_words, which Shopify uses for Customer.lifetimeDuration."""
    minutes = seconds / 60
    if minutes < 1:
        return "less than a minute"
    if minutes < 45:
        return f"{round(minutes)} minutes" if round(minutes) != 1 else "1 minute"
    if minutes < 90:
        return "about 1 hour"
    if minutes < 1440:
        return f"about {round(minutes / 60)} hours"
    if minutes < 2520:
        return "1 day"
    if minutes < 43200:
        return f"{round(minutes / 1440)} days"
    if minutes < 86400:
        return f"about {round(minutes / 43200)} months" if round(minutes / 43200) != 1 else "about 1 month"
    if minutes < 525600:
        return f"{round(minutes / 43200)} months"
    years, rest = divmod(minutes, 525600)
    years = int(years)
    if rest < 131400:
        return f"about {years} year" + ("s" if years != 1 else "")
    if rest < 394200:
        return f"over {years} year" + ("s" if years != 1 else "")
    return f"almost {years + 1} years"


# ---- sources -----------------------------------------------------------------------------------------
class Conn:
    """A resolved connection page: nodes with their cursors."""

    __slots__ = ("items", "cursors", "has_next", "has_previous")

    def __init__(self, items: list, cursors: list[str], has_next: bool, has_previous: bool):
        self.items, self.cursors, self.has_next, self.has_previous = items, cursors, has_next, has_previous


class Edge:
    __slots__ = ("cursor", "node")

    def __init__(self, cursor: str, node):
        self.cursor, self.node = cursor, node


class _RecordRec:
    """A world record rendered lazily: its state dict and numeric id are computed on first use."""

    typename = ""
    entity = ""
    __slots__ = ("ctx", "i", "_d", "_ident")

    def __init__(self, ctx, i: int, ident: int | None = None):
        self.ctx, self.i, self._d, self._ident = ctx, int(i), None, ident

    @property
    def d(self) -> dict:
        if self._d is None:
            self._d = self.ctx.state_of(self.entity, self.i)
        return self._d

    @property
    def ident(self) -> int:
        if self._ident is None:
            self._ident = self.ctx.ident(self.entity, self.i)
        return self._ident

    @property
    def gid(self) -> str:
        return f"gid://shopify/{self.typename}/{self.ident}"


class CustomerRec(_RecordRec):
    typename = "Customer"
    entity = "customers"
    __slots__ = ()


class OrderRec(_RecordRec):
    typename = "Order"
    entity = "orders"
    __slots__ = ()

    def bag(self, cents: int) -> tuple[int, str, float]:
        d = self.d
        return cents, d["presentment_currency"], d["fx_per_usd"]


class ProductRec(_RecordRec):
    typename = "Product"
    entity = "products"
    __slots__ = ()

    def variant(self, position: int) -> VariantRec:
        return VariantRec(self, position)


class MediaImageRec:
    """A product's featured image (every simulated product has exactly one, uploaded with the product). One
    object serves MediaImage, its MediaPreviewImage and the Image in it: each type reads what it needs."""

    typename = "MediaImage"
    __slots__ = ("product",)

    def __init__(self, product: ProductRec):
        self.product = product

    @property
    def ident(self) -> int:
        return self.product.ident + MEDIA_IMAGE_OFFSET

    @property
    def gid(self) -> str:
        return f"gid://shopify/MediaImage/{self.ident}"

    @property
    def url(self) -> str:
        return f"{CDN_FILES_URL}/products/{self.product.ident}.jpg"


class VariantRec:
    typename = "ProductVariant"
    __slots__ = ("product", "position")

    def __init__(self, product: ProductRec, position: int):
        self.product, self.position = product, position

    @property
    def v(self) -> dict:
        return self.product.d["variants"][self.position]

    @property
    def ident(self) -> int:
        return self.v["variant_id"]

    @property
    def gid(self) -> str:
        return f"gid://shopify/ProductVariant/{self.ident}"


class LineRec:
    typename = "LineItem"
    __slots__ = ("order", "line", "_snapshot")

    def __init__(self, order: OrderRec, line: dict):
        self.order, self.line, self._snapshot = order, line, None

    @property
    def ident(self) -> int:
        return self.line["line_id"]

    @property
    def gid(self) -> str:
        return f"gid://shopify/LineItem/{self.ident}"

    @property
    def snapshot(self) -> tuple[dict, int]:
        """The product as sold (line items keep title, SKU and vendor after the product is deleted)."""
        if self._snapshot is None:
            ctx = self.order.ctx
            p = self.line["product"]
            self._snapshot = (ctx.product_state(p), self.line["variant"] - ctx.variant_offset(p))
        return self._snapshot

    @property
    def current_quantity(self) -> int:
        if self.order.d["cancelled_at"] is not None:
            return 0
        return self.line["quantity"] - self.line["refunded_quantity"]


class RefundRec:
    typename = "Refund"
    __slots__ = ("order", "refund")

    def __init__(self, order: OrderRec, refund: dict):
        self.order, self.refund = order, refund

    @property
    def gid(self) -> str:
        return f"gid://shopify/Refund/{self.refund['refund_id']}"

    def line(self) -> LineRec:
        for line in self.order.d["lines"]:
            if line["line_id"] == self.refund["line_id"]:
                return LineRec(self.order, line)
        raise LookupError(self.refund["line_id"])


class RefundLineRec:
    typename = "RefundLineItem"
    __slots__ = ("refund",)

    def __init__(self, refund: RefundRec):
        self.refund = refund

    @property
    def ident(self) -> int:
        return self.refund.refund["refund_id"] + 1

    @property
    def gid(self) -> str:
        return f"gid://shopify/RefundLineItem/{self.ident}"


class AddressRec:
    typename = "MailingAddress"
    __slots__ = ("gid", "first", "last", "phone", "a")

    def __init__(self, gid: str, first: str, last: str, phone: str | None, address: dict, person: int):
        self.gid, self.first, self.last, self.phone = gid, first, last, phone
        self.a = dict(address, address1=f"{100 + person % 900} {STREETS[person % len(STREETS)]}")

    @property
    def ident(self) -> int:
        return int(self.gid.rsplit("/", 1)[1].split("?", 1)[0])

    def formatted(self, with_name: bool, with_company: bool) -> list[str]:
        a = self.a
        lines = [f"{self.first} {self.last}"] if with_name else []
        return lines + [a["address1"], f"{a['city']} {a['province_code']} {a['zip']}", a["country"]]


def customer_address(rec: CustomerRec) -> AddressRec:
    d = rec.d
    gid = f"gid://shopify/MailingAddress/{rec.ident + CUSTOMER_ADDRESS_OFFSET}?model_name=CustomerAddress"
    return AddressRec(gid, d["first_name"], d["last_name"], d["phone"], d["address"], d["person"])


def order_address(rec: OrderRec) -> AddressRec:
    d = rec.d
    world = rec.ctx.world
    p = d["person"]
    first = catalog.FIRST_NAMES[world.persons.first_name[p]]
    last = catalog.LAST_NAMES[world.persons.last_name[p]]
    gid = f"gid://shopify/MailingAddress/{rec.ident + ORDER_ADDRESS_OFFSET}?model_name=Address"
    return AddressRec(gid, first, last, world.phone(p), d["shipping_address"], p)


def small_connection(ctx, items: list, ids: list[int], args: dict) -> Conn:
    """A nested connection over an in-memory list (line items, variants, ...) in id order, cursors by id."""
    if ctx.bulk:
        return Conn(items, [], False, False)
    n = len(items)
    lo, hi = 0, n
    reverse = bool(args.get("reverse"))
    for name in ("after", "before"):
        cursor = args.get(name)
        if cursor is None:
            continue
        try:
            key, _ = listing_mod.decode_cursor(cursor, "int")
        except listing_mod.CursorError:
            raise FieldError("Invalid cursor for current pagination sort.") from None
        below, above = bisect.bisect_left(ids, key), bisect.bisect_right(ids, key)
        if name == "after":
            lo = n - below if reverse else above
        else:
            hi = n - above if reverse else below
    hi = max(hi, lo)
    first, last = args.get("first"), args.get("last")
    a, b = lo, hi
    if first is not None:
        b = min(b, a + first)
    if last is not None:
        a = max(a, b - last)
    positions = [n - 1 - k for k in range(a, b)] if reverse else list(range(a, b))
    return Conn([items[k] for k in positions], [listing_mod.encode_cursor(ids[k], ids[k], "int") for k in positions],
                b < n, a > 0)


# ---- resolver tables -----------------------------------------------------------------------------------
Resolver = Callable[[object, dict, object], object]
RESOLVERS: dict[str, dict[str, Resolver]] = {}


def resolvers(type_name: str, **fields: Resolver) -> None:
    RESOLVERS.setdefault(type_name, {}).update(fields)


def _time(value: int | None) -> str | None:
    return None if value is None else iso(value)


resolvers(
    "PageInfo",
    hasNextPage=lambda s, a, c: s.has_next,
    hasPreviousPage=lambda s, a, c: s.has_previous,
    startCursor=lambda s, a, c: s.cursors[0] if s.cursors else None,
    endCursor=lambda s, a, c: s.cursors[-1] if s.cursors else None,
)
resolvers("Count", count=lambda s, a, c: s[0], precision=lambda s, a, c: s[1])
resolvers("MoneyV2", amount=lambda s, a, c: decimal(s[0]), currencyCode=lambda s, a, c: s[1])


def _presentment(bag: tuple[int, str, float]) -> tuple[int, str]:
    cents, currency, fx = bag
    return (cents if currency == catalog.SHOP_CURRENCY else int(round(cents * fx))), currency


resolvers(
    "MoneyBag",
    shopMoney=lambda s, a, c: (s[0], catalog.SHOP_CURRENCY),
    presentmentMoney=lambda s, a, c: _presentment(s),
)
resolvers("Shop", **{name: (lambda s, a, c, n=name: SHOP[n]) for name in SHOP})

resolvers(
    "MailingAddress",
    id=lambda s, a, c: s.gid,
    address1=lambda s, a, c: s.a["address1"],
    address2=lambda s, a, c: None,
    city=lambda s, a, c: s.a["city"],
    company=lambda s, a, c: None,
    country=lambda s, a, c: s.a["country"],
    countryCodeV2=lambda s, a, c: s.a["country_code"],
    firstName=lambda s, a, c: s.first,
    lastName=lambda s, a, c: s.last,
    name=lambda s, a, c: f"{s.first} {s.last}",
    phone=lambda s, a, c: s.phone,
    province=lambda s, a, c: s.a["province_code"],
    provinceCode=lambda s, a, c: s.a["province_code"],
    zip=lambda s, a, c: s.a["zip"],
    formatted=lambda s, a, c: s.formatted(a.get("withName", False), a.get("withCompany", True)),
    formattedArea=lambda s, a, c: f"{s.a['city']} {s.a['province_code']}, {s.a['country']}",
)


# ---- customers -----------------------------------------------------------------------------------------
def _email_state(code: int) -> str:
    return EMAIL_STATES.get(code, "NOT_SUBSCRIBED")


resolvers(
    "CustomerEmailAddress",
    emailAddress=lambda s, a, c: s["email"],
    marketingOptInLevel=lambda s, a, c: "SINGLE_OPT_IN",
    marketingState=lambda s, a, c: _email_state(s["email_consent"]),
    marketingUpdatedAt=lambda s, a, c: _time(s["email_consent_updated_at"]),
    validFormat=lambda s, a, c: True,
)
resolvers(
    "CustomerEmailMarketingConsentState",
    consentUpdatedAt=lambda s, a, c: _time(s["email_consent_updated_at"]),
    marketingOptInLevel=lambda s, a, c: "SINGLE_OPT_IN",
    marketingState=lambda s, a, c: _email_state(s["email_consent"]),
)
resolvers(
    "CustomerPhoneNumber",
    marketingCollectedFrom=lambda s, a, c: None,
    marketingOptInLevel=lambda s, a, c: None,
    marketingState=lambda s, a, c: "NOT_SUBSCRIBED",
    marketingUpdatedAt=lambda s, a, c: None,
    phoneNumber=lambda s, a, c: s,
)


def _customer_orders(s: CustomerRec, args: dict, ctx) -> Conn:
    world = ctx.world
    cust = world.customers
    rows = cust.order_index[cust.order_offsets[s.i]:cust.order_offsets[s.i + 1]]
    rows = rows[world.orders.created_at[rows] <= ctx.t]
    return ctx.runtime.subset_connection(ctx, "orders", rows, args, ["orders"])


resolvers(
    "Customer",
    id=lambda s, a, c: s.gid,
    legacyResourceId=lambda s, a, c: str(s.ident),
    firstName=lambda s, a, c: s.d["first_name"],
    lastName=lambda s, a, c: s.d["last_name"],
    displayName=lambda s, a, c: f"{s.d['first_name']} {s.d['last_name']}",
    defaultEmailAddress=lambda s, a, c: s.d,
    defaultPhoneNumber=lambda s, a, c: s.d["phone"],
    emailMarketingConsent=lambda s, a, c: s.d,
    state=lambda s, a, c: "ENABLED",
    verifiedEmail=lambda s, a, c: True,
    taxExempt=lambda s, a, c: False,
    tags=lambda s, a, c: tags(CUSTOMER_TAGS, s.ident, s.d["revision"]),
    note=lambda s, a, c: None,
    locale=lambda s, a, c: "en",
    createdAt=lambda s, a, c: iso(s.d["created_at"]),
    updatedAt=lambda s, a, c: iso(s.d["updated_at"]),
    numberOfOrders=lambda s, a, c: str(s.d["orders_count"]),
    amountSpent=lambda s, a, c: (s.d["amount_spent_cents"], catalog.SHOP_CURRENCY),
    lastOrder=lambda s, a, c: c.order(s.d["last_order_index"]) if s.d["last_order_index"] >= 0 else None,
    lifetimeDuration=lambda s, a, c: duration_words(c.t - s.d["created_at"]),
    canDelete=lambda s, a, c: s.d["orders_count"] == 0,
    defaultAddress=lambda s, a, c: customer_address(s),
    addresses=lambda s, a, c: [customer_address(s)][: a["first"] if a.get("first") is not None else None],
    addressesV2=lambda s, a, c: small_connection(c, [customer_address(s)], [s.ident + CUSTOMER_ADDRESS_OFFSET], a),
    orders=_customer_orders,
)


# ---- orders ---------------------------------------------------------------------------------------------
def _closed_at(d: dict) -> int | None:
    if d["cancelled_at"] is not None:
        return d["cancelled_at"]
    return d["fulfilled_at"]


def _net(d: dict) -> int:
    return d["subtotal_cents"] - d["discount_cents"]


def _current(d: dict, cents: int) -> int:
    return 0 if d["cancelled_at"] is not None else cents - d["refunded_cents"]


def _line_items(s: OrderRec, args: dict, ctx) -> Conn:
    lines = s.d["lines"]
    return small_connection(ctx, [LineRec(s, line) for line in lines], [line["line_id"] for line in lines], args)


def _refunds(s: OrderRec, args: dict, ctx) -> list:
    out = [RefundRec(s, r) for r in s.d["refunds"]]
    first = args.get("first")
    return out if first is None else out[:first]


resolvers(
    "Order",
    id=lambda s, a, c: s.gid,
    legacyResourceId=lambda s, a, c: str(s.ident),
    name=lambda s, a, c: s.d["name"],
    email=lambda s, a, c: s.d["email"],
    createdAt=lambda s, a, c: iso(s.d["created_at"]),
    processedAt=lambda s, a, c: iso(s.d["created_at"]),
    updatedAt=lambda s, a, c: iso(s.d["updated_at"]),
    cancelledAt=lambda s, a, c: _time(s.d["cancelled_at"]),
    cancelReason=lambda s, a, c: "CUSTOMER" if s.d["cancelled_at"] is not None else None,
    closed=lambda s, a, c: _closed_at(s.d) is not None,
    closedAt=lambda s, a, c: _time(_closed_at(s.d)),
    confirmed=lambda s, a, c: True,
    test=lambda s, a, c: False,
    currencyCode=lambda s, a, c: s.d["currency"],
    presentmentCurrencyCode=lambda s, a, c: s.d["presentment_currency"],
    displayFinancialStatus=lambda s, a, c: FINANCIAL[s.d["financial_status"]],
    displayFulfillmentStatus=lambda s, a, c: s.d["fulfillment_status"].upper(),
    fullyPaid=lambda s, a, c: s.d["cancelled_at"] is None,
    unpaid=lambda s, a, c: False,
    subtotalLineItemsQuantity=lambda s, a, c: sum(line["quantity"] for line in s.d["lines"]),
    currentSubtotalLineItemsQuantity=lambda s, a, c: sum(LineRec(s, line).current_quantity for line in s.d["lines"]),
    subtotalPriceSet=lambda s, a, c: s.bag(_net(s.d)),
    totalDiscountsSet=lambda s, a, c: s.bag(s.d["discount_cents"]),
    totalShippingPriceSet=lambda s, a, c: s.bag(s.d["shipping_cents"]),
    totalTaxSet=lambda s, a, c: s.bag(s.d["tax_cents"]),
    totalPriceSet=lambda s, a, c: s.bag(s.d["total_cents"]),
    totalRefundedSet=lambda s, a, c: s.bag(s.d["refunded_cents"]),
    currentTotalPriceSet=lambda s, a, c: s.bag(_current(s.d, s.d["total_cents"])),
    currentSubtotalPriceSet=lambda s, a, c: s.bag(_current(s.d, _net(s.d))),
    discountCode=lambda s, a, c: s.d["discount_code"],
    discountCodes=lambda s, a, c: [s.d["discount_code"]] if s.d["discount_code"] else [],
    tags=lambda s, a, c: tags(ORDER_TAGS, s.ident, s.d["revision"]),
    note=lambda s, a, c: None,
    sourceName=lambda s, a, c: "web",
    customer=lambda s, a, c: c.customer(s.d["customer_index"]) if s.d["customer_index"] >= 0 else None,
    shippingAddress=lambda s, a, c: order_address(s),
    billingAddress=lambda s, a, c: order_address(s),
    lineItems=_line_items,
    refunds=_refunds,
)


def _line_bag(s: LineRec, cents: int) -> tuple[int, str, float]:
    return s.order.bag(cents)


def _line_variant(s: LineRec, ctx) -> VariantRec | None:
    product = ctx.product(s.line["product"])  # None once the product is deleted
    return None if product is None else product.variant(s.snapshot[1])


def _discounted_unit(line: dict) -> int:
    total = line["unit_price_cents"] * line["quantity"] - line["discount_cents"]
    return int(round(total / line["quantity"]))


resolvers(
    "LineItem",
    id=lambda s, a, c: s.gid,
    name=lambda s, a, c: f"{s.snapshot[0]['title']} - {s.snapshot[0]['variants'][s.snapshot[1]]['title']}",
    title=lambda s, a, c: s.snapshot[0]["title"],
    variantTitle=lambda s, a, c: s.snapshot[0]["variants"][s.snapshot[1]]["title"],
    sku=lambda s, a, c: s.snapshot[0]["variants"][s.snapshot[1]]["sku"],
    vendor=lambda s, a, c: s.snapshot[0]["vendor"],
    quantity=lambda s, a, c: s.line["quantity"],
    currentQuantity=lambda s, a, c: s.current_quantity,
    refundableQuantity=lambda s, a, c: s.current_quantity,
    product=lambda s, a, c: c.product(s.line["product"]),
    variant=lambda s, a, c: _line_variant(s, c),
    originalUnitPriceSet=lambda s, a, c: _line_bag(s, s.line["unit_price_cents"]),
    discountedUnitPriceSet=lambda s, a, c: _line_bag(s, _discounted_unit(s.line)),
    originalTotalSet=lambda s, a, c: _line_bag(s, s.line["unit_price_cents"] * s.line["quantity"]),
    discountedTotalSet=lambda s, a, c: _line_bag(
        s, s.line["unit_price_cents"] * s.line["quantity"] - s.line["discount_cents"]),
    totalDiscountSet=lambda s, a, c: _line_bag(s, s.line["discount_cents"]),
    requiresShipping=lambda s, a, c: True,
    taxable=lambda s, a, c: True,
    isGiftCard=lambda s, a, c: False,
)

resolvers(
    "Refund",
    id=lambda s, a, c: s.gid,
    legacyResourceId=lambda s, a, c: str(s.refund["refund_id"]),
    createdAt=lambda s, a, c: iso(s.refund["created_at"]),
    updatedAt=lambda s, a, c: iso(s.refund["created_at"]),
    note=lambda s, a, c: None,
    order=lambda s, a, c: s.order,
    totalRefundedSet=lambda s, a, c: s.order.bag(s.refund["amount_cents"]),
    refundLineItems=lambda s, a, c: small_connection(c, [RefundLineRec(s)], [RefundLineRec(s).ident], a),
)
resolvers(
    "RefundLineItem",
    id=lambda s, a, c: s.gid,
    lineItem=lambda s, a, c: s.refund.line(),
    quantity=lambda s, a, c: s.refund.refund["quantity"],
    restockType=lambda s, a, c: "RETURN",
    restocked=lambda s, a, c: True,
    priceSet=lambda s, a, c: s.refund.order.bag(s.refund.line().line["unit_price_cents"]),
    subtotalSet=lambda s, a, c: s.refund.order.bag(s.refund.refund["amount_cents"]),
    totalTaxSet=lambda s, a, c: s.refund.order.bag(0),
)


# ---- products -------------------------------------------------------------------------------------------
def _variants(s: ProductRec, args: dict, ctx) -> Conn:
    variants = s.d["variants"]
    return small_connection(ctx, [s.variant(k) for k in range(len(variants))], [v["variant_id"] for v in variants],
                            args)


def _price_range(s: ProductRec) -> dict:
    prices = [v["price_cents"] for v in s.d["variants"]]
    return {"min": (min(prices), catalog.SHOP_CURRENCY), "max": (max(prices), catalog.SHOP_CURRENCY)}


def _online_store_url(s: ProductRec) -> str | None:
    """The product page on the storefront; null, as on Shopify, when the product is not published to the Online
    Store (here: exactly when it is not active, as publishedAt)."""
    return f"{STOREFRONT_URL}/products/{slug(s.d['title'])}" if s.d["status"] == "active" else None


def _option_name(s: ProductRec) -> str:
    return catalog.CATEGORIES[int(s.ctx.world.products.category[s.i])].variant_kind.capitalize()


resolvers(
    "Product",
    id=lambda s, a, c: s.gid,
    legacyResourceId=lambda s, a, c: str(s.ident),
    title=lambda s, a, c: s.d["title"],
    handle=lambda s, a, c: slug(s.d["title"]),
    status=lambda s, a, c: s.d["status"].upper(),
    vendor=lambda s, a, c: s.d["vendor"],
    productType=lambda s, a, c: s.d["category"],
    tags=lambda s, a, c: tags(PRODUCT_TAGS, s.ident, s.d["revision"], (slug(s.d["category"]),)),
    createdAt=lambda s, a, c: iso(s.d["created_at"]),
    updatedAt=lambda s, a, c: iso(s.d["updated_at"]),
    publishedAt=lambda s, a, c: iso(s.d["created_at"]) if s.d["status"] == "active" else None,
    totalInventory=lambda s, a, c: sum(v["inventory_quantity"] for v in s.d["variants"]),
    tracksInventory=lambda s, a, c: True,
    hasOnlyDefaultVariant=lambda s, a, c: False,
    descriptionHtml=lambda s, a, c: f"<p>{s.d['title']} from {s.d['vendor']}, part of our {s.d['category']} range.</p>",
    priceRangeV2=lambda s, a, c: _price_range(s),
    variants=_variants,
    variantsCount=lambda s, a, c: (len(s.d["variants"]), "EXACT"),
    onlineStoreUrl=lambda s, a, c: _online_store_url(s),
    featuredMedia=lambda s, a, c: MediaImageRec(s),
)
resolvers(
    "MediaImage",
    id=lambda s, a, c: s.gid,
    alt=lambda s, a, c: s.product.d["title"],
    createdAt=lambda s, a, c: iso(s.product.d["created_at"]),
    updatedAt=lambda s, a, c: iso(s.product.d["created_at"]),
    image=lambda s, a, c: s,
    mediaContentType=lambda s, a, c: "IMAGE",
    mimeType=lambda s, a, c: "image/jpeg",
    preview=lambda s, a, c: s,
    status=lambda s, a, c: "READY",
)
resolvers("MediaPreviewImage", image=lambda s, a, c: s, status=lambda s, a, c: "READY")
resolvers(
    "Image",
    id=lambda s, a, c: f"gid://shopify/ImageSource/{s.ident}",
    altText=lambda s, a, c: s.product.d["title"],
    url=lambda s, a, c: s.url,
    width=lambda s, a, c: 2048,
    height=lambda s, a, c: 2048,
)
resolvers(
    "ProductPriceRangeV2",
    minVariantPrice=lambda s, a, c: s["min"],
    maxVariantPrice=lambda s, a, c: s["max"],
)
resolvers("SelectedOption", name=lambda s, a, c: s[0], value=lambda s, a, c: s[1])
resolvers(
    "ProductVariant",
    id=lambda s, a, c: s.gid,
    legacyResourceId=lambda s, a, c: str(s.ident),
    title=lambda s, a, c: s.v["title"],
    displayName=lambda s, a, c: f"{s.product.d['title']} - {s.v['title']}",
    sku=lambda s, a, c: s.v["sku"],
    barcode=lambda s, a, c: None,
    price=lambda s, a, c: money(s.v["price_cents"]),
    compareAtPrice=lambda s, a, c: None,
    position=lambda s, a, c: s.position + 1,
    inventoryQuantity=lambda s, a, c: s.v["inventory_quantity"],
    availableForSale=lambda s, a, c: s.product.d["status"] == "active" and s.v["inventory_quantity"] > 0,
    taxable=lambda s, a, c: True,
    createdAt=lambda s, a, c: iso(s.product.d["created_at"]),
    updatedAt=lambda s, a, c: iso(s.product.d["updated_at"]),
    product=lambda s, a, c: s.product,
    selectedOptions=lambda s, a, c: [(_option_name(s.product), s.v["title"])],
)


# ---- events ---------------------------------------------------------------------------------------------
class DeletionRec:
    """A record's deletion, served as a BasicEvent (`events`) or a DeletionEvent (`deletionEvents`)."""

    __slots__ = ("typename", "event_id", "subject_type", "subject_id", "at", "title")

    def __init__(self, typename: str, event_id: int, subject_type: str, subject_id: str, at: int, title: str):
        self.typename, self.event_id, self.subject_type = typename, event_id, subject_type
        self.subject_id, self.at, self.title = subject_id, at, title

    @property
    def gid(self) -> str:
        return f"gid://shopify/BasicEvent/{self.event_id}"


resolvers(
    "BasicEvent",
    id=lambda s, a, c: s.gid,
    action=lambda s, a, c: "destroy",
    appTitle=lambda s, a, c: None,
    attributeToApp=lambda s, a, c: False,
    attributeToUser=lambda s, a, c: True,
    createdAt=lambda s, a, c: iso(s.at),
    criticalAlert=lambda s, a, c: False,
    message=lambda s, a, c: f"{s.title} was deleted.",
    subjectId=lambda s, a, c: s.subject_id,
    subjectType=lambda s, a, c: s.subject_type,
)
resolvers(
    "DeletionEvent",
    occurredAt=lambda s, a, c: iso(s.at),
    subjectId=lambda s, a, c: s.subject_id,
    subjectType=lambda s, a, c: s.subject_type,
)


# ---- bulk operations ---------------------------------------------------------------------------------------
resolvers(
    "BulkOperation",
    id=lambda s, a, c: s.gid,
    status=lambda s, a, c: s.status,
    type=lambda s, a, c: "QUERY",
    query=lambda s, a, c: s.query,
    createdAt=lambda s, a, c: iso(s.created_at),
    completedAt=lambda s, a, c: _time(s.completed_at),
    errorCode=lambda s, a, c: s.error_code,
    objectCount=lambda s, a, c: str(s.object_count),
    rootObjectCount=lambda s, a, c: str(s.root_object_count),
    fileSize=lambda s, a, c: None if s.file_size is None else str(s.file_size),
    url=lambda s, a, c: s.url,
    partialDataUrl=lambda s, a, c: s.partial_data_url,
)
resolvers("BulkOperationUserError", code=lambda s, a, c: s.get("code"), field=lambda s, a, c: s.get("field"),
          message=lambda s, a, c: s["message"])
resolvers("UserError", field=lambda s, a, c: s.get("field"), message=lambda s, a, c: s["message"])
resolvers("BulkOperationRunQueryPayload", bulkOperation=lambda s, a, c: s[0], userErrors=lambda s, a, c: s[1])
resolvers("BulkOperationCancelPayload", bulkOperation=lambda s, a, c: s[0], userErrors=lambda s, a, c: s[1])


def register_connections(type_names: list[str]) -> None:
    """Every *Connection / *Edge type resolves the same way over Conn / Edge sources."""
    for name in type_names:
        if name.endswith("Connection"):
            resolvers(
                name,
                edges=lambda s, a, c: [Edge(cur, node) for cur, node in zip(s.cursors, s.items, strict=False)]
                if s.cursors else [Edge("", node) for node in s.items],
                nodes=lambda s, a, c: s.items,
                pageInfo=lambda s, a, c: s,
            )
        elif name.endswith("Edge"):
            resolvers(name, cursor=lambda s, a, c: s.cursor, node=lambda s, a, c: s.node)


def visible(world, entity: str, i: int, t: int) -> bool:
    table = getattr(world, entity)
    if table.created_at[i] > t:
        return False
    deleted = getattr(table, "deleted_at", None)
    return deleted is None or deleted[i] == NEVER or deleted[i] > t
