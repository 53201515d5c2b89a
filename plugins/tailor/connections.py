"""Credentials for each source, from an Airflow Connection or, with none configured, the local simulator.

Outside Airflow (the CLI, tests) a Connection is read from its AIRFLOW_CONN_<ID> environment variable, in
either of Airflow's forms (JSON or URI), so the same variables configure both. Inside Airflow the hooks in
tailor.airflow build Credentials from the metadata database's Connection through the same `from_fields`.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tailor import settings
from tailor.lake import Lake, s3_client
from tailor.sources import SOURCES, Credentials, source_spec

AWS_CONN_ID = "aws_default"


def conn_ids() -> dict[str, str]:
    """source -> its Airflow Connection id, from the registry (tailor.sources.SOURCES) as it is now."""
    return {name: spec.conn_id for name, spec in SOURCES.items()}


class ConnectionConfigError(ValueError):
    """A Connection that cannot be used: the message names the connection and the field."""


def _env_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def set_in_environment(conn_id: str) -> bool:
    """Whether the Connection is given as an AIRFLOW_CONN_<ID> variable."""
    return bool(os.environ.get(_env_name(conn_id)))


def _parse_env(conn_id: str, raw: str) -> dict:
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            fields = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConnectionConfigError(f"{_env_name(conn_id)} is not valid JSON: {exc.msg} at {exc.pos}") from None
        if not isinstance(fields, dict):
            raise ConnectionConfigError(f"{_env_name(conn_id)} must be a JSON object")
        return fields
    parts = urlsplit(raw)
    if not parts.scheme:
        raise ConnectionConfigError(f"{_env_name(conn_id)} is neither JSON nor a connection URI (scheme://...)")
    return {"conn_type": parts.scheme, "host": parts.hostname, "port": parts.port,
            "login": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "schema": parts.path.lstrip("/") or None,
            "extra": {key: values[-1] for key, values in parse_qs(parts.query).items()}}


def from_fields(source: str, conn_id: str, host: str | None, password: str | None, port: int | None = None,
                schema: str | None = None) -> Credentials:
    """Credentials from a Connection's fields: host (a bare host or a full base URL) and password (the token)."""
    if not password:
        raise ConnectionConfigError(f"connection '{conn_id}' has no password: put the {source} API token there")
    host = host or source_spec(source).default_host
    if not host:
        raise ConnectionConfigError(f"connection '{conn_id}' has no host: put the shop's domain there "
                               "(your-shop.myshopify.com)")
    if "://" in host:
        base = host.rstrip("/")
    else:
        scheme = schema if schema in ("http", "https") else "https"
        base = f"{scheme}://{host}" + (f":{port}" if port else "")
    return Credentials(conn_id=conn_id, base_url=base, token=password)


def credentials(source: str, conn_id: str | None = None) -> Credentials:
    """The source's Connection from the environment, else the simulator at TAILOR_SIMULATOR_URL."""
    spec = SOURCES.get(source)
    if spec is None:
        raise ConnectionConfigError(f"unknown source {source!r}: choose one of {', '.join(SOURCES)}")
    conn_id = conn_id or spec.conn_id
    raw = os.environ.get(_env_name(conn_id))
    if raw is None:
        return Credentials(conn_id=f"{conn_id} (simulator)", base_url=settings.simulator_url(),
                           token=spec.simulator_token)
    fields = _parse_env(conn_id, raw)
    return from_fields(source, conn_id, fields.get("host"), fields.get("password"), fields.get("port"),
                       fields.get("schema"))


def lake_from_fields(login: str | None, password: str | None, extra: dict | None) -> Lake:
    """The lake at TAILOR_LAKE_URL; on S3 with an aws Connection's keys (login = access key id, password = secret)
    and its extra's region_name and endpoint_url."""
    url = settings.lake_url()
    if not url.startswith("s3://"):
        return Lake.from_url(url)
    return Lake.from_url(url, client=s3_client_from_fields(login, password, extra))


def lake() -> Lake:
    """The lake for runs outside Airflow: on S3 with AIRFLOW_CONN_AWS_DEFAULT's keys when it is set, else boto3's
    standard chain (AWS_* variables, profile, instance role)."""
    fields = _aws_fields()
    if fields is None or not settings.lake_url().startswith("s3://"):
        return Lake.from_url()
    return lake_from_fields(*fields)


def s3_client_from_fields(login: str | None, password: str | None, extra: dict | None) -> Any:
    """An S3 client from an aws Connection's fields: login = access key id, password = secret, the extra's
    region_name and endpoint_url (the endpoint otherwise from TAILOR_S3_ENDPOINT_URL)."""
    extra = extra or {}
    if not isinstance(extra, dict):
        raise ConnectionConfigError(f"connection '{AWS_CONN_ID}': extra must be a JSON object")
    return s3_client(access_key_id=login or None, secret_access_key=password or None,
                     region_name=extra.get("region_name"), endpoint_url=extra.get("endpoint_url"))


def s3_drop_client() -> Any:
    """The S3 drop sink's client for runs outside Airflow: AIRFLOW_CONN_AWS_DEFAULT's keys when it is set, else
    boto3's standard chain (AWS_* variables, profile, instance role), like the lake's."""
    fields = _aws_fields()
    return s3_client() if fields is None else s3_client_from_fields(*fields)


def _aws_fields() -> tuple[str | None, str | None, dict] | None:
    """AIRFLOW_CONN_AWS_DEFAULT's login, password and extra; None when it is not set."""
    raw = os.environ.get(_env_name(AWS_CONN_ID))
    if raw is None:
        return None
    fields = _parse_env(AWS_CONN_ID, raw)
    extra = fields.get("extra")
    if isinstance(extra, str):  # Airflow's JSON form allows the extra as an encoded string too
        try:
            extra = json.loads(extra) if extra.strip() else {}
        except json.JSONDecodeError as exc:
            raise ConnectionConfigError(f"{_env_name(AWS_CONN_ID)}: extra is not valid JSON: {exc.msg}") from None
    return fields.get("login"), fields.get("password"), extra
