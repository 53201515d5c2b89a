"""The feed end to end: a simulator world extracted, built, scored, then the feed built, gated, exported and delivered
to a local S3 server (moto) and to the simulator's Klaviyo over HTTP; the day's run report read back (every section
drawn from the warehouse, self-contained, replaced atomically, a note for each part a warehouse lacks); re-runs, a
delivery cut off midway, a failed gate, and people who unsubscribe in the next hour's data."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import boto3
import duckdb
import httpx
import pytest

from ml import config, personalization, training
from simulator.faults import Faults, parse_faults
from simulator.klaviyo import REVISION as KLAVIYO_REVISION
from simulator.server import start_in_thread
from simulator.state import TOKENS, SimState
from simulator.world import SUBSCRIBED, World, WorldConfig
from tailor.export import deliveries, feed, outbox, steps
from tailor.export.klaviyo import MAX_IN_FLIGHT, KlaviyoSink
from tailor.export.s3 import S3Sink
from tailor.quality import GateFailed
from tailor.run_report import REPORT_FILE, SECTIONS, write_run_report
from tailor.sources import Credentials
from tailor.transform import models_not_as_of
from tailor.warehouse import Warehouse, has_table
from tests.integration.dbt_fixtures import extract_and_load
from tests.integration.lakekit import moto_s3
from tests.integration.mlkit import Shop, quiet, use_data_dir

CUSTOMERS = 600
SEED = 23


@dataclass
class Delivered:
    shop: Shop
    data_dir: Path
    warehouse: Warehouse
    server: object
    klaviyo: Credentials
    s3_url: str
    exported: steps.ExportResult
    results: dict


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tailor-feed-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def delivered(root: Path) -> Iterator[Delivered]:
    """Day one: the world (running two days past its clock) loaded, built, trained, scored; the feed built, gated,
    exported and delivered to both sinks."""
    world = World.build(WorldConfig(customers=CUSTOMERS, seed=SEED, future_days=2))
    now = datetime.fromtimestamp(world.now, UTC)
    shop = Shop(world, root / "shop", [now])
    server = start_in_thread(SimState(world=world, faults=parse_faults("none"), rate_limits=False))
    server.state.set_now(world.now)
    with pytest.MonkeyPatch.context() as patch, moto_s3() as s3_url:
        data_dir = root / "data"
        use_data_dir(patch, data_dir)
        # the feed needs models that score, not the best ones: two churn snapshots instead of six (a dbt build each)
        patch.setattr(config, "TRAINING_SNAPSHOTS", 2)
        warehouse = shop.install(data_dir)
        training.train(now, say=quiet)
        training.score(now, say=quiet)
        personalization.train(now, say=quiet)
        personalization.score(now, say=quiet)
        feed.build_feed(now, warehouse=warehouse)
        feed.gate_feed(now, warehouse=warehouse)
        exported = steps.export(now, warehouse=warehouse)
        klaviyo = Credentials("test klaviyo", server.url, TOKENS["klaviyo"])
        results = {
            "klaviyo": steps.deliver(now, "klaviyo", warehouse=warehouse,
                                     sink_object=_klaviyo_sink(klaviyo, 150)),
            "s3": steps.deliver(now, "s3", warehouse=warehouse, sink_object=_s3_sink(s3_url)),
        }
        try:
            yield Delivered(shop, data_dir, warehouse, server, klaviyo, s3_url, exported, results)
        finally:
            server.stop()


def _s3_sink(s3_url: str) -> S3Sink:
    return S3Sink.from_url(f"{s3_url}/feed", rows_per_object=200)  # the client from the environment moto_s3 sets


def _klaviyo_sink(credentials: Credentials, profiles_per_job: int = 10_000) -> KlaviyoSink:
    return KlaviyoSink(credentials, max_profiles_per_job=profiles_per_job, poll_interval=0.02)


def _exported_rows(export_dir: Path) -> dict[str, dict]:
    with gzip.open(export_dir / outbox.DATA_FILE, "rt", encoding="utf-8") as lines:
        return {row["customer_id"]: row for row in map(json.loads, lines)}


def _consent_by_email(world: World, t: int) -> dict[str, int]:
    profiles = world.profiles
    return {world.person_email(int(profiles.person[q])): world.consent_at(q, t) for q in range(profiles.n)
            if profiles.created_at[q] <= t}


def test_day_one_reaches_both_sinks_with_every_field_and_only_consented_people(delivered: Delivered):
    shop, warehouse = delivered.shop, delivered.warehouse
    with warehouse.reader() as con:
        marketable = con.execute("select count(*) from marts.customers where is_email_marketable").fetchone()[0]
        in_feed = feed.feed_rows(con, shop.now.date())
    rows = _exported_rows(delivered.exported.path)
    assert len(rows) == in_feed == delivered.exported.rows == marketable > 100
    page = feed.write_feed_report(warehouse, shop.now).read_text()  # what `feed build` writes beside the models' pages
    assert "Lift readout" in page and f"{in_feed:,}" in page
    # consent against the world itself, not the marts: every exported email is subscribed in Klaviyo at the as-of
    consent = _consent_by_email(shop.world, int(shop.now.timestamp()))
    assert all(consent.get(row["email"].lower()) == SUBSCRIBED for row in rows.values())

    # the local S3 server holds exactly the exported rows, in objects of at most 200 rows, manifest last
    client = boto3.client("s3", endpoint_url=_endpoint())
    bucket, _, prefix = delivered.s3_url.removeprefix("s3://").partition("/")
    result = delivered.results["s3"]
    keys = [item["Key"] for item in client.list_objects_v2(
        Bucket=bucket, Prefix=f"{prefix}/feed/{shop.now.date()}/{result.delivery_id}/")["Contents"]]
    parts = sorted(key for key in keys if key.endswith(".jsonl.gz"))
    assert len(parts) == result.batches == -(-len(rows) // 200)
    sent = {}
    for key in parts:
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "AES256"
        body = gzip.decompress(client.get_object(Bucket=bucket, Key=key)["Body"].read()).decode()
        sent.update({row["customer_id"]: row for row in map(json.loads, body.splitlines())})
    assert sent == rows

    # the simulator's Klaviyo holds every field of a sample of them as profile properties
    klaviyo = delivered.results["klaviyo"]
    assert klaviyo.sent == len(rows) and klaviyo.failed == klaviyo.skipped == 0
    assert klaviyo.batches == -(-len(rows) // 150)
    import httpx

    headers = {"Authorization": f"Klaviyo-API-Key {TOKENS['klaviyo']}", "revision": "2026-10-15",
               "accept": "application/vnd.api+json"}
    for row in list(rows.values())[:: max(1, len(rows) // 25)]:
        answer = httpx.get(f"{delivered.server.url}/api/profiles", headers=headers,
                           params={"filter": f'equals(email,"{row["email"]}")'}).json()["data"]
        assert len(answer) == 1, row["email"]
        attributes = answer[0]["attributes"]
        assert attributes["external_id"] == row["customer_id"]
        if row["first_name"] is not None:
            assert attributes["first_name"] == row["first_name"]
        properties = attributes["properties"]
        for name, value in row.items():
            if name.startswith("tailor_") and value is not None:
                assert properties[name] == value, (row["customer_id"], name)
        assert len(properties["tailor_recommendations"]) == row["tailor_recommendations"].__len__() > 0

    log = deliveries.delivery_log(warehouse, shop.now.date())
    assert sorted(log["sink"]) == ["klaviyo", "s3"] and set(log["status"]) == {"complete"}
    assert set(log["mode"]) == {"full"} and (log["rows_sent"] == len(rows)).all()


# --- the daily run report (tailor.run_report) of day one: the page read back -----------------------------------------

PLOTTED = ("segments", "rfm", "churn", "engagement", "gates", "lift", "deliveries")  # every section but the tables
IMAGE = re.compile(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"')


def _sections(page: str) -> dict[str, str]:
    """Section id -> its HTML."""
    return dict(re.findall(r'<section id="([\w-]+)">(.*?)</section>', page, flags=re.DOTALL))


def _headings(page: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", page)


def test_the_run_report_draws_every_section_from_the_days_data(delivered: Delivered, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAILOR_DATA_DIR", str(delivered.data_dir))
    path = write_run_report(delivered.shop.now)  # the default warehouse and folder, from TAILOR_DATA_DIR
    day = delivered.shop.now.date().isoformat()
    assert path == delivered.data_dir / "reports" / "run" / day / REPORT_FILE
    page = path.read_text(encoding="utf-8")
    assert _headings(page) == [heading for _, heading in SECTIONS]
    sections = _sections(page)
    for key in PLOTTED:
        assert IMAGE.search(sections[key]), f"section {key} has no plot: {sections[key][:400]}"
        assert 'class="skip"' not in sections[key].split("<figure>")[0], f"section {key} starts with a note"

    # the header: the as-of, when it was written and the warehouse, then what ran
    assert f"Run date <strong>{day}</strong>" in page and delivered.shop.now.strftime("%Y-%m-%dT%H:%M:%SZ") in page
    assert "written 20" in page and str(delivered.warehouse.path) in page
    ran = sections["ran"]
    assert f"feed@{delivered.shop.now.strftime('%Y-%m-%dT%H:%M:%SZ')}" in ran
    for table in feed.SCORED_TABLES:
        assert table in ran
    assert f"{delivered.exported.rows:,} feed rows" in ran

    # the numbers are the warehouse's for the date
    with delivered.warehouse.reader() as con:
        scored = con.execute("select count(*) from ml.customer_scores where as_of_date = ?",
                             [delivered.shop.now.date()]).fetchone()[0]
        biggest_rfm = con.execute("select rfm_segment, count(*) from marts.customer_rfm group by 1 "
                                  "order by 2 desc, 1 limit 1").fetchone()
        levels = dict(con.execute("select engagement_level, count(*) from marts.customer_engagement "
                                  "group by 1").fetchall())
        feed_checks = con.execute("select count(*) from quality.gate_results where suite = 'feed'").fetchone()[0]
    segment_counts = [int(n.replace(",", "")) for n in re.findall(
        r'<tr><td class="num">\d+</td><td>[^<]*</td><td class="num">([\d,]+)</td>', sections["segments"])]
    assert sum(segment_counts) == scored > 100
    assert f"<td>{biggest_rfm[0]}</td><td class=\"num\">{biggest_rfm[1]:,}</td>" in sections["rfm"]
    for level, customers in levels.items():
        assert f"<td>{level}</td><td class=\"num\">{customers:,}</td>" in sections["engagement"]
    assert f'<td>feed</td><td>{delivered.shop.now.strftime("%Y-%m-%dT%H:%M:%SZ")}</td>' in sections["gates"]
    assert f'<td class="num">{feed_checks:,}</td>' in sections["gates"]
    assert delivered.results["s3"].sent == delivered.exported.rows > 0
    assert '<td>s3</td><td class="num">1</td><td>complete</td><td>full</td>' in sections["deliveries"]
    assert f'<td class="num">{delivered.results["s3"].sent:,}</td>' in sections["deliveries"]
    assert f"<td>{day}</td><td>conversion</td>" in sections["lift"]


def test_the_run_report_is_self_contained(delivered: Delivered, tmp_path: Path):
    page = write_run_report(delivered.shop.now, warehouse=delivered.warehouse, directory=tmp_path).read_text()
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert re.findall(r'src="([^"]*)"', page) and all(
        src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', page))
    assert all(href.startswith("#") for href in re.findall(r'href="([^"]*)"', page))
    assert "url(" not in page  # nothing fetched from the CSS either


def test_writing_the_run_report_again_replaces_it_atomically(delivered: Delivered, tmp_path: Path):
    first = write_run_report(delivered.shop.now, warehouse=delivered.warehouse, directory=tmp_path)
    before = first.stat().st_ino
    first.write_text("an older page")
    again = write_run_report(delivered.shop.now, warehouse=delivered.warehouse, directory=tmp_path)
    assert again == first and again.read_text().startswith("<!DOCTYPE html>")
    assert again.stat().st_ino != before  # a new file renamed over the old one, not the old one rewritten in place
    assert sorted(p.name for p in tmp_path.rglob("*")) == [delivered.shop.now.date().isoformat(), REPORT_FILE]
    assert oct(again.stat().st_mode & 0o777) == oct(0o644)


def test_a_warehouse_without_models_feed_or_deliveries_still_gets_its_run_report(delivered: Delivered, tmp_path: Path):
    bare = tmp_path / "bare.duckdb"
    shutil.copyfile(delivered.warehouse.path, bare)
    with duckdb.connect(str(bare)) as con:  # as before the first scoring: marts and gates only
        for schema in ("ml", "exports", "export", "staging_ml"):
            con.execute(f"drop schema if exists {schema} cascade")
        con.execute("delete from quality.gate_results where suite = 'feed'")
    path = write_run_report(delivered.shop.now, warehouse=Warehouse(bare), directory=tmp_path / "reports")
    sections = _sections(path.read_text())
    notes = {"segments": "No ml.customer_scores in the warehouse yet", "churn": "No ml.customer_scores",
             "lift": "No exports.feed_lift in the warehouse yet", "deliveries": "No export.deliveries",
             "gates": "No gate ran as of", "ran": "Nothing recorded for"}
    for key, note in notes.items():
        assert note in sections[key] and not IMAGE.search(sections[key]), key
    for key in ("rfm", "engagement"):  # the marts are there: still drawn
        assert IMAGE.search(sections[key]), key
    assert os.listdir(path.parent) == [REPORT_FILE]


def test_the_run_report_of_another_date_shows_no_other_dates_data(delivered: Delivered, tmp_path: Path):
    earlier = delivered.shop.now - timedelta(days=3)
    sections = _sections(write_run_report(earlier, warehouse=delivered.warehouse, directory=tmp_path).read_text())
    assert f"No scores for {earlier.date()} in ml.customer_scores" in sections["segments"]
    assert "holds its latest build only" in sections["rfm"] and "holds its latest build only" in sections["engagement"]
    assert f"No delivery for {earlier.date()}" in sections["deliveries"]
    assert not any(IMAGE.search(sections[key]) for key in ("segments", "churn", "rfm", "engagement", "deliveries"))
    assert IMAGE.search(sections["lift"]) is None  # no cohort on or before the date


def test_no_warehouse_at_all_is_a_run_report_of_notes(tmp_path: Path, delivered: Delivered):
    missing = Warehouse(tmp_path / "nowhere" / "warehouse.duckdb")
    page = write_run_report(delivered.shop.now, warehouse=missing, directory=tmp_path / "reports").read_text()
    assert not (tmp_path / "nowhere").exists()  # reading never creates a warehouse
    sections = _sections(page)
    for key in PLOTTED:
        assert f"no warehouse at {missing.path}" in sections[key] and not IMAGE.search(sections[key]), key
    assert f"no warehouse at {missing.path}" in sections["notes"]


@pytest.mark.parametrize("as_of", [date(2026, 11, 1), "2026-11-01T00:00:00Z", 1_793_491_200, None])
def test_a_run_report_as_of_that_is_not_a_datetime_is_a_type_error(as_of, tmp_path: Path):
    with pytest.raises(TypeError, match="as_of must be a datetime"):
        write_run_report(as_of, warehouse=Warehouse(tmp_path / "w.duckdb"), directory=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_run_report_as_of_without_a_timezone_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="has no timezone"):
        write_run_report(datetime(2026, 11, 1), warehouse=Warehouse(tmp_path / "w.duckdb"), directory=tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- re-runs, cut-offs, failures ---------------------------------------------------------------------------------


def test_a_rerun_of_the_day_sends_nothing(delivered: Delivered):
    shop, warehouse = delivered.shop, delivered.warehouse
    jobs = len(delivered.server.state.vendor_state["klaviyo"].jobs)
    again = steps.deliver(shop.now, "klaviyo", warehouse=warehouse, sink_object=_klaviyo_sink(delivered.klaviyo))
    assert again.sent == 0 and again.plan.rows_unchanged == delivered.exported.rows
    assert len(delivered.server.state.vendor_state["klaviyo"].jobs) == jobs  # not a single request to import
    forced = steps.deliver(shop.now, "s3", warehouse=warehouse, full=True, sink_object=_s3_sink(delivered.s3_url))
    assert forced.sent == 0  # a full sync of a day already fully sent sends nothing either
    # re-exporting the same day gives the same bytes
    manifest = outbox.read_manifest(delivered.data_dir / "outbox", shop.now.date())
    steps.export(shop.now, warehouse=warehouse)
    assert outbox.read_manifest(delivered.data_dir / "outbox", shop.now.date())["files"] == manifest["files"]


def test_the_cli_reports_a_dry_run_and_refuses_a_day_never_built(delivered: Delivered):
    env = {**os.environ, "TAILOR_DATA_DIR": str(delivered.data_dir),
           "AIRFLOW_CONN_KLAVIYO_DEFAULT": json.dumps({"conn_type": "http", "host": delivered.server.url,
                                                       "password": TOKENS["klaviyo"]})}
    day = delivered.shop.now.isoformat()
    dry = subprocess.run([sys.executable, "-m", "tailor", "feed", "deliver", "--as-of", day, "--sink", "klaviyo",
                          "--dry-run", "--full"], capture_output=True, text=True, env=env, timeout=300)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"full sync of {delivered.shop.now.date()}: 0 of {delivered.exported.rows:,} rows to send" in dry.stdout
    assert "dry run: nothing sent" in dry.stdout
    earlier = (delivered.shop.now - timedelta(days=30)).isoformat()
    refused = subprocess.run([sys.executable, "-m", "tailor", "feed", "export", "--as-of", earlier],
                             capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode == 1 and "feed gate has not run" in refused.stdout, refused.stdout + refused.stderr


def test_a_delivery_cut_off_midway_resumes_and_sends_each_customer_once(delivered: Delivered):
    """The API key is revoked after the second import job completes: the delivery fails with what it sent recorded;
    the next one sends the rest; every customer was imported exactly once."""
    shop, warehouse, server = delivered.shop, delivered.warehouse, delivered.server
    surface = server.state.vendor_state["klaviyo"]
    before = len(surface.jobs)
    with warehouse.writer() as con:  # a new sink name: a sink that has never received this day
        con.execute("delete from export.delivered_rows where sink = 'klaviyo'")

    def revoke_after_two_jobs() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if sum(job.status == "complete" for job in list(surface.jobs.values())[before:]) >= 2:
                server.state.faults = Faults(revoked_token=True)
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=revoke_after_two_jobs)
    watcher.start()
    try:
        with pytest.raises(Exception, match="401|revoked|unauthori"):
            steps.deliver(shop.now, "klaviyo", warehouse=warehouse,
                          sink_object=_klaviyo_sink(delivered.klaviyo, 100))
    finally:
        watcher.join()
        server.state.faults = parse_faults("none")
    cut = deliveries.delivery_log(warehouse, shop.now.date()).iloc[0]
    assert cut["status"] == "failed" and 0 < cut["rows_sent"] < delivered.exported.rows

    resumed = steps.deliver(shop.now, "klaviyo", warehouse=warehouse,
                            sink_object=_klaviyo_sink(delivered.klaviyo, 100))
    # the jobs in flight when the key went were asked about first: what they imported is not sent again
    assert resumed.plan.resumes and resumed.sent + resumed.recovered == delivered.exported.rows - cut["rows_sent"]
    imported = _imported_by_email(list(surface.jobs.values())[before:])
    assert len(imported) == delivered.exported.rows and set(imported.values()) == {1}


def test_a_delivery_killed_with_jobs_in_flight_asks_klaviyo_about_them_and_sends_each_customer_once(
        delivered: Delivered):
    """`python -m tailor feed deliver` is SIGKILLed with the most import jobs in flight it allows (submitted, not yet
    reported). Klaviyo finishes them on its own; the next delivery finds them complete, records them for the killed
    delivery and sends only the rest: every customer is imported exactly once."""
    shop, warehouse, server = delivered.shop, delivered.warehouse, delivered.server
    surface = server.state.vendor_state["klaviyo"]
    before = len(surface.jobs)
    with warehouse.writer() as con:  # the sink has never received this day, and has no batch in flight
        con.execute("delete from export.delivered_rows where sink = 'klaviyo'")
        con.execute("delete from export.delivery_jobs where sink = 'klaviyo'")
    per_job = 5  # the feed's 287 rows make more jobs than MAX_IN_FLIGHT
    env = {**os.environ, "TAILOR_DATA_DIR": str(delivered.data_dir), "TAILOR_KLAVIYO_PROFILES_PER_JOB": str(per_job),
           "AIRFLOW_CONN_KLAVIYO_DEFAULT": json.dumps({"conn_type": "http", "host": server.url,
                                                       "password": TOKENS["klaviyo"]})}
    process = subprocess.Popen([sys.executable, "-m", "tailor", "feed", "deliver", "--as-of", shop.now.isoformat(),
                                "--sink", "klaviyo"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    advance = surface.advance
    surface.advance = lambda job: None  # Klaviyo holds every job queued until the kill, however slow the machine
    try:
        # MAX_IN_FLIGHT jobs noted and none reported: the submitter waits for the first to complete
        deadline = time.monotonic() + 120
        while _jobs_in_flight(warehouse) < MAX_IN_FLIGHT:
            assert process.poll() is None, f"the delivery ended before it was killed:\n{process.stdout.read()}"
            assert time.monotonic() < deadline, f"the delivery never had {MAX_IN_FLIGHT} jobs in flight"
            time.sleep(0.05)
        process.kill()
    finally:
        process.wait(timeout=60)
        surface.advance = advance
    killed = deliveries.delivery_log(warehouse, shop.now.date()).iloc[0]
    assert killed["status"] == "running"  # as the kill left it
    reported = killed["rows_sent"]
    assert reported == 0
    with warehouse.reader() as con:
        noted = con.execute("select count(*) from export.delivery_jobs").fetchone()[0]
    assert noted >= (MAX_IN_FLIGHT - 1) * per_job
    submitted = list(surface.jobs.values())[before:]
    for job in submitted:  # Klaviyo goes on importing without the client (each poll moves a simulated job on)
        for _ in range(2):
            answer = httpx.get(f"{server.url}/api/profile-bulk-import-jobs/{job.job_id}", headers={
                "Authorization": f"Klaviyo-API-Key {TOKENS['klaviyo']}", "revision": KLAVIYO_REVISION})
            assert answer.status_code == 200, answer.text
    assert all(job.status == "complete" for job in submitted)

    resumed = steps.deliver(shop.now, "klaviyo", warehouse=warehouse,
                            sink_object=_klaviyo_sink(delivered.klaviyo, per_job))
    assert resumed.recovered == noted and resumed.sent == delivered.exported.rows - reported - noted > 0
    log = deliveries.delivery_log(warehouse, shop.now.date())
    killed = log[log["delivery_id"] == killed["delivery_id"]].iloc[0]
    assert killed["status"] == "interrupted" and killed["rows_sent"] == reported + noted  # for the one that sent them
    assert _jobs_in_flight(warehouse) == 0
    imported = _imported_by_email(list(surface.jobs.values())[before:])
    assert len(imported) == delivered.exported.rows and set(imported.values()) == {1}


def _jobs_in_flight(warehouse: Warehouse) -> int:
    with warehouse.reader() as con:
        if not has_table(con, deliveries.DELIVERY_JOBS):
            return 0
        return con.execute(f"select count(distinct job_id) from {deliveries.DELIVERY_JOBS}").fetchone()[0]


def _imported_by_email(jobs: list) -> dict[str, int]:
    """How many complete import jobs carried each email."""
    imported: dict[str, int] = {}
    for job in jobs:
        if job.status == "complete":
            for profile in job.profiles:
                email = profile["attributes"]["email"]
                imported[email] = imported.get(email, 0) + 1
    return imported


def test_a_failed_feed_gate_exports_nothing_and_keeps_the_last_delivered_feed(delivered: Delivered):
    shop, warehouse = delivered.shop, delivered.warehouse
    manifest = outbox.read_manifest(delivered.data_dir / "outbox", shop.now.date())
    with warehouse.writer() as con:  # someone's edit lets a never-subscribed customer into the day's feed
        con.execute("""update exports.esp_feed set email_consent_state = 'never_subscribed'
                       where customer_id = (select min(customer_id) from exports.esp_feed where as_of_date = ?)""",
                    [shop.now.date()])
    try:
        with pytest.raises(GateFailed, match="email_consent_state"):
            feed.gate_feed(shop.now, warehouse=warehouse)
        with pytest.raises(steps.ExportError, match="feed gate failed"):
            steps.export(shop.now, warehouse=warehouse)
        assert outbox.read_manifest(delivered.data_dir / "outbox", shop.now.date()) == manifest
    finally:
        feed.build_feed(shop.now, warehouse=warehouse)
        feed.gate_feed(shop.now, warehouse=warehouse)


def test_people_who_unsubscribe_in_the_next_hour_are_not_in_the_next_delivery(delivered: Delivered):
    shop, warehouse, world = delivered.shop, delivered.warehouse, delivered.shop.world
    rows = _exported_rows(delivered.exported.path)
    # ten delivered people unsubscribe in Klaviyo during the next day's last hour
    later = shop.now + timedelta(days=1)
    t = int(later.timestamp()) - 1800
    by_email = {world.person_email(int(world.profiles.person[q])): q for q in range(world.profiles.n)}
    leaving = sorted(rows)[:10]
    for customer_id in leaving:
        q = by_email[rows[customer_id]["email"].lower()]
        world.profiles.unsubscribed_at[q] = t
        world.touch("profiles", q, t)
    # the hourly runs up to the next day, then the next day's build, scores and feed
    extract_and_load(world, warehouse, delivered.data_dir / "next-lake", [later])
    from tailor.transform import build

    with warehouse.writer() as con:  # the record of a model since renamed or removed: the next build drops it
        con.execute("insert into meta.model_builds values ('a_removed_model', ?, now())", [shop.now])
    build(later, duckdb_path=warehouse.path, state_dir=delivered.data_dir / "dbt", quiet=True)
    assert models_not_as_of(warehouse, later) == []
    training.score(later, say=quiet)
    personalization.score(later, say=quiet)
    feed.build_feed(later, warehouse=warehouse)
    feed.gate_feed(later, warehouse=warehouse)
    exported = steps.export(later, warehouse=warehouse)
    result = steps.deliver(later, "s3", warehouse=warehouse, sink_object=_s3_sink(delivered.s3_url))
    next_rows = _exported_rows(exported.path)
    assert not set(leaving) & set(next_rows)
    consent = _consent_by_email(world, int(later.timestamp()))
    assert all(consent.get(row["email"].lower()) == SUBSCRIBED for row in next_rows.values())
    # the delta sent only changed rows, none of the leavers
    assert result.plan.mode == "delta" and not set(leaving) & result.plan.pending
    assert result.sent == len(result.plan.pending) <= len(next_rows)

    # day one again (a backfill reprocessing it): the sink holds the next day's feed, so nothing goes back, not even
    # the leavers, who were consented on day one
    again = steps.deliver(shop.now, "s3", warehouse=warehouse, sink_object=_s3_sink(delivered.s3_url))
    assert again.plan.superseded_by == later.date() and again.sent == 0 and again.batches == 0
    assert "superseded, nothing sent" in again.summary()
    with warehouse.reader() as con:
        logged = con.execute("select status, rows_sent from export.deliveries where delivery_id = ?",
                             [again.delivery_id]).fetchall()
    assert logged == [("superseded", 0)]

    # day one's feed built again after the next day's build: its marts are rebuilt as of day one first, so it is
    # day one's feed still (the leavers in it: they were subscribed then), not a mix of the two days
    def day_one_feed() -> list[tuple]:
        with warehouse.reader() as con:
            return con.execute("select * from exports.esp_feed where as_of_date = ? order by customer_id",
                               [shop.now.date()]).fetchall()

    built_for_day_one = day_one_feed()
    assert "customers" in models_not_as_of(warehouse, shop.now)  # the next day's build moved them
    feed.build_feed(shop.now, warehouse=warehouse)
    assert models_not_as_of(warehouse, shop.now) == []
    assert day_one_feed() == built_for_day_one


def _endpoint() -> str:
    return os.environ["TAILOR_S3_ENDPOINT_URL"]
