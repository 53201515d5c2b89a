"""`make demo`: run what Tailor has so far on the embedded defaults: extract from the local live simulator, load
DuckDB, gate raw.*, publish the raw snapshot, build the dbt project as of the extract's end, gate the marts, show
them, then train the customer models (segments, churn, CLV) and the personalization models (product recommendations,
send times) against their baselines, score every customer, and build, gate, export and deliver the per-customer feed:
the local outbox and the simulator's Klaviyo (bulk profile import); three exported rows and the delivery log end it.

The simulator (tailor.local_simulator) is a live shop whose anchor is kept under the data dir, so each run of the
demo meets the same shop, further on: the first run lands its whole history, later runs what changed since.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from tailor import local_simulator, settings
from tailor.times import stamp


def _run_tailor(*args: str, package: str = "tailor") -> int:
    print(f"\ndemo: python -m {package} {' '.join(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", package, *args], check=False).returncode


def _print_raw_counts() -> None:
    from tailor import sources
    from tailor.raw import raw_table
    from tailor.warehouse import Warehouse

    warehouse = Warehouse()
    print(f"\ndemo: what landed in {warehouse.path}:")
    with warehouse.reader() as con:
        for source, entities in sources.entities().items():
            for entity in entities:
                table = raw_table(source, entity)
                rows, deleted, newest = con.execute(
                    f"select count(*), count(*) filter (where is_deleted), max(updated_at) from {table}"  # noqa: S608 checked names
                ).fetchone()
                print(f"  {table:<24} {rows:>9,} record versions  {deleted:>5,} deletions  latest {newest}")


def _print_marts() -> None:
    from tailor.warehouse import Warehouse

    warehouse = Warehouse()
    with warehouse.reader() as con:
        marts = [name for (name,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' order by 1").fetchall()]
        print(f"\ndemo: the marts in {warehouse.path}:")
        for name in marts:
            rows = con.execute(f'select count(*) from marts."{name}"').fetchone()[0]  # noqa: S608 names from the catalog
            note = ("  (labels need churn_horizon_days of data after the as-of: try an earlier --as-of)"
                    if name == "churn_labels" and rows == 0 else "")
            print(f"  marts.{name:<28} {rows:>9,} rows{note}")
        if "customer_rfm" in marts:
            segments = con.execute("select rfm_segment, count(*) from marts.customer_rfm group by rfm_segment "
                                   "order by count(*) desc, rfm_segment").fetchall()
            total = sum(count for _, count in segments) or 1
            print("\ndemo: RFM segments (marts.customer_rfm):")
            for segment, count in segments:
                print(f"  {segment or '(none)':<20} {count:>7,}  {count / total:>6.1%}")


def run() -> int:
    did: list[str] = []

    def step(what: str, *args: str, package: str = "tailor") -> int:
        code = _run_tailor(*args, package=package)
        did.append(f"{'ok  ' if code == 0 else 'FAIL'} {what}: python -m {package} {' '.join(args)}")
        return code

    def finish(code: int) -> int:
        print("\ndemo: what it did:")
        for line in did:
            print(f"  {line}")
        return code

    # The simulator stays up to the end: the feed is delivered to its Klaviyo.
    with local_simulator.running(settings.simulator_url(), say=lambda line: print(f"demo: {line}", flush=True)) as url:
        did.append(f"ok   started or reused the live simulator at {url}")
        code = _pipeline(url, step)
    finish(code)
    if code == 0:
        print("\ndemo: The shop keeps trading: run `make demo` again to extract only what changed since the "
              "watermarks;\ndemo: the next delivery sends only the customers whose feed row changed.\n"
              "demo: Explore the project yourself beside the schedule: cd dbt_project && ../.venv/bin/dbt build "
              "--target dev")
    return code


def _pipeline(url: str, step) -> int:
    tour = subprocess.run([sys.executable, "-m", "simulator", "tour", "--url", url], check=False)
    if tour.returncode != 0:
        return tour.returncode
    # A manual run: from each entity's watermark (none yet: the whole history) to now, then load what landed.
    if step("extracted every source since its watermark", "extract", "--source", "all") != 0:
        return 1
    if step("loaded the landed batches into raw.*", "load") != 0:
        return 1
    # The data describes the shop up to the simulator's clock: build as of it (or now, if the clock is ahead: the
    # extract stopped at now), so recency, engagement windows and churn are measured from the data's present.
    as_of = min(local_simulator.clock(url), datetime.now(UTC))
    _print_raw_counts()
    # the raw gate checks the loads just made: as of now, the end of the window they covered
    if step("passed the raw gate", "gate", "raw", "--as-of", stamp(datetime.now(UTC))) != 0:
        return 1
    if step("published the raw snapshot for dbt's dev target", "snapshot") != 0:
        return 1
    as_of_text = stamp(as_of)
    if step(f"built the dbt project as of {as_of_text}", "build", "--as-of", as_of_text, "--quiet") != 0:
        return 1
    if step("passed the marts gate", "gate", "marts", "--as-of", as_of_text) != 0:
        return 1
    _print_marts()
    # training builds the past feature and label snapshots it lacks (once per date), then the marts as of as_of_text again
    if step("trained segments, churn, CLV, recommenders and send times against their baselines", "train", "--as-of",
            as_of_text, package="ml") != 0:
        return 1
    if step("scored every customer into ml.customer_scores, ml.customer_recommendations and ml.customer_send_times",
            "score", "--as-of", as_of_text, package="ml") != 0:
        return 1
    for what, args in (("built the feed (exports.esp_feed) of the consented customers", ("build",)),
                       ("passed the feed gate", ("gate",)),
                       ("exported the feed to the outbox", ("export",)),
                       ("delivered the feed to the simulator's Klaviyo (bulk profile import)",
                        ("deliver", "--sink", "klaviyo"))):
        if step(what, "feed", *args, "--as-of", as_of_text) != 0:
            return 1
    _print_feed_samples(as_of)
    return 0


def _print_feed_samples(as_of: datetime) -> None:
    """Three exported rows, as the ESP received them."""
    import json

    from tailor.export.steps import exported_payloads

    export_dir = settings.outbox_dir() / as_of.date().isoformat()
    print(f"\ndemo: three rows of {export_dir / 'feed.jsonl.gz'} (what the ESP received):")
    for number, payload in enumerate(exported_payloads(export_dir)()):
        if number == 3:
            break
        fields = dict(payload.fields)
        recommendations = fields.pop("tailor_recommendations")
        print(f"  {json.dumps(fields, ensure_ascii=False)}")
        for item in recommendations[:3]:
            print(f"    #{item['rank']} {item['title']} ({item['price']}, {item['reason']}) {item['url']}")
        if len(recommendations) > 3:
            print(f"    ... {len(recommendations) - 3} more")
