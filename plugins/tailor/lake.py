"""Landing files: what each extract saw, as immutable batches on a local folder or S3.

One batch holds every record version of one (source, entity, window), in two objects side by side:

    <lake>/raw/<source>/<entity>/<window start>/<batch_id>.jsonl.gz       the records
    <lake>/raw/<source>/<entity>/<window start>/<batch_id>.manifest.json  count, checksum, window (written last)

The batch id is a hash of (source, entity, window start, window end), so re-running a window writes the same
batch id and replaces it. Each line of the data file is one record version:

    {"record_id": "...", "updated_at": "2026-11-01T10:00:00+00:00", "is_deleted": false, "payload": "<json>"}

`payload` is the API's JSON carried as a string, so the loader stores its text byte for byte (DuckDB's JSON reader
would re-format numbers such as 1e5 if the payload were embedded as an object).

A batch exists only once its manifest does, and a load trusts a data file only when its bytes hash to the
manifest's checksum. Writes are atomic: locally a temp file in the same folder is fsynced and renamed into place;
on S3 each object is one PUT (or one completed multipart upload). A re-landing first writes the new data to a
temp file (the long part: the extract pages into it), then removes the old manifest, publishes the data and writes
the new manifest. A crash at any point therefore leaves either the old batch, no batch, or the new batch, never
a file that loads partially. Nothing here opens DuckDB.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from tailor import settings
from tailor.sources import RecordVersion, Window
from tailor.times import iso

log = logging.getLogger(__name__)

FORMAT = "tailor.lake.batch/1"
DATA_SUFFIX = ".jsonl.gz"
MANIFEST_SUFFIX = ".manifest.json"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # source and entity names: path- and SQL-identifier-safe
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_CHUNK = 1 << 20


class LakeError(Exception):
    """A landing problem; the message names the file."""


class BatchNotFound(LakeError):
    """The batch (or its data file) is not in the lake."""


class CorruptBatch(LakeError):
    """A batch whose file does not match its manifest (partial, truncated, edited) or cannot be read."""


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{kind} {name!r} is not a valid name: use lowercase letters, digits and _")
    return name


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} has no timezone")
    return parsed.astimezone(UTC)


def batch_id(source: str, entity: str, window: Window) -> str:
    """Deterministic: the same (source, entity, window) always gets the same id."""
    key = "|".join((check_name("source", source), check_name("entity", entity), iso(window.start, "microseconds"),
                    iso(window.end, "microseconds")))
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _data_key(source: str, entity: str, window: Window, bid: str) -> str:
    """The key of a batch's data file inside the lake."""
    return f"raw/{source}/{entity}/{window.label()}/{bid}{DATA_SUFFIX}"


def _manifest_key(data_key: str) -> str:
    """The key of the manifest beside a batch's data file."""
    return data_key[: -len(DATA_SUFFIX)] + MANIFEST_SUFFIX


@dataclass(frozen=True)
class BatchRef:
    """One landed batch, as its manifest describes it. Small and JSON-able (to_dict) for XCom."""

    batch_id: str
    source: str
    entity: str
    window: Window  # the window actually extracted (lookback included)
    path: str  # where the data file is: a local path or an s3:// URI
    records: int
    checksum: str  # "sha256:<hex>" of the data file's bytes
    size: int  # bytes of the data file
    extracted_at: datetime

    @property
    def key(self) -> str:
        """The data file's key inside the lake."""
        return _data_key(self.source, self.entity, self.window, self.batch_id)

    @property
    def manifest_key(self) -> str:
        return _manifest_key(self.key)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "batch_id": self.batch_id, "source": self.source, "entity": self.entity,
                "window_start": iso(self.window.start, "microseconds"),
                "window_end": iso(self.window.end, "microseconds"), "path": self.path,
                "records": self.records, "checksum": self.checksum, "size": self.size,
                "extracted_at": iso(self.extracted_at, "microseconds")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchRef:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown batch format {data.get('format')!r} (expected {FORMAT})")
        ref = cls(batch_id=str(data["batch_id"]), source=check_name("source", data["source"]),
                  entity=check_name("entity", data["entity"]),
                  window=Window(_parse_time(data["window_start"]), _parse_time(data["window_end"])),
                  path=str(data["path"]), records=int(data["records"]), checksum=str(data["checksum"]),
                  size=int(data["size"]), extracted_at=_parse_time(data["extracted_at"]))
        if ref.batch_id != batch_id(ref.source, ref.entity, ref.window):
            raise ValueError(f"batch id {ref.batch_id} does not belong to {ref.source}/{ref.entity} {ref.window}")
        return ref

    def describe(self) -> str:
        start, end = self.window.start.astimezone(UTC), self.window.end.astimezone(UTC)
        return f"{self.source}/{self.entity} [{start:%Y-%m-%dT%H:%M:%SZ}, {end:%Y-%m-%dT%H:%M:%SZ}) batch {self.batch_id}"


