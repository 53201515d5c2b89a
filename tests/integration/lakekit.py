"""Helpers for the lake, warehouse and pipeline tests: real record versions (plain data), an extractor over them,
a local S3 server, and a snapshot of raw.* to compare runs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tailor.sources import Progress, RecordVersion, Window
from tailor.sources.http import RetryPolicy
from tailor.warehouse import Warehouse

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def customer(number: int, updated_at: datetime, **extra) -> RecordVersion:
    """A Shopify-like customer version, as a connector would yield it."""
    gid = f"gid://shopify/Customer/{number}"
    payload = {"id": gid, "email": f"customer{number}@example.com", "firstName": "Ada", "lastName": "Lovelace",
               "updatedAt": updated_at.isoformat().replace("+00:00", "Z"), "numberOfOrders": str(number % 7),
               "amountSpent": {"amount": f"{number % 500}.25", "currencyCode": "EUR"}, "tags": ["vip"], **extra}
    return RecordVersion(record_id=gid, updated_at=updated_at, payload=payload)


def versions(count: int, start: datetime = T0, step: timedelta = timedelta(minutes=1), first: int = 0,
             **extra) -> list[RecordVersion]:
    return [customer(first + i, start + i * step, **extra) for i in range(count)]


@dataclass
class ListExtractor:
    """An extractor over a list of record versions: yields those updated in the window, like the API would."""

    source: str
    records: dict[str, list[RecordVersion]]
    page_size: int = 100
    calls: list[tuple[str, Window]] = field(default_factory=list)

    @property
    def entities(self) -> tuple[str, ...]:
        return tuple(self.records)

    def extract(self, entity: str, window: Window, progress: Progress | None = None) -> Iterator[RecordVersion]:
        self.calls.append((entity, window))
        matching = [r for r in self.records[entity] if window.start <= r.updated_at < window.end]
        for offset in range(0, len(matching), self.page_size):
            if progress is not None:
                progress.pages += 1
            yield from matching[offset: offset + self.page_size]


@contextmanager
def moto_s3() -> Iterator[str]:
    """A local S3-compatible server (moto) on 127.0.0.1 with an empty bucket; yields s3://bucket/prefix.

    Sets the AWS_* variables and TAILOR_S3_ENDPOINT_URL for the duration, as a user would.
    """
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {name: os.environ.get(name) for name in _S3_ENV}
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "TAILOR_S3_ENDPOINT_URL": endpoint})
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    try:
        bucket = f"tailor-lake-{uuid.uuid4().hex[:8]}"  # moto keeps buckets for the whole process: a fresh one
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        yield f"s3://{bucket}/landing"
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "TAILOR_S3_ENDPOINT_URL", "AWS_PROFILE",
           "AWS_SESSION_TOKEN")


def raw_snapshot(warehouse: Warehouse) -> dict[str, list[tuple]]:
    """Every raw.* table's rows, without the columns that record when a load ran (loaded_at, updated_at of
    watermarks), sorted: what must be identical between two runs that loaded the same batches."""
    skip = {("_batches", "loaded_at"), ("_watermarks", "updated_at")}
    snapshot = {}
    with warehouse.reader() as con:
        tables = [name for (name,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw' order by 1").fetchall()]
        for table in tables:
            columns = [name for (name,) in con.execute(
                "select column_name from information_schema.columns where table_schema = 'raw' and table_name = ? "
                "order by ordinal_position", [table]).fetchall() if (table, name) not in skip]
            select = ", ".join(f'"{name}"' for name in columns)
            snapshot[table] = con.execute(f'select {select} from raw."{table}" order by all').fetchall()
    return snapshot


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a `python -m tailor` subprocess working under tmp_path."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TAILOR_")}
    env.update({"TAILOR_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1", **extra})
    return env


# Connector tests: retries without waiting (timing is not the point), and a timeout below the simulator's slow
# fault (3 s), so slow responses time out and are retried.
FAST = RetryPolicy(attempts=12, base_delay=0.001, max_delay=0.01, timeout=1.0)


def at(t: int) -> datetime:
    """Simulator epoch seconds -> an aware UTC datetime."""
    return datetime.fromtimestamp(t, UTC)


def version(record: RecordVersion) -> tuple[str, str]:
    """A record version as ground truth writes it: (record_id, updated_at ISO with Z)."""
    return record.record_id, record.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
