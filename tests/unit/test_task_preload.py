"""Task processes start warm (tailor.airflow.executor): every module a task body imports is among what the executors
import before they fork, so a new import in a task cannot silently bring the per-task import cost back. The Airflow
runs themselves (tests/dags: `make airflow`'s backfill, the Celery topology) run on these executors."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
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


# In a fresh interpreter: the test's own process has imported much of this already, which would hide a gap.
PRELOAD = """
import json, sys, threading
from tailor.airflow import executor
executor.preload_task_modules()
print(json.dumps({"modules": sorted(sys.modules), "threads": threading.active_count()}))
"""


def test_every_module_a_task_imports_is_preloaded():
    done = subprocess.run([sys.executable, "-c", PRELOAD], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    after = json.loads(done.stdout.strip().splitlines()[-1])
    assert after["threads"] == 1  # no thread holds a lock a forked process would inherit
    loaded = set(after["modules"])
    wanted = _imported_in_functions(Path(tasks.__file__))
    assert {"tailor.quality", "tailor.transform", "tailor.airflow.daily"} <= wanted  # the scan sees the task bodies
    missing = sorted(wanted - loaded)
    assert not missing, f"task bodies import modules tailor.airflow.executor.TASK_MODULES does not load: {missing}"
    for library in ("great_expectations", "dbt.cli.main", "mlflow", "sklearn", "duckdb"):
        assert library in loaded, library


def test_the_celery_configuration_is_airflows_and_preloads_in_the_worker():
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
    from celery.signals import import_modules

    assert executor.CELERY_CONFIG == DEFAULT_CELERY_CONFIG
    receivers = [receiver() if callable(receiver) and not hasattr(receiver, "__name__") else receiver
                 for _, receiver in import_modules.receivers]
    assert executor._preload_in_celery_worker in receivers