# --- storage: the few operations the lake needs, on a folder or on S3 -------------------------------------------


class _Store(Protocol):
    def uri(self, key: str) -> str: ...
    def staged_file(self, key: str) -> Any: ...  # context manager -> a local temp path to write
    def publish(self, tmp: Path, key: str) -> None: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes | None: ...
    def delete(self, key: str) -> None: ...
    def list_keys(self, prefix: str, suffix: str) -> list[str]: ...
    def read_all(self, keys: list[str]) -> list[bytes | None]: ...  # get_bytes of each, as fast as the store allows
    def local_copy(self, key: str) -> Any: ...  # context manager -> a local path holding the object, or None


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entry to disk (a folder: so that a rename into it survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (owned by anyone): a temp file or folder named after a live one is in use."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _LocalStore:
    """A folder. Temp files sit next to their target (same filesystem, so the rename is atomic) and are hidden."""

    def __init__(self, root: Path):
        self.root = root

    def uri(self, key: str) -> str:
        return str(self.root / key)

    def _temp_for(self, final: Path) -> Path:
        return final.parent / f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"

    def _sweep(self, final: Path) -> None:
        """Remove temp files of this object left by processes that died (killed mid-write)."""
        for stale in final.parent.glob(f".{final.name}.*.tmp"):
            pid = stale.name[len(final.name) + 2:].split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                stale.unlink(missing_ok=True)

    @contextmanager
    def staged_file(self, key: str) -> Iterator[Path]:
        final = self.root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        self._sweep(final)
        tmp = self._temp_for(final)
        try:
            yield tmp
        finally:
            tmp.unlink(missing_ok=True)

    def publish(self, tmp: Path, key: str) -> None:
        final = self.root / key
        os.replace(tmp, final)
        fsync_path(final.parent)

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.staged_file(key) as tmp:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self.publish(tmp, key)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        path = self.root / key
        if path.exists():
            path.unlink(missing_ok=True)
            fsync_path(path.parent)

    def list_keys(self, prefix: str, suffix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        keys = []
        for folder, _dirs, files in os.walk(base):
            for name in files:
                if name.endswith(suffix) and not name.startswith("."):
                    keys.append(Path(folder, name).relative_to(self.root).as_posix())
        return keys

    def read_all(self, keys: list[str]) -> list[bytes | None]:
        return [self.get_bytes(key) for key in keys]

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path | None]:
        """The file itself, pinned by a hard link so that a re-landing renaming over it cannot change what we read."""
        final = self.root / key
        if final.parent.is_dir():
            self._sweep(final)  # pins left by killed loaders
        pin = self._temp_for(final)
        try:
            os.link(final, pin)
        except FileNotFoundError:
            yield None
            return
        except OSError:  # a filesystem without hard links: read in place
            yield final
            return
        try:
            yield pin
        finally:
            pin.unlink(missing_ok=True)


class _S3Store:
    """A bucket and prefix through boto3. A PUT is atomic: readers see the old object or the complete new one."""

    def __init__(self, bucket: str, prefix: str, client: Any):
        self.bucket = bucket
        self.prefix = prefix
        self.client = client

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    @contextmanager
    def staged_file(self, key: str) -> Iterator[Path]:
        handle, name = tempfile.mkstemp(prefix="tailor-lake-", suffix=".tmp")
        os.close(handle)
        tmp = Path(name)
        try:
            yield tmp
        finally:
            tmp.unlink(missing_ok=True)

    def publish(self, tmp: Path, key: str) -> None:
        # upload_file: one PUT, or a multipart upload that becomes visible only when complete.
        self.client.upload_file(str(tmp), self.bucket, self.prefix + key)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def list_keys(self, prefix: str, suffix: str) -> list[str]:
        keys = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix):]
                if key.endswith(suffix):
                    keys.append(key)
        return keys

    def read_all(self, keys: list[str]) -> list[bytes | None]:
        """Concurrent GETs: each is a round trip, and a lake lists thousands of small manifests."""
        if len(keys) <= 1:
            return [self.get_bytes(key) for key in keys]
        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(self.get_bytes, keys))

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path | None]:
        with self.staged_file(key) as tmp:
            try:
                self.client.download_file(self.bucket, self.prefix + key, str(tmp))
            except Exception as exc:  # botocore raises ClientError 404 for a missing object here
                if is_not_found(exc):
                    yield None
                    return
                raise
            yield tmp


