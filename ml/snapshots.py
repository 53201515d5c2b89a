"""The feature and label snapshots a training run needs, built with dbt when the warehouse lacks them.

The models learn from customer_features and churn_labels as of past dates. customer_features keeps one snapshot per
date (daily runs and backfills accumulate them); churn_labels holds its latest build only, so each date's labels are
kept in ml.churn_label_snapshots right after their build. A date missing either is built here as of its exact time
(dbt, the models behind customer_features and churn_labels, without tests: the data was gated when it was loaded),
earliest first; then the marts are built once more as of the training time itself, so the warehouse ends as the run
for that time leaves it, and the orders the models read are those as of it. The personalization models also ask for
features alone at their validation date, and for the catalogue and the interactions as of the run's time.

None of these builds writes dbt's artifacts (target/manifest.json, run_results.json): they stay the last full build's,
what `dbt docs` and a reader of the run's results want, and writing them cost each build about a second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from ml import io
from ml.errors import ModelInputError
from tailor.times import stamp
from tailor.transform import WITHOUT_TESTS, build
from tailor.warehouse import Warehouse

SNAPSHOT_SELECT = ("+customer_features", "+churn_labels")
# What the personalization models read as of the run's own time besides the features: the catalogue, the interactions
# and (through customer_features) the email events and customers.
PERSONALIZATION_SELECT = ("+products", "+customer_product_interactions")


def prepare(warehouse: Warehouse, as_of: datetime, labelled: Iterable[datetime], *, allow_build: bool = True,
            featured: Iterable[datetime] = (), personalization: bool = False,
            say: Callable[[str], None] = print) -> list[datetime]:
    """Make sure features exist as of `as_of`, every `labelled` and every `featured` time, labels as of every
    `labelled` time, and the marts are as of `as_of` (with `personalization`, marts.products and
    marts.customer_product_interactions too). Returns the as-of times built (empty when everything was there).

    allow_build False: raise ModelInputError naming the missing snapshots and the command that builds them."""
    labelled = sorted(set(labelled))
    features = io.feature_snapshots(warehouse)
    labels = io.label_snapshots(warehouse)
    missing = [moment for moment in labelled
               if features.get(moment.date()) != moment or labels.get(moment.date()) != moment]
    missing_features = [moment for moment in sorted(set(featured) - set(labelled))
                        if features.get(moment.date()) != moment]
    newest_order = io.orders_built_as_of(warehouse)
    marts_later = newest_order is not None and newest_order > as_of
    current_select = SNAPSHOT_SELECT + (PERSONALIZATION_SELECT if personalization else ())
    stale = personalization and any(io.built_as_of(warehouse, table) != as_of
                                    for table in (io.PRODUCTS, io.INTERACTIONS))
    rebuild_now = bool(missing or missing_features) or features.get(as_of.date()) != as_of or marts_later or stale
    if not rebuild_now:
        return []
    if not allow_build:
        current = features.get(as_of.date()) == as_of and not marts_later and not stale
        wanted = [stamp(m) for m in sorted(missing + missing_features)] + ([] if current else [stamp(as_of)])
        raise ModelInputError(
            f"the warehouse lacks the snapshots as of {', '.join(wanted)}: build each with "
            f"`python -m tailor build --as-of <time> --select {' '.join(current_select)}` or let the models build them")
    built = []
    for moment in missing:
        say(f"ml: building the training snapshot as of {stamp(moment)} (dbt: {' '.join(SNAPSHOT_SELECT)})")
        result = build(moment, select=list(SNAPSHOT_SELECT), exclude=list(WITHOUT_TESTS), duckdb_path=warehouse.path,
                       quiet=True, write_artifacts=False)
        labelled_customers = io.keep_labels(warehouse, moment)
        say(f"ml:   {result.seconds:.1f} s; {labelled_customers:,} labelled customers")
        built.append(moment)
    for moment in missing_features:
        say(f"ml: building the feature snapshot as of {stamp(moment)} (dbt: +customer_features)")
        result = build(moment, select=["+customer_features"], exclude=list(WITHOUT_TESTS), duckdb_path=warehouse.path,
                       quiet=True, write_artifacts=False)
        say(f"ml:   {result.seconds:.1f} s")
        built.append(moment)
    say(f"ml: building the marts as of {stamp(as_of)} again, the time this run is for")
    result = build(as_of, select=list(current_select), exclude=list(WITHOUT_TESTS), duckdb_path=warehouse.path,
                   quiet=True, write_artifacts=False)
    say(f"ml:   {result.seconds:.1f} s")
    built.append(as_of)
    if io.feature_snapshots(warehouse).get(as_of.date()) != as_of:
        raise ModelInputError(f"dbt built no customer_features as of {stamp(as_of)}")
    return built
