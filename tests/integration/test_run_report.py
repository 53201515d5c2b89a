"""The daily run report: one small simulator world taken through a whole daily run once (extract and load, dbt build,
train and score the models, build, gate and export the feed, deliver it to a local S3 server), then the run's page
read back: every section drawn from the warehouse, self-contained, replaced atomically, and written with a note in
place of each part a warehouse lacks (no models, no feed, no deliveries, no warehouse at all)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from ml import config, personalization, training
from simulator.world import WorldConfig
from tailor.export import feed, steps
from tailor.export.s3 import S3Sink
from tailor.run_report import REPORT_FILE, SECTIONS, write_run_report
from tailor.warehouse import Warehouse
from tests.conftest import world_for
from tests.integration.lakekit import moto_s3
from tests.integration.mlkit import Shop, quiet, use_data_dir

# The smallest world whose daily run goes all the way: enough buyers for both churn classes at the training
# snapshots and for the feed gate's checks.
CUSTOMERS = 300
SEED = 31
PLOTTED = ("segments", "rfm", "churn", "engagement", "gates", "lift", "deliveries")  # every section but the tables
IMAGE = re.compile(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"')


@dataclass
class Run:
    now: datetime
    data_dir: Path
    warehouse: Warehouse
    exported_rows: int
    sent: int


@pytest.fixture(scope="module")
def daily_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One daily run as the DAG makes it, as of the world's clock, ending with a delivery to S3."""
    root = tmp_path_factory.mktemp("run-report")
    world = world_for(WorldConfig(customers=CUSTOMERS, seed=SEED))
    now = datetime.fromtimestamp(world.now, UTC)
    shop = Shop(world, root / "shop", [now])
    with pytest.MonkeyPatch.context() as patch, moto_s3() as s3_url:
        data_dir = root / "data"
        use_data_dir(patch, data_dir)
        patch.setattr(config, "TRAINING_SNAPSHOTS", 1)  # models that score, not the best ones (a dbt build each)
        warehouse = shop.install(data_dir)
        training.train(now, say=quiet)
        training.score(now, say=quiet)
        personalization.train(now, say=quiet)
        personalization.score(now, say=quiet)
        feed.build_feed(now, warehouse=warehouse)
        feed.gate_feed(now, warehouse=warehouse)
        exported = steps.export(now, warehouse=warehouse)
        result = steps.deliver(now, "s3", warehouse=warehouse,
                               sink_object=S3Sink.from_url(f"{s3_url}/feed", rows_per_object=100))
        yield Run(now, data_dir, warehouse, exported.rows, result.sent)


def _sections(page: str) -> dict[str, str]:
    """Section id -> its HTML."""
    return dict(re.findall(r'<section id="([\w-]+)">(.*?)</section>', page, flags=re.DOTALL))