def is_not_found(exc: Exception) -> bool:
    """A botocore error saying the object (or bucket) is not there."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound")


def s3_client(access_key_id: str | None = None, secret_access_key: str | None = None, region_name: str | None = None,
              endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client. Without explicit keys: the default credential chain (AWS_* variables, profile, instance
    role). The endpoint, if not given, comes from TAILOR_S3_ENDPOINT_URL (S3-compatible servers)."""
    import boto3
    from botocore.config import Config

    endpoint = endpoint_url or settings.s3_endpoint_url()
    retries = {"max_attempts": 10, "mode": "adaptive"}
    config = Config(s3={"addressing_style": "path"}, retries=retries) if endpoint else Config(retries=retries)
    return boto3.client("s3", endpoint_url=endpoint, config=config, region_name=region_name,
                        aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key)


# --- the lake --------------------------------------------------------------------------------------------------


class Lake:
    """The landing area: write a batch, list the batches, read one back verified."""

    def __init__(self, url: str, store: _Store):
        self.url = url
        self._store = store

    @classmethod
    def from_url(cls, url: str | None = None, client: Any = None) -> Lake:
        """A lake at `url` (default TAILOR_LAKE_URL): a folder path, or s3://bucket/prefix (through `client`, by
        default `s3_client()`; Airflow glue passes one built from the aws_default Connection)."""
        url = url or settings.lake_url()
        if url.startswith("s3://"):
            bucket, _, prefix = url[len("s3://"):].partition("/")
            if not bucket:
                raise ValueError(f"lake URL {url!r} names no bucket: use s3://bucket/prefix")
            prefix = prefix.strip("/")
            return cls(url, _S3Store(bucket, f"{prefix}/" if prefix else "", client or s3_client()))
        if "://" in url:
            raise ValueError(f"lake URL {url!r}: use a local folder or s3://bucket/prefix")
        root = Path(url).resolve()
        return cls(str(root), _LocalStore(root))

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    # writing

    def write_batch(self, source: str, entity: str, window: Window, records: Iterable[RecordVersion],
                    extracted_at: datetime) -> BatchRef:
        """Land every record of `records` as the batch of (source, entity, window), replacing an earlier landing.

        `records` is consumed here (an extraction pages while the file is written); if it raises, nothing in the
        lake changes. Returns the new batch's reference.
        """
        if extracted_at.tzinfo is None:
            raise ValueError("extracted_at has no timezone: give a UTC time")
        bid = batch_id(source, entity, window)
        key = _data_key(source, entity, window, bid)
        with self._store.staged_file(key) as tmp:
            count = _write_records(tmp, records)
            checksum, size = _checksum(tmp)
            ref = BatchRef(batch_id=bid, source=source, entity=entity, window=window,
                           path=self._store.uri(key), records=count, checksum=checksum, size=size,
                           extracted_at=extracted_at.astimezone(UTC))
            manifest = json.dumps(ref.to_dict(), indent=1).encode()
            # An older landing of this window stops being a batch first; then the data, then the manifest.
            self._store.delete(ref.manifest_key)
            self._store.publish(tmp, ref.key)
            self._store.put_bytes(ref.manifest_key, manifest)
        log.info("landed %s: %d records, %d bytes at %s", ref.describe(), count, size, ref.path)
        return ref

    # reading

    def _ref_from_manifest(self, manifest_key: str, raw: bytes) -> BatchRef:
        try:
            ref = BatchRef.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptBatch(f"manifest {self._store.uri(manifest_key)} is unreadable: {exc}") from None
        if ref.manifest_key != manifest_key:
            raise CorruptBatch(f"manifest {self._store.uri(manifest_key)} describes another batch "
                               f"({ref.describe()})")
        # The path recorded at landing may have been elsewhere (another data dir): point at this lake.
        here = self._store.uri(ref.key)
        return ref if ref.path == here else replace(ref, path=here)

    def batches(self, source: str | None = None, entity: str | None = None) -> list[BatchRef]:
        """Every complete batch (one whose manifest exists), oldest window first."""
        prefix = "raw/"
        if source:
            prefix += f"{check_name('source', source)}/"
            if entity:
                prefix += f"{check_name('entity', entity)}/"
        keys = self._store.list_keys(prefix, MANIFEST_SUFFIX)
        # a manifest gone by the time it is read (None) was removed while listing: that batch is being re-landed
        refs = [self._ref_from_manifest(key, raw) for key, raw in zip(keys, self._store.read_all(keys), strict=True)
                if raw is not None]
        return sorted(refs, key=lambda r: (r.window.start, r.window.end, r.source, r.entity, r.batch_id))

    def find(self, source: str, entity: str, window: Window) -> BatchRef | None:
        """The complete batch of (source, entity, window), if one has landed."""
        key = _manifest_key(_data_key(source, entity, window, batch_id(source, entity, window)))
        raw = self._store.get_bytes(key)
        return None if raw is None else self._ref_from_manifest(key, raw)

    def current(self, ref: BatchRef) -> BatchRef | None:
        """The batch as the lake holds it now (a re-landing may have replaced `ref`); None if it is gone."""
        return self.find(ref.source, ref.entity, ref.window)

    @contextmanager
    def verified_file(self, ref: BatchRef) -> Iterator[Path]:
        """A local path to the batch's data file whose bytes hash to `ref.checksum` (downloaded first from S3)."""
        with self._store.local_copy(ref.key) as path:
            if path is None:
                raise BatchNotFound(f"{ref.describe()}: data file {self._store.uri(ref.key)} is missing; "
                                    "re-run the extract for that window")
            checksum, size = _checksum(path)
            if checksum != ref.checksum or size != ref.size:
                raise CorruptBatch(
                    f"{self._store.uri(ref.key)} does not match its manifest ({size} bytes, {checksum}; expected "
                    f"{ref.size} bytes, {ref.checksum}): the file is partial or corrupt. Re-run the extract for "
                    f"{ref.describe()}")
            yield path

    def read(self, ref: BatchRef) -> Iterator[RecordVersion]:
        """The batch's records, verified against its manifest (for inspection and tests; loads use DuckDB)."""
        with self.verified_file(ref) as path:
            count = 0
            try:
                with gzip.open(path, "rt", encoding="utf-8") as lines:
                    for line in lines:
                        row = json.loads(line)
                        yield RecordVersion(record_id=row["record_id"], updated_at=_parse_time(row["updated_at"]),
                                            payload=json.loads(row["payload"]), is_deleted=row["is_deleted"])
                        count += 1
            except (OSError, EOFError, ValueError, KeyError) as exc:
                raise CorruptBatch(f"{ref.path} is unreadable: {exc}") from None
            if count != ref.records:
                raise CorruptBatch(f"{ref.path} holds {count} records, its manifest says {ref.records}")


