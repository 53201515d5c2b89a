"""What the harness and its stages share: the sizes, a stage's context and its result (no stage imports the harness)."""

from __future__ import annotations

import multiprocessing
import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SIZES = {"S": 10_000, "M": 100_000, "L": 1_000_000}


@dataclass
class StageResult:
    rows: int  # the unit the stage works through (records generated, served, loaded...)
    unit: str = "rows"
    details: dict = field(default_factory=dict)  # stage-specific figures (ratios, counts)
    seconds: float | None = None  # the timed part, when the stage first sets up untimed (e.g. builds a world)


@dataclass
class Context:
    size: str
    customers: int
    seed: int
    work_dir: Path


def slowest_nodes(nodes, count: int = 5) -> str:
    """The `count` slowest nodes of a dbt build (tailor.transform's NodeResult), with their seconds."""
    top = sorted(nodes, key=lambda node: node.seconds, reverse=True)[:count]
    return ", ".join(f"{node.unique_id.split('.')[2][:60]} {node.seconds:.1f}s" for node in top)


def mlflow_store(run_dir: Path) -> Path:
    """The MLflow SQLite store the train stages promote models in, under their run dir."""
    return run_dir / "mlflow" / "mlflow.db"


def tracking_uri(run_dir: Path) -> str:
    return f"sqlite:///{mlflow_store(run_dir)}"


def in_child(step: Callable, *args) -> tuple[bool, object, float, float]:
    """step(*args) in a forked process, so that its peak memory is its own: (ok, what it returned or, when it raised,
    the traceback, its seconds, its peak RSS in MB)."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(queue, step, args))
    child.start()
    outcome = queue.get()
    child.join()
    return outcome


def _child(queue, step: Callable, args: tuple) -> None:
    started = time.perf_counter()
    try:
        value = step(*args)
    except Exception:  # reported to the parent, which says which step failed
        queue.put((False, traceback.format_exc(), time.perf_counter() - started, 0.0))
        return
    queue.put((True, value, time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
