"""One simulated shop's GraphQL Admin endpoint: request handling, cost and throttle, connections over the world.

Kept in `state.vendor_state["shopify"]`. Data-level faults live here: on follow-up pages (requests with
`after`) the seeded dice may repeat the previous page's last record (`duplicates`) or give one record the
query has not reached yet a new version at the current clock (`mid_read_updates`), which moves it out of
its old position exactly as a concurrent edit on a real shop does.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

import numpy as np
from graphql import (
    GraphQLError,
    GraphQLSyntaxError,
    execute_sync,
    get_operation_ast,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values

from simulator import catalog
from simulator.paging import ViewCache
from simulator.ratelimit import LeakyBucket
from simulator.shopify import errors, listing, objects, search
from simulator.shopify.bulk import BulkOperations
from simulator.shopify.executor import Executor, PlanError
from simulator.shopify.objects import (
    Conn,
    CustomerRec,
    DeletionRec,
    FieldError,
    OrderRec,
    ProductRec,
    VariantRec,
)
from simulator.shopify.schema import SCHEMA
from simulator.shopify.states import BulkStates
from simulator.world import NEVER

API_VERSION = "2026-07"

# Standard plan (https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits): 100 points/second
# restore; the bucket holds 20 seconds of it, as the throttleStatus of live shops shows (2000.0 / 100.0).
BUCKET_SIZE = 2000.0
RESTORE_RATE = 100.0
MAX_QUERY_COST = 1000


RECORDS = {"customers": CustomerRec, "orders": OrderRec, "products": ProductRec}
TEXT_ALIASES = {
    "fulfillment_status": {"shipped": "fulfilled", "unshipped": "unfulfilled", "any": "*"},
    "financial_status": {"any": "*"},
    "status": {"any": "*"},
    "comments": {"true": "*", "false": "*"},
}
GID = re.compile(r"^gid://shopify/(\w+)/(\d+)(\?.*)?$")
EVENT_ID_BASE = 98_800_000_000_000
EVENT_RETENTION_DAYS = 365  # "Event data is retained for 1 year" (events query reference)


class Ctx:
    """Per-request (or per-bulk-operation) execution context: the clock value and record caches."""

    def __init__(self, runtime: ShopifyRuntime, t: int, bulk: bool = False, now: int | None = None):
        self.runtime = runtime
        self.state = runtime.state
        self.world = runtime.state.world
        self.t = t  # the time the world is read at (SimState.read_time: before everything for a silent shop)
        self.now = t if now is None else now  # the clock, for what the request stamps (a bulk operation's times)
        self.bulk = bulk
        self.errors: list[dict] = []
        self.search: list[dict] = []
        self.pending: list = []
        self.after_response: list = []  # work to start once the response body is complete
        self._product_states: dict[int, dict] = {}
        self._recs: dict[tuple[str, int], object] = {}
        self.states = BulkStates(self.world, t) if bulk else None
        self._variant_offsets = self.world.products.variant_offsets.tolist() if bulk else None
        if self.states is not None:
            self._state_fns = {"customers": self.states.customer, "orders": self.states.order,
                               "products": self.states.product}
        else:
            world = self.world
            self._state_fns = {"customers": lambda i: world.customer_at(i, t), "orders": lambda i: world.order_at(i, t),
                               "products": lambda i: world.product_at(i, t)}

    def state_of(self, entity: str, i: int) -> dict:
        """The world's state dict of a record at the clock."""
        return self._state_fns[entity](i)

    def ident(self, entity: str, i: int) -> int:
        if self.states is not None:
            return self.states.ids(entity)[i]
        return int({"customers": self.world.customers.customer_id, "orders": self.world.orders.order_id,
                    "products": self.world.products.product_id}[entity][i])

    def variant_offset(self, p: int) -> int:
        if self._variant_offsets is not None:
            return self._variant_offsets[p]
        return int(self.world.products.variant_offsets[p])

    def error(self, message: str, node, path: list, code: str) -> None:
        self.errors.append(errors.field_error(message, node, path, code))

    def product_state(self, p: int) -> dict:
        state = self._product_states.get(p)
        if state is None:
            state = self._product_states[p] = self.world.product_at(p, self.t)
        return state

    def record(self, entity: str, i: int):
        """The record as an object source, or None when it does not exist at the clock."""
        key = (entity, int(i))
        rec = self._recs.get(key)
        if rec is None:
            alive = self.states.visible(entity, int(i)) if self.states is not None \
                else objects.visible(self.world, entity, int(i), self.t)
            if not alive:
                return None
            rec = RECORDS[entity](self, int(i))
            if entity == "products":
                rec._d = self.product_state(int(i))
            if not self.bulk or entity == "products":  # a bulk run would hold every customer's state
                self._recs[key] = rec
        return rec

    def customer(self, i: int):
        return self.record("customers", i)

    def order(self, i: int):
        return self.record("orders", i)

    def product(self, i: int):
        return self.record("products", i)

    def page(self, view: listing.Listing, args: dict, repeat_previous: bool = False) -> listing.Page:
        try:
            return listing.page(view, first=args.get("first"), last=args.get("last"), after=args.get("after"),
                                before=args.get("before"), reverse=bool(args.get("reverse")),
                                repeat_previous=repeat_previous)
        except listing.CursorError:
            raise FieldError("Invalid cursor for current pagination sort.") from None


