"""Task processes that start warm: the libraries Tailor's tasks use are imported once, in the process Airflow forks
each task process from, not again in every task.

Airflow runs a task in a process forked from an executor's worker (LocalExecutor's workers, themselves forked from
the scheduler; Celery's pool processes, forked from `airflow celery worker`), so a task process starts with every
module its parent holds. Tailor's tasks import their libraries inside the task, as parsing a DAG file must stay light:
each task paid its imports again, more than many tasks' own work: on a 2-core machine, Great Expectations alone takes
3 s from bytecode (`make setup` compiles it) and 6-13 s from source.

- LocalExecutor: `AIRFLOW__CORE__EXECUTOR=tailor.airflow.executor.LocalExecutor`, Airflow's own with the imports
  made before it forks its workers (`make airflow` and the scheduler tests use it).
- CeleryExecutor: `AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=tailor.airflow.executor.CELERY_CONFIG`, Airflow's default
  Celery configuration; the worker makes the imports when Celery imports its task modules, where Airflow preloads its
  own, before it forks its pool (docker-compose.yaml uses it).

Only imports: nothing here opens a file, a connection or a thread, which a forked process could not share.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

from airflow.executors.local_executor import LocalExecutor as AirflowLocalExecutor

log = logging.getLogger(__name__)

# The modules Tailor's task bodies import (tailor.airflow.tasks), with the libraries they import inside functions.
TASK_MODULES = (
    "great_expectations",
    "tailor.quality",
    "dbt.cli.main",
    "dbt.adapters.duckdb",
    "tailor.transform",
    "tailor.airflow.dbt_layers",
    "tailor.airflow.hooks",
    "tailor.pipeline",
    "tailor.snapshot",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",  # imported when a client first opens the models' SQLite store
    "ml.training",
    "ml.personalization",
    "ml.registry",
    "tailor.airflow.daily",
    "tailor.export.feed",
    "tailor.export.steps",
    "tailor.run_report",
)

_NOISY_IMPORT_LOGGERS = ("great_expectations._docs_decorators", "great_expectations.expectations.registry")


def preload_task_modules() -> None:
    started = time.monotonic()
    # Great Expectations logs about a hundred lines at INFO while it imports (functions it skips documenting, metrics
    # declared twice): noise in the scheduler's or worker's output, so at WARNING for the import alone
    quiet = [logging.getLogger(name) for name in _NOISY_IMPORT_LOGGERS]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    try:
        for name in TASK_MODULES:
            try:
                importlib.import_module(name)
            except Exception as exc:  # the task importing it fails with the same error, where it shows; the rest run
                log.warning("could not preload %s (each task using it imports it itself): %s: %s", name,
                            type(exc).__name__, exc)
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    log.info("Tailor's task modules preloaded in %.1f s", time.monotonic() - started)


class LocalExecutor(AirflowLocalExecutor):
    """Airflow's LocalExecutor, whose workers (and so every task process) start with Tailor's task modules."""

    def start(self) -> None:
        preload_task_modules()
        super().start()


def _preload_in_celery_worker(**_: Any) -> None:
    preload_task_modules()


def _celery_config() -> dict[str, Any]:
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
    from celery.signals import import_modules

    # sent by the worker alone, when it imports the task modules, before it starts its pool
    import_modules.connect(_preload_in_celery_worker)
    return dict(DEFAULT_CELERY_CONFIG)


def __getattr__(name: str) -> Any:
    # CELERY_CONFIG is made on first use: the LocalExecutor's processes never import the Celery provider.
    if name == "CELERY_CONFIG":
        globals()[name] = config = _celery_config()
        return config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
