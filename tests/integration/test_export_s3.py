"""The S3 drop against a real S3 API (moto's server over HTTP, boto3 as in production): parts then manifest, each
part reported once uploaded, SSE and Content-MD5 on every PUT, multipart above the threshold (and aborted when it
fails), an outbox export copied verified, and the drop's setting and Connection."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from tailor import settings
from tailor.export.outbox import CSV_FILE, DATA_FILE, MANIFEST_FILE, CorruptExport, write_outbox
from tailor.export.payload import BatchOutcome, Payload
from tailor.export.s3 import MIN_PART_SIZE, S3Sink
from tailor.lake import s3_client

from .lakekit import moto_s3

DAY = date(2026, 11, 1)
SECRET = "s3cr3t-never-logged-0000"


class Recording:
    """A boto3 client that records the calls that write, and can fail one of them (the nth call of a name)."""

    WRITES = {"put_object", "create_multipart_upload", "upload_part", "complete_multipart_upload",
              "abort_multipart_upload", "delete_object"}

    def __init__(self, client: Any, fail: tuple[str, int] | None = None):
        self.client = client
        self.fail = fail
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if name not in self.WRITES:
            return method

        def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            if self.fail == (name, sum(1 for called, _ in self.calls if called == name)):
                raise ConnectionResetError(f"injected failure in {name}")
            return method(**kwargs)

        return call

    def written(self) -> list[str]:
        """Keys in the order their content was committed (a PUT, or a completed multipart upload)."""
        return [kw["Key"] for name, kw in self.calls if name in ("put_object", "complete_multipart_upload")]


@pytest.fixture
def drop() -> Iterator[tuple[str, Any]]:
    """s3://<fresh bucket>/drop on a local moto server, and a plain client to inspect it."""
    with moto_s3() as url:
        bucket = url[len("s3://"):].split("/", 1)[0]
        yield f"s3://{bucket}/drop", s3_client()


def payload(number: int, **fields: Any) -> Payload:
    email = f"customer{number}@example.com"
    recs = [{"rank": r, "product_id": f"P{r}", "title": "Grüße ✓", "url": f"https://shop.test/p/{r}",
             "image_url": f"https://cdn.shop.test/{r}.jpg", "price": 12.5, "reason": "popular_in_category"}
            for r in (1, 2)]
    return Payload.of(f"cust-{number}", email, {"email": email, "first_name": "Ada", "send_hour": number % 24,
                                                 "tailor_recommendations": recs, **fields})


def record(p: Payload) -> dict[str, Any]:
    return {**p.fields, "customer_id": p.customer_id, "email": p.email}


