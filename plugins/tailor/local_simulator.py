"""The local simulator as `make demo`, `make simulator` and `make airflow` run it: a live shop, the same one on every
start.

A live simulator serves a world anchored at an hour and a clock that follows the wall clock. Tailor keeps that
anchor under TAILOR_DATA_DIR (simulator/anchor), so a simulator restarted tomorrow serves the same shop, a day
further on, and the warehouse built from yesterday's extracts stays true. Without it every restart would be a new
shop whose records clash with the ones already loaded. A world's timeline runs a year past its anchor; an anchor
older than that starts a new shop (and says so).

The simulator runs as its own process, exactly as a user would start it (`python -m simulator serve`): Tailor
imports none of its code. One already answering at TAILOR_SIMULATOR_URL is used as it is.

    python -m tailor.local_simulator      # make simulator: serve in the foreground until Ctrl-C
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse
from urllib.request import urlopen

from tailor import settings

CUSTOMERS = 1_000
SEED = 42
WORLD_DAYS = 365  # the simulator's live timeline past its anchor (its --future-days default)


def answers(url: str) -> bool:
    """Whether a GET of `url` answers 200 within a couple of seconds (a local server is up)."""
    try:
        with urlopen(url, timeout=2) as response:
            return response.status == 200
    except (URLError, OSError):
        return False


def healthy(url: str) -> bool:
    return answers(f"{url}/_simulator/health")


def clock(url: str) -> datetime:
    """The simulator's clock: the time the world it serves is at (its /_simulator/health says)."""
    with urlopen(f"{url}/_simulator/health", timeout=5) as response:
        value = json.load(response)["clock"]
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def anchor_file() -> Path:
    return settings.data_dir() / "simulator" / "anchor"


def world_anchor(now: datetime | None = None) -> tuple[str, str]:
    """The anchor of the local live world and what happened to it: ('2026-12-02T16:00:00Z', 'kept' | 'new')."""
    path = anchor_file()
    now = now or datetime.now(UTC)  # a launcher's own moment, not a business date
    if path.exists():
        text = path.read_text().strip()
        try:
            kept = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            kept = None
        if kept is not None and kept.tzinfo is not None and now < kept + timedelta(days=WORLD_DAYS - 1):
            return text, "kept"
    anchor = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".anchor.{os.getpid()}.tmp")
    tmp.write_text(anchor + "\n")
    os.replace(tmp, path)
    return anchor, "new"


def command(url: str, customers: int = CUSTOMERS, seed: int = SEED) -> tuple[list[str], str]:
    """The simulator's command line for `url` over the local live world, and a line saying which world it is."""
    parsed = urlparse(url)
    anchor, state = world_anchor()
    cmd = [sys.executable, "-m", "simulator", "serve", "--host", parsed.hostname or "127.0.0.1",
           "--port", str(parsed.port or 8765), "--customers", str(customers), "--seed", str(seed),
           "--now", anchor, "--live"]
    what = (f"the shop anchored at {anchor} (kept in {anchor_file()}), trading live since"
            if state == "kept" else f"a new shop anchored at {anchor} (kept in {anchor_file()}), trading live from")
    return cmd, f"{what} then: its clock follows the wall clock"


@contextmanager
def running(url: str | None = None, customers: int = CUSTOMERS, seed: int = SEED,
            say=print) -> Iterator[str]:
    """Yield the URL of a running simulator, starting one (and stopping it afterwards) if none answers."""
    url = url or settings.simulator_url()
    if healthy(url):
        say(f"simulator: using the one already running at {url}")
        yield url
        return
    cmd, what = command(url, customers, seed)
    say(f"simulator: starting {what}: {' '.join(cmd[1:])}")
    proc = subprocess.Popen(cmd, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while not healthy(url):
            if proc.poll() is not None:
                raise SystemExit(f"simulator: exited with code {proc.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit(f"simulator: did not answer at {url} within 120 s")
            time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stop_on_term() -> None:
    """Let a TERM (make interrupted, a service manager) unwind like Ctrl-C, so child processes are stopped too."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main() -> int:
    """make simulator: the local live shop in the foreground until Ctrl-C (or TERM)."""
    stop_on_term()
    try:
        with running(say=lambda line: print(line, flush=True)) as url:
            print(f"simulator: serving {url} (Ctrl-C stops it)", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
