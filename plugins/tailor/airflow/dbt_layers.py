"""The daily dbt build in dependency layers: one Airflow task per layer, together exactly what one
`transform.build(as_of, exclude=[UNIT_TESTS])` builds (every model, seed and data test but the feed's).

    results = build_in_layers(as_of)                 # the layers in order, in this process (benchmarks compare it
                                                     # with that one build)
    result = build_layer("core", as_of)              # one layer (what the daily DAG's dbt.core task runs)
    for line in node_table(result, warehouse): ...   # node, status, seconds, rows: the per-model view of a layer

Why layers and not one task per model (the astronomer-cosmos way): each task is a fresh process that imports dbt and
parses the project before its one invocation, and the `duckdb` pool runs them one at a time. Measured on the
600-customer test world (DECISIONLOG.md, "The daily DAG's dbt build"): a plain build takes 18-30 s, a one-model
invocation 1.2 s in a warm process and 10-12 s in a fresh one, so 43 model and seed tasks would cost minutes on top
of a half-minute build. Three layers cost two extra invocations in process and two extra task starts in Airflow, and
each layer task still logs every model it built with its status, seconds and rows.

Which layer a test runs in: dbt selects a test with any of its parents (eager indirect selection), and excluding a
model excludes every test that touches it. So each layer selects its own nodes and excludes the later layers'
selections: a test lands in the layer of its latest parent, after everything it reads was built in this run
(e.g. the tests relating marts/marketing to the seeds run with the daily marts, not with the seeds).

No unit tests: they check the SQL on fixed inputs, so their outcome changes only when the project does, which
`make test` and a build run by hand check (dbt's advice: unit tests in development and CI, not in production runs).
A daily run spends its time on the data instead (the 24 unit tests were 7 s of an 18-20 s build of the 600-customer
test world).

No Airflow import here: the benchmark and the tests run it as plain Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the DAG files import this module to name the layer tasks: a parse imports neither dbt nor DuckDB
    from tailor.transform import BuildResult
    from tailor.warehouse import Warehouse


@dataclass(frozen=True)
class Layer:
    name: str  # the Airflow task id inside the dbt task group
    select: tuple[str, ...]  # dbt selection syntax (union)
    what: str


# In dependency order: nothing in a layer reads a model of a later one (tests/integration/test_dbt_build.py checks
# that the layers together build a plain build's nodes but its unit tests, each once).
LAYERS: tuple[Layer, ...] = (
    Layer("sources", ("resource_type:seed", "path:models/staging"),
          "the seeds, the base tables (each raw record version parsed once) and the staging views as of the as-of"),
    Layer("core", ("path:models/intermediate", "path:models/marts"),
          "identity resolution, the order steps and the core marts (customers, orders, order lines, products, "
          "email events)"),
    # test_type:singular: a singular test may read the project rather than a model (no parent at all: eager
    # selection never picks it), so every singular test runs here, once everything it could read is built
    Layer("daily", ("tag:daily", "test_type:singular"),
          "the daily models: engagement and churn steps, the marketing marts (RFM, ...) and the ml marts (features, "
          "churn labels); and the singular tests"),
)
LAYER_NAMES = tuple(layer.name for layer in LAYERS)
UNIT_TESTS = "resource_type:unit_test"  # excluded from every layer (the module docstring says why)


def layer(name: str) -> Layer:
    for candidate in LAYERS:
        if candidate.name == name:
            return candidate
    raise ValueError(f"no dbt layer {name!r}: the layers are {', '.join(LAYER_NAMES)}")


def selection(name: str) -> tuple[list[str], list[str]]:
    """(select, exclude) of a layer: its own selection, minus the feed, the unit tests and every later layer's
    selection."""
    index = LAYERS.index(layer(name))
    return _select(LAYERS[index:index + 1]), [*_excluding(LAYERS[index + 1:]), UNIT_TESTS]


def earlier_selection(name: str) -> tuple[list[str], list[str]] | None:
    """(select, exclude) of the layers before `name` together (None for the first layer): what this layer reads."""
    index = LAYERS.index(layer(name))
    return (_select(LAYERS[:index]), _excluding(LAYERS[index:])) if index else None


def _select(layers: Sequence[Layer]) -> list[str]:
    return [word for chosen in layers for word in chosen.select]


def _excluding(later: Sequence[Layer]) -> list[str]:
    from tailor.transform import FEED_TAG

    return [FEED_TAG, *_select(later)]


def build_layer(name: str, as_of: datetime, *, duckdb_path=None, state_dir=None, quiet: bool = False,
                **options) -> BuildResult:
    """`dbt build` one layer as of `as_of` (options go to transform.build: lock_timeout, ...).

    Each layer is its own task, and another build may take the warehouse between two layers of a day (another day's
    run of a backfill, an hourly build): the earlier layers' models it moved to another as-of are built again as of
    `as_of` first (transform.rebuild_moved, without tests), so a layer always builds and tests on its own day.
    Only the last layer writes dbt's artifacts (target/manifest.json, run_results.json: its own results, as each
    layer's would be): each write costs a task about 0.7 s, and the day's manifest is the same for every layer.
    Raises transform.BuildFailed naming the failed nodes, WarehouseLockTimeout as transform.build does."""
    from tailor import transform

    where = {"duckdb_path": duckdb_path, "state_dir": state_dir, "quiet": quiet}
    if (earlier := earlier_selection(name)) is not None:
        transform.rebuild_moved(as_of, select=earlier[0], exclude=earlier[1], **where)
    select, exclude = selection(name)
    return transform.build(as_of, select=select, exclude=exclude, **where,
                           **{"write_artifacts": name == LAYER_NAMES[-1], **options})


def build_in_layers(as_of: datetime, *, layers: Sequence[str] = LAYER_NAMES, **options) -> list[BuildResult]:
    """Every layer in order, in this process; stops at the first failed one (BuildFailed)."""
    return [build_layer(name, as_of, **options) for name in layers]


def _row_counts(warehouse: Warehouse) -> Mapping[tuple[str, str], int]:
    """(schema, table) -> rows of every table, from DuckDB's catalog (no scan: a count would rescan views)."""
    if not warehouse.exists():
        return {}
    with warehouse.reader() as con:
        return {(schema, name): int(rows) for schema, name, rows in con.execute(
            "select schema_name, table_name, estimated_size from duckdb_tables()").fetchall()}


