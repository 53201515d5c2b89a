"""Write a world to disk as Parquet (one file per table) with a manifest: input for benchmarks and analysis.

Columns are the world's own (vendor-neutral; times in epoch seconds UTC, money in cents of the shop
currency); Shopify GIDs, HubSpot and Klaviyo profile ids are written as the APIs present them so rows join
with what the connectors land. Events keep their integer index (World.event_id maps it to the API id):
formatting tens of millions of ids in Python would dominate the export.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from simulator import catalog
from simulator.world import NEVER, World, iso


def _gid(kind: str, ids: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(pa.scalar(f"gid://shopify/{kind}/"), pa.array(ids).cast(pa.string()), "")


def _nullable_time(values: np.ndarray) -> pa.Array:
    return pa.array(values, mask=values == NEVER)


def write_world(world: World, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    p, pr, o, c, k, q, e = (world.persons, world.products, world.orders, world.customers, world.contacts,
                            world.profiles, world.events)
    category_names = np.array([cat.name for cat in catalog.CATEGORIES], dtype=object)
    tables = {
        "products": pa.table({
            "product_id": _gid("Product", pr.product_id), "title": pr.title,
            "category": pr.category_label if pr.category_label is not None else category_names[pr.category],
            "created_at": pr.created_at, "archived_at": _nullable_time(pr.archived_at),
            "deleted_at": _nullable_time(pr.deleted_at),
            "companion_product_id": _gid("Product", pr.product_id[pr.companion]),
        }),
        "variants": pa.table({
            "variant_id": _gid("ProductVariant", pr.variant_id),
            "product_id": _gid("Product", np.repeat(pr.product_id, np.diff(pr.variant_offsets))),
            "title": pr.variant_title, "price_cents": pr.variant_price_cents,
        }),
        "persons": pa.table({
            "person": np.arange(p.n), "email": [world.person_email(i) for i in range(p.n)],
            "kind": np.array(["account", "guest", "lead"], dtype=object)[p.kind],
            "created_at": p.created_at, "churn_at": _nullable_time(p.churn_at),
            "purchase_rate_per_year": p.purchase_rate, "price_sensitivity": p.price_sensitivity,
            "engagement": p.engagement, "preferred_hour_local": p.preferred_hour, "utc_offset_hours": p.tz_offset,
            **{f"taste_{cat.name.lower().replace(' ', '_')}": p.taste[:, j] for j, cat in enumerate(catalog.CATEGORIES)},
        }),
        "customers": pa.table({
            "customer_id": _gid("Customer", c.customer_id), "person": c.person, "created_at": c.created_at,
            "deleted_at": _nullable_time(c.deleted_at),
        }),
        "orders": pa.table({
            "order_id": _gid("Order", o.order_id), "name": pc.binary_join_element_wise(
                pa.scalar("#"), pa.array(o.number).cast(pa.string()), ""),
            "person": o.person, "created_at": o.created_at, "fulfilled_at": _nullable_time(o.fulfilled_at),
            "cancelled_at": _nullable_time(o.cancelled_at), "refunded_at": _nullable_time(o.refund_at),
            "subtotal_cents": o.subtotal_cents, "discount_cents": o.discount_cents, "shipping_cents": o.shipping_cents,
            "tax_cents": o.tax_cents, "total_cents": o.total_cents,
            "refunded_cents": np.where(o.refund_at != NEVER, o.refunded_cents, 0),
        }),
        "order_lines": pa.table({
            "line_id": _gid("LineItem", o.line_id),
            "order_id": _gid("Order", np.repeat(o.order_id, np.diff(o.line_offsets))),
            "product_id": _gid("Product", pr.product_id[o.line_product]),
            "variant_id": _gid("ProductVariant", pr.variant_id[o.line_variant]),
            "quantity": o.line_quantity, "unit_price_cents": o.line_unit_price_cents,
            "discount_cents": o.line_discount_cents,
        }),
        "contacts": pa.table({
            "contact_id": pa.array(k.contact_id).cast(pa.string()), "person": k.person, "created_at": k.created_at,
            "archived_at": _nullable_time(k.archived_at),
            "email": [world.spelled_email(int(k.person[i]), int(k.email_spelling[i])) for i in range(k.n)],
        }),
        "profiles": pa.table({
            "profile_id": [world.profile_id(i) for i in range(q.n)], "person": q.person, "created_at": q.created_at,
            "subscribed_at": _nullable_time(q.subscribed_at), "unsubscribed_at": _nullable_time(q.unsubscribed_at),
            "bounced_at": _nullable_time(q.bounced_at), "spam_complaint_at": _nullable_time(q.spam_at),
        }),
        "events": pa.table({
            "event_index": np.arange(e.n), "profile": e.profile,
            "metric": pa.DictionaryArray.from_arrays(e.metric.astype(np.int32), list(catalog.METRICS)),
            "time": e.time, "campaign": e.campaign, "product": e.product, "order": e.order,
        }),
    }
    counts = {}
    for name, table in tables.items():
        pq.write_table(table, out / f"{name}.parquet", compression="zstd")
        counts[name] = table.num_rows
    manifest = {
        "config": world.config.__dict__, "start": iso(world.start), "now": iso(world.now), "end": iso(world.end),
        "counts": counts, "report": world.report,
        "notes": "times are epoch seconds UTC; money is cents of the shop currency (USD)",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return manifest
