"""The local outbox on real files: what an export holds (manifest, checksums, CSV flattening), identical bytes on a
re-export, the swap that no crash can leave half done, and bad rows named with their position and customer."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tailor.export.outbox import (
    CSV_FILE,
    DATA_FILE,
    MANIFEST_FILE,
    BadPayload,
    CorruptExport,
    ExportNotFound,
    read_manifest,
    read_rows,
    verify_export,
    write_outbox,
)
from tailor.export.payload import Payload

DAY = date(2026, 11, 1)
EXPORTED = datetime(2026, 11, 2, 6, 30, tzinfo=UTC)
EXTRA = {"model_versions": {"recommender": "v7", "send_time": "v3"}, "feed_gate": {"passed": True, "failed": []}}


def rec(rank: int, product: str, **extra: object) -> dict[str, object]:
    return {"rank": rank, "product_id": product, "title": f"Product {product}", "url": f"https://shop.test/p/{product}",
            "image_url": f"https://cdn.shop.test/{product}.jpg", "price": 19.5 + rank, "reason": "bought_together",
            **extra}


def payload(number: int, recs: int = 2, **fields: object) -> Payload:
    base = {"email": f"customer{number}@example.com", "first_name": "Ada", "segment": "loyal",
            "churn_risk": 0.125, "send_hour": 9, "vip": number % 2 == 0,
            "tailor_recommendations": [rec(r, f"P{number}-{r}") for r in range(1, recs + 1)]}
    return Payload.of(f"cust-{number}", f"customer{number}@example.com", {**base, **fields})


def payloads(count: int, start: int = 0) -> list[Payload]:
    return [payload(n) for n in range(start, start + count)]


def export(outbox: Path, rows: Iterator[Payload] | list[Payload], **overrides: object):
    options = {"outbox_dir": outbox, "as_of_date": DAY, "manifest_extra": EXTRA, "recommendations_per_customer": 3,
               "exported_at": EXPORTED, **overrides}
    return write_outbox(rows, **options)


def hidden(outbox: Path) -> list[str]:
    return sorted(entry.name for entry in outbox.iterdir() if entry.name.startswith("."))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def csv_rows(folder: Path) -> list[list[str]]:
    with open(folder / CSV_FILE, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def test_export_holds_both_files_and_a_manifest_that_vouches_for_them(tmp_path: Path) -> None:
    rows = [*payloads(4), payload(9, recs=0, first_name="Zoë ✓")]
    result = export(tmp_path / "outbox", rows)

    folder = tmp_path / "outbox" / "2026-11-01"
    assert result.path == folder and result.rows == 5
    assert sorted(os.listdir(folder)) == [CSV_FILE, DATA_FILE, MANIFEST_FILE] and hidden(tmp_path / "outbox") == []
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest == read_manifest(tmp_path / "outbox", DAY) == result.manifest
    assert manifest["schema_version"] == 1 and manifest["as_of_date"] == "2026-11-01" and manifest["rows"] == 5
    assert manifest["created_at"] == "2026-11-02T06:30:00+00:00"
    assert manifest["model_versions"] == EXTRA["model_versions"] and manifest["feed_gate"] == EXTRA["feed_gate"]
    for entry in manifest["files"]:
        data = (folder / entry["name"]).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert [entry["name"] for entry in manifest["files"]] == [DATA_FILE, CSV_FILE]

    lines = gzip.decompress((folder / DATA_FILE).read_bytes()).decode().splitlines()
    assert [json.loads(line) for line in lines] == [{**p.fields, "customer_id": p.customer_id} for p in rows]
    assert json.loads(lines[-1])["first_name"] == "Zoë ✓" and "Zoë ✓" in lines[-1]  # UTF-8 kept, not escaped
    assert verify_export(folder).rows == 5


def test_csv_flattens_recommendations_into_numbered_columns(tmp_path: Path) -> None:
    tricky = payload(1, first_name='Ann "the shopper", Jr.\nline two')
    rows = [tricky, payload(2, recs=3), payload(3, recs=0, segment=None)]
    result = export(tmp_path, rows, columns=["first_name", "segment", "churn_risk", "send_hour", "vip"])

    header, *body = csv_rows(result.path)
    recs = [f"rec_{i}_{c}" for i in (1, 2, 3) for c in ("product_id", "title", "url", "image_url", "price", "reason")]
    assert header == ["customer_id", "email", "first_name", "segment", "churn_risk", "send_hour", "vip", *recs]
    assert result.manifest["columns"] == header
    first, second, third = (dict(zip(header, row, strict=True)) for row in body)
    assert first["first_name"] == 'Ann "the shopper", Jr.\nline two'  # round-trips through RFC 4180 quoting
    assert (first["churn_risk"], first["send_hour"], first["vip"]) == ("0.125", "9", "false")
    assert first["rec_1_product_id"] == "P1-1" and first["rec_2_price"] == "21.5"
    assert first["rec_2_image_url"] == "https://cdn.shop.test/P1-2.jpg" and first["rec_3_product_id"] == ""
    assert second["rec_3_title"] == "Product P2-3" and second["vip"] == "true"
    assert third["segment"] == "" and all(third[c] == "" for c in recs)

    raw = (result.path / CSV_FILE).read_bytes()
    assert raw.startswith(b"customer_id,email,") and raw.count(b"\r\n") == 4  # header and 3 records, CRLF-ended
    assert b'"Ann ""the shopper"", Jr.\nline two"' in raw  # quoted, inner quotes doubled

    empty = export(tmp_path / "empty", [], columns=["first_name", "segment"])
    assert csv_rows(empty.path) == [["customer_id", "email", "first_name", "segment", *recs]]
    assert empty.rows == 0 and gzip.decompress((empty.path / DATA_FILE).read_bytes()) == b""


def test_a_reexport_of_the_same_day_has_identical_bytes(tmp_path: Path) -> None:
    first = export(tmp_path / "a", payloads(3000))
    first_bytes = snapshot(first.path)
    again = export(tmp_path / "a", iter(payloads(3000)), exported_at=datetime(2026, 11, 3, tzinfo=UTC))
    elsewhere = export(tmp_path / "b", payloads(3000))

    assert first.files == again.files == elsewhere.files  # names, bytes and sha256
    for name in (DATA_FILE, CSV_FILE):
        assert (again.path / name).read_bytes() == first_bytes[name] == (elsewhere.path / name).read_bytes()
    assert (elsewhere.path / MANIFEST_FILE).read_bytes() == first_bytes[MANIFEST_FILE]
    assert again.manifest["created_at"] == "2026-11-03T00:00:00+00:00"  # only what the caller said changed

    changed = export(tmp_path / "a", [*payloads(2999), payload(2999, first_name="Grace")])
    assert changed.rows == 3000 and changed.files != first.files and hidden(tmp_path / "a") == []
    assert verify_export(changed.path).files == changed.files


def test_a_failure_mid_feed_leaves_the_previous_export_and_no_temp_folder(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    previous = export(outbox, payloads(10))
    before = snapshot(previous.path)

    def failing() -> Iterator[Payload]:
        yield from payloads(2500)
        raise RuntimeError("warehouse connection lost")

    with pytest.raises(RuntimeError, match="connection lost"):
        export(outbox, failing())
    assert snapshot(previous.path) == before and hidden(outbox) == []
    assert verify_export(previous.path).rows == 10

    with pytest.raises(BadPayload):  # a bad row mid-way: the same
        export(outbox, [*payloads(5), Payload.of("cust-x", "", {"first_name": "Ada"})])
    assert snapshot(previous.path) == before and hidden(outbox) == []


_KILLED_EXPORT = """
import sys, time
from datetime import UTC, date, datetime
from pathlib import Path
from tailor.export.outbox import write_outbox
from tailor.export.payload import Payload

