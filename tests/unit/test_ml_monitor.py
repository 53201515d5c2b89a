"""Drift by the population stability index: bins fixed at training, nulls and unseen categories as bins of their own,
statuses from the configured thresholds, worst first."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml import monitor
from ml.config import PSI_FAIL, PSI_WARN


def _population(rng: np.random.Generator, shift: float = 0.0, rows: int = 5000) -> pd.DataFrame:
    return pd.DataFrame({"days_since_last_order": rng.gamma(2.0, 30.0, rows) + shift * 60.0,
                         "open_rate_90d": rng.beta(2, 5, rows),
                         "engagement_level": rng.choice(["high", "medium", "low"], rows, p=[0.2, 0.5, 0.3])})


def test_the_same_population_is_stable_and_a_moved_one_asks_for_retraining() -> None:
    rng = np.random.default_rng(3)
    refs = monitor.references(_population(rng))
    same = monitor.drift(refs, _population(rng))
    assert set(same["status"]) == {"ok"} and same["psi"].max() < 0.02
    moved = monitor.drift(refs, _population(rng, shift=1.0))
    assert list(moved["name"])[0] == "days_since_last_order"  # worst first
    assert moved.iloc[0]["status"] == "fail" and moved.iloc[0]["psi"] >= PSI_FAIL
    assert set(moved.loc[moved["name"] != "days_since_last_order", "status"]) == {"ok"}


def test_psi_is_the_textbook_sum_over_the_training_deciles() -> None:
    ref = monitor.reference(pd.Series(np.arange(100, dtype=float)))
    assert len(ref.edges) == 9 and np.allclose(ref.shares, [0.1] * 10 + [0.0])
    crowded = pd.Series(np.full(50, 5.0))  # everyone in the first decile
    expected, actual = np.array([0.1] * 10 + [1e-4]), np.array([1.0] + [1e-4] * 9 + [1e-4])
    assert np.isclose(monitor.psi(ref, crowded), np.sum((actual - expected) * np.log(actual / expected)))


def test_a_feature_arriving_empty_and_a_new_category_drift_too() -> None:
    rng = np.random.default_rng(5)
    refs = monitor.references(_population(rng))
    later = _population(rng)
    later["open_rate_90d"] = np.nan  # the engagement feed stopped: every value null
    later.loc[later.index[:2000], "engagement_level"] = "dormant"  # a value never seen in training
    table = monitor.drift(refs, later).set_index("name")
    assert table.loc["open_rate_90d", "status"] == "fail"
    assert table.loc["engagement_level", "psi"] >= PSI_WARN
    assert table.loc["days_since_last_order", "status"] == "ok"


def test_statuses_follow_the_thresholds() -> None:
    assert monitor.status(PSI_WARN - 1e-9) == "ok"
    assert monitor.status(PSI_WARN) == "warn"
    assert monitor.status(PSI_FAIL) == "fail"
