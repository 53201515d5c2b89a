"""Landing batches: round trips on a folder and on S3, deterministic batch ids, re-landing, and files that are
partial or corrupt (never loadable, always reported with their path)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tailor.lake import DATA_SUFFIX, MANIFEST_SUFFIX, BatchNotFound, BatchRef, CorruptBatch, Lake, batch_id
from tailor.sources import RecordVersion, Window

from .lakekit import T0, customer, moto_s3, versions

WINDOW = Window(T0, T0 + timedelta(hours=1))
EXTRACTED = datetime(2026, 11, 1, 1, 5, tzinfo=UTC)


@pytest.fixture
def s3_bucket() -> Iterator[str]:
    with moto_s3() as url:
        yield url


def _hidden_files(lake: Lake) -> list[Path]:
    return [path for path in Path(lake.url).rglob(".*") if path.is_file()]


def test_round_trip_on_a_folder_follows_the_layout(lake: Lake) -> None:
    records = versions(250, step=timedelta(seconds=10))
    records.append(RecordVersion("gid://shopify/Customer/9", T0 + timedelta(minutes=59), {"id": 9}, is_deleted=True))
    ref = lake.write_batch("shopify", "customers", WINDOW, records, EXTRACTED)

    assert ref.records == 251 and ref.batch_id == batch_id("shopify", "customers", WINDOW)
    assert ref.path == f"{lake.url}/raw/shopify/customers/20261101T000000Z/{ref.batch_id}{DATA_SUFFIX}"
    assert Path(ref.path).is_file() and Path(ref.path[: -len(DATA_SUFFIX)] + MANIFEST_SUFFIX).is_file()
    assert list(lake.read(ref)) == records
    assert lake.batches() == [ref] and lake.find("shopify", "customers", WINDOW) == ref
    assert BatchRef.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref  # survives XCom
    assert _hidden_files(lake) == []  # no temp files left behind


def test_batch_ids_are_deterministic_and_relanding_replaces(lake: Lake) -> None:
    first = lake.write_batch("shopify", "customers", WINDOW, versions(10), EXTRACTED)
    again = lake.write_batch("shopify", "customers", WINDOW, versions(10), EXTRACTED + timedelta(hours=1))
    assert (again.batch_id, again.path, again.checksum) == (first.batch_id, first.path, first.checksum)

    late = [*versions(10), customer(99, T0 + timedelta(minutes=30))]  # a late-arriving update in the window
    replaced = lake.write_batch("shopify", "customers", WINDOW, late, EXTRACTED + timedelta(hours=2))
    assert replaced.batch_id == first.batch_id and replaced.checksum != first.checksum
    assert lake.batches() == [replaced] and list(lake.read(replaced)) == late

    other_window = Window(T0, T0 + timedelta(hours=2))
    other_entity = lake.write_batch("shopify", "orders", WINDOW, [], EXTRACTED)
    assert batch_id("shopify", "customers", other_window) != first.batch_id
    assert other_entity.batch_id != first.batch_id and other_entity.records == 0
    assert [ref.entity for ref in lake.batches()] == ["customers", "orders"]
    assert [ref.entity for ref in lake.batches("shopify", "orders")] == ["orders"]


def test_truncated_or_edited_data_file_is_reported_with_its_path(lake: Lake) -> None:
    ref = lake.write_batch("shopify", "customers", WINDOW, versions(2000, step=timedelta(seconds=1)), EXTRACTED)
    data = Path(ref.path)
    whole = data.read_bytes()

    data.write_bytes(whole[: len(whole) // 2])  # partial
    with pytest.raises(CorruptBatch, match="partial or corrupt") as caught:
        list(lake.read(ref))
    assert ref.path in str(caught.value)

    edited = bytearray(whole)
    edited[len(edited) // 2] ^= 0xFF  # same size, one byte changed
    data.write_bytes(bytes(edited))
    with pytest.raises(CorruptBatch, match=str(data)):
        list(lake.read(ref))

    data.unlink()
    with pytest.raises(BatchNotFound, match=f"data file {data} is missing"):
        list(lake.read(ref))


def test_unreadable_manifest_is_reported_with_its_path(lake: Lake) -> None:
    ref = lake.write_batch("shopify", "customers", WINDOW, versions(3), EXTRACTED)
    manifest = Path(ref.path[: -len(DATA_SUFFIX)] + MANIFEST_SUFFIX)
    manifest.write_text('{"format": "tailor.lake.batch/1", "batch_id": ')
    with pytest.raises(CorruptBatch, match=f"manifest {manifest} is unreadable"):
        lake.batches()


def test_a_data_file_without_its_manifest_is_not_a_batch(lake: Lake) -> None:
    ref = lake.write_batch("shopify", "customers", WINDOW, versions(3), EXTRACTED)
    Path(ref.path[: -len(DATA_SUFFIX)] + MANIFEST_SUFFIX).unlink()  # as if killed between data and manifest
    assert lake.batches() == [] and lake.find("shopify", "customers", WINDOW) is None


def test_a_failing_extraction_leaves_the_previous_landing_intact(lake: Lake) -> None:
    old = lake.write_batch("shopify", "customers", WINDOW, versions(5), EXTRACTED)

    def failing():
        yield from versions(3)
        raise ConnectionError("the API went away")

    with pytest.raises(ConnectionError):
        lake.write_batch("shopify", "customers", WINDOW, failing(), EXTRACTED + timedelta(hours=1))
    assert lake.batches() == [old] and list(lake.read(old)) == versions(5)
    assert _hidden_files(lake) == []


def test_bad_records_and_names_are_refused_before_anything_lands(lake: Lake) -> None:
    naive = [*versions(2), RecordVersion("gid://shopify/Customer/7", datetime(2026, 11, 1, 0, 30), {"id": 7})]
    with pytest.raises(ValueError, match="gid://shopify/Customer/7: updated_at .* timezone"):
        lake.write_batch("shopify", "customers", WINDOW, naive, EXTRACTED)
    nan = [RecordVersion("gid://shopify/Customer/8", T0, {"amount": float("nan")})]
    with pytest.raises(ValueError, match="gid://shopify/Customer/8: payload is not JSON"):
        lake.write_batch("shopify", "customers", WINDOW, nan, EXTRACTED)
    with pytest.raises(ValueError, match="source '../etc' is not a valid name"):
        lake.write_batch("../etc", "customers", WINDOW, [], EXTRACTED)
    assert lake.batches() == [] and _hidden_files(lake) == []


_SLOW_LANDING = """
import sys
from datetime import UTC, datetime, timedelta
from tailor.lake import Lake
from tailor.sources import RecordVersion, Window

