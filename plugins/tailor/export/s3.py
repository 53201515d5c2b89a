"""The S3 drop: the feed as gzip'd JSON Lines objects in a bucket, where ESPs such as Braze and Iterable ingest it.

    <prefix>/<as-of date>/<delivery id>/part-00000.jsonl.gz, part-00001.jsonl.gz, ...
    <prefix>/<as-of date>/<delivery id>/manifest.json        rows, each part's rows, bytes and sha256 (last)
    <prefix>/<as-of date>/export/...                         a local outbox export, copied as is (manifest last)

A delivery is complete once its manifest exists. Each part is reported to the caller (on_batch) only once its
upload has completed, so the caller records progress per object and a delivery killed mid-way resumes with a new
delivery id for the rest. Each part's key is announced (on_submit) before its upload starts, so after a kill between
an upload and its report the next delivery asks S3 whether the object is there (resolve_jobs) instead of sending
its rows again. Every PUT asks for SSE-S3 (AES256) and carries its Content-MD5, so S3 rejects a body
damaged in transit; objects above the multipart threshold go up in parts (each with its Content-MD5), and a failed
multipart upload is aborted so no orphan parts stay billed.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import math
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from tailor import settings
from tailor.export.outbox import MANIFEST_FILE, SCHEMA_VERSION, feed_line, open_export
from tailor.export.payload import BatchOutcome, Payload
from tailor.lake import is_not_found

log = logging.getLogger(__name__)

MiB = 1 << 20
DEFAULT_MULTIPART_THRESHOLD = 64 * MiB
DEFAULT_PART_SIZE = 16 * MiB
DEFAULT_ROWS_PER_OBJECT = 100_000  # one object per 100k rows: each is recorded as delivered once it is written
MIN_PART_SIZE = 5 * MiB  # S3's smallest part (all but the last)
MAX_PARTS = 10_000  # S3's most parts per upload
SSE = "AES256"
_CONTENT_TYPES = {".gz": "application/gzip", ".json": "application/json", ".csv": "text/csv; charset=utf-8"}
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def parse_s3_url(url: str) -> tuple[str, str]:
    """s3://bucket/prefix -> (bucket, prefix without slashes at either end)."""
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ValueError(f"S3 URL {url!r}: use s3://bucket/prefix")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not _BUCKET.match(bucket):
        raise ValueError(f"S3 URL {url!r} names no valid bucket: use s3://bucket/prefix (a lowercase bucket name)")
    return bucket, prefix.strip("/")


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


