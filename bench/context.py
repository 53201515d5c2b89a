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