def node_table(result: BuildResult, warehouse: Warehouse | None = None) -> list[str]:
    """The models and seeds of a build, one line each: node, status, seconds, rows (tables only; a view has none
    until read), then the tests' statuses in one line."""
    counts = _row_counts(warehouse) if warehouse is not None else {}
    by_name: dict[str, list[int]] = {}
    for (_, name), rows in counts.items():
        by_name.setdefault(name, []).append(rows)
    built = [node for node in result.nodes if node.unique_id.split(".", 1)[0] in ("model", "seed")]
    width = max((len(node.unique_id) for node in built), default=10)
    lines = [f"{'node':<{width}}  {'status':<8} {'seconds':>8} {'rows':>12}"]
    for node in sorted(built, key=lambda n: n.unique_id):
        name = node.unique_id.rsplit(".", 1)[-1]
        rows = by_name.get(name, [])
        shown = f"{rows[0]:,}" if len(rows) == 1 else "-"  # a view, or a name in several schemas
        lines.append(f"{node.unique_id:<{width}}  {node.status:<8} {node.seconds:>8.2f} {shown:>12}")
    tests: dict[str, int] = {}
    for node in result.nodes:
        if node.unique_id.split(".", 1)[0] in ("test", "unit_test"):
            tests[node.status] = tests.get(node.status, 0) + 1
    lines.append("tests: " + (", ".join(f"{count} {status}" for status, count in sorted(tests.items())) or "none"))
    return lines