def entity_columns(world, entity: str, rows: np.ndarray, updated: np.ndarray, t: int):
    """(numeric ids, searchable/sortable columns) of an entity's records at t."""
    if entity == "customers":
        table = world.customers
        return table.customer_id[rows], {"created_at": table.created_at[rows], "updated_at": updated}
    if entity == "orders":
        o = world.orders
        cancelled = o.cancelled_at[rows] <= t
        refunded = o.refund_at[rows] <= t
        full = o.refunded_cents[rows] >= o.total_cents[rows]
        fulfilled = o.fulfilled_at[rows] <= t
        financial = np.where(cancelled, "voided", np.where(refunded & full, "refunded",
                                                            np.where(refunded, "partially_refunded", "paid")))
        status = np.where(cancelled, "cancelled", np.where(fulfilled, "closed", "open"))
        return o.order_id[rows], {
            "created_at": o.created_at[rows], "processed_at": o.created_at[rows], "updated_at": updated,
            "number": o.number[rows],
            "total_cents": o.total_cents[rows], "financial_status": financial,
            "fulfillment_status": np.where(fulfilled, "fulfilled", "unfulfilled"), "status": status,
        }
    p = world.products
    vendors = np.array([v.lower() for v in catalog.VENDORS])
    if p.category_label is not None:
        types = np.array([p.category_label[int(i)].lower() for i in rows], dtype=str)
    else:
        types = np.array([c.name.lower() for c in catalog.CATEGORIES])[p.category[rows]]
    return p.product_id[rows], {
        "created_at": p.created_at[rows], "updated_at": updated,
        "status": np.where(p.archived_at[rows] <= t, "archived", "active"),
        "vendor": vendors[p.vendor[rows] % len(vendors)], "product_type": types,
    }


def search_fields(view: listing.Listing) -> dict[str, search.FieldSpec]:
    fields = view.search_fields()
    for name, aliases in TEXT_ALIASES.items():
        if name in fields:
            fields[name] = search.FieldSpec("text", fields[name].column, aliases)
    if "comments" in view.columns:
        fields["comments"] = search.FieldSpec("text", lambda: view.columns["comments"], TEXT_ALIASES["comments"])
    return fields


