"""What is selected for each entity, and the payload shape that selection produces.

Payload shape (identical on the paged and the bulk path)
--------------------------------------------------------
The node exactly as selected below, with each nested connection flattened to the list of its nodes:
- customers: scalar fields, amountSpent, defaultEmailAddress, emailMarketingConsent, defaultPhoneNumber,
  defaultAddress (objects or null).
- orders: scalar fields, customer {id}, money bags ({shopMoney, presentmentMoney} of {amount, currencyCode}),
  shippingAddress, `refunds`: [Refund {..., refundLineItems: [RefundLineItem]}], `lineItems`: [LineItem].
- products: scalar fields, featuredMedia {preview {image {url}}} (or null), `variants`: [ProductVariant].
Nested lists hold every node (further pages are fetched, see paging). Key order follows the selection.
Downstream parses the payload and must tolerate fields that come and go; `extra_fields` / `without_fields`
change the selection (customized_specs). Records are keyed by id and updatedAt, so those two always stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from tailor.sources import RecordVersion
from tailor.sources.shopify.windows import parse_time

MONEY = "{ amount currencyCode }"
BAG = f"{{ shopMoney {MONEY} presentmentMoney {MONEY} }}"
ADDRESS = "{ id address1 address2 city province provinceCode country countryCodeV2 zip phone }"


@dataclass(frozen=True)
class NestedConnection:
    """A nested connection, flattened to a list of its nodes in the payload."""

    key: str  # field name on the parent
    node_type: str  # GraphQL type of its nodes (and of their GIDs: gid://shopify/<node_type>/<n>)
    fields: str  # selection on each node (always starts with id: bulk lines are matched by it)
    page_size: int  # nodes per page when paged
    parent_type: str  # type of the parent, for follow-up pages through node(id:)
    check_parent: bool  # the parent is the extracted record: a follow-up must see the same updatedAt


@dataclass(frozen=True)
class ListFieldWithConnection:
    """A list field whose items hold a connection (Order.refunds -> refundLineItems)."""

    key: str
    fields: str
    connection: NestedConnection


@dataclass(frozen=True)
class EntitySpec:
    entity: str
    root: str  # the QueryRoot connection
    count_field: str
    type_name: str
    subject_type: str  # EventSubjectType of its deletions
    fields: tuple[str, ...]  # top-level selections, in payload order
    list_fields: tuple[ListFieldWithConnection, ...] = ()
    connections: tuple[NestedConnection, ...] = ()

    def node_selection(self, bulk: bool) -> str:
        parts = list(self.fields)
        for item in self.list_fields:
            # a bulk query cannot hold a connection inside a list field: those are filled in after the run
            inner = "" if bulk else " " + connection_selection(item.connection, bulk=False)
            parts.append(f"{item.key} {{ {item.fields}{inner} }}")
        parts += [connection_selection(connection, bulk) for connection in self.connections]
        return " ".join(parts)


def connection_selection(connection: NestedConnection, bulk: bool) -> str:
    if bulk:  # bulk operations ignore page sizes and need edges/node; nested nodes become lines of their own
        return f"{connection.key} {{ edges {{ node {{ {connection.fields} }} }} }}"
    return (f"{connection.key}(first: {connection.page_size}) {{ nodes {{ {connection.fields} }} "
            "pageInfo { hasNextPage endCursor } }")


CUSTOMER_FIELDS = (
    "id", "legacyResourceId", "createdAt", "updatedAt", "firstName", "lastName", "displayName", "state", "locale",
    "tags", "verifiedEmail", "taxExempt", "numberOfOrders", f"amountSpent {MONEY}",
    "defaultEmailAddress { emailAddress marketingState marketingOptInLevel marketingUpdatedAt validFormat }",
    "emailMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt }",
    "defaultPhoneNumber { phoneNumber marketingState marketingOptInLevel marketingUpdatedAt marketingCollectedFrom }",
    f"defaultAddress {ADDRESS}",
)
ORDER_FIELDS = (
    "id", "legacyResourceId", "name", "createdAt", "processedAt", "updatedAt", "cancelledAt", "cancelReason",
    "closedAt", "test", "email", "sourceName", "tags", "customer { id }", "displayFinancialStatus",
    "displayFulfillmentStatus", "currencyCode", "presentmentCurrencyCode", "subtotalLineItemsQuantity",
    f"subtotalPriceSet {BAG}", f"totalDiscountsSet {BAG}", f"totalShippingPriceSet {BAG}", f"totalTaxSet {BAG}",
    f"totalPriceSet {BAG}", f"totalRefundedSet {BAG}", f"currentSubtotalPriceSet {BAG}", f"currentTotalPriceSet {BAG}",
    "discountCodes", "shippingAddress { city province provinceCode country countryCodeV2 zip }",
)
LINE_ITEM_FIELDS = (
    f"id name title variantTitle sku vendor quantity currentQuantity requiresShipping isGiftCard product {{ id }} "
    f"variant {{ id }} originalUnitPriceSet {BAG} discountedUnitPriceSet {BAG} originalTotalSet {BAG} "
    f"discountedTotalSet {BAG} totalDiscountSet {BAG}"
)
REFUND_FIELDS = f"id createdAt note totalRefundedSet {BAG}"
REFUND_LINE_FIELDS = (
    f"id quantity restockType restocked lineItem {{ id }} priceSet {BAG} subtotalSet {BAG} totalTaxSet {BAG}"
)
PRODUCT_FIELDS = (
    "id", "legacyResourceId", "title", "handle", "productType", "vendor", "status", "tags", "createdAt", "updatedAt",
    "publishedAt", "totalInventory", "onlineStoreUrl", "featuredMedia { preview { image { url } } }",
)
VARIANT_FIELDS = (
    "id title sku barcode price compareAtPrice inventoryQuantity availableForSale position taxable "
    "selectedOptions { name value }"
)

ENTITIES: dict[str, EntitySpec] = {
    "customers": EntitySpec("customers", "customers", "customersCount", "Customer", "CUSTOMER", CUSTOMER_FIELDS),
    "orders": EntitySpec(
        "orders", "orders", "ordersCount", "Order", "ORDER", ORDER_FIELDS,
        list_fields=(ListFieldWithConnection(
            "refunds", REFUND_FIELDS,
            NestedConnection("refundLineItems", "RefundLineItem", REFUND_LINE_FIELDS, 50, "Refund", False)),),
        connections=(NestedConnection("lineItems", "LineItem", LINE_ITEM_FIELDS, 100, "Order", True),),
    ),
    "products": EntitySpec(
        "products", "products", "productsCount", "Product", "PRODUCT", PRODUCT_FIELDS,
        connections=(NestedConnection("variants", "ProductVariant", VARIANT_FIELDS, 100, "Product", True),),
    ),
}
REQUIRED_FIELDS = ("id", "updatedAt")


def payload_key(selection: str) -> str:
    """The payload key a top-level selection produces: its alias, else its field name."""
    return selection.split("{", 1)[0].split("(", 1)[0].split(":", 1)[0].strip()


def customized_specs(extra: Mapping[str, Iterable[str]],
                     without: Mapping[str, Iterable[str]]) -> dict[str, EntitySpec]:
    """ENTITIES with per-entity selections added (`extra`) and payload keys removed (`without`)."""
    specs = dict(ENTITIES)
    for entity in set(extra) | set(without):
        if entity not in specs:
            raise ValueError(f"shopify has no entity {entity!r}: choose one of {', '.join(specs)}")
        spec = specs[entity]
        drop = set(without.get(entity, ()))
        if drop & set(REQUIRED_FIELDS):
            raise ValueError(f"{', '.join(sorted(drop & set(REQUIRED_FIELDS)))} cannot be dropped: "
                             "records are keyed by them")
        fields = tuple(f for f in spec.fields if payload_key(f) not in drop) + tuple(extra.get(entity, ()))
        specs[entity] = replace(spec, fields=fields,
                                list_fields=tuple(x for x in spec.list_fields if x.key not in drop),
                                connections=tuple(c for c in spec.connections if c.key not in drop))
    return specs


def record_version(payload: dict) -> RecordVersion:
    """A selected node as the version it is: keyed by its id and updatedAt."""
    return RecordVersion(record_id=payload["id"], updated_at=parse_time(payload["updatedAt"]), payload=payload)
