"""Executes validated operations over the object model, and prices them as Shopify does.

graphql-core parses, validates and coerces (so errors are GraphQL's own); execution is a lean walk over
precomputed field plans, because a page of 250 orders with their line items is tens of thousands of fields
and graphql-core's general executor spends more time per field than this simulator's budget allows. The
same plans drive bulk operations, where nested connections become separate JSONL lines.

Query cost (https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits#cost-calculation): scalars
and enums 0, objects 1, a mutation 10, an interface the maximum over its possible selections, a connection
2 plus a multiplier of its page size (`first` / `last`) times the cost of one node. Shopify says it scales
connections logarithmically; the multiplier floor(2 ln max(2, n)) - 11 at n = 250, 4 at n = 10 - reproduces
the requested costs measured on live shops: 250 orders with plain fields 13, with
`lineItems(first: 250) { nodes { id } }` 156, both twice in one document 862 (rejected thrice at 1293).
PageInfo, edges and money objects (MoneyV2, MoneyBag) cost nothing, as those measurements imply. The
actual cost prices each connection by the nodes it returned (its most expensive node times the multiplier
of their count); the bucket is charged the actual cost, admission needs the requested one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

from graphql import (
    FieldNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    get_named_type,
    is_abstract_type,
    is_enum_type,
    is_leaf_type,
)
from graphql.execution.collect_fields import collect_fields, collect_sub_fields
from graphql.execution.values import get_argument_values

from simulator.shopify.objects import RESOLVERS, FieldError

MAX_PAGE_SIZE = 250
MUTATION_COST = 10
FREE_TYPES = frozenset({"PageInfo", "MoneyV2", "MoneyBag"})
PAGE_SIZE_HINT = "To query larger amounts of data with fewer limits, bulk operations should be used instead."


def multiplier(size: int) -> int:
    """Shopify's logarithmic page-size multiplier for connection costs."""
    if size <= 0:
        return 0
    return int(math.floor(2 * math.log(max(2, size))))


class PlanError(Exception):
    """A request Shopify rejects before running it (page size out of range)."""

    def __init__(self, message: str, node: FieldNode, path: list[str]):
        super().__init__(message)
        self.message, self.node, self.path = message, node, path


class _Null(Exception):
    """A non-null field resolved to null: its parent becomes null in turn (GraphQL null propagation)."""


@dataclass
class Plan:
    key: str
    name: str
    nodes: list[FieldNode]
    args: dict
    rtype: object  # the field's GraphQL output type
    named: object  # the unwrapped named type
    nonnull: bool
    is_connection: bool
    resolver: object
    subs: dict  # concrete object type name -> list[Plan]
    leaf: bool = False  # returns a scalar or enum (or a list of them)
    own_cost: int = 1  # 0 for free object types


_encode_str = json.encoder.py_encode_basestring if json.encoder.c_encode_basestring is None \
    else json.encoder.c_encode_basestring


