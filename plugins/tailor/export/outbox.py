"""The local outbox: one complete, verifiable export of the feed per as-of date, in a folder an ESP import (or the
S3 drop) reads.

    <outbox>/<as-of date>/feed.jsonl.gz   one JSON object per customer: its fields, customer_id and email
    <outbox>/<as-of date>/feed.csv        the same rows flat (recommendations as rec_<i>_<column>), for CSV imports
    <outbox>/<as-of date>/manifest.json   row count, each file's bytes and sha256, and the caller's extras (last)

Both data files are written in one pass over the payloads (a feed of a million customers is never held in memory;
each file is compressed, hashed and written on a thread of its own) and are byte-for-byte deterministic for the same payloads (gzip without a name or time, sorted keys), so a re-export
of the same day gives the same checksums. An export is built in a hidden temp folder beside the target, fsynced,
then swapped in (the old one renamed aside, the new one renamed in, the old one removed): a reader sees the old
complete export or the new one, never a partial one. Temp folders of a writer that died are removed by the next
write, which also puts back an old export a crash left aside between the two renames.
"""

from __future__ import annotations

import csv
import fcntl
import gzip
import hashlib
import io
import json
import logging
import os
import queue
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from tailor.export.payload import Payload
from tailor.lake import fsync_path, pid_alive

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DATA_FILE = "feed.jsonl.gz"
CSV_FILE = "feed.csv"
MANIFEST_FILE = "manifest.json"
RECOMMENDATIONS = "tailor_recommendations"  # tailor.export.feed.ESP_FIELDS["recommendations"]
# The flat columns of each recommendation in the CSV (rank is the position: rec_1 is rank 1).
REC_COLUMNS = ("product_id", "title", "url", "image_url", "price", "reason")
_IDENTITY = ("customer_id", "email")
_MANIFEST_KEYS = frozenset({"schema_version", "as_of_date", "rows", "files", "created_at", "columns",
                            "recommendations_per_customer"})
# Hidden work folders beside the exports: .<date>.<pid>-<hex>.tmp (being written) and .old (the replaced export).
_WORK_DIR = re.compile(r"^\.(\d{4}-\d{2}-\d{2})\.(\d+)-[0-9a-f]{8}\.(tmp|old)$")
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_CHUNK = 1 << 20
_BYTES_PER_WRITE = 1 << 18  # of JSON text: small chunks keep the export's memory flat


class BadPayload(ValueError):
    """A feed row that cannot be exported; the message names the row (its position and customer) and the field."""


class CorruptExport(Exception):
    """An export whose files do not match its manifest (or has none); the message names the file."""


class ExportNotFound(FileNotFoundError):
    """No complete export for that date in the outbox."""


@dataclass(frozen=True)
class ExportFile:
    name: str
    size: int  # bytes ("bytes" in the manifest)
    sha256: str  # hex digest

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class OutboxExport:
    """One complete export: its folder and what its manifest says."""

    path: Path
    as_of_date: date
    rows: int
    files: tuple[ExportFile, ...]
    manifest: dict[str, Any]

    @classmethod
    def from_manifest(cls, path: Path, manifest: dict[str, Any]) -> OutboxExport:
        where = path / MANIFEST_FILE
        try:
            if manifest["schema_version"] != SCHEMA_VERSION:
                raise CorruptExport(f"{where}: schema_version {manifest['schema_version']!r} is not "
                                    f"{SCHEMA_VERSION}")
            files = tuple(ExportFile(str(f["name"]), int(f["bytes"]), str(f["sha256"])) for f in manifest["files"])
            return cls(path, date.fromisoformat(manifest["as_of_date"]), int(manifest["rows"]), files, manifest)
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptExport(f"{where} is not an outbox manifest: {exc!r}") from None


# --- one row -------------------------------------------------------------------------------------------------------


