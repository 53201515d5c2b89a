"""The local PostgreSQL the production-topology tests use (Airflow metadata, dbt's Postgres target).

Under CI a missing server is a failure, never a skip: `.ci/run` starts it, so its absence is a broken machine.
"""

from __future__ import annotations

import os

import pytest

HOST = os.environ.get("TAILOR_PG_HOST", "127.0.0.1")
PORT = int(os.environ.get("TAILOR_PG_PORT", "5432"))
USER = os.environ.get("TAILOR_PG_USER", "postgres")


def _connect(dbname: str = "postgres"):
    import psycopg2

    return psycopg2.connect(host=HOST, port=PORT, user=USER, dbname=dbname, connect_timeout=5)


def require_postgres() -> None:
    """Skip (locally) or fail (under CI) when PostgreSQL does not answer."""
    try:
        _connect().close()
    except Exception as exc:  # any failure to connect means the same here
        message = f"PostgreSQL at {HOST}:{PORT} is not reachable ({exc}); start it (see .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def fresh_database(name: str) -> str:
    """Drop and create database `name`; returns its SQLAlchemy URL (psycopg2 driver)."""
    require_postgres()
    con = _connect()
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
            cur.execute(f'create database "{name}"')
    finally:
        con.close()
    return f"postgresql+psycopg2://{USER}@{HOST}:{PORT}/{name}"
