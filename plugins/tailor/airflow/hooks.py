"""Sources, the lake and the feed's sinks from Airflow Connections (the metadata database, AIRFLOW_CONN_* variables,
a secrets backend)."""

from __future__ import annotations

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from tailor import connections, settings
from tailor.lake import Lake
from tailor.sources import Credentials, source_spec


def source_credentials(source: str) -> Credentials:
    """The source's Connection (shopify_default, ...); with none defined, the local simulator."""
    conn_id = source_spec(source).conn_id
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return connections.credentials(source)
    return connections.from_fields(source, conn_id, conn.host, conn.password, conn.port, conn.schema)


def lake() -> Lake:
    """The lake (TAILOR_LAKE_URL); on S3 with the aws_default Connection's keys, region and endpoint when one is
    defined (login = access key id, password = secret, extra: region_name, endpoint_url), else boto3's chain."""
    if not settings.lake_url().startswith("s3://"):
        return Lake.from_url()
    try:
        conn = BaseHook.get_connection(connections.AWS_CONN_ID)
    except AirflowNotFoundException:
        return Lake.from_url()
    return connections.lake_from_fields(conn.login, conn.password, conn.extra_dejson)


def aws_client():
    """An S3 client with the aws_default Connection's keys, region and endpoint when one is defined, else boto3's
    chain."""
    try:
        conn = BaseHook.get_connection(connections.AWS_CONN_ID)
    except AirflowNotFoundException:
        return connections.s3_drop_client()
    return connections.s3_client_from_fields(conn.login, conn.password, conn.extra_dejson)


def make_sink(name: str):
    """The feed's sink `name` with its Connection's credentials: klaviyo_default, or aws_default for the S3 drop."""
    from tailor.export import steps

    if name == "klaviyo":
        return steps.make_sink(name, klaviyo_credentials=source_credentials("klaviyo"))
    if name == "s3":
        return steps.make_sink(name, s3_client=aws_client())
    return steps.make_sink(name)
