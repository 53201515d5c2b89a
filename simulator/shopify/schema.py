"""The pinned GraphQL Admin schema (schema.graphql), shared by request handling (runtime.py) and bulk
operations (bulk.py); its connection types are registered with the object layer once, here."""

from __future__ import annotations

from pathlib import Path

from graphql import build_schema

from simulator.shopify import objects

SCHEMA = build_schema((Path(__file__).with_name("schema.graphql")).read_text())
objects.register_connections(list(SCHEMA.type_map))