def rows():
    for n in range(100_000):
        if n == 3000:
            print("writing", flush=True)
            time.sleep(600)
        yield Payload.of(f"cust-{n}", f"c{n}@example.com", {"email": f"c{n}@example.com", "tailor_recommendations": []})

write_outbox(rows(), outbox_dir=Path(sys.argv[1]), as_of_date=date(2026, 11, 1), manifest_extra={},
             recommendations_per_customer=3, exported_at=datetime(2026, 11, 2, tzinfo=UTC))
"""


def test_a_killed_export_leaves_the_old_one_and_its_temp_folder_is_swept_next_time(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    previous = export(outbox, payloads(10))
    before = snapshot(previous.path)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_EXPORT, str(outbox)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (left,) = hidden(outbox)  # the dead writer's work folder, hidden
    assert left.startswith(f".2026-11-01.{proc.pid}-") and left.endswith(".tmp")
    assert snapshot(previous.path) == before and verify_export(previous.path).rows == 10

    rerun = export(outbox, payloads(12))
    assert rerun.rows == 12 and hidden(outbox) == []  # swept


def test_an_export_a_crash_left_aside_is_put_back_and_live_writers_are_left_alone(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    older = export(outbox, payloads(4), as_of_date=date(2026, 10, 31))
    before = snapshot(older.path)
    dead = _dead_pid()
    # A crash between the two renames of a swap: no export at the target, the old one aside, the new one in temp.
    os.rename(older.path, outbox / f".2026-10-31.{dead}-0badf00d.old")
    (outbox / f".2026-10-31.{dead}-deadbeef.tmp").mkdir()
    (outbox / f".2026-10-31.{dead}-deadbeef.tmp" / DATA_FILE).write_bytes(b"partial")
    live = outbox / f".2026-11-01.{os.getppid()}-0123abcd.tmp"  # another writer, still running
    live.mkdir()

    export(outbox, payloads(3))
    assert snapshot(outbox / "2026-10-31") == before and verify_export(outbox / "2026-10-31").rows == 4
    assert hidden(outbox) == [live.name]
    live.rmdir()


def test_bad_input_is_named_with_its_row_and_customer(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    cases = [
        ([payload(1), Payload.of("cust-2", "", {"first_name": "Ada"})], r"feed row 2 \(customer 'cust-2'\): email ''"),
        ([Payload.of("", "a@b.test", {})], r"feed row 1: customer_id '' is missing"),
        ([payload(1, recs=4)], r"feed row 1 \(customer 'cust-1'\): 4 recommendations, more than "
                               r"recommendations_per_customer=3"),
        ([payload(1), payload(2, loyalty_tier="gold")], r"feed row 2 .*unexpected \['loyalty_tier'\]"),
        ([payload(1, churn_risk=float("nan"))], r"feed row 1 \(customer 'cust-1'\): fields are not JSON-safe"),
        ([payload(1, last_order=datetime(2026, 1, 1))], r"feed row 1 .*not JSON-safe"),
        ([payload(1, tailor_recommendations=[{"rank": 1, "title": "no id"}])], r"recommendation 1 is not an object with a "
                                                                        r"product_id"),
        ([payload(1, email="other@example.com")], r"fields\['email'\] = 'other@example.com' differs"),
        ([{"customer_id": "cust-1"}], r"feed row 1 is a dict, not a Payload"),
    ]
    for rows, message in cases:
        with pytest.raises(BadPayload, match=message):
            export(outbox, rows)
    with pytest.raises(ValueError, match=r"manifest_extra may not set the manifest's own keys: \['rows'\]"):
        export(outbox, payloads(1), manifest_extra={"rows": 7})
    with pytest.raises(ValueError, match="exported_at .* must be a datetime with a timezone"):
        export(outbox, payloads(1), exported_at=datetime(2026, 11, 2))
    assert not (outbox / "2026-11-01").exists() and hidden(outbox) == []


def test_verify_export_names_the_file_that_does_not_match(tmp_path: Path) -> None:
    result = export(tmp_path, payloads(50))
    csv_path = result.path / CSV_FILE
    original = csv_path.read_bytes()
    csv_path.write_bytes(original.replace(b"Ada", b"Eve", 1))  # same size, other bytes
    with pytest.raises(CorruptExport, match=f"{csv_path} does not match its manifest"):
        verify_export(result.path)
    csv_path.unlink()
    with pytest.raises(CorruptExport, match=f"{csv_path} is listed in the manifest but missing"):
        verify_export(result.path)
    with pytest.raises(ExportNotFound):
        read_manifest(tmp_path, date(2026, 10, 1))


def test_read_rows_hashes_each_row_as_its_payload_without_parsing_it(tmp_path: Path) -> None:
    def row(customer_id: str, email: str, **values: object) -> Payload:
        fields = {"email": email, "note": None, "score": 1, "nested": {}, **values}
        return Payload.of(customer_id, email, fields)

    tricky = [row("cust-1", "customer1@example.com"),
              row("cust-2", "customer2@example.com", note='quote " backslash \\ tab \t é 漢 \u2028', score=1e16,
                  nested={"b": [1, 2.5, None, -0.0], "a": {"z": True}}),
              row('cust-"3"\\x', "customer3@example.com", score=0.1 + 0.2)]
    # a field named before customer_id (none of the feed's is): each line is parsed to split it
    early = [Payload.of(f"cust-{n}", f"c{n}@example.com", {"email": f"c{n}@example.com", "address": "1 Rue"})
             for n in range(2)]
    for number, rows in enumerate((tricky, early)):
        result = export(tmp_path / str(number), rows)
        read = list(read_rows(result.path))
        assert [r.customer_id for r in read] == [p.customer_id for p in rows]
        for exported, original in zip(read, rows, strict=True):
            again = exported.payload()
            assert exported.row_hash == original.row_hash == again.row_hash  # what a delta sync compares
            assert (again.customer_id, again.email, again.fields) == (original.customer_id, original.email,
                                                                       original.fields)
            assert exported.where.startswith(f"{result.path / DATA_FILE}:")

    with gzip.open(result.path / DATA_FILE, "wt", encoding="utf-8") as lines:  # a broken row: named by file and line
        lines.write(json.dumps({"customer_id": "cust-1", "email": "a@b.c"}, sort_keys=True,
                               separators=(",", ":")) + "\n" + '{"customer_id":"cust-2",{oops\n')
    first, second = read_rows(result.path)
    assert first.payload().email == "a@b.c"
    with pytest.raises(CorruptExport, match=f"{result.path / DATA_FILE}:2: not a feed row"):
        second.payload()
    with gzip.open(result.path / DATA_FILE, "wt", encoding="utf-8") as lines:
        lines.write("[1, 2]\n")
    with pytest.raises(CorruptExport, match=f"{result.path / DATA_FILE}:1: not a feed row"):
        list(read_rows(result.path))


def _dead_pid() -> int:
    """The pid of a process that has exited (and was reaped): no process has it now."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    deadline = time.monotonic() + 5
    while True:
        try:
            os.kill(proc.pid, 0)
        except ProcessLookupError:
            return proc.pid
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_rows_are_streamed_to_disk_not_held(tmp_path: Path) -> None:
    def rows() -> Iterator[Payload]:
        for number in range(20_000):
            yield payload(number)

    tracemalloc.start()
    try:
        result = export(tmp_path, rows())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    feed_text = len(gzip.decompress((result.path / DATA_FILE).read_bytes()))
    assert result.rows == 20_000 and feed_text > 10_000_000
    assert peak < feed_text / 3, f"peak {peak} bytes while writing a feed of {feed_text} bytes of JSON"


def test_a_write_error_on_a_files_thread_reaches_the_caller(tmp_path: Path) -> None:
    """Each data file is written on a thread of its own: a disk that fails under it (here /dev/full: no space)
    is raised in the writing caller with the OS's error, and the file is not described as written."""
    from tailor.export.outbox import _FileWriter

    chunk = b"x" * (1 << 20)
    full = _FileWriter(Path("/dev/full"))
    with pytest.raises(OSError, match="No space left"), full:  # noqa: PT012 raised at a write or at the exit
        for _ in range(64):
            full.write(chunk)
    assert full.described is None