class S3Sink:
    """Writes feeds and outbox exports under s3://bucket/prefix through a boto3 client."""

    name = "s3"

    def __init__(self, bucket: str, prefix: str, client: Any, *, multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
                 part_size: int = DEFAULT_PART_SIZE, rows_per_object: int = DEFAULT_ROWS_PER_OBJECT):
        if not _BUCKET.match(bucket or ""):
            raise ValueError(f"S3 bucket {bucket!r} is not a valid bucket name")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size {part_size} is below S3's minimum part size ({MIN_PART_SIZE} bytes)")
        if multipart_threshold < 1:
            raise ValueError(f"multipart_threshold must be at least 1 byte, not {multipart_threshold}")
        self.bucket = bucket
        self.prefix = (prefix or "").strip("/")
        self.client = client
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.rows_per_object = rows_per_object

    @classmethod
    def from_url(cls, url: str, client: Any = None, **options: int) -> S3Sink:
        """A sink at s3://bucket/prefix; `client` defaults to the one the aws_default Connection configures."""
        bucket, prefix = parse_s3_url(url)
        if client is None:
            from tailor.connections import s3_drop_client

            client = s3_drop_client()
        return cls(bucket, prefix, client, **options)

    @classmethod
    def from_settings(cls, client: Any = None, **options: int) -> S3Sink:
        """The sink at TAILOR_S3_DROP_URL, with the aws_default Connection's credentials."""
        url = settings.s3_drop_url()
        if url is None:
            raise ValueError("TAILOR_S3_DROP_URL is not set: give the drop's location as s3://bucket/prefix")
        return cls.from_url(url, client, **options)

    def __repr__(self) -> str:  # never the client: nothing secret in logs or tracebacks
        return f"S3Sink({self.uri(self.prefix)!r})"

    def key(self, *parts: str) -> str:
        return "/".join([self.prefix, *parts] if self.prefix else parts)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # --- the feed ------------------------------------------------------------------------------------------------

    def deliver(self, payloads: Iterable[Payload], *, as_of_date: date, delivery_id: str,
                on_batch: Callable[[BatchOutcome], None], rows_per_object: int | None = None,
                on_submit: Callable[[str, list[Payload]], None] | None = None) -> None:
        """Write `payloads` as parts of `rows_per_object` rows (default: the sink's), calling on_submit(key, payloads)
        before each part's upload and on_batch(BatchOutcome(sent=those payloads)) once it has completed, then the
        delivery's manifest."""
        day = _day(as_of_date)
        rows_per_object = self.rows_per_object if rows_per_object is None else rows_per_object
        if not isinstance(delivery_id, str) or not _DELIVERY_ID.match(delivery_id):
            raise ValueError(f"delivery_id {delivery_id!r}: use letters, digits, '.', '_' and '-' (at most 128)")
        if not isinstance(rows_per_object, int) or rows_per_object < 1:
            raise ValueError(f"rows_per_object must be a whole number >= 1, not {rows_per_object!r}")
        base = self.key(day, delivery_id)  # a new id per attempt: a PUT-only bucket policy is enough here
        parts: list[dict[str, Any]] = []
        batch: list[Payload] = []
        lines: list[str] = []
        rows = 0
        part: _GzipPart | None = None
        try:
            for payload in payloads:
                rows += 1
                lines.append(feed_line(payload, f"feed row {rows}"))
                batch.append(payload)
                if len(lines) >= 1000 or len(batch) >= rows_per_object:
                    part = part or _GzipPart()
                    part.write(lines)
                if len(batch) >= rows_per_object:
                    parts.append(self._send_part(part, f"{base}/part-{len(parts):05d}.jsonl.gz", batch, on_batch,
                                                 on_submit))
                    part, batch = None, []
            if batch:
                part = part or _GzipPart()
                part.write(lines)
                parts.append(self._send_part(part, f"{base}/part-{len(parts):05d}.jsonl.gz", batch, on_batch,
                                             on_submit))
                part = None
        finally:
            if part is not None:
                part.discard()
        manifest = {"schema_version": SCHEMA_VERSION, "as_of_date": day, "delivery_id": delivery_id, "rows": rows,
                    "parts": parts}
        body = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
        self._put_bytes(f"{base}/{MANIFEST_FILE}", body)
        log.info("delivered %d customers as of %s in %d parts to %s", rows, day, len(parts),
                 self.uri(f"{base}/{MANIFEST_FILE}"))

    def _send_part(self, part: _GzipPart, key: str, batch: list[Payload], on_batch: Callable[[BatchOutcome], None],
                   on_submit: Callable[[str, list[Payload]], None] | None) -> dict[str, Any]:
        handle, size, sha256 = part.finish()
        try:
            if on_submit is not None:
                on_submit(key, batch)
            self._put(key, handle, size)
        finally:
            handle.close()
        log.info("uploaded %s: %d rows, %d bytes", self.uri(key), len(batch), size)
        on_batch(BatchOutcome(sent=batch, batch_id=key))
        return {"name": key.rsplit("/", 1)[1], "rows": len(batch), "bytes": size, "sha256": sha256}

    def resolve_jobs(self, jobs: Mapping[str, list[Payload]]) -> Iterator[tuple[str, BatchOutcome | None]]:
        """Parts an earlier delivery announced and never reported (key -> its payloads): a part whose object exists
        was uploaded whole (a PUT or a completed multipart upload is atomic), one that does not was not."""
        for key, payloads in jobs.items():
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
            except Exception as exc:  # botocore's ClientError: only a 404 means "never uploaded"
                if not is_not_found(exc):
                    raise
                log.warning("%s was never uploaded: its %d rows are sent again", self.uri(key), len(payloads))
                yield key, None
                continue
            yield key, BatchOutcome(sent=list(payloads), batch_id=key)

    # --- an outbox export ----------------------------------------------------------------------------------------

    def upload_export(self, export_dir: Path, as_of_date: date) -> list[str]:
        """Copy the local outbox export in `export_dir` to <prefix>/<date>/export/, its files verified against its
        manifest first and the manifest uploaded last. Returns the keys written, in order."""
        day = _day(as_of_date)
        base = self.key(day, "export")
        with open_export(Path(export_dir)) as (export, raw_manifest, handles):
            if export.as_of_date != as_of_date:
                raise ValueError(f"{export_dir} holds the export as of {export.as_of_date}, not {day}")
            # Replacing an earlier upload: it stops being complete before its files change (needs s3:DeleteObject).
            self.client.delete_object(Bucket=self.bucket, Key=f"{base}/{MANIFEST_FILE}")
            keys = []
            for item in export.files:
                keys.append(f"{base}/{item.name}")
                self._put(keys[-1], handles[item.name], item.size)
            keys.append(f"{base}/{MANIFEST_FILE}")
            self._put_bytes(keys[-1], raw_manifest)
        log.info("uploaded the export as of %s (%d rows) to %s", day, export.rows, self.uri(base))
        return keys

    # --- PUTs ----------------------------------------------------------------------------------------------------

    def _put(self, key: str, handle: IO[bytes], size: int) -> None:
        """Upload `size` bytes from `handle`: one PUT up to the threshold, else a multipart upload."""
        if size <= self.multipart_threshold:
            self._put_bytes(key, handle.read())
        else:
            self._put_multipart(key, handle, size)

    def _put_bytes(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentMD5=_md5_b64(body),
                               ServerSideEncryption=SSE, ContentType=_content_type(key))

    def _put_multipart(self, key: str, handle: IO[bytes], size: int) -> None:
        part_size = max(self.part_size, math.ceil(size / MAX_PARTS))
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, ServerSideEncryption=SSE,
                                                        ContentType=_content_type(key))["UploadId"]
        try:
            done = []
            while chunk := handle.read(part_size):
                number = len(done) + 1
                response = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                   PartNumber=number, Body=chunk, ContentMD5=_md5_b64(chunk))
                done.append({"ETag": response["ETag"], "PartNumber": number})
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                  MultipartUpload={"Parts": done})
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception as exc:  # the original failure matters more; S3 lifecycle rules can still clean up
                log.warning("could not abort the multipart upload of %s (upload id %s): %s", self.uri(key),
                            upload_id, type(exc).__name__)
            raise
        log.debug("uploaded %s in %d parts", self.uri(key), len(done))