def _headings(page: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", page)


def test_every_section_is_drawn_from_the_days_data(daily_run: Run, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAILOR_DATA_DIR", str(daily_run.data_dir))
    path = write_run_report(daily_run.now)  # the default warehouse and folder, from TAILOR_DATA_DIR
    day = daily_run.now.date().isoformat()
    assert path == daily_run.data_dir / "reports" / "run" / day / REPORT_FILE
    page = path.read_text(encoding="utf-8")
    assert _headings(page) == [heading for _, heading in SECTIONS]
    sections = _sections(page)
    for key in PLOTTED:
        assert IMAGE.search(sections[key]), f"section {key} has no plot: {sections[key][:400]}"
        assert 'class="skip"' not in sections[key].split("<figure>")[0], f"section {key} starts with a note"

    # the header: the as-of, when it was written and the warehouse, then what ran
    assert f"Run date <strong>{day}</strong>" in page and daily_run.now.strftime("%Y-%m-%dT%H:%M:%SZ") in page
    assert "written 20" in page and str(daily_run.warehouse.path) in page
    ran = sections["ran"]
    assert f"feed@{daily_run.now.strftime('%Y-%m-%dT%H:%M:%SZ')}" in ran
    for table in feed.SCORED_TABLES:
        assert table in ran
    assert f"{daily_run.exported_rows:,} feed rows" in ran

    # the numbers are the warehouse's for the date
    with daily_run.warehouse.reader() as con:
        scored = con.execute("select count(*) from ml.customer_scores where as_of_date = ?",
                             [daily_run.now.date()]).fetchone()[0]
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
    assert f'<td>feed</td><td>{daily_run.now.strftime("%Y-%m-%dT%H:%M:%SZ")}</td>' in sections["gates"]
    assert f'<td class="num">{feed_checks:,}</td>' in sections["gates"]
    assert daily_run.sent == daily_run.exported_rows > 0
    assert '<td>s3</td><td class="num">1</td><td>complete</td><td>full</td>' in sections["deliveries"]
    assert f'<td class="num">{daily_run.sent:,}</td>' in sections["deliveries"]
    assert f"<td>{day}</td><td>conversion</td>" in sections["lift"]


def test_the_page_is_self_contained(daily_run: Run, tmp_path: Path):
    page = write_run_report(daily_run.now, warehouse=daily_run.warehouse, directory=tmp_path).read_text()
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert re.findall(r'src="([^"]*)"', page) and all(
        src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', page))
    assert all(href.startswith("#") for href in re.findall(r'href="([^"]*)"', page))
    assert "url(" not in page  # nothing fetched from the CSS either


def test_writing_again_replaces_the_page_atomically(daily_run: Run, tmp_path: Path):
    first = write_run_report(daily_run.now, warehouse=daily_run.warehouse, directory=tmp_path)
    before = first.stat().st_ino
    first.write_text("an older page")
    again = write_run_report(daily_run.now, warehouse=daily_run.warehouse, directory=tmp_path)
    assert again == first and again.read_text().startswith("<!DOCTYPE html>")
    assert again.stat().st_ino != before  # a new file renamed over the old one, not the old one rewritten in place
    assert sorted(p.name for p in tmp_path.rglob("*")) == [daily_run.now.date().isoformat(), REPORT_FILE]
    assert oct(again.stat().st_mode & 0o777) == oct(0o644)


def test_a_warehouse_without_models_feed_or_deliveries_still_gets_its_page(daily_run: Run, tmp_path: Path):
    bare = tmp_path / "bare.duckdb"
    shutil.copyfile(daily_run.warehouse.path, bare)
    with duckdb.connect(str(bare)) as con:  # as before the first scoring: marts and gates only
        for schema in ("ml", "exports", "export", "staging_ml"):
            con.execute(f"drop schema if exists {schema} cascade")
        con.execute("delete from quality.gate_results where suite = 'feed'")
    path = write_run_report(daily_run.now, warehouse=Warehouse(bare), directory=tmp_path / "reports")
    sections = _sections(path.read_text())
    notes = {"segments": "No ml.customer_scores in the warehouse yet", "churn": "No ml.customer_scores",
             "lift": "No exports.feed_lift in the warehouse yet", "deliveries": "No export.deliveries",
             "gates": "No gate ran as of", "ran": "Nothing recorded for"}
    for key, note in notes.items():
        assert note in sections[key] and not IMAGE.search(sections[key]), key
    for key in ("rfm", "engagement"):  # the marts are there: still drawn
        assert IMAGE.search(sections[key]), key
    assert os.listdir(path.parent) == [REPORT_FILE]


def test_another_date_shows_no_other_dates_data(daily_run: Run, tmp_path: Path):
    earlier = daily_run.now - timedelta(days=3)
    sections = _sections(write_run_report(earlier, warehouse=daily_run.warehouse, directory=tmp_path).read_text())
    assert f"No scores for {earlier.date()} in ml.customer_scores" in sections["segments"]
    assert "holds its latest build only" in sections["rfm"] and "holds its latest build only" in sections["engagement"]
    assert f"No delivery for {earlier.date()}" in sections["deliveries"]
    assert not any(IMAGE.search(sections[key]) for key in ("segments", "churn", "rfm", "engagement", "deliveries"))
    assert IMAGE.search(sections["lift"]) is None  # no cohort on or before the date


def test_no_warehouse_at_all_is_a_page_of_notes(tmp_path: Path, daily_run: Run):
    missing = Warehouse(tmp_path / "nowhere" / "warehouse.duckdb")
    page = write_run_report(daily_run.now, warehouse=missing, directory=tmp_path / "reports").read_text()
    assert not (tmp_path / "nowhere").exists()  # reading never creates a warehouse
    sections = _sections(page)
    for key in PLOTTED:
        assert f"no warehouse at {missing.path}" in sections[key] and not IMAGE.search(sections[key]), key
    assert f"no warehouse at {missing.path}" in sections["notes"]


@pytest.mark.parametrize("as_of", [date(2026, 11, 1), "2026-11-01T00:00:00Z", 1_793_491_200, None])
def test_an_as_of_that_is_not_a_datetime_is_a_type_error(as_of, tmp_path: Path):
    with pytest.raises(TypeError, match="as_of must be a datetime"):
        write_run_report(as_of, warehouse=Warehouse(tmp_path / "w.duckdb"), directory=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_as_of_without_a_timezone_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="has no timezone"):
        write_run_report(datetime(2026, 11, 1), warehouse=Warehouse(tmp_path / "w.duckdb"), directory=tmp_path)
    assert list(tmp_path.iterdir()) == []
