"""The world's shape in the terms public e-commerce benchmarks use, to compare it with them."""

from __future__ import annotations

import numpy as np

from simulator import catalog
from simulator.world import CONSENT_NAMES, DAY, NEVER, World


def figures(world: World) -> dict:
    """Per-customer volumes, repeat and churn shares, campaign engagement rates and the consent mix at `now`."""
    t = world.now
    orders = world.orders
    placed = orders.created_at <= t
    per_person = np.bincount(orders.person[placed], minlength=world.persons.n)
    buyers = per_person > 0
    last_order = np.full(world.persons.n, -1, dtype=np.int64)
    np.maximum.at(last_order, orders.person[placed], orders.created_at[placed])
    metric = np.bincount(world.events.metric[world.events.time <= t], minlength=len(catalog.METRICS))
    received = max(1, int(metric[0]))
    consent = np.array([world.consent_at(q, t) for q in range(world.profiles.n) if world.profiles.created_at[q] <= t])
    aov_cents = orders.total_cents[placed].mean() if placed.any() else 0
    return {
        "orders_per_customer": round(float(placed.sum() / world.persons.n), 2),
        "order_lines_per_customer": round(float(np.diff(orders.line_offsets)[placed].sum() / world.persons.n), 2),
        "email_events_per_customer": round(float(metric[:6].sum() / world.persons.n), 1),
        "onsite_events_per_customer": round(float(metric[6:].sum() / world.persons.n), 1),
        "buyers_share": round(float(buyers.mean()), 3),
        "repeat_purchase_rate": round(float((per_person >= 2).sum() / max(1, buyers.sum())), 3),
        "average_order_value_usd": round(float(aov_cents) / 100, 2),
        "churned_by_now_share": round(float((world.persons.churn_at <= t).mean()), 3),
        "no_order_in_last_90_days_share_of_buyers": round(float((last_order[buyers] < t - 90 * DAY).mean()), 3),
        "open_rate": round(float(metric[1] / received), 4),
        "click_rate": round(float(metric[2] / received), 4),
        "click_to_open_rate": round(float(metric[2] / max(1, metric[1])), 4),
        "unsubscribe_rate": round(float(metric[4] / received), 5),
        "bounce_rate": round(float(metric[3] / received), 5),
        "spam_complaint_rate": round(float(metric[5] / received), 5),
        "consent_mix": {CONSENT_NAMES[c]: round(float((consent == c).mean()), 3) for c in range(len(CONSENT_NAMES))},
        "refunded_order_share": round(float((orders.refund_at[placed] != NEVER).mean()), 3),
        "cancelled_order_share": round(float((orders.cancelled_at[placed] != NEVER).mean()), 3),
    }