def feed_record(payload: Payload, where: str) -> dict[str, Any]:
    """The JSON object a payload becomes (its fields, customer_id and email), checked; `where` names the row in
    errors (e.g. "feed row 12")."""
    if not isinstance(payload, Payload):
        raise BadPayload(f"{where} is a {type(payload).__name__}, not a Payload")
    customer_id, email, fields = payload.customer_id, payload.email, payload.fields
    if not isinstance(customer_id, str) or not customer_id.strip():
        raise BadPayload(f"{where}: customer_id {customer_id!r} is missing or not a string")
    where = f"{where} (customer {customer_id!r})"
    if not isinstance(email, str) or "@" not in email:
        raise BadPayload(f"{where}: email {email!r} is missing or not an address")
    if not isinstance(fields, dict):
        raise BadPayload(f"{where}: fields is a {type(fields).__name__}, not a dict")
    for name, value in (("customer_id", customer_id), ("email", email)):
        if name in fields and fields[name] != value:
            raise BadPayload(f"{where}: fields[{name!r}] = {fields[name]!r} differs from the payload's {value!r}")
    return {**fields, "customer_id": customer_id, "email": email}


def feed_line(payload: Payload, where: str) -> str:
    """One payload as a line of a JSON Lines feed (no newline): sorted keys, UTF-8 kept, so always the same text."""
    return _line(feed_record(payload, where), payload, where)


def _line(record: dict[str, Any], payload: Payload, where: str) -> str:
    try:
        return _dumps(record)
    except (TypeError, ValueError) as exc:
        raise BadPayload(f"{where} (customer {payload.customer_id!r}): fields are not JSON-safe: {exc}") from None


_PLAIN = frozenset({str, int, float, type(None)})  # the csv module writes these as wanted (None: empty)


def _cells(values: Iterable[Any]) -> list[Any]:
    """CSV cells: text and numbers as is, null empty, booleans as true/false, a list or object as its JSON."""
    return [v if type(v) in _PLAIN else ("true" if v else "false") if type(v) is bool else _dumps(v) for v in values]


class _CsvLayout:
    """The CSV's columns: customer_id, email, every other field but recommendations (in the first row's order
    unless given), then rec_1_product_id ... rec_N_reason."""

    def __init__(self, columns: Sequence[str], per_customer: int):
        self.columns = [c for c in columns if c not in (*_IDENTITY, RECOMMENDATIONS)]
        self.expected = frozenset(self.columns)
        self.names = (*_IDENTITY, *self.columns)
        self.per_customer = per_customer
        self.header = [*_IDENTITY, *self.columns,
                       *(f"rec_{i}_{c}" for i in range(1, per_customer + 1) for c in REC_COLUMNS)]

    def row(self, record: dict[str, Any], where: str) -> list[Any]:
        names = record.keys() - {*_IDENTITY, RECOMMENDATIONS}
        if names != self.expected:
            missing, unexpected = sorted(self.expected - names), sorted(names - self.expected)
            raise BadPayload(f"{where}: fields differ from the CSV columns (missing {missing}, unexpected "
                             f"{unexpected}); every row must have the same fields")
        cells = _cells(map(record.__getitem__, self.names))
        recs = record.get(RECOMMENDATIONS) or []
        if not isinstance(recs, list):
            raise BadPayload(f"{where}: recommendations is a {type(recs).__name__}, not a list")
        if len(recs) > self.per_customer:
            raise BadPayload(f"{where}: {len(recs)} recommendations, more than recommendations_per_customer="
                             f"{self.per_customer}")
        for rank, rec in enumerate(recs, 1):
            if not isinstance(rec, dict) or not rec.get("product_id"):
                raise BadPayload(f"{where}: recommendation {rank} is not an object with a product_id: {rec!r}")
            cells += _cells(map(rec.get, REC_COLUMNS))
        cells.extend([""] * (len(REC_COLUMNS) * (self.per_customer - len(recs))))
        return cells


# --- writing -------------------------------------------------------------------------------------------------------