class ShopifyRuntime:
    def __init__(self, state):
        self.state = state
        self.bucket = LeakyBucket(BUCKET_SIZE, RESTORE_RATE)
        self.listings = ViewCache(size=16)  # listings per (entity, clock, sort), checked against the world's index
        self.bulk = BulkOperations(self)
        self._lock = threading.Lock()
        self._id_maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._deletions: dict[str, np.ndarray] | None = None
        self._documents: OrderedDict[str, tuple] = OrderedDict()

    def context(self, t: int, bulk: bool = False, now: int | None = None) -> Ctx:
        """An execution context reading the world at t (bulk operations make theirs here)."""
        return Ctx(self, t, bulk=bulk, now=now)

    # ---- listings ---------------------------------------------------------------------------------------
    def entity_listing(self, entity: str, t: int, sort_key: str) -> listing.Listing:
        world = self.state.world
        rows, updated = world.index(entity, t)

        def build():
            ids, columns = entity_columns(world, entity, rows, updated, t)
            return listing.make_listing(rows, ids, columns, sort_key)

        return self.listings.get((entity, t, sort_key), (rows,), build)

    def filtered(self, ctx: Ctx, base: listing.Listing, query: str | None, path: list | None) -> listing.Listing:
        """The records matching a `query:` argument; warnings go to extensions.search unless path is None."""
        try:
            tree = search.parse(query)
        except search.SearchSyntaxError as exc:
            raise FieldError(f"Invalid search query: {exc}") from None
        result = search.evaluate(tree, search_fields(base), len(base), ctx.t)
        if result.warnings and path is not None:
            ctx.search.append(search.search_extension(path, query, tree, result.warnings))
        return base.subset(result.mask)

    def connection(self, ctx: Ctx, entity: str, args: dict, path: list) -> Conn:
        """A top-level customers / orders / products connection page, with the data-level faults."""
        sort_key = args["sortKey"]
        view = self.filtered(ctx, self.entity_listing(entity, ctx.t, sort_key), args.get("query"), path)
        if ctx.bulk:
            return self._all(ctx, entity, view, args)
        faults, dice = self.state.faults, self.state.dice
        after = args.get("after")
        identity = "|".join(str(args.get(k)) for k in ("query", "sortKey", "reverse", "first", "last", "after",
                                                       "before"))
        identity = f"{entity}|{identity}"
        if after is not None and dice.hits("mid_read_updates", identity, faults.mid_read_updates):
            pending = ctx.page(view, {**args, "first": None, "last": None})
            remaining = len(view) - pending.window_start
            if remaining > 0:
                pick = pending.window_start + int(dice.draw("mid_read_pick", identity) * remaining)
                position = len(view) - 1 - pick if args.get("reverse") else pick
                self.state.world.touch(entity, int(view.rows[position]), ctx.t)
                view = self.filtered(ctx, self.entity_listing(entity, ctx.t, sort_key), args.get("query"), None)
        repeat = after is not None and dice.hits("duplicates", identity, faults.duplicates)
        pg = ctx.page(view, args, repeat_previous=repeat)
        items = [ctx.record(entity, int(r)) for r in view.rows[pg.positions]]
        return Conn(items, [view.cursor(int(p)) for p in pg.positions], pg.has_next, pg.has_previous)

    def _all(self, ctx: Ctx, entity: str, view: listing.Listing, args: dict) -> Conn:
        rows, ids = (view.rows[::-1], view.ids[::-1]) if args.get("reverse") else (view.rows, view.ids)
        record = RECORDS[entity]
        return Conn([record(ctx, r, ident) for r, ident in zip(rows.tolist(), ids.tolist(), strict=True)],
                    [], False, False)

    def subset_connection(self, ctx: Ctx, entity: str, rows: np.ndarray, args: dict, path: list) -> Conn:
        """A nested connection over a few records (a customer's orders)."""
        recs = [ctx.record(entity, int(r)) for r in rows]
        updated = np.array([rec.d["updated_at"] for rec in recs], dtype=np.int64)
        ids, columns = entity_columns(ctx.world, entity, rows, updated, ctx.t)
        view = self.filtered(ctx, listing.make_listing(np.arange(len(recs)), ids, columns, args["sortKey"]),
                             args.get("query"), path)
        if ctx.bulk:
            order = view.rows[::-1] if args.get("reverse") else view.rows
            return Conn([recs[int(k)] for k in order], [], False, False)
        pg = ctx.page(view, args)
        return Conn([recs[int(view.rows[p])] for p in pg.positions], [view.cursor(int(p)) for p in pg.positions],
                    pg.has_next, pg.has_previous)

    def count(self, ctx: Ctx, entity: str, args: dict, path: list) -> tuple[int, str]:
        view = self.filtered(ctx, self.entity_listing(entity, ctx.t, "ID"), args.get("query"), path)
        limit = args.get("limit")
        if limit is not None and len(view) > limit:
            return limit, "AT_LEAST"
        return len(view), "EXACT"

    # ---- deletions (events) --------------------------------------------------------------------------
    def deletions(self) -> dict[str, np.ndarray]:
        """Every deletion in the world's timeline, numbered in time order like Shopify's event ids."""
        with self._lock:
            if self._deletions is None:
                world = self.state.world
                cust = np.flatnonzero(world.customers.deleted_at != NEVER)
                prod = np.flatnonzero(world.products.deleted_at != NEVER)
                kind = np.concatenate((np.zeros(len(cust), np.int8), np.ones(len(prod), np.int8)))
                index = np.concatenate((cust, prod)).astype(np.int64)
                at = np.concatenate((world.customers.deleted_at[cust], world.products.deleted_at[prod]))
                order = np.lexsort((index, kind, at))
                self._deletions = {
                    "kind": kind[order], "index": index[order], "at": at[order],
                    "id": EVENT_ID_BASE + np.arange(len(order), dtype=np.int64) * 3 + 1,
                }
            return self._deletions

    def deletion_connection(self, ctx: Ctx, args: dict, path: list, typename: str,
                            subject_types: list[str] | None = None) -> Conn:
        d = self.deletions()
        keep = (d["at"] <= ctx.t) & (d["at"] > ctx.t - EVENT_RETENTION_DAYS * 86_400)
        if subject_types is not None:
            keep &= np.isin(d["kind"], [1 if s == "PRODUCT" else 2 for s in subject_types])
        rows = np.flatnonzero(keep)
        subject = np.where(d["kind"][rows] == 0, "customer", "product")
        columns = {"created_at": d["at"][rows], "occurred_at": d["at"][rows], "subject_type": subject,
                   "action": np.full(len(rows), "destroy"), "comments": np.full(len(rows), "false")}
        view = self.filtered(ctx, listing.make_listing(rows, d["id"][rows], columns, args["sortKey"]),
                             args.get("query"), path)
        if ctx.bulk:
            order = view.rows[::-1] if args.get("reverse") else view.rows
            return Conn([self._deletion_rec(ctx, int(r), typename) for r in order], [], False, False)
        pg = ctx.page(view, args)
        return Conn([self._deletion_rec(ctx, int(view.rows[p]), typename) for p in pg.positions],
                    [view.cursor(int(p)) for p in pg.positions], pg.has_next, pg.has_previous)

    def _deletion_rec(self, ctx: Ctx, row: int, typename: str) -> DeletionRec:
        d = self.deletions()
        world = ctx.world
        i = int(d["index"][row])
        if d["kind"][row] == 0:
            state = world.customer_at(i, int(d["at"][row]) - 1)
            subject, gid = "CUSTOMER", world.record_id("customers", i)
            title = f"{state['first_name']} {state['last_name']}"
        else:
            subject, gid, title = "PRODUCT", world.record_id("products", i), world.products.title[i]
        return DeletionRec(typename, int(d["id"][row]), subject, gid, int(d["at"][row]), title)

    # ---- lookups -------------------------------------------------------------------------------------
    def _index_of(self, entity: str, ident: int) -> int | None:
        world = self.state.world
        with self._lock:
            cached = self._id_maps.get(entity)
            if cached is None:
                ids = {"customers": world.customers.customer_id, "orders": world.orders.order_id,
                       "products": world.products.product_id, "variants": world.products.variant_id}[entity]
                order = np.argsort(ids, kind="stable")
                cached = self._id_maps[entity] = (ids[order], order)
        sorted_ids, order = cached
        k = int(np.searchsorted(sorted_ids, ident))
        if k < len(sorted_ids) and sorted_ids[k] == ident:
            return int(order[k])
        return None

    def lookup(self, ctx: Ctx, gid: str):
        """The object a global id names, if it exists at the clock (node / nodes / customer(id:) ...)."""
        m = GID.match(gid or "")
        if m is None:
            return None
        kind, ident = m[1], int(m[2])
        entity = {"Customer": "customers", "Order": "orders", "Product": "products"}.get(kind)
        if entity is not None:
            i = self._index_of(entity, ident)
            return None if i is None else ctx.record(entity, i)
        if kind == "ProductVariant":
            v = self._index_of("variants", ident)
            if v is None:
                return None
            offsets = ctx.world.products.variant_offsets
            p = int(np.searchsorted(offsets, v, side="right")) - 1
            product = ctx.product(p)
            return None if product is None else VariantRec(product, v - int(offsets[p]))
        if kind == "BulkOperation":
            return self.bulk.get(ident)
        return None

    # ---- requests ------------------------------------------------------------------------------------
    def document(self, query: str):
        """(parsed document, validation errors), or (None, Shopify errors) for a syntax error. Cached by
        text: clients send the same query over and over with new variables."""
        with self._lock:
            hit = self._documents.get(query)
            if hit is not None:
                self._documents.move_to_end(query)
                return hit
        try:
            document = parse(query)
        except GraphQLSyntaxError as exc:
            return None, errors.shopify_errors([exc], None)
        result = (document, validate(SCHEMA, document))
        with self._lock:
            self._documents[query] = result
            while len(self._documents) > 256:
                self._documents.popitem(last=False)
        return result

    def throttle_status(self, available: float) -> dict:
        return {"maximumAvailable": BUCKET_SIZE, "currentlyAvailable": int(available), "restoreRate": RESTORE_RATE}

    def handle(self, query: str | None, variables, operation_name: str | None) -> dict:
        """A GraphQL request body's response body (HTTP 200 in every case Shopify answers with 200)."""
        document, problems = self.document(query or "")
        if document is None:
            return {"errors": problems}
        if problems:
            return {"errors": errors.shopify_errors(problems, document)}
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            message = (f'No operation named "{operation_name}"' if operation_name
                       else "An operation name is required")
            return {"errors": [{"message": message}]}
        if operation.operation.value == "subscription":
            return {"errors": [{"message": "Subscriptions are not supported",
                                "locations": errors.locations(operation)}]}
        coerced = get_variable_values(SCHEMA, operation.variable_definitions or (),
                                      variables if isinstance(variables, dict) else {})
        if isinstance(coerced, list):
            types = {v.variable.name.value: _type_text(v.type) for v in operation.variable_definitions or ()}
            return {"errors": errors.shopify_errors(coerced, document, operation, types)}
        roots = [s for s in operation.selection_set.selections if getattr(s, "name", None) is not None]
        if roots and all(s.name.value.startswith("__") and s.name.value != "__typename" for s in roots):
            return self._introspection(document, coerced, operation_name)

        executor = Executor(SCHEMA, document, operation, coerced)
        now = self.state.now()
        ctx = self.context(self.state.read_time("shopify", now), now=now)
        try:
            plans = executor.root_plans()
            requested = executor.requested_cost(plans)
        except PlanError as exc:
            return {"errors": [errors.field_error(exc.message, exc.node, exc.path, "BAD_REQUEST")]}
        except GraphQLError as exc:
            return {"errors": errors.shopify_errors([exc], document, operation)}
        if requested > MAX_QUERY_COST:
            return errors.max_cost_exceeded(requested, MAX_QUERY_COST)
        limited = self.state.rate_limits
        if limited:
            taken, available = self.bucket.try_take(requested)
            if not taken:
                return errors.throttled(requested, self.throttle_status(available))
        data = executor.execute(ctx, plans)
        actual = min(requested, executor.actual_cost(plans, data))
        available = self.bucket.give_back(requested - actual) if limited else BUCKET_SIZE - actual
        body: dict = {}
        if ctx.errors:
            body["errors"] = ctx.errors
        body["data"] = data
        extensions: dict = {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
                                     "throttleStatus": self.throttle_status(available)}}
        if ctx.search:
            extensions["search"] = ctx.search
        body["extensions"] = extensions
        for start in ctx.after_response:
            start()
        return body

    def _introspection(self, document, variables: dict, operation_name: str | None) -> dict:
        result = execute_sync(SCHEMA, document, variable_values=variables, operation_name=operation_name)
        body: dict = {}
        if result.errors:
            body["errors"] = [{"message": e.message} for e in result.errors]
        body["data"] = result.data
        cost = 2
        body["extensions"] = {"cost": {"requestedQueryCost": cost, "actualQueryCost": cost,
                                       "throttleStatus": self.throttle_status(BUCKET_SIZE - cost)}}
        return body


