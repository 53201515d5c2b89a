"""Error bodies as Shopify sends them.

Shopify's GraphQL layer is graphql-ruby: static errors carry its messages, an AST path starting with the
operation ("query" or "query Name") and an `extensions.code` such as undefinedField. graphql-core reports
the same conditions in its own words; `shopify_errors` rewrites them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from graphql import GraphQLError
from graphql.language import ast

RATE_LIMITS_DOC = "https://shopify.dev/api/usage/rate-limits"
UNAUTHORIZED = "[API] Invalid API key or access token (unrecognized login or wrong password)"
MAX_COST_MESSAGE = (
    "Query cost is {cost}, which exceeds the single query max cost limit ({limit}).\n\n"
    "See https://shopify.dev/docs/api/usage/rate-limits for more information on how the\n"
    "cost of a query is calculated.\n\n"
    "To query larger amounts of data with fewer limits, bulk operations should be used instead.\n"
    "See https://shopify.dev/docs/api/usage/bulk-operations/queries for usage details.\n"
)


def throttled(requested: int, throttle_status: dict) -> dict:
    return {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": RATE_LIMITS_DOC}}],
        "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": None,
                                "throttleStatus": throttle_status}},
    }


def max_cost_exceeded(cost: int, limit: int) -> dict:
    return {"errors": [{
        "message": MAX_COST_MESSAGE.format(cost=cost, limit=limit),
        "extensions": {"code": "MAX_COST_EXCEEDED", "cost": cost, "maxCost": limit, "documentation": RATE_LIMITS_DOC},
    }]}


def locations(node) -> list[dict]:
    if node is None or node.loc is None:
        return []
    source = node.loc.source
    line = source.body.count("\n", 0, node.loc.start) + 1
    column = node.loc.start - (source.body.rfind("\n", 0, node.loc.start) + 1) + 1
    return [{"line": line, "column": column}]


def field_error(message: str, node, path: list, code: str) -> dict:
    return {"message": message, "locations": locations(node), "path": path, "extensions": {"code": code}}


# ---- static (parse / validation / variable) errors ---------------------------------------------------
def _operation_label(op: ast.OperationDefinitionNode) -> str:
    kind = op.operation.value
    return f"{kind} {op.name.value}" if op.name else kind


def ast_paths(document: ast.DocumentNode) -> dict[int, list[str]]:
    """graphql-ruby's static-error path of every field and argument node, keyed by id(node)."""
    paths: dict[int, list[str]] = {}

    def walk(selection_set, prefix):
        if selection_set is None:
            return
        for sel in selection_set.selections:
            if isinstance(sel, ast.FieldNode):
                here = [*prefix, (sel.alias or sel.name).value]
                paths[id(sel)] = here
                for arg in sel.arguments or ():
                    paths[id(arg)] = [*here, arg.name.value]
                walk(sel.selection_set, here)
            elif isinstance(sel, ast.InlineFragmentNode):
                label = f"... on {sel.type_condition.name.value}" if sel.type_condition else "..."
                here = [*prefix, label]
                paths[id(sel)] = here
                walk(sel.selection_set, here)
            elif isinstance(sel, ast.FragmentSpreadNode):
                paths[id(sel)] = [*prefix, f"... {sel.name.value}"]

    for definition in document.definitions:
        if isinstance(definition, ast.OperationDefinitionNode):
            label = _operation_label(definition)
            paths[id(definition)] = [label]
            for var in definition.variable_definitions or ():
                paths[id(var)] = [label]
            walk(definition.selection_set, [label])
        elif isinstance(definition, ast.FragmentDefinitionNode):
            label = f"fragment {definition.name.value}"
            paths[id(definition)] = [label]
            walk(definition.selection_set, [label])
    return paths