def write_outbox(payloads: Iterable[Payload], *, outbox_dir: Path, as_of_date: date, manifest_extra: dict[str, Any],
                 recommendations_per_customer: int, exported_at: datetime,
                 columns: Sequence[str] | None = None) -> OutboxExport:
    """Export the feed as of `as_of_date` to `<outbox_dir>/<date>/`, replacing an earlier export of that date.

    `payloads` is consumed once, here; if it (or a bad row) raises, the outbox is unchanged. `exported_at` becomes
    the manifest's created_at (the caller's clock, never read here); `manifest_extra` (model versions, the feed
    gate's result) is merged into the manifest. `columns` are the CSV's field columns in order (default: the first
    payload's fields), so an empty feed still gets its full header.
    """
    if not isinstance(as_of_date, date) or isinstance(as_of_date, datetime):
        raise TypeError(f"as_of_date must be a date, not {as_of_date!r}")
    if not isinstance(exported_at, datetime) or exported_at.tzinfo is None:
        raise ValueError(f"exported_at {exported_at!r} must be a datetime with a timezone")
    if not isinstance(recommendations_per_customer, int) or recommendations_per_customer < 0:
        raise ValueError(f"recommendations_per_customer must be a whole number >= 0, not "
                         f"{recommendations_per_customer!r}")
    clash = sorted(_MANIFEST_KEYS & set(manifest_extra))
    if clash:
        raise ValueError(f"manifest_extra may not set the manifest's own keys: {clash}")
    try:
        _dumps(manifest_extra)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"manifest_extra is not JSON-safe: {exc}") from None

    outbox_dir = Path(outbox_dir).resolve()
    outbox_dir.mkdir(parents=True, exist_ok=True)
    day = as_of_date.isoformat()
    target = outbox_dir / day
    with _locked(outbox_dir):
        _sweep(outbox_dir)
    tmp = outbox_dir / f".{day}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        rows, header, files = _write_data(tmp, payloads, columns, recommendations_per_customer)
        manifest = {**manifest_extra, "schema_version": SCHEMA_VERSION, "as_of_date": day, "rows": rows,
                    "created_at": exported_at.astimezone(UTC).isoformat(), "columns": header,
                    "recommendations_per_customer": recommendations_per_customer,
                    "files": [f.to_dict() for f in files]}
        _write_durably(tmp / MANIFEST_FILE, _manifest_bytes(manifest))
        fsync_path(tmp)
        _swap_in(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %d customers as of %s to %s", rows, day, target)
    return OutboxExport(target, as_of_date, rows, tuple(files), manifest)


def _write_data(folder: Path, payloads: Iterable[Payload], columns: Sequence[str] | None,
                per_customer: int) -> tuple[int, list[ExportFile]]:
    """Both data files in one pass, fsynced; returns the row count, the CSV header and each file's description.

    This thread turns rows into text; a writer thread per file compresses, hashes and writes it (zlib and sha256
    release the GIL, so on two cores the export is as fast as its Python part)."""
    layout = _CsvLayout(columns, per_customer) if columns is not None else None
    rows = 0
    with _FileWriter(folder / DATA_FILE, gzipped=True) as jsonl, _FileWriter(folder / CSV_FILE) as flat:
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\r\n")  # RFC 4180: CRLF, quotes only where needed, "" inside
        if layout is not None:
            writer.writerow(layout.header)
        lines: list[str] = []
        pending = 0
        for payload in payloads:
            rows += 1
            where = f"feed row {rows}"
            record = feed_record(payload, where)
            lines.append(line := _line(record, payload, where))
            pending += len(line)
            if layout is None:
                layout = _CsvLayout(list(payload.fields), per_customer)
                writer.writerow(layout.header)
            writer.writerow(layout.row(record, f"{where} (customer {payload.customer_id!r})"))
            if pending >= _BYTES_PER_WRITE:
                jsonl.write(("\n".join(lines) + "\n").encode())
                flat.write(table.getvalue().encode())
                lines.clear()
                pending = 0
                table.seek(0)
                table.truncate()
        if layout is None:  # an empty feed: still a header
            layout = _CsvLayout([], per_customer)
            writer.writerow(layout.header)
        if lines:
            jsonl.write(("\n".join(lines) + "\n").encode())
        flat.write(table.getvalue().encode())
    return rows, layout.header, [jsonl.described, flat.described]


class _FileWriter:
    """Writes chunks to a file on its own thread: gzip'd if asked (deterministic bytes: no name or time in the
    header), hashed as written, fsynced on a clean exit. An error on the thread is raised in the caller at its next
    write or at the exit; an error in the caller stops the thread."""

    def __init__(self, path: Path, *, gzipped: bool = False):
        self.path, self.gzipped = path, gzipped
        self.described: ExportFile | None = None
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"outbox-{path.name}", daemon=True)

    def __enter__(self) -> _FileWriter:
        self._file = _HashedFile(open(self.path, "wb"))  # closed on the thread
        self._thread.start()
        return self

    def write(self, chunk: bytes) -> None:
        self._raise()
        self._chunks.put(chunk)

    def __exit__(self, kind, error, trace) -> None:
        self._chunks.put(None)
        self._thread.join()
        if kind is None:
            self._raise()
            self.described = ExportFile(self.path.name, self._file.size, self._file.digest.hexdigest())

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            with self._file.raw:
                target = gzip.GzipFile(filename="", mode="wb", fileobj=self._file, mtime=0, compresslevel=6) \
                    if self.gzipped else self._file
                while (chunk := self._chunks.get()) is not None:
                    target.write(chunk)
                if self.gzipped:
                    target.close()
                self._file.raw.flush()
                os.fsync(self._file.raw.fileno())
        except BaseException as exc:  # handed to the caller
            self._error = exc
            while self._chunks.get() is not None:  # let the caller's puts and its exit go through
                pass


