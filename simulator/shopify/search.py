"""Shopify's `query:` search syntax, as far as connectors use it, evaluated over numpy columns.

Grammar (https://shopify.dev/docs/api/usage/search-syntax): terms separated by whitespace are ANDed; `AND`, `OR`
and `NOT` (upper case) are connectives, `-term` negates, parentheses group. A term is free text or
`field:value` with an optional comparator (`:<`, `:<=`, `:>`, `:>=`); values may be quoted with ' or ".

Unquoted values end at the next colon, as on Shopify: `updated_at:>=2026-01-01T10:20:30Z` is read as
`updated_at:>=2026-01-01T10` (an hour-precision time in the shop's time zone) followed by a second term
`20:30Z` whose field `20` does not exist. Shopify answers such queries without failing and reports the
unknown field only in `extensions.search`; so does the simulator. Quote timestamps.

Terms on fields the entity does not support are ignored and reported the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

COMPARATORS = (">=", "<=", ">", "<")
RANGE_NAMES = {">": "range_gt", ">=": "range_gte", "<": "range_lt", "<=": "range_lte"}
INVALID_FIELD = "Invalid search field for this query."

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATE_HOUR = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})$")


@dataclass
class Term:
    field: str | None
    op: str  # "=" or one of COMPARATORS
    value: str
    quoted: bool

    def parsed(self) -> dict:
        name = self.field or "default"
        if self.op == "=":
            return {"field": name, "match_all": self.value}
        return {"field": name, RANGE_NAMES[self.op]: _display_value(self)}


@dataclass
class Not:
    child: object

    def parsed(self) -> dict:
        return {"not": self.child.parsed()}


@dataclass
class BoolOp:
    op: str  # "and" | "or"
    children: list = field(default_factory=list)

    def parsed(self) -> dict:
        return {self.op: [c.parsed() for c in self.children]}


class SearchSyntaxError(ValueError):
    pass


# ---- tokenizer and parser -------------------------------------------------------------------------
def _tokens(text: str) -> list[tuple[str, object]]:
    """('(' | ')' | 'AND' | 'OR' | 'NOT' | 'TERM', payload); payload of TERM is (negated, Term)."""
    out: list[tuple[str, object]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace() or ch == ":":  # a stray colon separates terms, as after a colon-cut value
            i += 1
            continue
        if ch in "()":
            out.append((ch, None))
            i += 1
            continue
        negated = ch == "-" and i + 1 < n and not text[i + 1].isspace()
        if negated:
            i += 1
        start = i
        while i < n and not text[i].isspace() and text[i] not in "():\"'":
            i += 1
        word = text[start:i]
        if i < n and text[i] == ":" and word:
            i += 1
            op = "="
            for comp in COMPARATORS:
                if text.startswith(comp, i):
                    op, i = comp, i + len(comp)
                    break
            value, quoted, i = _value(text, i)
            out.append(("TERM", (negated, Term(word, op, value, quoted))))
            continue
        if i < n and text[i] in "\"'" and not word:
            value, quoted, i = _value(text, i)
            out.append(("TERM", (negated, Term(None, "=", value, quoted))))
            continue
        if not negated and word in ("AND", "OR", "NOT"):
            out.append((word, None))
            continue
        if word:
            out.append(("TERM", (negated, Term(None, "=", word, False))))
        else:
            i += 1
    return out


def _value(text: str, i: int) -> tuple[str, bool, int]:
    n = len(text)
    if i < n and text[i] in "\"'":
        quote, i = text[i], i + 1
        chars = []
        while i < n and text[i] != quote:
            if text[i] == "\\" and i + 1 < n:
                i += 1
            chars.append(text[i])
            i += 1
        if i >= n:
            raise SearchSyntaxError(f"unterminated quoted value in {text!r}")
        return "".join(chars), True, i + 1
    start = i
    while i < n and not text[i].isspace() and text[i] not in "():":
        i += 1
    return text[start:i], False, i


class _Parser:
    def __init__(self, tokens):
        self.tokens = tokens
        self.pos = 0

    def peek(self):
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def take(self):
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expr(self):
        children = [self.conjunction()]
        while self.peek() == "OR":
            self.take()
            children.append(self.conjunction())
        children = [c for c in children if c is not None]
        if not children:
            return None
        return children[0] if len(children) == 1 else BoolOp("or", children)

    def conjunction(self):
        children = [self.unary()]
        while self.peek() not in (None, "OR", ")"):
            if self.peek() == "AND":
                self.take()
            children.append(self.unary())
        children = [c for c in children if c is not None]
        if not children:
            return None
        return children[0] if len(children) == 1 else BoolOp("and", children)

    def unary(self):
        kind = self.peek()
        if kind is None:
            return None
        if kind == "NOT":
            self.take()
            child = self.unary()
            return Not(child) if child is not None else None
        if kind == "(":
            self.take()
            inner = self.expr()
            if self.peek() == ")":
                self.take()
            return inner
        if kind == ")":
            self.take()
            return None
        _, (negated, term) = self.take()
        return Not(term) if negated else term


def parse(text: str | None):
    """The query's syntax tree, or None for an empty query."""
    if text is None or not text.strip():
        return None
    return _Parser(_tokens(text)).expr()


