"""Real-history mode: a world built from a shop's exported transactions (tests/data/transactions_small.csv).

The fixture holds 30 rows: 10 usable lines of 7 orders by 4 customers over 5 products, and 20 rows that
must be rejected, two or more per reason, some of which match several reasons (the first one counts).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import httpx
import numpy as np
import pytest

from simulator import catalog
from simulator.history import REJECT_REASONS, SYNTHETIC_EMAIL_DOMAIN, TransactionsFileError
from simulator.server import VENDOR_MODULES
from simulator.world import ACCOUNT, DAY, NEVER, World, WorldConfig, parse_time

SMALL = Path(__file__).resolve().parents[1] / "data" / "transactions_small.csv"
HEADER = "customer,order_id,ordered_at,product_id,product_title,quantity,unit_price\n"


@pytest.fixture(scope="module")
def world() -> World:
    return World.from_transactions(SMALL, WorldConfig(seed=7))


def _country(code: str) -> int:
    return next(i for i, c in enumerate(catalog.COUNTRIES) if c.code == code)


def _category(name: str) -> int:
    return next(i for i, c in enumerate(catalog.CATEGORIES) if c.name == name)


def _lines(world: World, o: int) -> list[tuple[str, int, int]]:
    orders, products = world.orders, world.products
    span = range(int(orders.line_offsets[o]), int(orders.line_offsets[o + 1]))
    return [(products.title[orders.line_product[i]], int(orders.line_quantity[i]),
             int(orders.line_unit_price_cents[i])) for i in span]


def test_every_rejected_row_is_counted_under_one_reason(world):
    report = world.report
    assert report["rows_read"] == 30
    assert report["rows_used"] == 10
    assert report["rejected"] == {
        "malformed_row": 2,  # a row short of fields, a row with one too many
        "bad_date": 3,  # "not a date", empty, "yesterday" (on a cancellation: parsing comes first)
        "bad_number": 3,  # "two", "1,50", a quantity of 1.5
        "missing_id": 2,  # empty order_id, empty product_id
        "cancelled": 4,  # two lines of C1001 (one without a customer), both lines of O3001 (net -5.00)
        "no_customer": 2,  # empty, and blanks only
        "non_positive_quantity": 2,  # 0, and a -1 return inside an order whose net stays positive
        "non_positive_price": 2,  # 0.00 and -3
    }
    assert list(report["rejected"]) == list(REJECT_REASONS)
    assert report["rows_read"] == report["rows_used"] + sum(report["rejected"].values())
    assert report["currencies"] == {"GBP": 9, "USD": 1}


def test_persons_come_from_the_customer_column(world):
    persons = world.persons
    assert persons.n == 4
    # numbered by first order; emails lower-cased and trimmed, ids ("12346.0" and "12346" alike) get an address
    assert [world.person_email(p) for p in range(4)] == [
        "alice@example.com", f"customer-12346@{SYNTHETIC_EMAIL_DOMAIN}", "bob@shop.test", "carol@example.org"]
    assert persons.source_customer_ref == ["Alice@Example.com", "12346.0", "bob@shop.test", "carol@example.org"]
    assert (persons.kind == ACCOUNT).all()
    assert (persons.churn_at == NEVER).all()
    assert persons.created_at.tolist() == [parse_time(t) for t in (
        "2010-12-01T08:26:00Z", "2010-12-02T09:15:00Z", "2011-01-05T14:00:00Z", "2011-03-01T10:00:00Z")]
    # "Narnia" is no country: Bob lives where most customers do (two of the three others are in the UK)
    assert persons.country.tolist() == [_country("GB"), _country("DE"), _country("GB"), _country("GB")]
    assert persons.tz_offset.tolist() == [0, 1, 0, 0]
    # local hours: Alice ordered at 8 and 10 (a tie: the earlier), 12346 at 9:15 and 9:00 UTC, i.e. 10 in Berlin
    assert persons.preferred_hour.tolist() == [8, 10, 14, 10]
    # coffee twice for Alice, dog treats twice for Bob: consumables re-ordered; the others re-ordered nothing
    assert persons.staple_product.tolist() == [1, -1, 3, -1]
    assert np.allclose(persons.taste.sum(axis=1), 1)
    assert persons.taste[0].argmax() == _category("Coffee")
    assert persons.taste[2].argmax() == _category("Pet Supplies")
    assert ((persons.engagement > 0) & (persons.engagement < 1)).all()
    # average unit prices: Alice 10.26, 12346 9.85, Carol 8.00, Bob 4.00; the cheaper, the more sensitive
    assert np.argsort(persons.price_sensitivity).tolist() == [0, 1, 3, 2]


def test_products_come_from_the_product_columns(world):
    products = world.products
    assert products.n == 5
    assert products.title == ["White Hanging Heart", "Coffee Beans Dark", "Garden Gnome", "Dog Treats", "Mug, Large"]
    # the file's label is what the APIs serve; the catalog category is matched ignoring case, else picked stably
    assert products.category_label[:4] == ["Home", "coffee", "Garden", "Pet Supplies"]
    assert products.category[[0, 1, 3]].tolist() == [_category("Home"), _category("Coffee"), _category("Pet Supplies")]
    assert products.category_label[4] == catalog.CATEGORIES[products.category[4]].name  # no label in the file
    # median unit price: 12.50, 12.50 and 13.50 for the coffee; 8.00 and 7.00 for the mug
    assert products.variant_price_cents.tolist() == [255, 1250, 1999, 400, 750]
    assert products.variant_title == ["Default Title"] * 5
    assert products.variant_offsets.tolist() == [0, 1, 2, 3, 4, 5]
    first_sale = [parse_time(t) for t in ("2010-12-01T08:26:00Z", "2010-12-01T08:26:00Z", "2010-12-02T09:15:00Z",
                                          "2011-01-05T14:00:00Z", "2011-03-01T10:00:00Z")]
    assert (products.created_at < np.array(first_sale)).all()
    assert (products.archived_at == NEVER).all() and (products.deleted_at == NEVER).all()
    # the heart was bought with the coffee and with the gnome (a tie: the older); the treats never with
    # anything, so with a product of a complementary category (Home)
    assert products.companion[:4].tolist() == [1, 0, 0, 0]
    assert world.product_at(1, world.now)["category"] == "coffee"


def test_orders_keep_the_files_lines_and_money(world):
    orders = world.orders
    assert orders.n == 7
    assert orders.person.tolist() == [0, 1, 0, 2, 2, 3, 1]
    assert (np.diff(orders.created_at) >= 0).all()
    assert _lines(world, 0) == [("White Hanging Heart", 6, 255), ("Coffee Beans Dark", 2, 1250)]
    assert _lines(world, 2) == [("Coffee Beans Dark", 1, 1250), ("Coffee Beans Dark", 1, 1350)]
    assert _lines(world, 6) == [("Mug, Large", 2, 700)]
    # build_orders_from_lines adds 7.95 shipping below 75.00 and the buyer's country's tax; no discounts
    assert orders.subtotal_cents.tolist() == [4030, 8119, 2600, 1200, 800, 800, 1400]
    assert orders.shipping_cents.tolist() == [795, 0, 795, 795, 795, 795, 795]
    assert orders.tax_cents.tolist() == [806, 1543, 520, 240, 160, 160, 266]  # GB 20%, DE 19%
    assert orders.total_cents.tolist() == [5631, 9662, 3915, 2235, 1755, 1755, 2461]
    assert (orders.discount_cents == 0).all()
    assert (orders.cancelled_at == NEVER).all() and (orders.refund_at == NEVER).all()


def test_timeline_fits_the_data(world):
    assert world.start == parse_time("2010-12-01T00:00:00Z")
    assert world.now == parse_time("2011-03-03T00:00:00Z")  # the day after the last order
    assert world.end == world.now + 30 * DAY
    assert world.config.customers == 4 and world.config.products == 5
    summary = world.summary()
    assert (summary["customers"], summary["orders"], summary["products"]) == (4, 7, 5)


def test_an_explicit_now_is_kept_and_later_orders_lie_ahead():
    world = World.from_transactions(SMALL, WorldConfig(now="2011-02-01T00:00:00Z"))
    assert world.now == parse_time("2011-02-01T00:00:00Z")
    assert world.start <= world.orders.created_at[0] and world.end > world.orders.created_at[-1]
    assert world.summary()["orders"] == 4
    assert world.summary(world.end - 1)["orders"] == 7


def test_records_are_served_as_of_a_time(world):
    alice = world.customer_at(int(np.flatnonzero(world.customers.person == 0)[0]), world.now)
    assert alice["email"] == "alice@example.com"
    assert alice["orders_count"] == 2
    assert alice["amount_spent_cents"] == 5631 + 3915
    before = world.customer_at(int(np.flatnonzero(world.customers.person == 0)[0]), parse_time("2010-12-02T00:00:00Z"))
    assert before["orders_count"] == 1
    order = world.order_at(5, world.now)
    assert order["created_at"] == parse_time("2011-03-01T10:00:00Z")  # +02:00 in the file
    assert order["email"].strip().lower() == "carol@example.org"
    assert order["total_cents"] == 1755
    assert order["financial_status"] == "paid"
    assert [line["quantity"] for line in order["lines"]] == [1]


def test_same_file_and_seed_give_the_same_world(world):
    again = World.from_transactions(SMALL, WorldConfig(seed=7))
    for name in ("persons", "products", "orders", "customers", "contacts", "profiles", "events"):
        mine, theirs = getattr(world, name), getattr(again, name)
        for f in dataclasses.fields(mine):
            a, b = getattr(mine, f.name), getattr(theirs, f.name)
            if f.name == "versions":
                assert np.array_equal(a.times, b.times) and np.array_equal(a.offsets, b.offsets), (name, f.name)
            elif isinstance(a, np.ndarray):
                assert np.array_equal(a, b), (name, f.name)
            else:
                assert a == b, (name, f.name)
    other = World.from_transactions(SMALL, WorldConfig(seed=8))
    assert np.array_equal(other.orders.total_cents, world.orders.total_cents)  # the file's facts stay
    assert not np.array_equal(other.persons.engagement, world.persons.engagement)  # the synthesized ones move


@pytest.mark.parametrize(("content", "problem"), [
    (None, "no such file"),
    (b"", "empty"),
    (b"  \n\n", "empty"),
    (HEADER.encode(), "no rows"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8, "binary"),
    (b"customer;order_id;ordered_at\nx;1;2010-12-01\n",
     "missing required column.*product_id, product_title, quantity, unit_price"),
    (b"name,total\nx,1\n", "missing required column.*customer, order_id"),
    (HEADER.encode() + b",O1,2010-12-01,P1,Heart,1,2.55\nC1,C1,2010-12-01,P1,Heart,-1,2.55\n", "no usable rows"),
    (b"customer,order_id, Customer ,ordered_at,product_id,product_title,quantity,unit_price\n",
     "more than one column is named 'customer'"),
])
def test_files_that_cannot_be_loaded_are_named_with_their_problem(tmp_path, content, problem):
    path = tmp_path / "export.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TransactionsFileError, match=problem) as raised:
        World.from_transactions(path, WorldConfig())
    assert str(path) in str(raised.value)


def test_a_directory_is_not_a_file(tmp_path):
    with pytest.raises(TransactionsFileError, match="not a file"):
        World.from_transactions(tmp_path, WorldConfig())


def test_latin1_semicolons_day_first_dates_and_clashing_ids(tmp_path):
    path = tmp_path / "export.csv"
    rows = [
        "Customer ; ORDER_ID;Ordered_At;Product_ID;Product_Title;Quantity;Unit_Price",
        "AB-1;1;13/12/2010 08:00;P1;Tea Towel \xa3;2;3.50",  # 13/12 can only be day-first
        "ab 1;2;01/12/2010 09:00;P1;Tea Towel \xa3;1;3.50",  # so this is the 1st of December
        "7;3;2010-12-02;P2;Mug;1;5",
    ]
    path.write_bytes("\n".join(rows).encode("latin-1"))
    world = World.from_transactions(path, WorldConfig())
    assert world.report["rows_used"] == 3
    assert world.products.title[0] == "Tea Towel \xa3"
    assert world.orders.created_at.tolist() == [parse_time(t) for t in (
        "2010-12-01T09:00:00Z", "2010-12-02T00:00:00Z", "2010-12-13T08:00:00Z")]
    emails = [world.person_email(p) for p in range(world.persons.n)]
    # "ab 1" and "AB-1" are different customers whose ids read the same in an address: a hash tells them apart
    assert len(set(emails)) == 3
    assert emails[1] == f"customer-7@{SYNTHETIC_EMAIL_DOMAIN}"
    assert emails[0].startswith("customer-ab-1-") and emails[2].startswith("customer-ab-1-")
    assert world.persons.source_customer_ref == ["ab 1", "7", "AB-1"]
    assert world.products.category_label is None  # no category column: the catalog's names are served


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in VENDOR_MODULES),
                    reason="the vendor API modules are not in the tree yet")
def test_a_world_from_a_file_is_served(world):
    from simulator.server import running
    from simulator.state import SimState

    with running(SimState(world=world)) as handle:
        response = httpx.get(f"{handle.url}/_simulator/summary", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["clock"] == "2011-03-03T00:00:00Z"
    assert body["records"]["customers"] == 4
    assert body["records"]["orders"] == 7
    assert body["records"]["products"] == 5