t0 = datetime(2026, 11, 1, tzinfo=UTC)
def records():
    for i in range(10**9):  # pages forever, like a huge window; killed before it ends
        if i == 5000:
            print("paging", flush=True)
        yield RecordVersion(f"gid://shopify/Customer/{i}", t0 + timedelta(seconds=i % 3600), {"id": i, "pad": "x" * 300})
Lake.from_url(sys.argv[1]).write_batch("shopify", "customers", Window(t0, t0 + timedelta(hours=1)), records(),
                                       datetime.now(UTC))
"""


def test_killed_mid_write_leaves_no_readable_partial_batch(lake: Lake) -> None:
    old = lake.write_batch("shopify", "customers", WINDOW, versions(5), EXTRACTED)
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_LANDING, lake.url], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "paging"
        deadline = time.monotonic() + 30
        while not any(path.stat().st_size > 100_000 for path in _hidden_files(lake)):
            assert time.monotonic() < deadline, "the landing never wrote its temp file"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (partial,) = _hidden_files(lake)  # the killed writer's temp file: hidden, never listed
    with pytest.raises(EOFError), gzip.open(partial, "rb") as handle:
        handle.read()  # genuinely partial
    assert lake.batches() == [old] and list(lake.read(old)) == versions(5)  # the previous landing still stands

    relanded = lake.write_batch("shopify", "customers", WINDOW, versions(7), EXTRACTED)  # the re-run
    assert lake.batches() == [relanded] and relanded.records == 7
    assert _hidden_files(lake) == []  # the dead writer's temp file was swept


def test_round_trip_on_s3(s3_bucket: str) -> None:
    lake = Lake.from_url(s3_bucket)
    records = versions(300, step=timedelta(seconds=5), note="Grüße ✓")
    ref = lake.write_batch("klaviyo", "profiles", WINDOW, records, EXTRACTED)
    assert ref.path == f"{s3_bucket}/raw/klaviyo/profiles/20261101T000000Z/{ref.batch_id}{DATA_SUFFIX}"
    assert list(lake.read(ref)) == records

    again = Lake.from_url(s3_bucket)  # another process sees the same batches
    assert again.batches() == [ref] and again.find("klaviyo", "profiles", WINDOW) == ref
    replaced = again.write_batch("klaviyo", "profiles", WINDOW, records[:10], EXTRACTED)
    assert replaced.batch_id == ref.batch_id and lake.batches() == [replaced]
    assert list(lake.read(replaced)) == records[:10]

    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["TAILOR_S3_ENDPOINT_URL"])
    bucket, _, prefix = s3_bucket[len("s3://"):].partition("/")
    body = client.get_object(Bucket=bucket, Key=f"{prefix}/{replaced.key}")["Body"].read()
    client.put_object(Bucket=bucket, Key=f"{prefix}/{replaced.key}", Body=body[:-20])  # a truncated object
    with pytest.raises(CorruptBatch, match="partial or corrupt") as caught:
        list(lake.read(replaced))
    assert replaced.path in str(caught.value)