def record_line(record: RecordVersion) -> str:
    """One record version as a line of a batch file (without the newline)."""
    record_id = record.record_id
    if not isinstance(record_id, str) or not record_id:
        raise ValueError(f"record id {record_id!r} is not a non-empty string")
    updated_at = record.updated_at
    if not isinstance(updated_at, datetime) or updated_at.tzinfo is None:
        raise ValueError(f"record {record_id}: updated_at {updated_at!r} is not a datetime with a timezone")
    try:
        payload = _dumps(record.payload)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"record {record_id}: payload is not JSON-serializable: {exc}") from None
    return _dumps({"record_id": record_id, "updated_at": iso(updated_at),
                   "is_deleted": bool(record.is_deleted), "payload": payload})


def _write_records(path: Path, records: Iterable[RecordVersion]) -> int:
    """gzip'd JSON lines, deterministic bytes (no name or time in the gzip header), fsynced. Returns the count."""
    count = 0
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            buffer: list[str] = []
            for record in records:
                buffer.append(record_line(record))
                count += 1
                if len(buffer) >= 1000:
                    buffer.append("")
                    gz.write("\n".join(buffer).encode())
                    buffer.clear()
            if buffer:
                buffer.append("")
                gz.write("\n".join(buffer).encode())
        raw.flush()
        os.fsync(raw.fileno())
    return count


def _checksum(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return f"sha256:{digest.hexdigest()}", size
