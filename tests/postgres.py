"""The local PostgreSQL the production-topology tests use (Airflow metadata, dbt's Postgres target).

Under CI a missing server is a failure, never a skip: `.ci/run` starts it, so its absence is a broken machine.
"""

from __future__ import annotations

import os
import re

import psycopg2
import pytest
from psycopg2 import sql

from tailor.settings import postgres_server

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def pg_settings(dbname: str = "postgres") -> dict:
    """psycopg2.connect() arguments for `dbname` on the dbt profile's Postgres server."""
    server = postgres_server()
    return {"host": server.host, "port": server.port, "user": server.user, "password": server.password,
            "dbname": dbname, "connect_timeout": 5}


def postgres_unreachable() -> str | None:
    """Why the Postgres server cannot be used, or None when it can."""
    try:
        psycopg2.connect(**pg_settings()).close()
    except psycopg2.Error as exc:
        settings = pg_settings()
        return f"Postgres at {settings['host']}:{settings['port']} is unreachable: {str(exc).strip()}"
    return None


def require_postgres() -> None:
    """Skip the calling test without Postgres; in CI (env CI set) fail instead, since CI must run the Postgres build."""
    reason = postgres_unreachable()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the Postgres build must run)")
    pytest.skip(reason)


def checked_identifier(name: str) -> str:
    """`name` if it is a plain lowercase identifier (safe to put in SQL), else ValueError."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain lowercase identifier")
    return name


def recreate_database(dbname: str) -> None:
    """Drop `dbname` (disconnecting its sessions) and create it empty."""
    con = psycopg2.connect(**pg_settings())
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(checked_identifier(dbname))))
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    finally:
        con.close()


def drop_database(dbname: str) -> None:
    con = psycopg2.connect(**pg_settings())
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(checked_identifier(dbname))))
    finally:
        con.close()


def fresh_database(name: str) -> str:
    """An empty database `name` (dropped first if it exists); returns its SQLAlchemy URL (psycopg2 driver)."""
    require_postgres()
    recreate_database(name)
    settings = pg_settings(name)
    return f"postgresql+psycopg2://{settings['user']}@{settings['host']}:{settings['port']}/{name}"
