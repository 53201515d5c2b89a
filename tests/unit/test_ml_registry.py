"""The model registry on a real MLflow sqlite store in a temporary data dir: what a candidate run records, the
promotion rule, promote/reject and the production alias, loading bundles back (also from a fresh process), clear
errors for unknown versions and bad input, no secrets logged and nothing written to the working directory.

One store serves the whole module: creating it runs MLflow's migrations, which take seconds."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ml.errors import ModelInputError
from ml.registry import (
    PRODUCTION_ALIAS,
    REGISTERED_MODEL,
    Candidate,
    Production,
    Registry,
    promotion_decision,
    tracking_uri,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

# MLflow's own sqlalchemy store triggers this deprecation inside sqlalchemy; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:.*noload.*")

X_PROBE = np.array([[0.0, 1.0], [2.0, -1.0], [-1.5, 0.5]])
SECRET_VALUE = "hunter2-do-not-log"


def _bundle(name: str, c: float) -> dict:
    """A bundle shaped like Tailor's: fitted sklearn pipelines plus parameters."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    y = (x[:, 0] + rng.normal(scale=0.5, size=60) > 0).astype(int)
    churn = make_pipeline(StandardScaler(), LogisticRegression(C=c)).fit(x, y)
    return {"name": name, "churn": churn, "params": {"C": c}}


def _probe(bundle: dict) -> list[float]:
    return bundle["churn"].predict_proba(X_PROBE)[:, 1].round(10).tolist()


@dataclass
class Lifecycle:
    registry: Registry
    data_dir: Path
    cwd: Path
    bundles: dict[str, dict]
    first: Candidate
    second: Candidate
    third: Candidate
    production_before_any: Production | None
    unknown_before_any: str
    second_decision: tuple[bool, str]
    production_after_reject: Production | None


