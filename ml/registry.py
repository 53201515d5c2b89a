"""Model tracking and the production registry, on MLflow; promotion is a rule in code (`promotion_decision`).

Each training run logs one candidate: an MLflow run (params, metrics, feature list, data window, model card, reports)
holding the trained bundle as a plain joblib file, and a version of one registered model that points at that file.
Each version is tagged with the as-of it was trained at; a date is scored with the version in production as of then
(`production(as_of)`: the latest promoted version trained at or before it), so a backfill of a past date uses the
models that date had. The alias `production` names the newest promoted version; `promote` moves it (never back to
an older-trained one), `reject` only records why not. Scores are written with a version's label `v<N>`, so any past
bundle can be loaded back to explain or reproduce a score.

Why a joblib artifact rather than an MLflow model flavor: the bundle is several pipelines and parameters used by our
own code, never served through MLflow. `create_model_version` accepts a plain artifact URI as its source (checked on
MLflow 3.17 with a sqlite store), so we skip pyfunc wrappers, signatures and pip-requirement inference altogether.

By default the store is local and private to the data dir: `<data dir>/mlflow/mlflow.db` (sqlite) with artifacts in
`<data dir>/mlflow/artifacts`; MLFLOW_TRACKING_URI points it elsewhere. MLflow is imported on first use only: the
import alone takes seconds, which a DAG parse or `promotion_decision` should not pay.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import numbers
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import joblib

from ml.errors import ModelInputError
from tailor import settings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

REGISTERED_MODEL = "tailor_customer_models"
PRODUCTION_ALIAS = "production"

BUNDLE_DIR = "bundle"
BUNDLE_FILE = "bundle.joblib"
FEATURES_FILE = "features.json"
DATA_WINDOW_FILE = "data_window.json"
MODEL_CARD_FILE = "model_card.md"

KIND_TAG = "tailor.kind"
MODEL_VERSION_TAG = "tailor.model_version"
RUN_NAME_TAG = "tailor.run_name"
TRAINED_AS_OF_TAG = "tailor.trained_as_of"  # the as-of the version was trained at (ISO, UTC): what dates it serves
DECISION_TAG = "decision"
REASON_TAG = "decision_reason"

# A param key holding any of these words is never logged: MLflow's store is readable by anyone with the data dir.
_SECRET_WORDS = ("token", "password", "secret", "key")
# MLflow's own limits (mlflow.utils.validation), copied so that preparing a run needs no MLflow import.
_MAX_PARAM_VALUE = 6000
_MAX_TAG_VALUE = 8000
_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000
_INVALID_NAME_CHARS = re.compile(r"[^\w\-. /]")  # MLflow allows alphanumerics, _ - . space and / in names
_VERSION_LABEL = re.compile(r"^[vV]?(\d+)$")
_REMOTE_SCHEMES = ("http", "https", "databricks", "databricks-uc")
# Equal metrics at float precision must count as equal: 0.7 - 0.695 is 0.00499999..., not below a 0.005 margin.
_MARGIN_TOLERANCE = 1e-12

_log = logging.getLogger(__name__)


def _quiet_offline_mlflow() -> None:
    """Keep MLflow offline and quiet; explicit settings of these variables win. Done when this module is imported,
    before anything imports MLflow if possible: importing MLflow starts a thread that fetches a telemetry config over
    the network unless telemetry is disabled by then (events sent later check the variable again)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # tqdm bars on every download
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # "🏃 View run" lines, tracking servers


_quiet_offline_mlflow()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the local sqlite store under the data dir (created on first use)."""
    configured = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if configured:
        return configured
    return f"sqlite:///{settings.data_dir() / 'mlflow' / 'mlflow.db'}"


_default_tracking_uri = tracking_uri  # Registry's `tracking_uri` parameter shadows the function's name


@dataclass(frozen=True)
class Candidate:
    """A logged training run and the registered version that points at its bundle."""

    run_id: str
    version: str  # the registered model version number, e.g. "3"
    model_version: str  # Tailor's label, f"v{version}": what scores are written with


@dataclass(frozen=True)
class Production:
    """The version the `production` alias names, with its bundle loaded and its run's metrics and Tailor tags."""

    version: str
    model_version: str
    run_id: str
    bundle: object
    metrics: dict[str, float]
    tags: dict[str, str]  # the run's own tags, MLflow's internal `mlflow.*` ones left out


