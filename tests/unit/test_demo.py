"""`make demo` runs a day again unless its export is in this data dir: Airflow's metadata database (the local
PostgreSQL's, shared by every clone on the machine) recording a successful run is not enough."""

from __future__ import annotations

from datetime import UTC, datetime

from tailor import demo, settings
from tailor.export import outbox


def test_a_day_is_done_here_only_with_its_export_in_this_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path))
    end = datetime(2026, 11, 1, tzinfo=UTC)  # the run for Oct 31: its export is the outbox's 2026-11-01
    assert not demo.done_here(end)
    folder = outbox.export_dir(settings.outbox_dir(), end.date())
    folder.mkdir(parents=True)
    (folder / outbox.MANIFEST_FILE).write_text("{cut short")  # a damaged manifest: run the day again
    assert not demo.done_here(end)
    (folder / outbox.MANIFEST_FILE).write_text('{"rows": 3}')
    assert demo.done_here(end)
    assert not demo.done_here(datetime(2026, 11, 2, tzinfo=UTC))
