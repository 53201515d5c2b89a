"""The one place Tailor reads its environment: paths and choices, with embedded defaults.

Credentials are not here: they come from Airflow Connections (or AIRFLOW_CONN_* variables).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

DEFAULT_SIMULATOR_URL = "http://127.0.0.1:8765"


def data_dir() -> Path:
    """Root of all local state: the DuckDB file, lake, outbox, reports (TAILOR_DATA_DIR, default ./data)."""
    return Path(os.environ.get("TAILOR_DATA_DIR", "data")).resolve()


def simulator_url() -> str:
    """Where sources point when no Connection is configured (TAILOR_SIMULATOR_URL)."""
    return os.environ.get("TAILOR_SIMULATOR_URL", DEFAULT_SIMULATOR_URL).rstrip("/")


def duckdb_path() -> Path:
    """The warehouse file (TAILOR_DUCKDB_PATH, default <data dir>/warehouse.duckdb)."""
    override = os.environ.get("TAILOR_DUCKDB_PATH")
    return Path(override).resolve() if override else data_dir() / "warehouse.duckdb"


def raw_snapshot_path() -> Path:
    """The read-only copy of raw.* that `dbt build --target dev` reads, published after each passed raw gate
    (TAILOR_RAW_SNAPSHOT_PATH, default <data dir>/snapshots/raw_snapshot.duckdb)."""
    override = os.environ.get("TAILOR_RAW_SNAPSHOT_PATH", "").strip()
    return Path(override).resolve() if override else data_dir() / "snapshots" / "raw_snapshot.duckdb"


def dev_duckdb_path() -> Path:
    """The dbt `dev` target's own DuckDB file, where a hand-run `dbt build --target dev` writes its models
    (TAILOR_DEV_DUCKDB_PATH, default <data dir>/dev.duckdb)."""
    override = os.environ.get("TAILOR_DEV_DUCKDB_PATH", "").strip()
    return Path(override).resolve() if override else data_dir() / "dev.duckdb"


def duckdb_lock_timeout() -> float:
    """Seconds a connection waits for another process's DuckDB lock before giving up (TAILOR_DUCKDB_LOCK_TIMEOUT).

    Generous on purpose: a conflict means another writer (a load, dbt) is busy, which is normal, not a failure.
    """
    return _positive_float("TAILOR_DUCKDB_LOCK_TIMEOUT", 1800.0)


# DuckDB's own default is 80 % of the machine's memory for one process: on a laptop running Airflow beside it, one
# big build could starve the scheduler and the next task. 4 GB is what the largest stage needs without spilling much.
DEFAULT_DUCKDB_MEMORY_LIMIT = "4GB"
_MEMORY_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)


def duckdb_memory_limit() -> str:
    """The memory DuckDB may use in each Tailor process, dbt's included (TAILOR_DUCKDB_MEMORY_LIMIT, e.g. 4GB or
    512MiB; default DEFAULT_DUCKDB_MEMORY_LIMIT). Beyond it DuckDB spills to disk beside the database file (its
    default temp directory, <file>.tmp: under the data dir for Tailor's files)."""
    raw = os.environ.get("TAILOR_DUCKDB_MEMORY_LIMIT", "").strip() or DEFAULT_DUCKDB_MEMORY_LIMIT
    match = _MEMORY_SIZE.match(raw)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"TAILOR_DUCKDB_MEMORY_LIMIT={raw!r} is not a memory size such as 4GB or 512MiB")
    return f"{match.group(1)}{match.group(2)}"


def lake_url() -> str:
    """Root of the landing files (TAILOR_LAKE_URL): a local folder (default <data dir>/lake) or s3://bucket/prefix."""
    url = os.environ.get("TAILOR_LAKE_URL", "").strip()
    return url or str(data_dir() / "lake")


def s3_endpoint_url() -> str | None:
    """An S3-compatible endpoint (MinIO, a local test server) instead of AWS (TAILOR_S3_ENDPOINT_URL, default AWS)."""
    return os.environ.get("TAILOR_S3_ENDPOINT_URL", "").strip() or None


# s3://bucket[/prefix]: a DNS-style bucket name (3-63 lowercase letters, digits, dots, hyphens).
_S3_URL = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")


def s3_drop_url() -> str | None:
    """Where the S3 drop sink writes the feed for an ESP that ingests from a bucket (Braze, Iterable):
    TAILOR_S3_DROP_URL, s3://bucket/prefix; unset, no S3 drop."""
    url = os.environ.get("TAILOR_S3_DROP_URL", "").strip()
    if not url:
        return None
    if not _S3_URL.match(url):
        raise ValueError(f"TAILOR_S3_DROP_URL={url!r} is not s3://bucket/prefix (a lowercase bucket name, 3 to 63 "
                         "letters, digits, dots or hyphens)")
    return url


def lookback() -> timedelta:
    """How far each extract window reaches back before its interval, for late-arriving updates
    (TAILOR_LOOKBACK_MINUTES, default 15)."""
    return timedelta(minutes=_positive_float("TAILOR_LOOKBACK_MINUTES", 15.0, allow_zero=True))


def dbt_project_dir() -> Path:
    """The dbt project `python -m tailor build` runs (TAILOR_DBT_PROJECT_DIR, default the repo's dbt_project/)."""
    override = os.environ.get("TAILOR_DBT_PROJECT_DIR", "").strip()
    return Path(override).resolve() if override else Path(__file__).resolve().parents[2] / "dbt_project"