def _type_text(node) -> str:
    kind = node.kind
    if kind == "non_null_type":
        return _type_text(node.type) + "!"
    if kind == "list_type":
        return f"[{_type_text(node.type)}]"
    return node.name.value


# ---- root resolvers --------------------------------------------------------------------------------------
def _root(entity: str):
    return lambda s, a, c: c.runtime.connection(c, entity, a, [entity])


def _count(entity: str, field: str):
    return lambda s, a, c: c.runtime.count(c, entity, a, [field])


def _by_id(kind: str):
    def resolve(s, a, c):
        found = c.runtime.lookup(c, a["id"])
        return found if found is not None and getattr(found, "typename", None) == kind else None
    return resolve


objects.resolvers(
    "QueryRoot",
    customers=_root("customers"),
    orders=_root("orders"),
    products=_root("products"),
    customersCount=_count("customers", "customersCount"),
    ordersCount=_count("orders", "ordersCount"),
    productsCount=_count("products", "productsCount"),
    customer=_by_id("Customer"),
    order=_by_id("Order"),
    product=_by_id("Product"),
    productVariant=_by_id("ProductVariant"),
    bulkOperation=_by_id("BulkOperation"),
    node=lambda s, a, c: c.runtime.lookup(c, a["id"]),
    nodes=lambda s, a, c: [c.runtime.lookup(c, gid) for gid in a["ids"]],
    shop=lambda s, a, c: objects.SHOP,
    events=lambda s, a, c: c.runtime.deletion_connection(c, a, ["events"], "BasicEvent"),
    deletionEvents=lambda s, a, c: c.runtime.deletion_connection(c, a, ["deletionEvents"], "DeletionEvent",
                                                                  a.get("subjectTypes") or ["PRODUCT", "COLLECTION"]),
    currentBulkOperation=lambda s, a, c: c.runtime.bulk.current(),
    bulkOperations=lambda s, a, c: c.runtime.bulk.connection(c, a, ["bulkOperations"]),
)
objects.resolvers(
    "Mutation",
    bulkOperationRunQuery=lambda s, a, c: c.runtime.bulk.run_query(c, a["query"], a["groupObjects"]),
    bulkOperationCancel=lambda s, a, c: c.runtime.bulk.cancel(c, a["id"]),
)
