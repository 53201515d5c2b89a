"""`make demo`: run what Tailor has so far on the embedded defaults: extract from the local simulator, load DuckDB,
gate raw.*, build the dbt project as of the simulator's clock, gate the marts, and show them.

The simulator runs as its own process, exactly as a user would start it (`python -m simulator serve`); Tailor
imports none of its code. A simulator already answering at TAILOR_SIMULATOR_URL is used as it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.error import URLError
from urllib.parse import urlparse
from urllib.request import urlopen

from tailor import settings

DEMO_CUSTOMERS = 1_000
DEMO_SEED = 42


def _healthy(url: str) -> bool:
    try:
        with urlopen(f"{url}/_simulator/health", timeout=1) as response:
            return response.status == 200
    except (URLError, OSError):
        return False


def _simulator_clock(url: str) -> datetime:
    """The simulator's clock: the time the world it serves is at (its /_simulator/health says)."""
    with urlopen(f"{url}/_simulator/health", timeout=5) as response:
        clock = json.load(response)["clock"]
    return datetime.fromisoformat(clock.replace("Z", "+00:00")).astimezone(UTC)


@contextmanager
def simulator_process(url: str, customers: int = DEMO_CUSTOMERS, seed: int = DEMO_SEED) -> Iterator[str]:
    """Yield the URL of a running simulator, starting one (and stopping it afterwards) if none answers."""
    if _healthy(url):
        print(f"demo: using the simulator already running at {url}")
        yield url
        return
    parsed = urlparse(url)
    cmd = [sys.executable, "-m", "simulator", "serve", "--host", parsed.hostname or "127.0.0.1",
           "--port", str(parsed.port or 8765), "--customers", str(customers), "--seed", str(seed)]
    print(f"demo: starting the simulator: {' '.join(cmd[1:])}")
    proc = subprocess.Popen(cmd, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while not _healthy(url):
            if proc.poll() is not None:
                raise SystemExit(f"demo: the simulator exited with code {proc.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: the simulator did not answer at {url} within 120 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _run_tailor(*args: str) -> int:
    print(f"\ndemo: python -m tailor {' '.join(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "tailor", *args], check=False).returncode


def _print_raw_counts() -> None:
    from tailor.sources import ENTITIES
    from tailor.warehouse import Warehouse, raw_table

    warehouse = Warehouse()
    print(f"\ndemo: what landed in {warehouse.path}:")
    with warehouse.reader() as con:
        for source, entities in ENTITIES.items():
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
    url = settings.simulator_url()
    with simulator_process(url) as running:
        tour = subprocess.run([sys.executable, "-m", "simulator", "tour", "--url", running], check=False)
        if tour.returncode != 0:
            return tour.returncode
        # a manual run: from each entity's watermark (none yet: all history) to now, then load what landed
        for step in (("extract", "--source", "all"), ("load",)):
            code = _run_tailor(*step)
            if code != 0:
                return code
        # The data describes the world up to the simulator's clock (its "now"), which need not be today: build as
        # of it, or as of now if the clock is ahead (the extract stopped at now). RFM recency, engagement windows
        # and churn are then measured from the data's own present.
        as_of = min(_simulator_clock(running), datetime.now(UTC))
    _print_raw_counts()
    # the raw gate checks the loads just made: as of now, the end of the window they covered
    code = _run_tailor("gate", "raw", "--as-of", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if code != 0:
        return code
    stamp = as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
    for step in (("build", "--as-of", stamp, "--quiet"), ("gate", "marts", "--as-of", stamp)):
        code = _run_tailor(*step)
        if code != 0:
            return code
    _print_marts()
    print("\ndemo: next: the models (segments, churn, recommendations, send times) and the per-customer feed export.\n"
          "demo: Run `make demo` again: it extracts only what changed since the watermarks and rebuilds the marts.\n"
          "demo: Explore the project yourself: cd dbt_project && ../.venv/bin/dbt build  (docs: dbt docs generate)")
    return 0