class _HashedFile:
    """A binary file that hashes and counts what is written to it."""

    def __init__(self, raw: IO[bytes]):
        self.raw, self.digest, self.size = raw, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _digest(handle: IO[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


@contextmanager
def _locked(outbox_dir: Path) -> Iterator[None]:
    """Serialize swaps and sweeps between processes writing the same outbox (a flock on the folder itself)."""
    fd = os.open(outbox_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename the old export aside, the new one in, then remove the old one. A crash between the two renames
    leaves no export at the target (never a partial one) and the old one aside, which the next write puts back."""
    outbox_dir = target.parent
    aside = None
    with _locked(outbox_dir):
        if target.exists():
            aside = outbox_dir / f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.old"
            os.rename(target, aside)
        try:
            os.rename(tmp, target)
        except BaseException:
            if aside is not None:
                os.rename(aside, target)
            raise
        fsync_path(outbox_dir)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _sweep(outbox_dir: Path) -> None:
    """Clean up after writers that died (call under the lock): an export left aside where no export stands is put
    back; every other work folder of a dead process is removed."""
    stale = []
    for entry in sorted(outbox_dir.iterdir()):
        match = _WORK_DIR.match(entry.name)
        if match and entry.is_dir() and not pid_alive(int(match.group(2))):
            stale.append((entry, match.group(1), match.group(3)))
    for entry, day, kind in stale:
        target = outbox_dir / day
        if kind == "old" and not target.exists():
            log.warning("restoring the export of %s that a crashed write left aside (%s)", day, entry.name)
            os.rename(entry, target)
            fsync_path(outbox_dir)
        else:
            log.info("removing %s, left by a crashed export", entry)
            shutil.rmtree(entry, ignore_errors=True)


# --- reading -------------------------------------------------------------------------------------------------------


def export_dir(outbox_dir: Path, as_of_date: date) -> Path:
    return Path(outbox_dir) / as_of_date.isoformat()


def read_manifest(outbox_dir: Path, as_of_date: date) -> dict[str, Any]:
    """The manifest of the export as of that date (not verified: see verify_export)."""
    return _load_manifest(export_dir(outbox_dir, as_of_date))[1]


def _load_manifest(folder: Path) -> tuple[bytes, dict[str, Any]]:
    path = folder / MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ExportNotFound(f"no export in {folder} ({path} is missing)") from None
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise CorruptExport(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise CorruptExport(f"{path} is not a JSON object")
    return raw, manifest


@contextmanager
def open_export(path: Path) -> Iterator[tuple[OutboxExport, bytes, dict[str, IO[bytes]]]]:
    """The export in `path`, verified: its manifest, the manifest's bytes and each file open at its start.

    The files are opened before they are hashed, so what a caller reads (the S3 upload) is what was verified even
    if a re-export swaps the folder meanwhile.
    """
    path = Path(path)
    raw_manifest, manifest = _load_manifest(path)
    export = OutboxExport.from_manifest(path, manifest)
    with ExitStack() as stack:
        handles: dict[str, IO[bytes]] = {}
        for item in export.files:
            try:
                handles[item.name] = stack.enter_context(open(path / item.name, "rb"))
            except FileNotFoundError:
                raise CorruptExport(f"{path / item.name} is listed in the manifest but missing") from None
        for item in export.files:
            sha256, size = _digest(handles[item.name])
            if (sha256, size) != (item.sha256, item.size):
                raise CorruptExport(f"{path / item.name} does not match its manifest ({size} bytes, sha256 "
                                    f"{sha256}; expected {item.size} bytes, {item.sha256})")
            handles[item.name].seek(0)
        yield export, raw_manifest, handles


def verify_export(path: Path) -> OutboxExport:
    """The export in `path` if every file matches the manifest's bytes and sha256; CorruptExport otherwise."""
    with open_export(path) as (export, _raw, _handles):
        return export


@dataclass(frozen=True, slots=True)
class ExportedRow:
    """One line of an export's JSON Lines file, split but not parsed: a delivery compares every row's hash with what
    the sink holds and parses only the rows it sends (a million rows parsed twice was most of a delivery's time)."""

    customer_id: str
    row_hash: str  # Payload.row_hash of the row
    fields_json: str  # the row's fields (all but customer_id) as canonical JSON: what row_hash hashes
    where: str  # <file>:<line>, for errors

    def payload(self) -> Payload:
        try:
            fields = json.loads(self.fields_json)
            return Payload(self.customer_id, fields["email"], fields, self.row_hash)
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptExport(f"{self.where}: not a feed row ({exc!r})") from None


# A line is the canonical JSON of the row (sorted keys, compact, UTF-8 kept): customer_id sorts before the ESP
# fields, so the line is '{"customer_id":<id>,' then the fields' own canonical JSON without its '{'.
_ROW_HEAD = '{"customer_id":'
_raw_decode = json.JSONDecoder().raw_decode


def read_rows(folder: Path) -> Iterator[ExportedRow]:
    """The rows of the export in `folder`, in order (see ExportedRow). Not verified: see verify_export."""
    path = Path(folder) / DATA_FILE
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            where = f"{path}:{number}"
            try:
                yield _split_row(line.rstrip("\n"), where)
            except (ValueError, KeyError, TypeError) as exc:
                raise CorruptExport(f"{where}: not a feed row ({exc!r})") from None


def _split_row(line: str, where: str) -> ExportedRow:
    if line.startswith(_ROW_HEAD):
        customer_id, end = _raw_decode(line, len(_ROW_HEAD))
        if isinstance(customer_id, str) and line[end:end + 1] == ",":
            fields_json = "{" + line[end + 1:]
            return ExportedRow(customer_id, hashlib.sha256(fields_json.encode()).hexdigest(), fields_json, where)
    # a field whose name sorts before customer_id (not one of the feed's): parse the line to split it
    fields = json.loads(line)
    if not isinstance(fields, dict):
        raise TypeError(f"a JSON {type(fields).__name__}, not an object")
    customer_id = fields.pop("customer_id")
    payload = Payload(customer_id, fields["email"], fields)
    return ExportedRow(customer_id, payload.row_hash, _dumps(fields), where)
