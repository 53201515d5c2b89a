"""Task processes start warm (tailor.airflow.executor): every module a task body imports is among what the executors
import before they fork, so a new import in a task cannot silently bring the per-task import cost back. The Airflow
runs themselves (tests/dags: `make airflow`'s backfill, the Celery topology) run on these executors."""

from __future__ import annotations

import ast
import importlib.util
import sys
import threading
from pathlib import Path

from tailor.airflow import executor, tasks


def _imported_in_functions(path: Path) -> set[str]:
    """The modules that import statements inside functions of `path` load (`from a.b import c`: a.b, and a.b.c when
    that is a module)."""
    names: set[str] = set()
    for function in ast.walk(ast.parse(path.read_text())):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if _is_module(name)}


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_every_module_a_task_imports_is_preloaded():
    threads = set(threading.enumerate())
    executor.preload_task_modules()
    assert set(threading.enumerate()) <= threads  # no new thread holds a lock a forked process would inherit
    wanted = _imported_in_functions(Path(tasks.__file__))
    assert {"tailor.quality", "tailor.transform", "tailor.airflow.daily"} <= wanted  # the scan sees the task bodies
    missing = sorted(name for name in wanted if name not in sys.modules)
    assert not missing, f"task bodies import modules tailor.airflow.executor.TASK_MODULES does not load: {missing}"
    for library in ("great_expectations", "dbt.cli.main", "mlflow", "sklearn", "duckdb"):
        assert library in sys.modules, library


def test_the_celery_configuration_is_airflows_and_preloads_in_the_worker():
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
    from celery.signals import import_modules

    assert executor.CELERY_CONFIG == DEFAULT_CELERY_CONFIG
    receivers = [receiver() if callable(receiver) and not hasattr(receiver, "__name__") else receiver
                 for _, receiver in import_modules.receivers]
    assert executor._preload_in_celery_worker in receivers
