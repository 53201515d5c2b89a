"""Real-history mode: a world whose customers, products and orders come from a shop's exported transactions.

The input is a CSV with one row per order line (think of the UCI "Online Retail II" export). Rows that
cannot be used are counted per reason in the world's report, never dropped silently; problems that stop the
load raise TransactionsFileError. What the file does not say (names, engagement, time zones, ...) is derived
deterministically from the seed and the file, and the marketing side (accounts, CRM contacts, ESP profiles,
consent, email and onsite events) is synthesized from the loaded commerce by `complete_world`, exactly as
for a generated world.

Everything is columnar (pyarrow reads and does the string work, numpy groups), so a file of a million rows
loads in seconds. The same file and seed give the same world.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from simulator import catalog
from simulator.generate import (
    PRODUCT_ID_BASE,
    VARIANT_ID_BASE,
    build_orders_from_lines,
    complete_world,
    rng_for,
)
from simulator.model import (
    ACCOUNT,
    DAY,
    DEFAULT_NOW,
    HOUR,
    N_CATEGORIES,
    NEVER,
    YEAR_DAYS,
    Orders,
    Persons,
    Products,
    WorldConfig,
    WorldParts,
    iso,
    parse_time,
)

REQUIRED_COLUMNS = ("customer", "order_id", "ordered_at", "product_id", "product_title", "quantity", "unit_price")
OPTIONAL_COLUMNS = ("category", "currency", "country")

# Why rows are rejected. A row is counted once, under the first reason that applies in this order: a row that
# cannot be parsed says nothing reliable, and a cancelled order is rejected as a whole whatever else is wrong.
REJECT_REASONS = (
    "malformed_row",  # not as many fields as the header
    "bad_date",  # ordered_at empty, not a date, or before 1990 or after 2099
    "bad_number",  # quantity or unit_price not a number, a fractional quantity, or an absurd magnitude
    "missing_id",  # order_id or product_id empty
    "cancelled",  # order_id starting with "C", or an order whose net total is negative (a return)
    "no_customer",  # customer empty (a guest checkout the file cannot attribute)
    "non_positive_quantity",
    "non_positive_price",  # unit price below one cent
)
_USED = -1

# Ids that are not emails get an address on a reserved domain (RFC 2606) that can never be delivered to.
SYNTHETIC_EMAIL_DOMAIN = "example.invalid"

# Beyond these, a quantity, a price or a date is a typo or an overflow rather than a sale (and a stray year
# 0201 would stretch the synthesized campaign calendar over centuries).
MAX_QUANTITY = 10_000_000
MAX_UNIT_PRICE = 1_000_000_000
EARLIEST, LATEST = parse_time("1990-01-01T00:00:00Z"), parse_time("2100-01-01T00:00:00Z")

# Co-purchases are counted between lines at most this far apart in an order: exact for orders of up to
# COMPANION_WINDOW + 1 distinct products, and bounded work for wholesale orders of hundreds of lines.
COMPANION_WINDOW = 8

_SNIFF_BYTES = 1 << 16
_DELIMITERS = ",;\t|"
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_TIME_FORMATS_TAIL = ("%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y")
_MONTH_FIRST = ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y",
                "%m/%d/%y %H:%M", "%m/%d/%y %H:%M:%S", "%m/%d/%y") + _TIME_FORMATS_TAIL
_DAY_FIRST = tuple(f.replace("%m/%d/", "%d/%m/") for f in _MONTH_FIRST)

_COUNTRY_ALIASES = {
    "usa": "US", "u.s.a.": "US", "u.s.": "US", "united states of america": "US", "america": "US",
    "uk": "GB", "u.k.": "GB", "great britain": "GB", "britain": "GB", "england": "GB", "scotland": "GB",
    "wales": "GB", "northern ireland": "GB", "channel islands": "GB",
    "deutschland": "DE", "allemagne": "DE",
}


class TransactionsFileError(ValueError):
    """The transactions file cannot be loaded at all (missing, not a CSV, wrong columns, nothing usable)."""


@dataclass
class Transactions:
    """The usable rows of a transactions file, in file order, and the load report."""

    customer: pa.ChunkedArray  # the person key: a lower-cased email, or the id as written ("123.0" -> "123")
    customer_raw: pa.ChunkedArray  # the file's value, trimmed
    is_email: np.ndarray
    order_id: pa.ChunkedArray
    product_id: pa.ChunkedArray
    product_title: pa.ChunkedArray
    category: pa.ChunkedArray | None
    country: pa.ChunkedArray | None
    time: np.ndarray  # epoch seconds UTC; times without an offset are taken as UTC
    quantity: np.ndarray
    unit_price_cents: np.ndarray
    report: dict

    @property
    def n(self) -> int:
        return len(self.time)


def load_world_parts(path: str | Path, config: WorldConfig) -> WorldParts:
    """The parts of a shop's real-history world (World.from_transactions): its customers, products and orders
    from the file at path.

    The timeline is fitted to the data: it starts on the day of the first order and "now" is the day after
    the last one, unless config.now was set to something other than the default.
    """
    return build_world_parts(load_transactions(path), config)


# ---- reading and validating the file -----------------------------------------------------------------
def load_transactions(path: str | Path) -> Transactions:
    path = Path(path)
    col, rows, malformed = _read_csv(path)

    times = _per_distinct(col["ordered_at"], _parse_times)
    quantity = _per_distinct(col["quantity"], _parse_numbers)
    price = _per_distinct(col["unit_price"], _parse_numbers)
    quantity_ok = np.isfinite(quantity) & (np.abs(quantity) <= MAX_QUANTITY) & (quantity == np.round(quantity))
    price_ok = np.isfinite(price) & (np.abs(price) <= MAX_UNIT_PRICE)
    quantity = np.where(quantity_ok, quantity, 0).astype(np.int64)
    cents = np.round(np.where(price_ok, price, 0) * 100).astype(np.int64)

    order_id, product_id, customer = col["order_id"], col["product_id"], col["customer"]
    order_code = pc.dictionary_encode(order_id).combine_chunks().indices.to_numpy()
    net = np.bincount(order_code, weights=(quantity * cents).astype(np.float64))  # unparsed numbers count 0
    reason = np.select(
        [(times < EARLIEST) | (times >= LATEST),  # unparseable dates are int64 min
         ~(quantity_ok & price_ok),
         _flag(pc.equal(order_id, "")) | _flag(pc.equal(product_id, "")),
         _flag(pc.starts_with(order_id, "C")) | (net[order_code] < 0),
         _flag(pc.equal(customer, "")),
         quantity <= 0,
         cents <= 0],
        np.arange(1, len(REJECT_REASONS)), default=_USED)  # 0, malformed_row, has no row to point at

    counts = np.bincount(reason[reason != _USED], minlength=len(REJECT_REASONS))
    counts[0] = malformed
    used = reason == _USED
    rows_used = int(used.sum())
    report = {
        "rows_read": rows + malformed,
        "rows_used": rows_used,
        "rejected": {name: int(c) for name, c in zip(REJECT_REASONS, counts, strict=True)},
        # prices are taken as the shop currency whatever this says; it is reported so a mix can be noticed
        "currencies": _value_counts(col["currency"], used) if "currency" in col else {},
    }
    if rows_used == 0:
        rejected = ", ".join(f"{k} {v}" for k, v in report["rejected"].items() if v)
        raise TransactionsFileError(f"{path}: no usable rows among {report['rows_read']} ({rejected})")

    mask = pa.array(used)
    is_email = _flag(pc.match_substring_regex(customer, _EMAIL))
    key = pc.if_else(pa.array(is_email), pc.utf8_lower(customer),
                     pc.replace_substring_regex(customer, r"^(\d+)\.0+$", r"\1"))
    return Transactions(
        customer=key.filter(mask), customer_raw=customer.filter(mask), is_email=is_email[used],
        order_id=order_id.filter(mask), product_id=product_id.filter(mask),
        product_title=col["product_title"].filter(mask),
        category=col["category"].filter(mask) if "category" in col else None,
        country=col["country"].filter(mask) if "country" in col else None,
        time=times[used], quantity=quantity[used], unit_price_cents=cents[used], report=report,
    )


def _read_csv(path: Path) -> tuple[dict[str, pa.ChunkedArray], int, int]:
    """The file's known columns as trimmed strings by canonical name, the rows read, the malformed rows."""
    if not path.exists():
        raise TransactionsFileError(f"{path}: no such file")
    if not path.is_file():
        raise TransactionsFileError(f"{path}: not a file")
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        raise TransactionsFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not head.strip():
        raise TransactionsFileError(f"{path}: the file is empty")
    if b"\x00" in head:
        raise TransactionsFileError(f"{path}: not a CSV file (it holds binary data)")
    header_line, newline, _ = head.removeprefix(b"\xef\xbb\xbf").partition(b"\n")
    if not newline and len(head) == _SNIFF_BYTES:
        raise TransactionsFileError(f"{path}: not a CSV file (no line break in the first {_SNIFF_BYTES} bytes)")
    header_text = header_line.decode("utf-8", errors="replace").rstrip("\r")
    delimiter = max(_DELIMITERS, key=header_text.count)
    names = next(csv.reader([header_text], delimiter=delimiter), [])
    normalized = [name.strip().lower() for name in names]

    missing = [c for c in REQUIRED_COLUMNS if c not in normalized]
    if missing:
        found = ", ".join(repr(n) for n in names[:20]) or "nothing"
        raise TransactionsFileError(f"{path}: missing required column(s) {', '.join(missing)} "
                                    f"(the header has {found}; names are matched ignoring case and spaces)")
    wanted = {}
    for i, name in enumerate(normalized):
        if name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            if name in wanted.values():
                raise TransactionsFileError(f"{path}: more than one column is named {name!r}")
            wanted[f"c{i}"] = name

    malformed = []

    def skip_malformed(_row) -> str:
        malformed.append(1)
        return "skip"

    for encoding in ("utf8", "latin-1"):  # Windows exports are often Latin-1 (e.g. "£" as 0xA3)
        malformed.clear()
        try:
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(skip_rows=1, column_names=[f"c{i}" for i in range(len(names))],
                                               encoding=encoding),
                parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True,
                                                  invalid_row_handler=skip_malformed),
                convert_options=pacsv.ConvertOptions(include_columns=list(wanted),
                                                     column_types=dict.fromkeys(wanted, pa.string())),
            )
            break
        except pa.ArrowInvalid as exc:
            if encoding == "utf8" and "UTF8" in str(exc):
                continue
            raise TransactionsFileError(f"{path}: not a readable CSV file ({exc})") from None
        except OSError as exc:
            raise TransactionsFileError(f"{path}: cannot be read ({exc})") from None
    rows = table.num_rows
    if rows + len(malformed) == 0:
        raise TransactionsFileError(f"{path}: the file has a header but no rows")
    columns = {wanted[name]: table.column(name) for name in table.column_names}
    del table
    for name in columns:  # one column at a time, so the untrimmed file is not held twice
        columns[name] = pc.utf8_trim_whitespace(columns[name])
    return columns, rows, len(malformed)


