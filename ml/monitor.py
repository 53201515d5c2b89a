"""Drift: the population stability index of each feature, and of the churn score, against the training snapshot.

PSI = sum over bins of (actual share - expected share) * ln(actual share / expected share), with bins fixed at
training (deciles of the training values; nulls are a bin of their own, so a feature that starts arriving empty
drifts too). Below PSI_WARN the population is stable; from PSI_FAIL on it has moved enough that the model should be
retrained: the scoring run records `needs_retraining` and the daily DAG acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.config import PSI_BINS, PSI_FAIL, PSI_WARN

_FLOOR = 1e-4  # an empty bin would make the log infinite: count it as a tiny share instead


@dataclass(frozen=True)
class Reference:
    """One variable's training distribution: inner bin edges and the share of each bin (the last: null)."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]
    categories: tuple[str, ...] = ()  # for a text variable: its values, one bin each (+ other, + null)


def _numeric(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


def reference(values: pd.Series) -> Reference:
    """The bins of a variable from its training values."""
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype | pd.CategoricalDtype):
        categories = tuple(sorted(str(v) for v in values.dropna().unique()))
        return Reference(edges=(), shares=tuple(_category_shares(values, categories)), categories=categories)
    data = _numeric(values)
    known = data[~np.isnan(data)]
    edges = tuple(np.unique(np.quantile(known, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))) if len(known) else ()
    return Reference(edges=tuple(float(e) for e in edges), shares=tuple(_numeric_shares(data, edges)))


def _numeric_shares(data: np.ndarray, edges: tuple[float, ...]) -> list[float]:
    missing = np.isnan(data)
    counts = np.bincount(np.searchsorted(np.asarray(edges), data[~missing], side="right"), minlength=len(edges) + 1)
    counts = np.append(counts, missing.sum())
    return list(counts / max(len(data), 1))


def _category_shares(values: pd.Series, categories: tuple[str, ...]) -> list[float]:
    text = values.dropna().astype(str)
    counts = [int((text == c).sum()) for c in categories]
    counts += [len(text) - sum(counts), int(values.isna().sum())]
    return [c / max(len(values), 1) for c in counts]


def psi(ref: Reference, values: pd.Series) -> float:
    """PSI of `values` against the training reference."""
    if ref.categories:
        actual = np.asarray(_category_shares(values, ref.categories))
    else:
        actual = np.asarray(_numeric_shares(_numeric(values), ref.edges))
    expected = np.asarray(ref.shares)
    actual, expected = np.maximum(actual, _FLOOR), np.maximum(expected, _FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def status(value: float) -> str:
    return "fail" if value >= PSI_FAIL else "warn" if value >= PSI_WARN else "ok"


def references(frame: pd.DataFrame) -> dict[str, Reference]:
    return {column: reference(frame[column]) for column in frame.columns}


def drift(refs: dict[str, Reference], frame: pd.DataFrame, kind: str = "feature") -> pd.DataFrame:
    """kind, name, psi, status per referenced column of `frame`, worst first."""
    rows = []
    for name, ref in refs.items():
        if name not in frame.columns:
            continue
        value = psi(ref, frame[name])
        rows.append({"kind": kind, "name": name, "psi": value, "status": status(value)})
    table = pd.DataFrame(rows, columns=["kind", "name", "psi", "status"])
    return table.sort_values(["psi", "name"], ascending=[False, True], ignore_index=True)
