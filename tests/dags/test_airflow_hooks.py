"""Connections reach Tailor through Airflow: source credentials, and the S3 lake's and the S3 drop's keys from
aws_default."""

from __future__ import annotations

import json
import os
import subprocess

from tests.dags.conftest import AIRFLOW, run_in_airflow
from tests.integration.lakekit import moto_s3

CREDENTIALS = """
import json
from tailor.airflow.hooks import source_credentials
out = {}
for source in ("shopify", "hubspot", "klaviyo"):
    c = source_credentials(source)
    out[source] = [c.conn_id, c.base_url, c.token]
print(json.dumps(out))
"""


def test_connections_configure_sources_and_the_simulator_is_the_default(airflow_env):
    shop = json.dumps({"conn_type": "http", "host": "tailor-test.myshopify.com", "password": "shpat_real"})
    result = run_in_airflow(airflow_env, CREDENTIALS, {"AIRFLOW_CONN_SHOPIFY_DEFAULT": shop,
                                                       "TAILOR_SIMULATOR_URL": "http://127.0.0.1:9999"})
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["shopify"] == ["shopify_default", "https://tailor-test.myshopify.com", "shpat_real"]
    assert got["hubspot"][1] == "http://127.0.0.1:9999"  # nothing configured: the simulator
    assert got["klaviyo"][0].startswith("klaviyo_default")


def test_s3_lake_takes_its_keys_from_aws_default(airflow_env):
    code = """
from datetime import datetime, UTC
from tailor.airflow.hooks import lake
from tailor.sources import RecordVersion, Window
store = lake()
window = Window(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 1, 1, tzinfo=UTC))
ref = store.write_batch("shopify", "customers", window,
                        [RecordVersion("gid://shopify/Customer/1", window.start, {"id": "gid://shopify/Customer/1"})],
                        extracted_at=window.end)
print("BATCHES", len(store.batches()), [r.record_id for r in store.read(ref)])
"""
    with moto_s3() as url:
        endpoint = os.environ["TAILOR_S3_ENDPOINT_URL"]
        aws = json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                          "extra": {"region_name": "us-east-1", "endpoint_url": endpoint}})
        # no AWS_* variables and no TAILOR_S3_ENDPOINT_URL: only the Connection can make this work
        env = {k: v for k, v in airflow_env.items() if not k.startswith("AWS_") and k != "TAILOR_S3_ENDPOINT_URL"}
        result = run_in_airflow(env, code, {"AIRFLOW_CONN_AWS_DEFAULT": aws, "TAILOR_LAKE_URL": url})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BATCHES 1 ['gid://shopify/Customer/1']" in result.stdout


def test_the_s3_drop_takes_its_keys_from_an_aws_default_stored_in_airflow(airflow_env):
    """A Connection made in the UI lives in the metadata database, not in an AIRFLOW_CONN_ variable: the deliver
    task's S3 sink must find it there. A task asks the API server, which reads the metadata database; this process
    reads it itself, as Airflow's server processes do (_AIRFLOW_PROCESS_CONTEXT=server)."""
    code = """
import boto3
from tailor.airflow.hooks import make_sink
sink = make_sink("s3")
sink.client.put_object(Bucket=sink.bucket, Key=sink.key("probe.txt"), Body=b"x")
print("ENDPOINT", sink.client.meta.endpoint_url, sink.key("probe.txt"))
"""
    with moto_s3() as url:
        endpoint = os.environ["TAILOR_S3_ENDPOINT_URL"]
        aws = json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                          "extra": {"region_name": "us-east-1", "endpoint_url": endpoint}})
        env = {k: v for k, v in airflow_env.items() if not k.startswith("AWS_") and k != "TAILOR_S3_ENDPOINT_URL"}
        added = subprocess.run([AIRFLOW, "connections", "add", "aws_default", "--conn-json", aws], env=env,
                               capture_output=True, text=True, timeout=300)
        assert added.returncode == 0, added.stderr[-3000:]
        try:
            result = run_in_airflow(env, code, {"TAILOR_S3_DROP_URL": f"{url}/drop",
                                                "_AIRFLOW_PROCESS_CONTEXT": "server"})
        finally:
            subprocess.run([AIRFLOW, "connections", "delete", "aws_default"], env=env, capture_output=True,
                           timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ENDPOINT {endpoint} " in result.stdout and result.stdout.rstrip().endswith("/drop/probe.txt")
    assert "testing" not in result.stdout + result.stderr  # the keys are never printed