def _flag(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=bool)


def _per_distinct(values: pa.ChunkedArray, parse) -> np.ndarray:
    """parse(distinct values) spread back over the rows: exports repeat dates and prices line after line."""
    encoded = pc.dictionary_encode(values).combine_chunks()
    return parse(encoded.dictionary)[encoded.indices.to_numpy()]


def _parse_numbers(values: pa.Array) -> np.ndarray:
    """Decimal numbers as float64, NaN where the text is not one (no thousands separators, no symbols)."""
    ok = pc.match_substring_regex(values, _NUMBER)
    parsed = pc.cast(pc.if_else(ok, values, pa.scalar(None, pa.string())), pa.float64())
    return np.asarray(parsed.to_numpy(zero_copy_only=False), dtype=np.float64)


def _parse_times(values: pa.Array) -> np.ndarray:
    """Epoch seconds (int64 min where unparseable): ISO-8601 with any offset, else slashed or dotted dates.

    Slashed dates are ambiguous; the whole file is read month-first as US exports write them
    ("12/1/2010 8:26"), unless reading it day-first parses more of its distinct values.
    """
    text = pd.Series(values.to_numpy(zero_copy_only=False), dtype=object)
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    rest = parsed.isna() & (text != "")
    if rest.any():
        candidates = text[rest]
        month_first = _parse_formats(candidates, _MONTH_FIRST)
        if month_first.isna().any():
            day_first = _parse_formats(candidates, _DAY_FIRST)
            if day_first.notna().sum() > month_first.notna().sum():
                month_first = day_first
        parsed[rest] = month_first
    return parsed.dt.tz_convert(None).to_numpy("datetime64[s]").view(np.int64)