def objects(client: Any, bucket: str, prefix: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def body(client: Any, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def rows_of(client: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(body(client, bucket, key)).decode().splitlines()]


def test_deliver_writes_parts_each_reported_once_uploaded_then_the_manifest(drop: tuple[str, Any]) -> None:
    url, client = drop
    recording = Recording(s3_client())
    sink = S3Sink.from_url(url, client=recording)
    bucket, base = sink.bucket, "drop/2026-11-01/run-1"
    feed = [payload(n) for n in range(250)]
    outcomes: list[BatchOutcome] = []

    def on_batch(outcome: BatchOutcome) -> None:
        part = f"{base}/part-{len(outcomes):05d}.jsonl.gz"
        assert client.head_object(Bucket=bucket, Key=part)["ContentLength"] > 0  # uploaded before it is reported
        assert f"{base}/manifest.json" not in objects(client, bucket, base)
        outcomes.append(outcome)

    sink.deliver(iter(feed), as_of_date=DAY, delivery_id="run-1", on_batch=on_batch, rows_per_object=100)

    assert [o.sent for o in outcomes] == [feed[:100], feed[100:200], feed[200:]]
    assert all(o.failed == [] and o.skipped == [] for o in outcomes)
    parts = [f"{base}/part-{i:05d}.jsonl.gz" for i in range(3)]
    assert objects(client, bucket, "drop/") == sorted([*parts, f"{base}/manifest.json"])
    assert recording.written() == [*parts, f"{base}/manifest.json"]  # the manifest last
    assert [row for key in parts for row in rows_of(client, bucket, key)] == [record(p) for p in feed]

    manifest = json.loads(body(client, bucket, f"{base}/manifest.json"))
    assert (manifest["rows"], manifest["as_of_date"], manifest["delivery_id"]) == (250, "2026-11-01", "run-1")
    for key, entry in zip(parts, manifest["parts"], strict=True):
        data = body(client, bucket, key)
        assert entry == {"name": key.rsplit("/", 1)[1], "rows": 100 if key != parts[-1] else 50,
                         "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    for key in [*parts, f"{base}/manifest.json"]:
        assert client.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
    for name, kwargs in recording.calls:
        if name == "put_object":
            assert kwargs["ServerSideEncryption"] == "AES256"
            assert kwargs["ContentMD5"] == base64.b64encode(hashlib.md5(kwargs["Body"]).digest()).decode()


def test_objects_above_the_threshold_go_multipart_intact(drop: tuple[str, Any]) -> None:
    url, client = drop
    recording = Recording(s3_client())
    sink = S3Sink.from_url(url, client=recording, multipart_threshold=MIN_PART_SIZE, part_size=MIN_PART_SIZE)
    rng = random.Random(7)  # incompressible text, so the gzip'd part is well above 5 MiB
    feed = [payload(n, note=base64.b64encode(rng.randbytes(1200)).decode()) for n in range(8000)]
    small = [payload(n) for n in range(3)]
    outcomes: list[BatchOutcome] = []

    sink.deliver(feed + small, as_of_date=DAY, delivery_id="big", on_batch=outcomes.append, rows_per_object=8000)

    big, tail = "drop/2026-11-01/big/part-00000.jsonl.gz", "drop/2026-11-01/big/part-00001.jsonl.gz"
    head = client.head_object(Bucket=sink.bucket, Key=big)
    expected_parts = math.ceil(head["ContentLength"] / MIN_PART_SIZE)
    assert expected_parts >= 2 and head["ETag"].strip('"').endswith(f"-{expected_parts}")
    assert head["ServerSideEncryption"] == "AES256"
    assert rows_of(client, sink.bucket, big) == [record(p) for p in feed]
    assert "-" not in client.head_object(Bucket=sink.bucket, Key=tail)["ETag"]  # small: one PUT
    assert rows_of(client, sink.bucket, tail) == [record(p) for p in small]
    assert [len(o.sent) for o in outcomes] == [8000, 3]

    uploads = [kw for name, kw in recording.calls if name == "upload_part"]
    assert len(uploads) == expected_parts
    for kwargs in uploads:
        assert kwargs["ContentMD5"] == base64.b64encode(hashlib.md5(kwargs["Body"]).digest()).decode()
    (create,) = [kw for name, kw in recording.calls if name == "create_multipart_upload"]
    assert create["ServerSideEncryption"] == "AES256"
    assert "Uploads" not in client.list_multipart_uploads(Bucket=sink.bucket)


def test_a_failed_multipart_upload_is_aborted_and_never_reported(drop: tuple[str, Any]) -> None:
    url, client = drop
    recording = Recording(s3_client(), fail=("upload_part", 2))
    sink = S3Sink.from_url(url, client=recording, multipart_threshold=MIN_PART_SIZE, part_size=MIN_PART_SIZE)
    rng = random.Random(8)
    feed = [payload(n, note=base64.b64encode(rng.randbytes(1200)).decode()) for n in range(6000)]
    outcomes: list[BatchOutcome] = []

    with pytest.raises(ConnectionResetError, match="injected failure in upload_part"):
        sink.deliver(feed, as_of_date=DAY, delivery_id="flaky", on_batch=outcomes.append, rows_per_object=10_000)

    assert outcomes == []  # nothing recorded as sent: a resume sends these again
    assert [name for name, _ in recording.calls][-1] == "abort_multipart_upload"
    assert "Uploads" not in client.list_multipart_uploads(Bucket=sink.bucket)  # no orphan upload
    assert objects(client, sink.bucket, "drop/") == []  # no part, no manifest


def test_upload_export_copies_a_verified_outbox_export_manifest_last(drop: tuple[str, Any], tmp_path: Path) -> None:
    url, client = drop
    recording = Recording(s3_client())
    sink = S3Sink.from_url(url, client=recording)
    export = write_outbox([payload(n) for n in range(40)], outbox_dir=tmp_path, as_of_date=DAY,
                          manifest_extra={"feed_gate": {"passed": True}}, recommendations_per_customer=3,
                          exported_at=datetime(2026, 11, 2, tzinfo=UTC))

    keys = sink.upload_export(export.path, DAY)

    base = "drop/2026-11-01/export"
    assert keys == [f"{base}/{DATA_FILE}", f"{base}/{CSV_FILE}", f"{base}/{MANIFEST_FILE}"]
    assert recording.written() == keys and objects(client, sink.bucket, "drop/") == sorted(keys)
    for key in keys:
        assert body(client, sink.bucket, key) == (export.path / key.rsplit("/", 1)[1]).read_bytes()
        assert client.head_object(Bucket=sink.bucket, Key=key)["ServerSideEncryption"] == "AES256"
    assert client.head_object(Bucket=sink.bucket, Key=f"{base}/{CSV_FILE}")["ContentType"].startswith("text/csv")

    with pytest.raises(ValueError, match="holds the export as of 2026-11-01, not 2026-11-02"):
        sink.upload_export(export.path, date(2026, 11, 2))
    (export.path / CSV_FILE).write_bytes(b"customer_id\r\nedited\r\n")
    recording.calls.clear()
    with pytest.raises(CorruptExport, match=f"{export.path / CSV_FILE} does not match its manifest"):
        sink.upload_export(export.path, DAY)
    assert recording.calls == []  # verified before anything was touched


def test_the_drop_url_setting_and_the_aws_connection(drop: tuple[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    url, client = drop
    monkeypatch.delenv("TAILOR_S3_DROP_URL", raising=False)
    assert settings.s3_drop_url() is None
    with pytest.raises(ValueError, match="TAILOR_S3_DROP_URL is not set"):
        S3Sink.from_settings()
    for bad in ("https://bucket/drop", "s3://", "s3://Bad_Bucket/drop", "bucket/drop"):
        monkeypatch.setenv("TAILOR_S3_DROP_URL", bad)
        with pytest.raises(ValueError, match=f"TAILOR_S3_DROP_URL='{bad}' is not s3://bucket/prefix"):
            S3Sink.from_settings()

    # The aws_default Connection's keys and endpoint, as in production: nothing else configured.
    endpoint = os.environ.pop("TAILOR_S3_ENDPOINT_URL")
    try:
        monkeypatch.setenv("TAILOR_S3_DROP_URL", url + "/")
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(
            {"conn_type": "aws", "login": "AKIATESTDROP", "password": SECRET,
             "extra": json.dumps({"region_name": "us-east-1", "endpoint_url": endpoint})}))
        sink = S3Sink.from_settings()
        assert (sink.prefix, repr(sink)) == ("drop", f"S3Sink('s3://{sink.bucket}/drop')")
        caplog.set_level(logging.DEBUG)
        sink.deliver([payload(1)], as_of_date=DAY, delivery_id="via-connection", on_batch=lambda _: None)
    finally:
        os.environ["TAILOR_S3_ENDPOINT_URL"] = endpoint
    assert objects(client, sink.bucket, "drop/") == ["drop/2026-11-01/via-connection/manifest.json",
                                                     "drop/2026-11-01/via-connection/part-00000.jsonl.gz"]
    assert SECRET not in caplog.text and all(SECRET not in str(r.args) for r in caplog.records)

    with pytest.raises(ValueError, match="delivery_id '../x'"):
        sink.deliver([], as_of_date=DAY, delivery_id="../x", on_batch=lambda _: None)


def test_a_feed_failing_mid_delivery_keeps_the_reported_parts_and_writes_no_manifest(drop: tuple[str, Any]) -> None:
    url, client = drop
    sink = S3Sink.from_url(url)
    outcomes: list[BatchOutcome] = []

    def failing() -> Iterator[Payload]:
        yield from (payload(n) for n in range(150))
        raise RuntimeError("warehouse connection lost")

    with pytest.raises(RuntimeError, match="connection lost"):
        sink.deliver(failing(), as_of_date=DAY, delivery_id="attempt-1", on_batch=outcomes.append,
                     rows_per_object=100)
    assert [len(o.sent) for o in outcomes] == [100]  # the caller recorded these: a resume sends the other 50
    assert objects(client, sink.bucket, "drop/") == ["drop/2026-11-01/attempt-1/part-00000.jsonl.gz"]

    rest = [payload(n) for n in range(100, 150)]
    sink.deliver(rest, as_of_date=DAY, delivery_id="attempt-2", on_batch=outcomes.append, rows_per_object=100)
    manifest = json.loads(body(client, sink.bucket, "drop/2026-11-01/attempt-2/manifest.json"))
    assert manifest["rows"] == 50 and [len(o.sent) for o in outcomes] == [100, 50]

    with pytest.raises(ValueError, match=r"feed row 3 \(customer 'cust-x'\): email None"):
        sink.deliver([payload(1), payload(2), Payload("cust-x", None, {}, "")], as_of_date=DAY,  # type: ignore[arg-type]
                     delivery_id="attempt-3", on_batch=outcomes.append)
    assert "drop/2026-11-01/attempt-3/" not in "".join(objects(client, sink.bucket, "drop/"))


def test_parts_are_announced_before_upload_and_resolved_by_whether_the_object_is_there(drop: tuple[str, Any]) -> None:
    # what the next delivery asks after a process was killed between an upload and its report
    url, client = drop
    sink = S3Sink.from_url(url)
    feed = [payload(n) for n in range(150)]
    announced: dict[str, list[Payload]] = {}

    def on_submit(key: str, batch: list[Payload]) -> None:
        assert key not in objects(client, sink.bucket, "drop/")  # announced before the upload starts
        announced[key] = list(batch)

    outcomes: list[BatchOutcome] = []
    sink.deliver(feed, as_of_date=DAY, delivery_id="run-1", on_batch=outcomes.append, rows_per_object=100,
                 on_submit=on_submit)
    assert list(announced) == [o.batch_id for o in outcomes] == [f"drop/2026-11-01/run-1/part-{i:05d}.jsonl.gz"
                                                                  for i in range(2)]
    uploaded, _ = announced
    never = "drop/2026-11-01/run-2/part-00000.jsonl.gz"
    resolved = dict(sink.resolve_jobs({uploaded: announced[uploaded], never: feed[:3]}))
    assert resolved[never] is None
    assert resolved[uploaded].sent == feed[:100] and resolved[uploaded].batch_id == uploaded