def _encode(value) -> str:
    """JSON text of a leaf value, as json.dumps(ensure_ascii=False) writes it."""
    kind = type(value)
    if kind is str:
        return _encode_str(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_STRING_SCALARS = frozenset({"String", "ID", "DateTime", "Decimal", "Money", "UnsignedInt64", "URL", "HTML",
                             "FormattedString"})


def _leaf_json(plan: Plan, var: str) -> str:
    """A JSON-text expression for a non-null leaf value of the plan's declared type."""
    rtype = plan.rtype.of_type if isinstance(plan.rtype, GraphQLNonNull) else plan.rtype
    if isinstance(rtype, GraphQLList):
        return f"_enc({var})"
    name = plan.named.name
    if name in _STRING_SCALARS:
        return f"_str({var})"
    if name == "Int":
        return f"str({var})"
    if name == "Boolean":
        return f"('true' if {var} else 'false')"
    if is_enum_type(plan.named):
        return f"'\"' + {var} + '\"'"
    return f"_enc({var})"


def _path_list(path) -> list:
    out = []
    while path is not None:
        path, key = path
        out.append(key)
    return out[::-1]


class Executor:
    def __init__(self, schema: GraphQLSchema, document, operation: OperationDefinitionNode, variables: dict):
        self.schema = schema
        self.operation = operation
        self.variables = variables
        self.fragments = {d.name.value: d for d in document.definitions if d.kind == "fragment_definition"}
        self.root_type = schema.mutation_type if operation.operation.value == "mutation" else schema.query_type
        self._compiled: dict[tuple[int, bool], tuple[list, object]] = {}
        self._object_plans: dict[int, tuple[list, list]] = {}

    # ---- planning -------------------------------------------------------------------------------------
    def root_plans(self) -> list[Plan]:
        fields = collect_fields(self.schema, self.fragments, self.variables, self.root_type,
                                self.operation.selection_set)
        return self._plans(self.root_type, fields)

    def sub_plans(self, plan: Plan, object_type: GraphQLObjectType) -> list[Plan]:
        subs = plan.subs.get(object_type.name)
        if subs is None:
            fields = collect_sub_fields(self.schema, self.fragments, self.variables, object_type, plan.nodes)
            subs = plan.subs[object_type.name] = self._plans(object_type, fields)
        return subs

    def _plans(self, parent: GraphQLObjectType, fields: dict[str, list[FieldNode]]) -> list[Plan]:
        table = RESOLVERS.get(parent.name, {})
        plans = []
        for key, nodes in fields.items():
            name = nodes[0].name.value
            if name == "__typename":
                plans.append(Plan(key, name, nodes, {}, None, None, True, False, None, {}, leaf=True, own_cost=0))
                continue
            field_def = parent.fields[name]
            named = get_named_type(field_def.type)
            plans.append(Plan(
                key=key, name=name, nodes=nodes, args=get_argument_values(field_def, nodes[0], self.variables),
                rtype=field_def.type, named=named, nonnull=isinstance(field_def.type, GraphQLNonNull),
                is_connection=named.name.endswith("Connection"), resolver=table[name], subs={},
                leaf=is_leaf_type(named),
                own_cost=0 if named.name in FREE_TYPES or named.name.endswith("Edge") else 1,
            ))
        return plans

    def concrete_types(self, plan: Plan) -> list[GraphQLObjectType]:
        types = plan.subs.get(None)
        if types is None:
            named = plan.named
            types = plan.subs[None] = list(self.schema.get_possible_types(named)) if is_abstract_type(named) \
                else [named]
        return types

    # ---- cost -----------------------------------------------------------------------------------------
    def requested_cost(self, plans: list[Plan], parent=None, path: tuple = (), bulk: bool = False) -> int:
        """Shopify's requested (worst-case) cost; raises PlanError for page sizes Shopify refuses."""
        parent = parent or self.root_type
        total = 0
        for plan in plans:
            if plan.leaf:
                continue
            if parent is self.schema.mutation_type:
                total += MUTATION_COST
                continue
            where = [*path, plan.key]
            per_type = [self.requested_cost(self.sub_plans(plan, t), t, tuple(where), bulk)
                        for t in self.concrete_types(plan)]
            children = max(per_type) if per_type else 0
            if plan.is_connection:
                total += 2 + multiplier(self._page_size(plan, where, bulk)) * children
            else:
                total += plan.own_cost + children
        return total

    def _page_size(self, plan: Plan, path: list, bulk: bool) -> int:
        first, last = plan.args.get("first"), plan.args.get("last")
        if bulk:
            return MAX_PAGE_SIZE
        for name, value in (("first", first), ("last", last)):
            if value is not None and value > MAX_PAGE_SIZE:
                raise PlanError(f"{name} cannot exceed {MAX_PAGE_SIZE}. {PAGE_SIZE_HINT}", plan.nodes[0], path)
            if value is not None and value < 0:
                raise PlanError(f"{name} cannot be negative.", plan.nodes[0], path)
        if first is None and last is None:
            raise PlanError("you must provide one of first or last", plan.nodes[0], path)
        return first if first is not None else last

    def actual_cost(self, plans: list[Plan], data: dict | None, parent=None) -> int:
        """The cost of what was returned: connections priced by the nodes they actually hold."""
        parent = parent or self.root_type
        if data is None:
            return 0
        total = 0
        for plan in self._objects_in(plans):
            if parent is self.schema.mutation_type:
                total += MUTATION_COST
                continue
            value = data.get(plan.key)
            if value is None:
                continue
            if plan.is_connection:
                per_item = self._connection_items(plan, value)
                total += 2 + multiplier(len(per_item)) * max(per_item, default=0)
            elif isinstance(value, list):
                total += sum(self._object_cost(plan, item) for item in value)
            else:
                total += self._object_cost(plan, value)
        return total

    def _objects_in(self, plans: list[Plan]) -> list[Plan]:
        """The plans of a selection that can cost anything (leaves and free objects such as money never do)."""
        key = id(plans)
        hit = self._object_plans.get(key)
        if hit is None:
            hit = self._object_plans[key] = (plans, [p for p in plans if not p.leaf and not self._free(p)])
        return hit[1]

    def _free(self, plan: Plan) -> bool:
        if plan.is_connection or plan.own_cost:
            return False
        return all(sub.leaf or self._free(sub) for t in self.concrete_types(plan) for sub in self.sub_plans(plan, t))

    def _object_cost(self, plan: Plan, value) -> int:
        if value is None:
            return 0
        types = self.concrete_types(plan)
        if len(types) == 1:
            return plan.own_cost + self.actual_cost(self.sub_plans(plan, types[0]), value, types[0])
        return plan.own_cost + max(self.actual_cost(self.sub_plans(plan, t), value, t) for t in types)

    def _connection_items(self, plan: Plan, value: dict) -> list[int]:
        conn_type = plan.named
        per_item: list[int] = []
        for sub in self.sub_plans(plan, conn_type):
            items = value.get(sub.key)
            if sub.name not in ("edges", "nodes") or not items:
                continue
            if len(per_item) < len(items):
                per_item.extend([0] * (len(items) - len(per_item)))
            for k, item in enumerate(items):
                per_item[k] += self._object_cost(sub, item)
        return per_item

    # ---- execution ------------------------------------------------------------------------------------
    def execute(self, ctx, plans: list[Plan], root=None) -> dict | None:
        try:
            return self.exec_object(ctx, self.root_type, plans, root, None)
        except _Null:
            return None

    def exec_object(self, ctx, object_type: GraphQLObjectType, plans: list[Plan], source, path) -> dict:
        out = {}
        for plan in plans:
            if plan.resolver is None:
                out[plan.key] = object_type.name
                continue
            where = (path, plan.key)
            try:
                value = plan.resolver(source, plan.args, ctx)
                if plan.leaf and value is not None:
                    out[plan.key] = value
                    continue
                if ctx.bulk and plan.is_connection and path is not None:
                    ctx.pending.append((plan, value))
                    continue
                out[plan.key] = self.complete(ctx, plan, plan.rtype, value, where)
            except FieldError as exc:
                ctx.error(exc.message, plan.nodes[0], _path_list(where), exc.code)
                if plan.nonnull:
                    raise _Null from None
                out[plan.key] = None
            except _Null:
                if plan.nonnull:
                    raise
                out[plan.key] = None
        return out

    def complete(self, ctx, plan: Plan, rtype, value, path):
        if isinstance(rtype, GraphQLNonNull):
            if value is None:
                ctx.error(f"Cannot return null for non-nullable field {plan.name}.", plan.nodes[0], _path_list(path),
                          "INTERNAL_SERVER_ERROR")
                raise _Null
            result = self.complete(ctx, plan, rtype.of_type, value, path)
            if result is None:
                raise _Null
            return result
        if value is None:
            return None
        if isinstance(rtype, GraphQLList):
            inner = rtype.of_type
            out = []
            for k, item in enumerate(value):
                try:
                    out.append(self.complete(ctx, plan, inner, item, (path, k)))
                except _Null:
                    if isinstance(inner, GraphQLNonNull):
                        raise
                    out.append(None)
            return out
        if plan.leaf:
            return value
        object_type = rtype if isinstance(rtype, GraphQLObjectType) else self.schema.get_type(value.typename)
        return self.render(ctx, object_type, self.sub_plans(plan, object_type), value, path)

    # ---- compiled renderers ---------------------------------------------------------------------------
    def render(self, ctx, object_type: GraphQLObjectType, plans: list[Plan], source, path):
        """An object's result via its compiled renderer; on any error, re-run generically so errors get
        their paths and nulls propagate as GraphQL says (resolvers below the root have no side effects)."""
        fn = self.compiled(object_type, plans, as_json=False)
        try:
            return fn(source, ctx)
        except Exception:  # rerun generically: it reports the error at its path
            return self.exec_object(ctx, object_type, plans, source, path)

    def compiled(self, object_type: GraphQLObjectType, plans: list[Plan], as_json: bool):
        key = (id(plans), as_json)
        hit = self._compiled.get(key)
        if hit is None:
            hit = self._compiled[key] = (plans, self._compile(object_type, plans, as_json))
        return hit[1]

    def _compile(self, object_type: GraphQLObjectType, plans: list[Plan], as_json: bool):
        """Python source specialised to one selection: one resolver call per field, nested single objects
        inlined, the result built as one expression (a dict display, or JSON text for bulk lines)."""
        env: dict = {"_enc": _encode, "_str": _encode_str, "_Bad": _Null}
        body = ["def render(src, ctx):"]
        result = self._emit(object_type, plans, "src", "", "    ", body, env, as_json)
        body.append(f"    return {result}")
        exec("\n".join(body), env)  # source built from the validated schema's names only
        return env["render"]

    def _emit(self, object_type: GraphQLObjectType, plans: list[Plan], src: str, prefix: str, indent: str,
              body: list[str], env: dict, as_json: bool) -> str:
        """Appends the statements that resolve one object's fields; returns the expression of its result."""
        items: list[tuple[str, str, str]] = []  # (name suffix, response key, value expression)
        null = "'null'" if as_json else "None"
        for k, plan in enumerate(plans):
            n = f"{prefix}{k}"
            if plan.resolver is None:
                env[f"T{n}"] = object_type.name
                items.append((n, plan.key, f"_str(T{n})" if as_json else f"T{n}"))
                continue
            v = f"v{n}"
            env[f"R{n}"], env[f"A{n}"] = plan.resolver, plan.args
            body.append(f"{indent}{v} = R{n}({src}, A{n}, ctx)")
            if plan.nonnull:
                body.append(f"{indent}if {v} is None: raise _Bad")
            if as_json and plan.is_connection:
                env[f"P{n}"] = plan
                body.append(f"{indent}ctx.pending.append((P{n}, {v}))")
                continue
            single = plan.rtype.of_type if isinstance(plan.rtype, GraphQLNonNull) else plan.rtype
            if plan.leaf:
                expr = _leaf_json(plan, v) if as_json else v
                if not plan.nonnull:
                    expr = f"({null} if {v} is None else {expr})"
            elif isinstance(single, GraphQLObjectType):
                out, sub = f"o{n}", self.sub_plans(plan, single)
                if plan.nonnull:
                    body.append(f"{indent}{out} = " + self._emit(single, sub, v, f"{n}_", indent, body, env, as_json))
                else:
                    body.append(f"{indent}if {v} is None:")
                    body.append(f"{indent}    {out} = {null}")
                    body.append(f"{indent}else:")
                    inner = self._emit(single, sub, v, f"{n}_", indent + "    ", body, env, as_json)
                    body.append(f"{indent}    {out} = {inner}")
                expr = out
            else:
                expr = self._value_expr(plan, plan.rtype, v, env, f"S{n}", as_json, 0)
                if not plan.nonnull:
                    expr = f"({null} if {v} is None else {expr})"
            items.append((n, plan.key, expr))
        if not as_json:
            for n, key, _ in items:
                env[f"K{n}"] = key
            return "{" + ", ".join(f"K{n}: {expr}" for n, _, expr in items) + "}"
        if not items:
            return "'{}'"
        pieces = []
        for position, (n, key, expr) in enumerate(items):
            env[f"L{n}"] = ("{" if position == 0 else ",") + json.dumps(key) + ":"
            pieces.append(f"L{n} + {expr}")
        return " + ".join(pieces) + " + '}'"

    def _value_expr(self, plan: Plan, rtype, var: str, env: dict, name: str, as_json: bool, depth: int) -> str:
        if isinstance(rtype, GraphQLNonNull):
            return self._value_expr(plan, rtype.of_type, var, env, name, as_json, depth)
        if isinstance(rtype, GraphQLList):
            item = f"x{depth}"
            inner = self._value_expr(plan, rtype.of_type, item, env, name, as_json, depth + 1)
            if as_json:
                return f"'[' + ','.join('null' if {item} is None else {inner} for {item} in {var}) + ']'"
            return f"[None if {item} is None else {inner} for {item} in {var}]"
        if isinstance(rtype, GraphQLObjectType):
            env[name] = self.compiled(rtype, self.sub_plans(plan, rtype), as_json)
            return f"{name}({var}, ctx)"
        table = {t.name: self.compiled(t, self.sub_plans(plan, t), as_json) for t in self.concrete_types(plan)}
        env[name] = table
        return f"{name}[{var}.typename]({var}, ctx)"

    # ---- bulk -----------------------------------------------------------------------------------------
    def node_plans(self, plan: Plan) -> tuple[GraphQLObjectType, list[Plan]] | None:
        """For a connection plan: the node type and the plans selected on each node (edges.node or nodes)."""
        conn_type = plan.named
        for sub in self.sub_plans(plan, conn_type):
            if sub.name == "edges":
                edge_type = sub.named
                for inner in self.sub_plans(sub, edge_type):
                    if inner.name == "node" and isinstance(inner.named, GraphQLObjectType):
                        return inner.named, self.sub_plans(inner, inner.named)
            if sub.name == "nodes" and isinstance(sub.named, GraphQLObjectType):
                return sub.named, self.sub_plans(sub, sub.named)
        return None

    def connection_shape(self, plan: Plan, depth: int = 1) -> Iterator[int]:
        """Depths of the connections under (and including) a connection plan, for bulk query limits."""
        yield depth
        found = self.node_plans(plan)
        if found is None:
            return
        node_type, plans = found
        yield from self._nested_shape(plans, node_type, depth)

    def _nested_shape(self, plans: list[Plan], parent, depth: int) -> Iterator[int]:
        for sub in plans:
            if sub.leaf:
                continue
            if sub.is_connection:
                yield from self.connection_shape(sub, depth + 1)
            elif isinstance(sub.named, GraphQLObjectType):
                yield from self._nested_shape(self.sub_plans(sub, sub.named), sub.named, depth)