def _parse_formats(text: pd.Series, formats: tuple[str, ...]) -> pd.Series:
    """Each value read by the first of the formats that fits it exactly; NaT if none does."""
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
    for fmt in formats:
        todo = out.isna()
        if not todo.any():
            break
        out[todo] = pd.to_datetime(text[todo], format=fmt, utc=True, errors="coerce")
    return out


def _value_counts(values: pa.ChunkedArray, mask: np.ndarray) -> dict[str, int]:
    counts = pc.value_counts(values.filter(pa.array(mask)))
    pairs = sorted(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))
    return {value or "(empty)": int(count) for value, count in pairs}


# ---- building the world --------------------------------------------------------------------------------
def build_world_parts(tx: Transactions, config: WorldConfig) -> WorldParts:
    """Persons, products and orders from the usable rows; the rest is synthesized by complete_world."""
    row = np.arange(tx.n)
    customer_code, customers = _codes(tx.customer)
    order_code, order_ids = _codes(tx.order_id)
    n_orders = len(order_ids)

    # An order's time is its earliest row's, and so is its customer (rows rarely disagree; the first wins).
    by_order = np.lexsort((row, tx.time, order_code))
    order_first_row = by_order[_group_starts(order_code[by_order])]
    order_time = tx.time[order_first_row]
    sequence = np.lexsort((np.arange(n_orders), order_time))  # orders by time, then by first appearance
    order_rank = np.empty(n_orders, dtype=np.int64)
    order_rank[sequence] = np.arange(n_orders)
    created = order_time[sequence]
    owner = customer_code[order_first_row][sequence]

    # Persons: the orders' customers, numbered by their first order.
    owners, first_order = np.unique(owner, return_index=True)
    by_first = np.argsort(first_order, kind="stable")
    person_code, first_order = owners[by_first], first_order[by_first]
    person_of_code = np.full(len(customers), -1, dtype=np.int64)
    person_of_code[person_code] = np.arange(len(person_code))
    order_person = person_of_code[owner]

    # Lines: each order's rows in file order; orders by time.
    line_rows = np.lexsort((row, order_rank[order_code]))
    line_order = order_rank[order_code][line_rows]
    line_offsets = np.zeros(n_orders + 1, dtype=np.int64)
    np.cumsum(np.bincount(line_order, minlength=n_orders), out=line_offsets[1:])

    product_rng = rng_for(config, "products")
    products, product_of_row = _products(tx, product_rng)
    config = _fitted_config(config, created, customers=len(person_code), products=products.n)
    line_product = product_of_row[line_rows]
    line_country = _countries(tx.country)[line_rows] if tx.country is not None else np.full(tx.n, -1, np.int8)
    persons = _persons(tx, config, products, first_order=first_order, created=created, order_person=order_person,
                       order_first_row=order_first_row[sequence], line_order=line_order, line_product=line_product,
                       line_price=tx.unit_price_cents[line_rows], line_country=line_country)
    products.companion = _companions(products, line_order, line_product, product_rng)

    orders: Orders = build_orders_from_lines(
        config, rng_for(config, "orders"), persons, products, order_person, created, line_offsets,
        line_product.astype(np.int32), line_product.astype(np.int32),  # one variant per product, same index
        tx.quantity[line_rows].astype(np.int32), unit_price=tx.unit_price_cents[line_rows],
        discount_pct=np.zeros(n_orders, dtype=np.int8), lifecycle=False)
    return complete_world(config, products, persons, orders, tx.report)


