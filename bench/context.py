"""What the harness and its stages share: the sizes, a stage's context and its result (no stage imports the harness)."""

from __future__ import annotations

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