class _GzipPart:
    """One part being written: gzip'd lines in an anonymous temp file (gone with the process, whatever happens)."""

    def __init__(self) -> None:
        self.handle = tempfile.TemporaryFile()  # noqa: SIM115 (outlives __init__: closed by finish/discard)
        self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.handle, mtime=0, compresslevel=6)

    def write(self, lines: list[str]) -> None:
        if lines:
            self.gz.write(("\n".join(lines) + "\n").encode())
            lines.clear()

    def finish(self) -> tuple[IO[bytes], int, str]:
        """The finished file at its start, its size and sha256."""
        self.gz.close()
        self.handle.seek(0)
        digest, size = hashlib.sha256(), 0
        while chunk := self.handle.read(MiB):
            digest.update(chunk)
            size += len(chunk)
        self.handle.seek(0)
        return self.handle, size, digest.hexdigest()

    def discard(self) -> None:
        self.gz.close()
        self.handle.close()


def _day(as_of_date: date) -> str:
    if not isinstance(as_of_date, date) or isinstance(as_of_date, datetime):
        raise TypeError(f"as_of_date must be a date, not {as_of_date!r}")
    return as_of_date.isoformat()


def _content_type(key: str) -> str:
    return _CONTENT_TYPES.get(Path(key).suffix, "application/octet-stream")