def _fitted_config(config: WorldConfig, created: np.ndarray, customers: int, products: int) -> WorldConfig:
    """The config with a timeline covering the data: from the first order's day to now (an explicit config.now,
    else the day after the last order), extended past now when an explicit now precedes the last orders."""
    start = int(created[0]) // DAY * DAY
    last = int(created[-1])
    now = parse_time(config.now) if config.now != DEFAULT_NOW else (last // DAY + 1) * DAY
    return replace(config, now=iso(now), customers=customers, products=products,
                   history_days=max(1, -(-(now - start) // DAY)),
                   future_days=max(config.future_days, -(-(last + 1 - now) // DAY)))


def _codes(values: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Integer codes numbered by first appearance, and the distinct values in that order."""
    encoded = pc.dictionary_encode(values).combine_chunks()
    return encoded.indices.to_numpy().astype(np.int64), encoded.dictionary


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Positions where a new group begins in a sorted key array."""
    if not len(sorted_keys):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))


def _most_frequent(group: np.ndarray, value: np.ndarray, n_groups: int, n_values: int,
                   min_count: int = 1) -> np.ndarray:
    """Per group, its most frequent value (ties: the smallest), or -1 if none occurs min_count times."""
    keys, counts = np.unique(group.astype(np.int64) * n_values + value, return_counts=True)
    g, v = keys // n_values, keys % n_values
    enough = counts >= min_count
    g, v, counts = g[enough], v[enough], counts[enough]
    order = np.lexsort((v, -counts, g))
    best = order[_group_starts(g[order])]
    out = np.full(n_groups, -1, dtype=np.int64)
    out[g[best]] = v[best]
    return out


def _first_nonempty(values: pa.ChunkedArray, code: np.ndarray, n: int) -> list[str]:
    """Per code, the first non-empty value in file order ("" if none)."""
    rows = np.flatnonzero(_flag(pc.not_equal(values, "")))
    codes, first = np.unique(code[rows], return_index=True)
    out = [""] * n
    for c, text in zip(codes.tolist(), values.take(pa.array(rows[first])).to_pylist(), strict=True):
        out[c] = text
    return out


def _stable_index(text: str, modulo: int) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") % modulo


def _products(tx: Transactions, rng: np.random.Generator) -> tuple[Products, np.ndarray]:
    """One product per product_id, numbered by first sale; returns them and the product of every row."""
    code, ids = _codes(tx.product_id)
    n = len(ids)
    first_sale = np.full(n, NEVER, dtype=np.int64)
    np.minimum.at(first_sale, code, tx.time)
    order = np.lexsort((np.arange(n), first_sale))
    product_of_code = np.empty(n, dtype=np.int64)
    product_of_code[order] = np.arange(n)

    ids = ids.to_pylist()
    titles = _first_nonempty(tx.product_title, code, n)
    titles = [titles[c] or ids[c] for c in order.tolist()]  # a product without a title is called by its id
    labels = _first_nonempty(tx.category, code, n) if tx.category is not None else [""] * n
    labels = [labels[c] for c in order.tolist()]
    by_name = {c.name.lower(): j for j, c in enumerate(catalog.CATEGORIES)}
    # the file's category where it is one of ours; otherwise a stable pick, the same for all of a label
    category = np.array([by_name.get(label.lower(), _stable_index((label or title).lower(), N_CATEGORIES))
                         for label, title in zip(labels, titles, strict=True)], dtype=np.int16)
    category_label = None
    if tx.category is not None:
        category_label = [label or catalog.CATEGORIES[j].name
                          for label, j in zip(labels, category.tolist(), strict=True)]

    median = pd.Series(tx.unit_price_cents).groupby(code).median().to_numpy()
    price = np.floor(median + 0.5).astype(np.int64)[order]
    never = np.full(n, NEVER, dtype=np.int64)
    products = Products(
        n=n, product_id=PRODUCT_ID_BASE + np.arange(n, dtype=np.int64) * 7 + 1, category=category, title=titles,
        vendor=rng.integers(0, 64, n).astype(np.int16), created_at=first_sale[order] - HOUR,
        archived_at=never, deleted_at=never.copy(), companion=np.arange(n, dtype=np.int32),
        inventory=rng.integers(0, 400, n), variant_offsets=np.arange(n + 1, dtype=np.int64),
        variant_id=VARIANT_ID_BASE + np.arange(n, dtype=np.int64) * 3 + 1, variant_title=["Default Title"] * n,
        variant_price_cents=price, category_label=category_label,
    )
    return products, product_of_code[code]


def _companions(products: Products, line_order: np.ndarray, line_product: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """The product most often in the same order (ties: the oldest); else one of a complementary category."""
    n = products.n
    o, p = _distinct_lines(line_order, line_product, n)
    firsts, seconds = [], []
    for d in range(1, COMPANION_WINDOW + 1):
        same = o[d:] == o[:-d]
        a, b = p[:-d][same], p[d:][same]
        firsts += [a, b]
        seconds += [b, a]
    companion = _most_frequent(np.concatenate(firsts), np.concatenate(seconds), n, n)
    lonely = companion < 0
    pick = rng.integers(0, 1 << 30, n)
    names = [c.name for c in catalog.CATEGORIES]
    for j, name in enumerate(names):
        members = np.flatnonzero(lonely & (products.category == j))
        pool = np.flatnonzero(np.isin(products.category, [names.index(c) for c in catalog.COMPLEMENTS[name]]))
        companion[members] = pool[pick[members] % len(pool)] if len(pool) else members
    return companion.astype(np.int32)


def _distinct_lines(line_order: np.ndarray, line_product: np.ndarray, n_products: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, product) once per order, in line order."""
    _, first = np.unique(line_order * n_products + line_product, return_index=True)
    keep = np.sort(first)
    return line_order[keep], line_product[keep]


def _countries(values: pa.ChunkedArray) -> np.ndarray:
    """Per row, the catalog country its country column names (ISO code or English name), -1 if none."""
    known = {}
    for j, c in enumerate(catalog.COUNTRIES):
        known[c.code.lower()] = known[c.name.lower()] = j
    known.update({alias: next(j for j, c in enumerate(catalog.COUNTRIES) if c.code == code)
                  for alias, code in _COUNTRY_ALIASES.items()})
    encoded = pc.dictionary_encode(values).combine_chunks()
    lookup = np.array([known.get(v.lower(), -1) for v in encoded.dictionary.to_pylist()], dtype=np.int8)
    return lookup[encoded.indices.to_numpy()]


def _persons(tx: Transactions, config: WorldConfig, products: Products, *, first_order: np.ndarray,
             created: np.ndarray, order_person: np.ndarray, order_first_row: np.ndarray, line_order: np.ndarray,
             line_product: np.ndarray, line_price: np.ndarray, line_country: np.ndarray) -> Persons:
    """One account holder per customer, in the order of first orders (orders by time: created, order_person,
    order_first_row; first_order: each person's first order; lines in order: line_*)."""
    rng = rng_for(config, "persons")
    n = len(first_order)
    now = parse_time(config.now)
    line_person = order_person[line_order]
    created_at = created[first_order]

    # Country: the earliest row that names a known one; the rest live where most of the shop's customers do.
    known = line_country >= 0
    people, first = np.unique(line_person[known], return_index=True)
    country = np.full(n, -1, dtype=np.int8)
    country[people] = line_country[known][first]
    if (country >= 0).any():
        default = int(np.bincount(country[country >= 0]).argmax())
    else:
        default = int(np.argmax([c.weight for c in catalog.COUNTRIES]))
    country[country < 0] = default
    zones = np.array([[c.tz_offsets[k % len(c.tz_offsets)] for k in range(4)] for c in catalog.COUNTRIES])
    tz_offset = zones[country, rng.integers(0, 4, n)].astype(np.int8)

    # Order times carry no zone; taken as UTC, a person's local hour is shifted by their offset.
    local_hour = (created // HOUR + tz_offset[order_person]) % 24
    preferred_hour = _most_frequent(order_person, local_hour, n, 24).astype(np.int8)

    # Smoothed over the categories the shop sells, and zero elsewhere: browsing is sampled from taste.
    sold = np.bincount(products.category, minlength=N_CATEGORIES) > 0
    taste = np.bincount(line_person * N_CATEGORIES + products.category[line_product],
                        minlength=n * N_CATEGORIES).reshape(n, N_CATEGORIES) + 0.5 * sold
    taste = (taste / taste.sum(axis=1, keepdims=True)).astype(np.float32)

    n_orders = np.bincount(order_person, minlength=n)
    years = np.maximum((now - created_at) / (YEAR_DAYS * DAY), 0.25)  # a first order last week is not 50 a year
    purchase_rate = n_orders / years
    frequency = pd.Series(purchase_rate).rank(pct=True).to_numpy()
    engagement = np.clip(0.08 + 0.55 * frequency + rng.normal(0, 0.08, n), 0.01, 0.99)
    avg_price = np.bincount(line_person, weights=line_price, minlength=n) / np.bincount(line_person, minlength=n)
    price_sensitivity = 1 - (pd.Series(avg_price).rank().to_numpy() - 0.5) / n  # cheap buyers mind prices

    replenishable = np.array([c.replenish_days > 0 for c in catalog.CATEGORIES])
    o, p = _distinct_lines(line_order, line_product, products.n)
    refill = replenishable[products.category[p]]
    staple = _most_frequent(order_person[o[refill]], p[refill], n, products.n, min_count=2).astype(np.int32)

    birth = np.where(rng.random(n) < 0.45,
                     (parse_time("1950-01-01T00:00:00Z") // DAY) + rng.integers(0, 55 * 365, n), -1)
    raw_rows = pa.array(order_first_row[first_order])
    keys = tx.customer.take(raw_rows)
    return Persons(
        n=n, kind=np.full(n, ACCOUNT, dtype=np.int8), created_at=created_at.astype(np.int64),
        churn_at=np.full(n, NEVER, dtype=np.int64), purchase_rate=purchase_rate, taste=taste,
        price_sensitivity=price_sensitivity, engagement=engagement, preferred_hour=preferred_hour, country=country,
        tz_offset=tz_offset, tz_name=None, city=rng.integers(0, 6, n).astype(np.int8), birth_date=birth.astype(np.int32),
        first_name=rng.integers(0, len(catalog.FIRST_NAMES), n).astype(np.int16),
        last_name=rng.integers(0, len(catalog.LAST_NAMES), n).astype(np.int16),
        email_domain=rng.integers(0, len(catalog.EMAIL_DOMAINS), n).astype(np.int8),
        has_phone=rng.random(n) < 0.55, staple_product=staple,
        email_override=_emails(keys, tx.is_email[order_first_row[first_order]]),
        source_customer_ref=tx.customer_raw.take(raw_rows).to_pylist(),
    )


def _emails(keys: pa.ChunkedArray, is_email: np.ndarray) -> list[str]:
    """The file's email where the customer is one, else customer-<id>@example.invalid, unique per person."""
    local = pc.utf8_lower(pc.replace_substring_regex(keys, r"[^A-Za-z0-9._-]+", "-"))
    synthetic = pc.binary_join_element_wise("customer-", local, f"@{SYNTHETIC_EMAIL_DOMAIN}", "")
    emails = pc.if_else(pa.array(is_email), keys, synthetic).to_pylist()
    # ids that differ only in case or punctuation would share an address: a hash of the id tells them apart
    clash = pd.Series(emails).duplicated(keep=False).to_numpy() & ~is_email
    for i in np.flatnonzero(clash).tolist():
        suffix = hashlib.blake2b(keys[i].as_py().encode(), digest_size=4).hexdigest()
        emails[i] = emails[i].replace("@", f"-{suffix}@")
    return emails
