"""Credentials from Airflow Connections (the metadata database, AIRFLOW_CONN_* variables or a secrets backend)."""

from __future__ import annotations

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from tailor import connections
from tailor.sources import Credentials


def source_credentials(source: str) -> Credentials:
    """The source's Connection (shopify_default, ...); with none defined, the local simulator."""
    conn_id = connections.CONN_IDS[source]
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return connections.credentials(source)
    return connections.from_fields(source, conn_id, conn.host, conn.password, conn.port, conn.schema)
