"""Every DAG in dags/: imports cleanly and cheaply (no socket, no DuckDB, no file read beyond module imports), and
has the policies a production DAG of Tailor promises: tags, docs, a data-interval timetable, retries with backoff,
an execution timeout and a failure callback on every task, every DuckDB writer in the `duckdb` pool; and the daily
DAG's tasks in their order. Fast: one parse in a subprocess, one import under guard."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tailor import sources
from tests.dags.conftest import AIRFLOW, ROOT, run_in_airflow

DAGS = ROOT / "dags"
DAG_FILES = sorted(DAGS.glob("*.py"))
# The task ids (without their task group) that write the DuckDB warehouse, kept here by hand on purpose: a new
# writer must be added to this list and to the pool. (run_report only reads, but a read-only DuckDB connection keeps
# writers out too, so it queues with them.)
WRITERS = {"load", "raw_gate", "raw_snapshot", "sources", "core", "daily", "marts_gate", "train", "score",
           "feed_build", "feed_gate", "export", "deliver", "run_report"}
# Tasks that may run without retries, and why.
NO_RETRIES: dict[str, str] = {}

PARSE = f"""
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(DAGS)!r})
out = {{"errors": {{k: str(v) for k, v in bag.import_errors.items()}}, "dags": {{}}}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {{
        "file": dag.fileloc,
        "timetable": type(dag.timetable).__name__,
        "tags": sorted(dag.tags),
        "doc": dag.doc_md or "",
        "max_active_runs": dag.max_active_runs,
        "deadline": bool(getattr(dag, "deadline", None)),
        "tasks": {{t.task_id: {{
            "pool": t.pool, "retries": t.retries, "backoff": bool(t.retry_exponential_backoff),
            "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
            "callback": bool(t.on_failure_callback), "upstream": sorted(t.upstream_task_ids),
            "downstream": sorted(t.downstream_task_ids), "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule),
            "depends_on_past": t.depends_on_past, "wait_for_downstream": t.wait_for_downstream,
            "outlets": sorted(getattr(o, "name", str(o)) for o in t.outlets),
            "op_args": [a for a in getattr(t, "op_args", ()) if isinstance(a, (str, bool, int))],  # not XComArgs
        }} for t in dag.tasks}},
    }}
print("PARSED " + json.dumps(out))
"""

# Importing a DAG file must touch nothing: sockets and DuckDB refuse, and every file opened must be Python code or
# package metadata that an import reads (never data under TAILOR_DATA_DIR, a config file of ours, the dbt project).
GUARDED_IMPORT = """
import builtins, io, socket
import duckdb
import airflow.sdk  # Airflow reading its own configuration is Airflow's start, not the DAG file's doing

def refuse(what):
    def refused(*args, **kwargs):
        raise RuntimeError(f"{{what}} at DAG import time")
    return refused

socket.socket.connect = refuse("a network connection")
socket.create_connection = refuse("a network connection")
duckdb.connect = refuse("a DuckDB connection")
opened = []
real_open = io.open
def watching_open(file, *args, **kwargs):
    if not isinstance(file, int):  # a file descriptor someone already holds
        opened.append(str(file))
    return real_open(file, *args, **kwargs)
builtins.open = io.open = watching_open

import runpy
runpy.run_path({path!r}, run_name="dag_under_test")
allowed = (".py", ".pyc", ".pyi", ".so", ".pth", ".typed", ".json", ".cfg", ".txt", "METADATA", "RECORD",
           "entry_points.txt", "top_level.txt")
odd = [f for f in opened if not f.endswith(allowed) or {data!r} in f or "dbt_project" in f or "expectations" in f]
print("OPENED", odd)
"""


@pytest.fixture(scope="module")
def parse_env(tmp_path_factory) -> dict[str, str]:
    """Airflow's configuration for parsing only: a parse needs no metadata database (nothing is migrated: fast)."""
    home = tmp_path_factory.mktemp("airflow_parse_home")
    return {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture(scope="module")
def parsed(parse_env) -> dict:
    result = run_in_airflow(parse_env, PARSE)
    lines = [line for line in result.stdout.splitlines() if line.startswith("PARSED ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    return json.loads(lines[-1][len("PARSED "):])


def test_every_dag_file_imports_without_errors(parsed):
    assert parsed["errors"] == {}
    files = {Path(dag["file"]).name for dag in parsed["dags"].values()}
    assert files == {path.name for path in DAG_FILES}  # one DAG per file, none lost
    assert {"tailor_extract_hourly", "tailor_daily"} <= set(parsed["dags"])


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.name)
def test_importing_a_dag_file_does_no_io(parse_env, tmp_path, dag_file):
    data = tmp_path / "data"
    code = GUARDED_IMPORT.format(path=str(dag_file), data=str(data))
    result = run_in_airflow(parse_env, code, {"TAILOR_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OPENED []" in result.stdout, result.stdout[-2000:]
    assert not data.exists()


def test_every_dag_has_tags_docs_and_a_data_interval_timetable(parsed):
    for dag_id, dag in parsed["dags"].items():
        assert "tailor" in dag["tags"] and len(dag["tags"]) >= 2, dag_id
        assert len(dag["doc"]) > 200, dag_id  # says what it does, its time rules, how to backfill
        assert dag["timetable"] == "CronDataIntervalTimetable", dag_id


def test_every_task_retries_with_backoff_has_a_timeout_and_alerts(parsed):
    for dag_id, dag in parsed["dags"].items():
        for task_id, task in dag["tasks"].items():
            name = task_id.rsplit(".", 1)[-1]
            if name in NO_RETRIES:
                assert task["retries"] == 0, (dag_id, task_id)
            else:
                assert task["retries"] >= 1 and task["backoff"], (dag_id, task_id)
            assert task["timeout"] and task["timeout"] <= 6 * 3600, (dag_id, task_id)
            assert task["callback"], (dag_id, task_id)


def test_every_duckdb_writer_is_in_the_pool_and_nothing_else_is(parsed):
    for dag_id, dag in parsed["dags"].items():
        for task_id, task in dag["tasks"].items():
            name = task_id.rsplit(".", 1)[-1].split("_", 1)[0] if task_id.rsplit(".", 1)[-1].startswith(
                ("load_", "extract_")) else task_id.rsplit(".", 1)[-1]
            expected = "duckdb" if name in WRITERS else "default_pool"
            assert task["pool"] == expected, (dag_id, task_id, task["pool"])


def test_the_daily_dag_runs_its_steps_in_order(parsed):
    daily = parsed["dags"]["tailor_daily"]
    tasks = daily["tasks"]
    assert daily["max_active_runs"] == 4
    assert daily["deadline"]  # the late-feed alert
    loads = {f"{source}.load_{entity}" for source, entities in sources.entities().items() for entity in entities}
    hourly = parsed["dags"]["tailor_extract_hourly"]["tasks"]
    for load in loads:
        source, entity = load.split(".load_")
        assert tasks[load]["upstream"] == [f"{source}.extract_{entity}"]
        # the daily extract catches up from the watermark (pipeline.next_window); the hourly one reads its interval
        assert tasks[f"{source}.extract_{entity}"]["op_args"] == [source, entity, True]
        assert hourly[f"{source}.extract_{entity}"]["op_args"] == [source, entity, False]
    chain = ["raw_gate", "dbt.sources", "dbt.core", "dbt.daily", "marts_gate", "decide_training", "train", "score",
             "feed_build", "feed_gate", "export", "deliver", "run_report"]
    assert set(tasks) == {t.replace("load_", "extract_") for t in loads} | loads | set(chain)
    assert sorted(tasks["raw_gate"]["upstream"]) == sorted(loads)
    for before, after in zip(chain, chain[1:], strict=False):
        assert before in tasks[after]["upstream"], f"{before} must run before {after}"
    # training is a visible branch: skipped or run, scoring follows either way (not after a failure)
    assert tasks["score"]["upstream"] == ["decide_training", "train"]
    assert tasks["score"]["trigger_rule"] == "none_failed"
    # a day decides once the day before has decided, trained and scored: backfilled days meet their models in order
    assert tasks["decide_training"]["depends_on_past"] and tasks["decide_training"]["wait_for_downstream"]
    assert [task for task, attributes in tasks.items() if attributes["depends_on_past"]] == ["decide_training"]
    assert tasks["run_report"]["downstream"] == []
    # the assets: raw and marts after their gates, the feed after delivery
    assert tasks["raw_gate"]["outlets"] == ["tailor_raw"]
    assert tasks["marts_gate"]["outlets"] == ["tailor_marts"]
    assert tasks["deliver"]["outlets"] == ["tailor_feed"]


DEADLINE_CALLBACK = """
import asyncio, json, os, threading
from http.server import BaseHTTPRequestHandler, HTTPServer

received = []

class Webhook(BaseHTTPRequestHandler):
    def do_POST(self):
        received.append({"path": self.path, "body": json.loads(self.rfile.read(int(self.headers["Content-Length"])))})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Webhook)
threading.Thread(target=server.serve_forever, daemon=True).start()
os.environ["AIRFLOW_CONN_SLACK_DEFAULT"] = json.dumps(
    {"conn_type": "http", "password": f"http://127.0.0.1:{server.server_port}/services/T0/B0/SECRET-TOKEN"})

from airflow.triggers.callback import CallbackTrigger

# what the triggerer runs when a run misses its deadline: the callback path and kwargs the DAG declared, plus the
# scheduler's simple context
trigger = CallbackTrigger("tailor.airflow.notify.TailorNotifier", {
    "event": "deadline", "message": "the day's feed is late",
    "context": {"dag_run": {"dag_id": "tailor_daily", "run_id": "scheduled__2026-11-01",
                            "data_interval_start": "2026-10-31T00:00:00Z", "data_interval_end": "2026-11-01T00:00:00Z"},
                "deadline": {"id": "x", "deadline_time": "2026-11-01T06:00:00Z"}}})

async def main():
    return [event.payload async for event in trigger.run()]

print("EVENTS " + json.dumps(asyncio.run(main()), default=str))
print("RECEIVED " + json.dumps(received))
"""


def test_a_missed_deadline_posts_to_the_slack_webhook_without_logging_its_url(parse_env):
    """The deadline alert's callback, run as the triggerer runs it, posts one line to the Slack webhook of the
    slack_default Connection (a local HTTP server here) and never writes the webhook's secret to the log."""
    result = run_in_airflow(parse_env, DEADLINE_CALLBACK)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in result.stdout.splitlines()
             if line.startswith(("EVENTS ", "RECEIVED "))}
    assert [event["state"] for event in lines["EVENTS"]] == ["running", "success"], lines["EVENTS"]
    (posted,) = lines["RECEIVED"]
    assert posted["path"] == "/services/T0/B0/SECRET-TOKEN"
    text = posted["body"]["text"]
    assert "tailor_daily" in text and "missed its deadline 2026-11-01T06:00:00Z" in text and "late" in text
    assert "SECRET-TOKEN" not in result.stdout.replace(json.dumps(lines["RECEIVED"]), "") + result.stderr
