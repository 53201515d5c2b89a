"""Everything the customer models read, at a benchmark size, for the train and score stages.

The customer models with allow_build=False read four tables only: marts.customer_features (one snapshot per as-of
date), marts.orders, ml.churn_label_snapshots and ml.churn_label_snapshot_runs; the personalization models read
customer_features, orders, customer_product_interactions, products, email_events (opens and clicks) and customers; the
feed (the feed and deliver stages) reads customers, customer_rfm, orders, email_events and products besides the
scores. The base is the S world's raw.*
(bench.rawdata) built with dbt as of the world's clock, plus the feature and label snapshots a training as of that
clock needs (ml.snapshots.prepare: one dbt build per training and validation time, then the marts as of the clock
again). That is a few minutes of dbt at S; building M or L the same way would take hours and measure dbt, which is
the dbt stage's subject, not the models'.

M and L replicate the base's model inputs (`replicate_model_inputs`): copy k of every row of the three row tables
gets "~rk" appended to its customer id (and to its own id: order, event, order line), so copies are distinct customers
with the originals' features, orders, labels, interactions and engagements in every snapshot; the snapshot runs' label
counts are recounted. The catalogue (marts.products) stays the S shop's: a shop with ten times the customers does not
sell ten times the products. Nothing else
is read by the models, so raw.* and the other marts stay S-sized. The copies repeat S's people, so M and L measure
time and memory; their model quality figures say nothing S's do not.

Made once per size and seed under the bench dir, in a spawned process so that its memory and time are not counted
as a stage's, and reused while the training snapshots ml.config asks for stay the same (they move with
TRAINING_SNAPSHOTS, SNAPSHOT_SPACING_DAYS and the churn horizon; training with allow_build=False refuses a warehouse
that lacks one).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from datetime import datetime
from pathlib import Path

BASE_SIZE = "S"
# The tables the models read that hold one row per customer (and snapshot), with the id columns each copy rewrites.
REPLICATED_IDS = {
    "marts.customer_features": ("customer_id",),
    "marts.orders": ("order_id", "customer_id"),
    "ml.churn_label_snapshots": ("customer_id",),
    # the personalization models': interactions, email opens and clicks, and each customer's timezone
    "marts.customer_product_interactions": ("customer_id", "source_id"),
    "marts.email_events": ("event_id", "customer_id"),
    "marts.customers": ("customer_id",),
    # the feed's: each customer's RFM segment (VIP, the next best actions)
    "marts.customer_rfm": ("customer_id",),
}
# Of the email events the models read opens and clicks only: the others are dropped before copying.
READ_EVENT_TYPES = ("opened", "clicked")


def models_at_size(bench_dir: Path, size: str, seed: int) -> tuple[Path, datetime]:
    """(a warehouse holding what training and scoring read at `size`, built as of the world's clock; that clock)."""
    root = _root(bench_dir, size, seed)
    marker = root / "built.json"
    if not _current(marker):
        maker = multiprocessing.get_context("spawn").Process(target=_make, args=(str(bench_dir), size, seed))
        maker.start()
        maker.join()
        if maker.exitcode != 0 or not _current(marker):
            raise RuntimeError(f"making the benchmark's model inputs under {root} failed (exit code {maker.exitcode})")
    return root / "warehouse.duckdb", datetime.fromisoformat(json.loads(marker.read_text())["now"])


def made(bench_dir: Path, size: str, seed: int) -> dict:
    """What the maker recorded about the size's model inputs (built.json): clock, factor, seconds taken."""
    return json.loads((_root(bench_dir, size, seed) / "built.json").read_text())


def _root(bench_dir: Path, size: str, seed: int) -> Path:
    return bench_dir / f"models-{size}-seed{seed}"


def _labelled_times(now: datetime) -> list[str]:
    """The training and validation snapshot times a training as of `now` reads labels at, as ml.config stands."""
    from ml import training
    from ml.config import churn_horizon_days

    validation, training_at = training.snapshot_times(now, churn_horizon_days())
    return [moment.isoformat() for moment in sorted([*training_at, validation])]


def _current(marker: Path) -> bool:
    if not marker.exists():
        return False
    built = json.loads(marker.read_text())
    return (built.get("labelled") == _labelled_times(datetime.fromisoformat(built["now"]))
            and built.get("tables") == sorted(REPLICATED_IDS))


def _say(line: str) -> None:
    print(f"bench: models: {line}", flush=True)


def _make(bench_dir: str, size: str, seed: int) -> None:
    from bench.context import SIZES

    bench = Path(bench_dir)
    root = _root(bench, size, seed)
    if size == BASE_SIZE:
        source, now = _base_source(bench, seed)  # raw.* first: its own spawned maker, not timed as ours
        factor = 1
    else:
        source, now = models_at_size(bench, BASE_SIZE, seed)
        factor = SIZES[size] // SIZES[BASE_SIZE]
    started = time.perf_counter()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    path = root / "warehouse.duckdb"
    shutil.copyfile(source, path)
    if size == BASE_SIZE:
        _build_base(path, now)
        rows_added = 0
    else:
        _say(f"replicating the S model inputs x {factor} into {path}")
        rows_added = replicate_model_inputs(path, factor)
    seconds = time.perf_counter() - started
    _say(f"{size} made in {seconds:.1f} s")
    (root / "built.json").write_text(json.dumps({"now": now.isoformat(), "labelled": _labelled_times(now),
                                                 "tables": sorted(REPLICATED_IDS), "size": size,
                                                 "factor": factor, "rows_added": rows_added,
                                                 "seconds": round(seconds, 1)}))


def _base_source(bench: Path, seed: int) -> tuple[Path, datetime]:
    from bench.rawdata import base_inputs

    raw, _, now = base_inputs(bench, seed)
    return raw, now


def _build_base(path: Path, now: datetime) -> None:
    """The S warehouse's marts as of `now` and the snapshots a training as of `now` needs, without dbt's tests (the
    dbt stage runs those)."""
    from ml import snapshots
    from tailor.transform import WITHOUT_TESTS, build
    from tailor.warehouse import Warehouse

    # prepare's builds keep dbt's target/ and logs/ under the data dir: this folder, not the bench's
    os.environ["TAILOR_DATA_DIR"] = str(path.parent)
    _say(f"dbt build as of {now.isoformat()} (no tests)")
    result = build(now, duckdb_path=path, state_dir=path.parent / "dbt", quiet=True,
                   exclude=list(WITHOUT_TESTS))
    _say(f"  {result.seconds:.1f} s")
    labelled = [datetime.fromisoformat(moment) for moment in _labelled_times(now)]
    snapshots.prepare(Warehouse(path), now, labelled, allow_build=True, say=_say)


def replicate_model_inputs(path: Path, factor: int) -> int:
    """Add copies 1..factor-1 of the rows of REPLICATED_IDS' tables to the warehouse at `path` (ids suffixed "~rk")
    and recount the labels of each snapshot run; returns the rows added."""
    from tailor.warehouse import Warehouse

    added = 0
    with Warehouse(path).writer() as con:
        con.execute("delete from marts.email_events where event_type not in (select unnest(?))", [list(READ_EVENT_TYPES)])
        for table, ids in REPLICATED_IDS.items():
            renamed = ", ".join(f"{column} || '~r' || cast(k as varchar) as {column}" for column in ids)
            added += con.execute(f"insert into {table} select original.* replace ({renamed}) "  # noqa: S608 fixed names
                                 f"from {table} as original, range(1, {int(factor)}) as copies(k)").fetchone()[0]
        con.execute("update ml.churn_label_snapshot_runs as runs set labelled_customers = ("
                    "select count(*) from ml.churn_label_snapshots as labels where labels.as_of_date = runs.as_of_date)")
        con.execute("checkpoint")
    return added
