"""`make demo`: run what Tailor has so far on the embedded defaults: extract from the local simulator, load DuckDB.

The simulator runs as its own process, exactly as a user would start it (`python -m simulator serve`); Tailor
imports none of its code. A simulator already answering at TAILOR_SIMULATOR_URL is used as it is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    _print_raw_counts()
    print("\ndemo: next, in order: the dbt project (issue 4), quality gates (issue 5), then the models and the\n"
          "demo: per-customer feed export. Run `make demo` again: it extracts only what changed since the watermarks.")
    return 0