def _client(lifecycle: Lifecycle) -> MlflowClient:
    """A plain MLflow client on the module's store, to check what the registry wrote without going through it.
    Imported here, not at the top: ml.registry must be imported before MLflow (it disables MLflow's telemetry)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=lifecycle.registry.tracking_uri, registry_uri=lifecycle.registry.tracking_uri)


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lifecycle]:
    """Three training runs through one store: v1 promoted (nothing in production), v2 rejected (not better by the
    margin), v3 promoted (better). Run from an empty working directory, removed afterwards."""
    root = tmp_path_factory.mktemp("registry")
    data_dir, cwd = root / "data", root / "cwd"
    cwd.mkdir()
    report = root / "training_report.html"
    report.write_text("<html><body>report</body></html>", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TAILOR_DATA_DIR", str(data_dir))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.chdir(cwd)
        registry = Registry()
        production_before_any = registry.production()
        with pytest.raises(ModelInputError) as unknown:
            registry.load("v1")

        bundles = {"v1": _bundle("first", 1.0), "v2": _bundle("second", 0.5), "v3": _bundle("third", 0.1)}

        def log(label: str, auc: float, **extra) -> Candidate:
            return registry.log_candidate(
                bundle=bundles[label], run_name=f"train-{label}",
                params={"model": {"C": bundles[label]["params"]["C"], "max_iter": 100}, "seed": 7,
                        "segments": [3, 8], "api_token": SECRET_VALUE, "warehouse": {"Password": SECRET_VALUE},
                        "client_secret": SECRET_VALUE, "aws_access_KEY_id": SECRET_VALUE},
                metrics={"churn_roc_auc": auc, "clv_mae": 12.5, "brier": None, "pr_auc": float("nan")},
                feature_list=["recency_days", "frequency", "monetary"],
                data_window={"train_end": "2024-05-01", "validation_end": "2024-06-01"},
                model_card=f"# Tailor models {label}\n\nChurn: logistic regression.\n",
                artifacts={"report": report}, tags={"tailor.trigger": "test"}, **extra,
            )

        first = log("v1", 0.70)
        ok, reason = promotion_decision({"churn_roc_auc": 0.70}, None, metric="churn_roc_auc", margin=0.005)
        assert ok
        registry.promote(first, reason)

        second = log("v2", 0.702)
        production = registry.production()
        assert production is not None
        second_decision = promotion_decision({"churn_roc_auc": 0.702}, production.metrics, metric="churn_roc_auc",
                                             margin=0.005)
        registry.reject(second, second_decision[1])
        production_after_reject = registry.production()

        third = log("v3", 0.75)
        ok, reason = promotion_decision({"churn_roc_auc": 0.75}, {"churn_roc_auc": 0.70}, metric="churn_roc_auc",
                                        margin=0.005)
        assert ok
        registry.promote(third, reason)

        yield Lifecycle(registry, data_dir, cwd, bundles, first, second, third, production_before_any,
                        str(unknown.value), second_decision, production_after_reject)
    shutil.rmtree(root)


def test_candidate_run_holds_params_metrics_features_card_report_and_bundle(lifecycle: Lifecycle) -> None:
    client = _client(lifecycle)
    run = client.get_run(lifecycle.first.run_id)
    assert run.info.run_name == "train-v1"
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model.C"] == "1.0" and params["model.max_iter"] == "100" and params["seed"] == "7"
    assert params["segments"] == "[3, 8]"
    assert params["features"] == "recency_days,frequency,monetary" and params["n_features"] == "3"
    assert params["data_window.train_end"] == "2024-05-01"
    # None and NaN metrics are absent, not zero
    assert run.data.metrics == {"churn_roc_auc": 0.70, "clv_mae": 12.5}
    assert run.data.tags["tailor.kind"] == "candidate"
    assert run.data.tags["tailor.trigger"] == "test"
    assert run.data.tags["tailor.model_version"] == "v1"

    artifact_dir = lifecycle.data_dir / "mlflow" / "artifacts" / lifecycle.first.run_id / "artifacts"
    assert json.loads((artifact_dir / "features.json").read_text()) == ["recency_days", "frequency", "monetary"]
    assert json.loads((artifact_dir / "data_window.json").read_text())["validation_end"] == "2024-06-01"
    assert (artifact_dir / "model_card.md").read_text().startswith("# Tailor models v1")
    assert (artifact_dir / "report" / "training_report.html").read_text().startswith("<html>")
    assert (artifact_dir / "bundle" / "bundle.joblib").stat().st_size > 0

    version = client.get_model_version(REGISTERED_MODEL, lifecycle.first.version)
    assert lifecycle.first.model_version == "v1"
    assert version.run_id == lifecycle.first.run_id
    assert version.source.endswith(f"{lifecycle.first.run_id}/artifacts/bundle")
    assert version.tags["tailor.kind"] == "candidate" and version.tags["tailor.model_version"] == "v1"


def test_secret_looking_params_are_never_logged(lifecycle: Lifecycle) -> None:
    client = _client(lifecycle)
    params = client.get_run(lifecycle.first.run_id).data.params
    assert not [key for key in params if any(word in key.lower() for word in ("token", "password", "secret", "key"))]
    assert "model.C" in params  # the rest is still there
    stored = [path for path in lifecycle.data_dir.rglob("*") if path.is_file() and path.suffix != ".joblib"]
    assert stored and not [path for path in stored if SECRET_VALUE.encode() in path.read_bytes()]


def test_first_candidate_is_promoted_when_nothing_is_in_production(lifecycle: Lifecycle) -> None:
    assert lifecycle.production_before_any is None
    version = _client(lifecycle).get_model_version(REGISTERED_MODEL, "1")
    assert version.tags["decision"] == "promoted"
    assert version.tags["decision_reason"] == "no production model yet"


def test_candidate_not_better_by_the_margin_is_rejected_and_production_stays(lifecycle: Lifecycle) -> None:
    ok, reason = lifecycle.second_decision
    assert not ok
    assert reason == "candidate churn_roc_auc 0.702 does not beat production 0.7 by margin 0.005: difference 0.002"
    assert lifecycle.production_after_reject is not None
    assert lifecycle.production_after_reject.model_version == "v1"
    assert lifecycle.production_after_reject.bundle["name"] == "first"

    client = _client(lifecycle)
    version = client.get_model_version(REGISTERED_MODEL, lifecycle.second.version)
    assert version.tags["decision"] == "rejected" and version.tags["decision_reason"] == reason
    run_tags = client.get_run(lifecycle.second.run_id).data.tags
    assert run_tags["decision"] == "rejected" and run_tags["decision_reason"] == reason


def test_better_candidate_becomes_production(lifecycle: Lifecycle) -> None:
    production = lifecycle.registry.production()
    assert production is not None
    assert (production.version, production.model_version, production.run_id) == ("3", "v3", lifecycle.third.run_id)
    assert production.bundle["name"] == "third"
    assert _probe(production.bundle) == _probe(lifecycle.bundles["v3"])
    assert production.metrics == {"churn_roc_auc": 0.75, "clv_mae": 12.5}
    assert production.tags["decision"] == "promoted"
    assert production.tags["decision_reason"].startswith("candidate churn_roc_auc 0.75 beats production 0.7 by 0.05")
    assert not [key for key in production.tags if key.startswith("mlflow.")]
    alias = _client(lifecycle).get_registered_model(REGISTERED_MODEL).aliases
    assert alias == {PRODUCTION_ALIAS: 3}


def test_history_lists_every_version_with_its_decision(lifecycle: Lifecycle) -> None:
    history = lifecycle.registry.history()
    assert [(row["model_version"], row["decision"], row["is_production"]) for row in history] == [
        ("v1", "promoted", False), ("v2", "rejected", False), ("v3", "promoted", True)]
    assert [row["run_id"] for row in history] == [lifecycle.first.run_id, lifecycle.second.run_id,
                                                 lifecycle.third.run_id]
    assert history[1]["reason"] == lifecycle.second_decision[1]
    assert history[0]["run_name"] == "train-v1"
    assert history[0]["created_at"] <= history[2]["created_at"]


def test_load_returns_any_version_by_label(lifecycle: Lifecycle) -> None:
    for label, bundle in lifecycle.bundles.items():
        loaded = lifecycle.registry.load(label)
        assert loaded["name"] == bundle["name"]
        assert _probe(loaded) == _probe(bundle)
    assert lifecycle.registry.load("2")["name"] == "second"


@pytest.mark.parametrize("label", ["v9", "9", "latest", ""])
def test_unknown_version_names_the_available_ones(lifecycle: Lifecycle, label: str) -> None:
    with pytest.raises(ModelInputError, match=r"available: v1, v2, v3$"):
        lifecycle.registry.load(label)


def test_unknown_version_on_an_empty_registry_says_none_exist(lifecycle: Lifecycle) -> None:
    assert "available: none (no model has been logged yet)" in lifecycle.unknown_before_any


def test_production_loads_in_a_fresh_process_with_mlflow_offline(lifecycle: Lifecycle) -> None:
    script = ("import json, numpy as np; from ml.registry import Registry; p = Registry().production(); "
              "from mlflow.telemetry.utils import is_telemetry_disabled; "
              f"x = np.array({X_PROBE.tolist()}); "
              "print(json.dumps([p.model_version, p.bundle['name'], p.bundle['churn'].predict_proba(x)[:, 1]"
              ".round(10).tolist(), is_telemetry_disabled()]))")
    env = {**os.environ, "TAILOR_DATA_DIR": str(lifecycle.data_dir)}
    # as outside the tests: MLflow turns its telemetry off by itself under pytest or CI, and ml.registry sets this one
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "PYTEST_CURRENT_TEST", "CI"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=lifecycle.cwd, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["v3", "third", _probe(lifecycle.bundles["v3"]), True]
    assert "Creating initial MLflow database tables" not in done.stderr
    assert "View run" not in done.stdout


def test_nothing_is_written_outside_the_data_dir(lifecycle: Lifecycle) -> None:
    assert list(lifecycle.cwd.iterdir()) == []  # no ./mlruns, no stray database
    assert sorted(path.name for path in lifecycle.data_dir.iterdir()) == ["mlflow"]
    assert sorted(path.name for path in (lifecycle.data_dir / "mlflow").iterdir()) == ["artifacts", "mlflow.db"]


def test_promote_and_reject_check_the_candidate(lifecycle: Lifecycle) -> None:
    registry = lifecycle.registry
    with pytest.raises(ModelInputError, match=r"v99 .* is not a version .*available: v1, v2, v3"):
        registry.promote(Candidate(run_id="nope", version="99", model_version="v99"), "because")
    with pytest.raises(ModelInputError, match="is not a version"):  # the version exists, the run does not match
        registry.reject(Candidate(run_id=lifecycle.first.run_id, version="2", model_version="v2"), "because")
    with pytest.raises(ModelInputError, match="v3 is the production model"):
        registry.reject(lifecycle.third, "changed my mind")
    with pytest.raises(ModelInputError, match="needs a reason"):
        registry.promote(lifecycle.third, " ")
    assert registry.production().model_version == "v3"


def test_unusable_candidate_input_is_refused_before_anything_is_logged(lifecycle: Lifecycle, tmp_path: Path) -> None:
    registry = lifecycle.registry
    client = _client(lifecycle)
    runs_before = len(client.search_runs([registry.experiment_id]))
    good = {"bundle": {"x": 1}, "run_name": "bad", "params": {}, "metrics": {"auc": 0.5}, "feature_list": ["a"],
            "data_window": {}, "model_card": ""}
    cases = [
        ({"bundle": lambda row: row}, "cannot be saved with joblib"),
        ({"metrics": {"auc": "high"}}, "metric 'auc' is 'high', not a number"),
        ({"feature_list": []}, "feature_list is empty"),
        ({"feature_list": ["a", "b", "a"]}, "feature_list names a more than once"),
        ({"artifacts": {"report": tmp_path / "missing.html"}}, "missing.html does not exist"),
        ({"artifacts": {"bundle": tmp_path}}, "one the registry writes itself"),
        ({"params": {"features": "x"}}, "params features clash"),
        ({"run_name": ""}, "needs a run_name"),
        ({"model_card": None}, "model_card must be Markdown text"),
    ]
    for change, message in cases:
        with pytest.raises(ModelInputError, match=message):
            registry.log_candidate(**{**good, **change})
    assert len(client.search_runs([registry.experiment_id])) == runs_before
    assert [row["model_version"] for row in registry.history()] == ["v1", "v2", "v3"]


@pytest.mark.parametrize(
    ("candidate", "production", "kwargs", "expected"),
    [
        ({"auc": 0.5}, None, {}, (True, "no production model yet")),
        ({}, {"auc": 0.5}, {}, (False, "candidate has no usable auc (missing or NaN): it cannot be compared with "
                                       "production")),
        ({"auc": math.nan}, {"auc": 0.5}, {}, (False, "candidate has no usable auc (missing or NaN): it cannot be "
                                                      "compared with production")),
        ({"auc": 0.412}, {"auc": 0.398}, {}, (True, "candidate auc 0.412 beats production 0.398 by 0.014 >= margin "
                                                    "0.005")),
        ({"auc": 0.400}, {"auc": 0.398}, {}, (False, "candidate auc 0.4 does not beat production 0.398 by margin "
                                                     "0.005: difference 0.002")),
        # equal to the margin at float precision counts: 0.7 - 0.695 is 0.00499999...
        ({"auc": 0.7}, {"auc": 0.695}, {}, (True, "candidate auc 0.7 beats production 0.695 by 0.005 >= margin 0.005")),
        ({"auc": 0.3}, {"auc": 0.5}, {}, (False, "candidate auc 0.3 does not beat production 0.5 by margin 0.005: "
                                                 "difference -0.2")),
        ({"mae": 10.0}, {"mae": 12.0}, {"metric": "mae", "margin": 1.0, "higher_is_better": False},
         (True, "candidate mae 10 beats production 12 by 2 >= margin 1 (lower is better)")),
        ({"mae": 11.5}, {"mae": 12.0}, {"metric": "mae", "margin": 1.0, "higher_is_better": False},
         (False, "candidate mae 11.5 does not beat production 12 by margin 1 (lower is better): difference 0.5")),
        ({"auc": 0.6}, {"auc": math.nan}, {}, (True, "candidate auc 0.6; production has no usable auc on this window "
                                                     "(missing or NaN)")),
    ],
)
def test_promotion_decision(candidate: dict, production: dict | None, kwargs: dict, expected: tuple[bool, str]) -> None:
    arguments = {"metric": "auc", "margin": 0.005, **kwargs}
    assert promotion_decision(candidate, production, **arguments) == expected


@pytest.mark.parametrize("margin", [-0.01, math.nan])
def test_promotion_decision_refuses_a_bad_margin(margin: float) -> None:
    with pytest.raises(ModelInputError, match="margin must be a number >= 0"):
        promotion_decision({"auc": 0.5}, {"auc": 0.4}, metric="auc", margin=margin)


def test_tracking_uri_defaults_to_sqlite_under_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri() == "http://127.0.0.1:5000"
    assert list(tmp_path.iterdir()) == []  # resolving the URI creates nothing


def test_a_date_is_served_by_the_model_promoted_as_of_then(lifecycle: Lifecycle) -> None:
    """Point in time: a date scores with the latest promoted version trained at or before it, whatever was promoted
    since (a backfilled past Monday); the alias keeps naming the newest; a rejected version serves no date."""
    registry = Registry(tracking_uri=lifecycle.registry.tracking_uri, model="tailor_dated_models",
                        description="dated models")
    monday = datetime(2026, 10, 5, tzinfo=UTC)

    def trained(name: str, as_of: datetime) -> Candidate:
        return registry.log_candidate(bundle=_bundle(name, 1.0), run_name=name, params={}, metrics={"auc": 0.5},
                                      feature_list=["a"], data_window={}, model_card="", trained_as_of=as_of)

    assert registry.production(monday) is None and registry.production_label(monday) is None
    first = trained("first", monday)
    registry.promote(first, "none in production")
    newest = trained("newest", monday + timedelta(days=7))
    registry.promote(newest, "better")
    backfilled = trained("backfilled", monday - timedelta(days=7))  # a backfill reaching a Monday before them
    registry.promote(backfilled, "none in production as of then")

    assert registry.production().model_version == newest.model_version  # the alias did not move back
    served = {days: registry.production_label(monday + timedelta(days=days)) for days in (-8, -7, -1, 0, 6, 7, 30)}
    assert served == {-8: None, -7: backfilled.model_version, -1: backfilled.model_version, 0: first.model_version,
                      6: first.model_version, 7: newest.model_version, 30: newest.model_version}
    assert registry.production(monday + timedelta(days=1)).bundle["name"] == "first"

    # trained again as of the same date and rejected: the date is still served by the promoted one, and is decided
    again = trained("again", monday + timedelta(days=7))
    registry.reject(again, "does not beat production")
    assert registry.production_label(monday + timedelta(days=7)) == newest.model_version
    assert registry.decided_at(monday + timedelta(days=7)) == again.model_version
    assert registry.decided_at(monday + timedelta(days=1)) is None
    assert [row["trained_as_of"] for row in registry.history()] == [
        "2026-10-05T00:00:00+00:00", "2026-10-12T00:00:00+00:00", "2026-09-28T00:00:00+00:00",
        "2026-10-12T00:00:00+00:00"]
    with pytest.raises(ModelInputError, match="as_of must be a timezone-aware datetime"):
        registry.production(datetime(2026, 10, 5))  # naive: the mistake under test