_Rewrite = Callable[[re.Match, str, dict], tuple[str, dict]]
_REWRITES: list[tuple[re.Pattern, _Rewrite]] = [
    (re.compile(r"^Cannot query field '(\w+)' on type '(\w+)'\."),
     lambda m, op, vt: (f"Field '{m[1]}' doesn't exist on type '{m[2]}'",
                    {"code": "undefinedField", "typeName": m[2], "fieldName": m[1]})),
    (re.compile(r"^Unknown argument '(\w+)' on field '\w+\.(\w+)'\."),
     lambda m, op, vt: (f"Field '{m[2]}' doesn't accept argument '{m[1]}'",
                    {"code": "argumentNotAccepted", "name": m[2], "typeName": "Field", "argumentName": m[1]})),
    (re.compile(r"^Field '(\w+)' argument '(\w+)' of type '.+' is required, but it was not provided\."),
     lambda m, op, vt: (f"Field '{m[1]}' is missing required arguments: {m[2]}",
                    {"code": "missingRequiredArguments", "className": "Field", "name": m[1], "arguments": m[2]})),
    (re.compile(r"^Field '(\w+)' of type '(.+)' must have a selection of subfields\."),
     lambda m, op, vt: (f"Field must have selections (field '{m[1]}' returns {m[2]} but has no selections. "
                    f"Did you mean '{m[1]} {{ ... }}'?)",
                    {"code": "selectionMismatch", "nodeName": f"field '{m[1]}'", "typeName": m[2]})),
    (re.compile(r"^Field '(\w+)' must not have a selection since type '(.+)' has no subfields\."),
     lambda m, op, vt: (f"Selections can't be made on scalars (field '{m[1]}' returns {m[2]} but has selections [...])",
                    {"code": "selectionMismatch", "nodeName": f"field '{m[1]}'", "typeName": m[2]})),
    (re.compile(r"^Variable '\$(\w+)' is never used"),
     lambda m, op, vt: (f"Variable ${m[1]} is declared by {op} but not used",
                    {"code": "variableNotUsed", "variableName": m[1]})),
    (re.compile(r"^Variable '\$(\w+)' is not defined"),
     lambda m, op, vt: (f"Variable ${m[1]} is used by {op} but not declared",
                    {"code": "variableNotDefined", "variableName": m[1]})),
    (re.compile(r"^Variable '\$(\w+)' of (?:required |non-null )?type '(.+?)' (?:was not provided|must not be null)"),
     lambda m, op, vt: (f"Variable ${m[1]} of type {m[2]} was provided invalid value",
                    {"code": "variableMismatch", "value": None,
                     "problems": [{"path": [], "explanation": "Expected value to not be null"}]})),
    (re.compile(r"^Variable '\$(\w+)' got invalid value (.+?); (.+)$", re.S),
     lambda m, op, vt: (f"Variable ${m[1]} of type {vt.get(m[1], '?')} was provided invalid value",
                    {"code": "variableMismatch", "value": _literal(m[2]),
                     "problems": [{"path": [], "explanation": m[3].rstrip(".")}]})),
]


def _literal(text: str):
    text = text.strip()
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1]
    try:
        return int(text)
    except ValueError:
        return text


def shopify_errors(errors: list[GraphQLError], document: ast.DocumentNode | None,
                   operation: ast.OperationDefinitionNode | None = None,
                   variable_types: dict[str, str] | None = None) -> list[dict]:
    paths = ast_paths(document) if document is not None else {}
    op_label = "anonymous query"
    if operation is not None:
        op_label = operation.name.value if operation.name else f"anonymous {operation.operation.value}"
    out = []
    for err in errors:
        message, extensions = err.message, None
        for pattern, rewrite in _REWRITES:
            m = pattern.match(err.message)
            if m:
                message, extensions = rewrite(m, op_label, variable_types or {})
                break
        if err.message.startswith("Syntax Error: "):
            loc = err.locations[0] if err.locations else None
            where = f" at [{loc.line}, {loc.column}]" if loc else ""
            message = err.message[len("Syntax Error: "):].rstrip(".") + where
        entry: dict = {"message": message}
        if err.locations:
            entry["locations"] = [{"line": loc.line, "column": loc.column} for loc in err.locations]
        node = err.nodes[0] if err.nodes else None
        if node is not None and id(node) in paths:
            entry["path"] = paths[id(node)]
        if extensions:
            entry["extensions"] = extensions
        out.append(entry)
    return out
