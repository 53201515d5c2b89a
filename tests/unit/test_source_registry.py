"""The source registry (tailor.sources.SOURCES) is the only list of sources: a source added there alone shows up in
the entity list, the raw tables and the Connection ids, and an extractor whose own entities disagree with it is
refused."""

from __future__ import annotations

import sys
import types
from dataclasses import replace

import duckdb
import pytest

from tailor import connections, raw, sources
from tailor.sources import Credentials, Source

FAKE = Source("tailor_test_fake_vendor", "FakeExtractor", ("widgets", "gadgets"), "fakevendor_default",
              "fake_simulator_token", "api.fake.example")


@pytest.fixture
def fake_source(monkeypatch):
    monkeypatch.setitem(sources.SOURCES, "fakevendor", FAKE)
    monkeypatch.delenv("AIRFLOW_CONN_FAKEVENDOR_DEFAULT", raising=False)
    return "fakevendor"


def test_a_source_added_to_the_registry_is_everywhere(fake_source, tmp_path):
    assert sources.entities()[fake_source] == ("widgets", "gadgets")
    assert sources.extractors()[fake_source] == ("tailor_test_fake_vendor", "FakeExtractor")
    assert {(fake_source, "widgets"), (fake_source, "gadgets")} <= set(raw.raw_tables())
    assert connections.conn_ids()[fake_source] == "fakevendor_default"
    creds = connections.credentials(fake_source)
    assert creds.conn_id == "fakevendor_default (simulator)"
    assert creds.token == "fake_simulator_token"
    assert connections.from_fields(fake_source, "fakevendor_default", None, "tok").base_url == \
        "https://api.fake.example"

    con = duckdb.connect(str(tmp_path / "fake.duckdb"))
    try:
        raw.ensure_raw_tables(con)
        tables = {name for (name,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw'").fetchall()}
    finally:
        con.close()
    assert {"fakevendor_widgets", "fakevendor_gadgets", "shopify_orders", "_quarantine"} <= tables


def test_an_extractor_disagreeing_with_the_registry_is_refused(fake_source, monkeypatch):
    module = types.ModuleType(FAKE.module)

    class FakeExtractor:
        source = "fakevendor"
        entities = ("widgets", "gadgets")

        def __init__(self, credentials):
            self.credentials = credentials

    module.FakeExtractor = FakeExtractor
    monkeypatch.setitem(sys.modules, FAKE.module, module)
    creds = Credentials("fakevendor_default", "http://127.0.0.1:1", "t")
    assert isinstance(sources.build_extractor(fake_source, creds), FakeExtractor)

    monkeypatch.setitem(sources.SOURCES, fake_source, replace(FAKE, entities=("widgets",)))
    with pytest.raises(TypeError, match="update tailor.sources.SOURCES"):
        sources.build_extractor(fake_source, creds)


def test_unknown_sources_name_the_registered_ones():
    with pytest.raises(ValueError, match="choose one of shopify, hubspot, klaviyo"):
        sources.build_extractor("nosuch", Credentials("x", "http://127.0.0.1:1", "t"))
    with pytest.raises(connections.ConnectionConfigError, match="choose one of shopify, hubspot, klaviyo"):
        connections.credentials("nosuch")


def test_the_simulator_accepts_the_registry_tokens():
    from simulator.state import TOKENS

    assert {name: spec.simulator_token for name, spec in sources.SOURCES.items()} == TOKENS
