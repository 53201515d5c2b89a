"""The daily DAG's training decision (tailor.airflow.daily.training_reasons) on a real MLflow store in a temporary
data dir: the weekly day and a date with no promoted model train; a date trained and decided before does not train
again (a re-run, a backfill reprocessing it), so what it scored and delivered stays as it was."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tailor.warehouse import Warehouse

# MLflow's own sqlalchemy store triggers this deprecation inside sqlalchemy; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:.*noload.*")

MONDAY = datetime(2026, 11, 2, tzinfo=UTC)


def test_a_date_trained_before_is_not_trained_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from ml.personalization import recommendation_registry, send_time_registry
    from ml.registry import Registry
    from tailor.airflow.daily import training_reasons

    no_scores = Warehouse(tmp_path / "data" / "warehouse.duckdb")  # never scored: no drift request
    assert training_reasons(MONDAY, no_scores) == [
        "the weekly retraining (2026-11-02 is a Monday)",
        "no customer, recommendation, send-time model promoted as of 2026-11-02 yet"]
    for registry in (Registry(), recommendation_registry(), send_time_registry()):
        candidate = registry.log_candidate(bundle={"family": registry.model}, run_name="train", params={},
                                           metrics={"auc": 0.5}, feature_list=["a"], data_window={}, model_card="",
                                           trained_as_of=MONDAY)
        registry.promote(candidate, "none in production")

    assert training_reasons(MONDAY, no_scores) == []  # trained and decided as of that date
    assert training_reasons(MONDAY + timedelta(days=1), no_scores) == []  # Monday's models serve Tuesday
    assert training_reasons(MONDAY + timedelta(days=7), no_scores) == ["the weekly retraining (2026-11-09 is a Monday)"]
    assert training_reasons(MONDAY - timedelta(days=1), no_scores) == [  # a backfilled Sunday before any model
        "no customer, recommendation, send-time model promoted as of 2026-11-01 yet"]