class Registry:
    """One registered model of Tailor's (customer models by default) in one MLflow experiment (see the module docstring)."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = "tailor",
                 model: str = REGISTERED_MODEL, description: str = "Tailor's customer models") -> None:
        self.tracking_uri = tracking_uri or _default_tracking_uri()
        self.experiment = experiment
        self.model = model  # the registered model: each family of models is promoted on its own rule
        self.description = description
        mlflow = _import_mlflow()
        db_file = _sqlite_file(self.tracking_uri)
        if db_file is not None:
            # sqlite creates the file but not its folder; MLflow runs its migrations on this first connection.
            db_file.parent.mkdir(parents=True, exist_ok=True)
            if not db_file.exists():
                _log.info("creating the MLflow store %s (first use runs its migrations: a few seconds)", db_file)
        self._client: MlflowClient = mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self.experiment_id = self._experiment_id()

    # -- logging a training run ---------------------------------------------------------------------------------------

    def log_candidate(
        self,
        *,
        bundle: object,
        run_name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float | None],
        feature_list: list[str],
        data_window: Mapping[str, str],
        model_card: str,
        artifacts: Mapping[str, Path] | None = None,
        tags: Mapping[str, str] | None = None,
        trained_as_of: datetime | None = None,
    ) -> Candidate:
        """Log one training run and register its bundle as a new version; nothing is promoted here.

        `trained_as_of` (the as-of of the data it learnt from) dates the version: `production(as_of)` serves a date
        with the version promoted as of then. A version without it serves no date (only the alias reaches it).

        Params are flattened (`a.b`) and stringified, secret-looking keys dropped; metrics that are None, NaN or
        infinite are left out (a metric that could not be computed is absent, not zero). `artifacts` maps a folder
        name in the run to a local file or folder, e.g. {"report": Path(".../training_report.html")}.
        """
        from mlflow.entities import Metric, Param, RunTag

        if not isinstance(run_name, str) or not run_name.strip():
            raise ModelInputError("log_candidate needs a run_name")
        if not isinstance(model_card, str):
            raise ModelInputError(f"model_card must be Markdown text, got {type(model_card).__name__}")
        features = _checked_features(feature_list)
        window = {str(k): str(v) for k, v in _checked_mapping(data_window, "data_window").items()}
        flat_params = _loggable_params(params, features, window)
        logged_metrics = _loggable_metrics(metrics)
        user_tags = {_clean_name(key): value[:_MAX_TAG_VALUE]
                     for key, value in _flatten(_checked_mapping(tags or {}, "tags")).items() if not _looks_secret(key)}
        extra = _checked_artifacts(artifacts or {})
        dated = {} if trained_as_of is None else {TRAINED_AS_OF_TAG: _iso_utc(trained_as_of, "trained_as_of")}

        with tempfile.TemporaryDirectory(prefix="tailor-candidate-") as staging_dir:
            # Everything is written locally first, so a bundle that cannot be pickled leaves no half-logged run.
            staging = Path(staging_dir)
            (staging / BUNDLE_DIR).mkdir()
            try:
                joblib.dump(bundle, staging / BUNDLE_DIR / BUNDLE_FILE)
            except Exception as error:
                raise ModelInputError(f"the model bundle cannot be saved with joblib: {error}") from error
            (staging / FEATURES_FILE).write_text(json.dumps(features, indent=2) + "\n", encoding="utf-8")
            (staging / DATA_WINDOW_FILE).write_text(json.dumps(window, indent=2) + "\n", encoding="utf-8")
            (staging / MODEL_CARD_FILE).write_text(model_card, encoding="utf-8")

            run_tags = {**user_tags, **dated, KIND_TAG: "candidate", "tailor.registered_model": self.model}
            run = self._client.create_run(self.experiment_id, run_name=run_name, tags=run_tags)
            run_id = run.info.run_id
            try:
                now = int(time.time() * 1000)
                param_list = [Param(key, value) for key, value in flat_params.items()]
                metric_list = [Metric(key, value, now, 0) for key, value in logged_metrics.items()]
                for start in range(0, len(param_list), _MAX_PARAMS_PER_BATCH):
                    self._client.log_batch(run_id, params=param_list[start:start + _MAX_PARAMS_PER_BATCH])
                for start in range(0, len(metric_list), _MAX_METRICS_PER_BATCH):
                    self._client.log_batch(run_id, metrics=metric_list[start:start + _MAX_METRICS_PER_BATCH])
                for name in (FEATURES_FILE, DATA_WINDOW_FILE, MODEL_CARD_FILE):
                    self._client.log_artifact(run_id, str(staging / name))
                for folder, path in extra.items():
                    if path.is_dir():
                        self._client.log_artifacts(run_id, str(path), artifact_path=f"{folder}/{path.name}")
                    else:
                        self._client.log_artifact(run_id, str(path), artifact_path=folder)
                self._client.log_artifact(run_id, str(staging / BUNDLE_DIR / BUNDLE_FILE), artifact_path=BUNDLE_DIR)

                self._ensure_registered_model()
                version = self._client.create_model_version(
                    self.model,
                    source=f"{run.info.artifact_uri.rstrip('/')}/{BUNDLE_DIR}",
                    run_id=run_id,
                    tags={**user_tags, **dated, KIND_TAG: "candidate", RUN_NAME_TAG: run_name},
                    description=f"training run {run_name}",
                )
                candidate = Candidate(run_id=run_id, version=str(version.version), model_version=f"v{version.version}")
                self._client.set_model_version_tag(
                    self.model, candidate.version, MODEL_VERSION_TAG, candidate.model_version
                )
                self._client.log_batch(run_id, tags=[RunTag(MODEL_VERSION_TAG, candidate.model_version)])
            except BaseException:
                with contextlib.suppress(Exception):  # the original error is the one to see
                    self._client.set_terminated(run_id, status="FAILED")
                raise
            self._client.set_terminated(run_id, status="FINISHED")
        return candidate

    # -- the production model -----------------------------------------------------------------------------------------

    def log_artifact(self, candidate: Candidate, path: Path, folder: str = "report") -> None:
        """Add a file written after the candidate was logged (its HTML report names the version) to its run."""
        self._checked_candidate(candidate)
        self._client.log_artifact(candidate.run_id, str(_checked_artifacts({folder: Path(path)})[folder]),
                                  artifact_path=folder)

    def production(self, as_of: datetime | None = None) -> Production | None:
        """The production model, its bundle loaded back; None while there is none.

        Without `as_of`: the version the `production` alias names (what a person promoted last, or the newest
        training's winner). With `as_of`: the model that was production then, so that scoring, training (a candidate
        competes with it) and a backfill of any date reproduce what a run on that date chose: of the promoted versions
        trained as of `as_of` or before, the latest trained, and of those the latest registered."""
        if as_of is None:
            version = self._aliases().get(PRODUCTION_ALIAS)
            model_version = None if version is None else self._client.get_model_version(self.model, str(version))
        else:
            model_version = self._promoted_as_of(_iso_utc(as_of, "as_of"))
        if model_version is None:
            return None
        run = self._client.get_run(model_version.run_id)
        return Production(
            version=str(model_version.version),
            model_version=f"v{model_version.version}",
            run_id=model_version.run_id,
            bundle=self._load_bundle(model_version),
            metrics=dict(run.data.metrics),
            tags={key: value for key, value in run.data.tags.items() if not key.startswith("mlflow.")},
        )

    def production_label(self, as_of: datetime) -> str | None:
        """The label (v<N>) of the model in production as of `as_of` (as `production(as_of)` picks it, not loaded)."""
        version = self._promoted_as_of(_iso_utc(as_of, "as_of"))
        return None if version is None else f"v{version.version}"

    def decided_at(self, as_of: datetime) -> str | None:
        """The label (v<N>) of the latest version trained as of exactly `as_of` and then promoted or rejected: that
        date's training is done (a re-run of the day need not train again). None if there is none."""
        stamp = _iso_utc(as_of, "as_of")
        decided = [version for version in self._versions()
                   if version.tags.get(TRAINED_AS_OF_TAG) == stamp and version.tags.get(DECISION_TAG)]
        return f"v{decided[-1].version}" if decided else None

    def promote(self, candidate: Candidate, reason: str) -> None:
        """Make `candidate` the production model, recording why on its version and its run."""
        trained = self._checked_candidate(candidate).tags.get(TRAINED_AS_OF_TAG)
        self._record_decision(candidate, "promoted", reason)
        # The alias moves last: if recording the decision failed, production is still the previous model. It stays on
        # a version trained later than this one (a backfill promoting a past date's model): it names the newest.
        current = self._aliases().get(PRODUCTION_ALIAS)
        newer = None if current is None else self._model_version(current).tags.get(TRAINED_AS_OF_TAG)
        if newer is not None and trained is not None and newer > trained:
            _log.info("promoted %s as of %s: %s; the alias stays on v%s, trained as of %s", candidate.model_version,
                      trained, reason, current, newer)
            return
        self._client.set_registered_model_alias(self.model, PRODUCTION_ALIAS, candidate.version)
        _log.info("promoted %s to production: %s", candidate.model_version, reason)

    def reject(self, candidate: Candidate, reason: str) -> None:
        """Record that `candidate` stays out of production, and why; the production model is unchanged."""
        self._checked_candidate(candidate)
        if self._aliases().get(PRODUCTION_ALIAS) == candidate.version:
            raise ModelInputError(
                f"{candidate.model_version} is the production model: promote another version before rejecting it"
            )
        self._record_decision(candidate, "rejected", reason)
        _log.info("rejected %s: %s", candidate.model_version, reason)

    # -- looking back -------------------------------------------------------------------------------------------------

    def load(self, model_version: str) -> object:
        """The bundle of a registered version, named "v3" or "3"."""
        match = _VERSION_LABEL.match(str(model_version).strip())
        version = None
        if match:
            version = self._model_version(str(int(match.group(1))))
        if version is None:
            raise ModelInputError(
                f"no model version {model_version!r} in {self.model}; available: {self._available()}"
            )
        return self._load_bundle(version)

    def history(self) -> list[dict[str, Any]]:
        """Every registered version, oldest first: version, model_version, run_id, run_name, decision ("promoted",
        "rejected" or None while undecided), reason, trained_as_of (ISO, or None), created_at (UTC) and
        is_production."""
        production = self._aliases().get(PRODUCTION_ALIAS)
        rows = []
        for version in self._versions():
            rows.append({
                "version": str(version.version),
                "model_version": f"v{version.version}",
                "run_id": version.run_id,
                "run_name": version.tags.get(RUN_NAME_TAG),
                "trained_as_of": version.tags.get(TRAINED_AS_OF_TAG),
                "decision": version.tags.get(DECISION_TAG),
                "reason": version.tags.get(REASON_TAG),
                "created_at": datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC),
                "is_production": str(version.version) == production,
            })
        return rows

    # -- MLflow plumbing ----------------------------------------------------------------------------------------------

    def _experiment_id(self) -> str:
        experiment = self._client.get_experiment_by_name(self.experiment)
        if experiment is None:
            location = _artifact_location(self.tracking_uri)
            return self._client.create_experiment(self.experiment, artifact_location=location)
        if experiment.lifecycle_stage == "deleted":
            # A deleted experiment keeps its name reserved; restoring it is the only way to log under that name.
            self._client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def _ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.create_registered_model(
                self.model, description=f"{self.description}: one version per training run"
            )
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _aliases(self) -> dict[str, str]:
        """alias -> version of the registered model; empty before its first version."""
        from mlflow.exceptions import MlflowException

        try:
            model = self._client.get_registered_model(self.model)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise
        return {alias: str(version) for alias, version in model.aliases.items()}

    def _model_version(self, version: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._client.get_model_version(self.model, version)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def _promoted_as_of(self, stamp: str) -> ModelVersion | None:
        served = [version for version in self._versions() if version.tags.get(DECISION_TAG) == "promoted"
                  and (trained := version.tags.get(TRAINED_AS_OF_TAG)) is not None and trained <= stamp]
        return max(served, key=lambda version: (version.tags[TRAINED_AS_OF_TAG], int(version.version)), default=None)

    def _versions(self) -> list[ModelVersion]:
        versions: list[ModelVersion] = []
        page_token = None
        while True:
            page = self._client.search_model_versions(f"name='{self.model}'", page_token=page_token)
            versions.extend(page)
            page_token = page.token
            if not page_token:
                return sorted(versions, key=lambda version: int(version.version))

    def _available(self) -> str:
        labels = [f"v{version.version}" for version in self._versions()]
        return ", ".join(labels) if labels else "none (no model has been logged yet)"

    def _checked_candidate(self, candidate: Candidate) -> ModelVersion:
        """The candidate's registered version; ModelInputError if it is not one of this model's."""
        version = self._model_version(candidate.version)
        if version is None or version.run_id != candidate.run_id:
            raise ModelInputError(
                f"{candidate.model_version} (run {candidate.run_id}) is not a version of {self.model}; "
                f"available: {self._available()}"
            )
        return version

    def _record_decision(self, candidate: Candidate, decision: str, reason: str) -> None:
        from mlflow.entities import RunTag

        if not isinstance(reason, str) or not reason.strip():
            raise ModelInputError(f"a decision on {candidate.model_version} needs a reason")
        reason = reason[:_MAX_TAG_VALUE]
        for key, value in ((DECISION_TAG, decision), (REASON_TAG, reason)):
            self._client.set_model_version_tag(self.model, candidate.version, key, value)
        self._client.log_batch(candidate.run_id, tags=[RunTag(DECISION_TAG, decision), RunTag(REASON_TAG, reason)])

    def _load_bundle(self, version: ModelVersion) -> object:
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory(prefix="tailor-bundle-") as target:
            path = download_artifacts(
                artifact_uri=f"{version.source.rstrip('/')}/{BUNDLE_FILE}", dst_path=target,
                tracking_uri=self.tracking_uri,
            )
            return joblib.load(path)


def promotion_decision(
    candidate_metrics: Mapping[str, float | None],
    production_metrics: Mapping[str, float | None] | None,
    *,
    metric: str,
    margin: float,
    higher_is_better: bool = True,
) -> tuple[bool, str]:
    """Whether a candidate replaces production, and why, in words fit for a log and the version's tags.

    Both metric dicts must be computed on the candidate's held-out window (score the production bundle on it too):
    metrics from different windows are not comparable. The candidate must beat production by at least `margin`
    (absolute, in the metric's units).
    """
    if not isinstance(margin, numbers.Real) or not math.isfinite(margin) or margin < 0:
        raise ModelInputError(f"the promotion margin must be a number >= 0, got {margin!r}")
    if production_metrics is None:
        return True, "no production model yet"
    candidate_value = _finite(candidate_metrics.get(metric))
    if candidate_value is None:
        return False, f"candidate has no usable {metric} (missing or NaN): it cannot be compared with production"
    production_value = _finite(production_metrics.get(metric))
    if production_value is None:
        # Production could not be scored on this window (e.g. a feature it needs is gone) while the candidate could:
        # keeping a model that cannot be measured is worse than replacing it.
        return True, (f"candidate {metric} {_fmt(candidate_value)}; production has no usable {metric} "
                      "on this window (missing or NaN)")
    gain = candidate_value - production_value if higher_is_better else production_value - candidate_value
    direction = "" if higher_is_better else " (lower is better)"
    if gain >= margin - _MARGIN_TOLERANCE:
        return True, (f"candidate {metric} {_fmt(candidate_value)} beats production {_fmt(production_value)} "
                      f"by {_fmt(gain)} >= margin {_fmt(margin)}{direction}")
    return False, (f"candidate {metric} {_fmt(candidate_value)} does not beat production {_fmt(production_value)} "
                   f"by margin {_fmt(margin)}{direction}: difference {_fmt(gain)}")


# -- preparing what a run logs (pure functions) -------------------------------------------------------------------------


def _iso_utc(moment: datetime, what: str) -> str:
    """One text form for a moment, so that tags compare as times: ISO 8601 in UTC, to the second."""
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ModelInputError(f"{what} must be a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _import_mlflow() -> Any:
    import mlflow

    # "Creating initial MLflow database tables..." on first use: we log our own one line instead.
    migrations = logging.getLogger("mlflow.store.db.utils")
    if migrations.level == logging.NOTSET:
        migrations.setLevel(logging.WARNING)
    return mlflow


def _sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def _artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps artifacts: a tracking server decides for itself; a database store would default
    to ./mlruns in the working directory, so artifacts go beside the sqlite file, or under the data dir."""
    if urlparse(uri).scheme in _REMOTE_SCHEMES:
        return None
    if uri.startswith("file:"):
        return None  # a file store keeps artifacts inside itself
    db_file = _sqlite_file(uri)
    root = db_file.parent if db_file is not None else settings.data_dir() / "mlflow"
    return (root / "artifacts").resolve().as_uri()


def _looks_secret(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, list | tuple | set | frozenset):
            items = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
            flat[name] = json.dumps(items, default=str)
        else:
            flat[name] = str(value)
    return flat


def _clean_name(name: str) -> str:
    cleaned = _INVALID_NAME_CHARS.sub("_", name).strip()
    if not cleaned:
        raise ModelInputError(f"{name!r} cannot be a param or metric name")
    return cleaned


def _loggable_params(params: Mapping[str, Any], features: list[str], window: Mapping[str, str]) -> dict[str, str]:
    flat = _flatten(_checked_mapping(params, "params"))
    dropped = sorted(key for key in flat if _looks_secret(key))
    if dropped:
        _log.info("not logging params that look like secrets: %s", ", ".join(dropped))
    logged: dict[str, str] = {}
    for key, value in flat.items():
        if not _looks_secret(key):
            logged[_clean_name(key)] = value
    ours = {"features": ",".join(features), "n_features": str(len(features))}
    ours.update({f"data_window.{key}": value for key, value in window.items()})
    ours = {_clean_name(key): value for key, value in ours.items() if not _looks_secret(key)}
    clashes = sorted(set(logged) & set(ours))
    if clashes:
        raise ModelInputError(f"params {', '.join(clashes)} clash with the names the registry logs itself")
    logged.update(ours)
    # MLflow rejects longer values; the full feature list is in features.json, a long param is context only.
    return {key: value if len(value) <= _MAX_PARAM_VALUE else value[:_MAX_PARAM_VALUE - 1] + "…"
            for key, value in logged.items()}


def _loggable_metrics(metrics: Mapping[str, float | None]) -> dict[str, float]:
    logged: dict[str, float] = {}
    for key, value in _checked_mapping(metrics, "metrics").items():
        if value is None:
            continue
        if isinstance(value, str) or not isinstance(value, numbers.Real):
            raise ModelInputError(f"metric {key!r} is {value!r}, not a number")
        if math.isfinite(float(value)):
            logged[_clean_name(str(key))] = float(value)
    return logged


def _checked_mapping(values: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(values, Mapping):
        raise ModelInputError(f"{what} must be a dict, got {type(values).__name__}")
    return values


def _checked_features(feature_list: Iterable[str]) -> list[str]:
    if isinstance(feature_list, str) or not isinstance(feature_list, Iterable):
        raise ModelInputError("feature_list must be a list of column names")
    features = [str(name) for name in feature_list]
    if not features:
        raise ModelInputError("feature_list is empty: a model needs at least one feature")
    duplicates = sorted({name for name in features if features.count(name) > 1})
    if duplicates:
        raise ModelInputError(f"feature_list names {', '.join(duplicates)} more than once")
    return features


def _checked_artifacts(artifacts: Mapping[str, Path]) -> dict[str, Path]:
    checked: dict[str, Path] = {}
    for folder, path in _checked_mapping(artifacts, "artifacts").items():
        parts = Path(folder).parts
        if not parts or Path(folder).is_absolute() or ".." in parts:
            raise ModelInputError(f"artifact name {folder!r} must be a relative folder name inside the run")
        if folder.rstrip("/") in (BUNDLE_DIR, FEATURES_FILE, DATA_WINDOW_FILE, MODEL_CARD_FILE):
            raise ModelInputError(f"artifact name {folder!r} is one the registry writes itself")
        local = Path(path)
        if not local.exists():
            raise ModelInputError(f"artifact {folder!r}: {local} does not exist")
        checked[folder] = local
    return checked


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, str) or not isinstance(value, numbers.Real):
        return None
    return float(value) if math.isfinite(float(value)) else None


def _fmt(value: float) -> str:
    return f"{value:.4g}"