# ---- values -----------------------------------------------------------------------------------------
def parse_time(term: Term, now: int) -> tuple[int, int] | None:
    """[start, end) epoch seconds a time value denotes (a second, an hour or a day), None if unreadable."""
    value = term.value.strip()
    if value.lower() == "now":
        return now, now + 1
    m = _DATE.match(value)
    if m:
        start = int(datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=UTC).timestamp())
        return start, start + 86_400
    m = _DATE_HOUR.match(value)
    if m:
        start = int(datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), tzinfo=UTC).timestamp())
        return start, start + 3_600
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    start = int(dt.timestamp())
    return start, start + 1


def _display_value(term: Term) -> str:
    """How Shopify echoes a range value in extensions.search: times normalized, shop-local when zoneless."""
    span = parse_time(term, 0)
    if span is None or term.value.lower() == "now":
        return term.value
    zoned = term.value.endswith("Z") or bool(re.search(r"[+-]\d{2}:?\d{2}$", term.value))
    dt = datetime.fromtimestamp(span[0], UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ") if zoned else dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")


# ---- evaluation ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldSpec:
    """A searchable field: kind is 'time', 'int' or 'text'; column gives its values for the listing."""

    kind: str
    column: Callable[[], np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)  # accepted value -> stored value (text fields)


@dataclass
class Evaluation:
    mask: np.ndarray | None  # None: no constraint
    warnings: list[dict]


def evaluate(tree, fields: dict[str, FieldSpec], size: int, now: int) -> Evaluation:
    warnings: list[dict] = []
    mask = _eval(tree, fields, size, now, warnings) if tree is not None else None
    return Evaluation(mask, warnings)


def _eval(node, fields, size, now, warnings) -> np.ndarray | None:
    if isinstance(node, BoolOp):
        masks = [m for m in (_eval(c, fields, size, now, warnings) for c in node.children) if m is not None]
        if not masks:
            return None
        out = masks[0].copy()
        for m in masks[1:]:
            if node.op == "and":
                out &= m
            else:
                out |= m
        return out
    if isinstance(node, Not):
        inner = _eval(node.child, fields, size, now, warnings)
        return None if inner is None else ~inner
    return _eval_term(node, fields, size, now, warnings)


def _eval_term(term: Term, fields, size, now, warnings) -> np.ndarray | None:
    spec = fields.get(term.field) if term.field is not None else None
    if spec is None:
        warnings.append({"field": term.field or "default", "message": INVALID_FIELD, "code": "invalid_field"})
        return None
    column = spec.column()
    if spec.kind == "time":
        span = parse_time(term, now)
        if span is None:
            warnings.append({"field": term.field, "message": f"Invalid value '{term.value}' for a date field.",
                             "code": "invalid_value"})
            return None
        start, end = span
        return _compare(column, term.op, start, end)
    if spec.kind == "int":
        digits = term.value.rsplit("/", 1)[-1]
        if not digits.isdigit():
            warnings.append({"field": term.field, "message": f"Invalid value '{term.value}' for a numeric field.",
                             "code": "invalid_value"})
            return None
        value = int(digits)
        return _compare(column, term.op, value, value + 1)
    value = spec.aliases.get(term.value.lower(), term.value.lower())
    if value == "*":
        return np.ones(size, dtype=bool)
    return column == value


def _compare(column: np.ndarray, op: str, start: int, end: int) -> np.ndarray:
    if op == ">=":
        return column >= start
    if op == ">":
        return column >= end
    if op == "<":
        return column < start
    if op == "<=":
        return column < end
    return (column >= start) & (column < end)


def search_extension(path: list[str], query: str, tree, warnings: list[dict]) -> dict:
    """One entry of extensions.search, as Shopify reports a query it could not fully apply."""
    return {"path": path, "query": query, "parsed": tree.parsed() if tree is not None else {}, "warnings": warnings}