def dbt_target() -> str:
    """The dbt profile target a build uses when none is given (TAILOR_DBT_TARGET: duckdb, postgres or dev; default
    duckdb). tailor.transform checks the name."""
    return os.environ.get("TAILOR_DBT_TARGET", "").strip() or "duckdb"


@dataclass(frozen=True)
class PostgresServer:
    """The PostgreSQL server of dbt's `postgres` target (profiles.yml reads the same variables) and of `make
    airflow`'s metadata database: TAILOR_PG_HOST, _PORT, _USER, _PASSWORD and _DBNAME (dbt's database)."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str


def postgres_server() -> PostgresServer:
    raw_port = os.environ.get("TAILOR_PG_PORT", "").strip() or "5432"
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise ValueError(f"TAILOR_PG_PORT={raw_port!r} is not a port number")
    return PostgresServer(host=os.environ.get("TAILOR_PG_HOST", "").strip() or "127.0.0.1", port=int(raw_port),
                          user=os.environ.get("TAILOR_PG_USER", "").strip() or "postgres",
                          password=os.environ.get("TAILOR_PG_PASSWORD", ""),
                          dbname=os.environ.get("TAILOR_PG_DBNAME", "").strip() or "tailor")


def airflow_metadata_url() -> str | None:
    """`make airflow`: the metadata database's SQLAlchemy URL when given (AIRFLOW_DB); None: the launcher picks."""
    return os.environ.get("AIRFLOW_DB", "").strip() or None


def airflow_database() -> str:
    """`make airflow`: the database it uses (and creates) on the local PostgreSQL (TAILOR_AIRFLOW_DATABASE, default
    tailor_airflow)."""
    return os.environ.get("TAILOR_AIRFLOW_DATABASE", "").strip() or "tailor_airflow"


def airflow_port() -> int:
    """`make airflow`: the port of its API server and UI (AIRFLOW_PORT, default 8080)."""
    raw = os.environ.get("AIRFLOW_PORT", "").strip() or "8080"
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"AIRFLOW_PORT={raw!r} is not a port number")
    return int(raw)


def expectations_dir() -> Path:
    """The GX suites, one file per gate (TAILOR_EXPECTATIONS_DIR, default the repo's expectations/)."""
    override = os.environ.get("TAILOR_EXPECTATIONS_DIR", "").strip()
    return Path(override).resolve() if override else Path(__file__).resolve().parents[2] / "expectations"


def quality_dir() -> Path:
    """Where gates keep GX validation results and Data Docs (<data dir>/quality; docs in quality/docs/index.html)."""
    return data_dir() / "quality"


def quarantine_max_share() -> float:
    """The share of a raw table's checked rows that a gate may quarantine and still pass
    (TAILOR_QUARANTINE_MAX_SHARE, 0..1, default 0.01: 1%). 0 turns quarantine into failing on the first bad row."""
    share = _positive_float("TAILOR_QUARANTINE_MAX_SHARE", 0.01, allow_zero=True)
    if share > 1:
        raise ValueError(f"TAILOR_QUARANTINE_MAX_SHARE={share} is a share: give a number from 0 to 1")
    return share


def outbox_dir() -> Path:
    """The local sink, always on: one folder per as-of date of exported feed files (<data dir>/outbox)."""
    return data_dir() / "outbox"


FEED_SINKS = ("s3", "klaviyo")


def feed_sinks() -> tuple[str, ...]:
    """Where `feed deliver` sends the exported feed besides the outbox (TAILOR_FEED_SINKS, comma-separated from
    s3, klaviyo; default klaviyo: the simulator's Klaviyo until a klaviyo_default Connection points at a real one).
    "none" delivers to the outbox only."""
    raw = os.environ.get("TAILOR_FEED_SINKS", "").strip() or "klaviyo"
    if raw == "none":
        return ()
    chosen = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    unknown = [sink for sink in chosen if sink not in FEED_SINKS]
    if unknown or not chosen:
        raise ValueError(f"TAILOR_FEED_SINKS={raw!r}: sinks are {', '.join(FEED_SINKS)} (comma-separated) or none")
    return chosen


def full_sync_days() -> int:
    """A delivery sends every row, not only the changed ones, when the sink's last full sync is this many as-of days
    back (TAILOR_FEED_FULL_SYNC_DAYS, default 7): what the ESP holds cannot drift from the feed for longer."""
    days = _positive_float("TAILOR_FEED_FULL_SYNC_DAYS", 7.0)
    if days != int(days):
        raise ValueError(f"TAILOR_FEED_FULL_SYNC_DAYS={days} is not a whole number of days")
    return int(days)


def klaviyo_profiles_per_job() -> int:
    """Profiles per Klaviyo bulk import job (TAILOR_KLAVIYO_PROFILES_PER_JOB, default and at most 10,000, Klaviyo's
    limit): smaller jobs finish sooner, so fewer profiles are in flight at any moment."""
    count = _positive_float("TAILOR_KLAVIYO_PROFILES_PER_JOB", 10_000.0)
    if count != int(count) or count > 10_000:
        raise ValueError(f"TAILOR_KLAVIYO_PROFILES_PER_JOB={count:g} is not a whole number within 1..10,000")
    return int(count)


def _positive_float(name: str, default: float, allow_zero: bool = False) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name}={raw!r} must be {'zero or more' if allow_zero else 'more than zero'}")
    return value
