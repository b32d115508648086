"""Settings come from HOTFEED_* variables, validated, with defaults in code."""

from __future__ import annotations

import pytest

from recommender.errors import ConfigError
from recommender.settings import load_settings


def test_defaults_point_at_the_local_opensearch(monkeypatch):
    for var in ("HOTFEED_ENGINE", "HOTFEED_ENGINE_KIND", "HOTFEED_ENGINE_URL"):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings()
    assert settings.engine.kind == "opensearch"
    assert settings.engine.url == "http://127.0.0.1:9200"


def test_short_engine_variable_selects_elasticsearch_and_its_port(monkeypatch):
    monkeypatch.setenv("HOTFEED_ENGINE", "elasticsearch")
    monkeypatch.delenv("HOTFEED_ENGINE_URL", raising=False)
    settings = load_settings()
    assert (settings.engine.kind, settings.engine.url) == ("elasticsearch", "http://127.0.0.1:9201")


def test_unknown_engine_name_is_rejected_with_the_value(monkeypatch):
    monkeypatch.setenv("HOTFEED_ENGINE", "solr")
    with pytest.raises(ConfigError, match="kind.*'solr'"):
        load_settings()


def test_out_of_range_number_is_rejected_with_the_value(monkeypatch):
    monkeypatch.setenv("HOTFEED_ENGINE_TIMEOUT_MS", "-5")
    with pytest.raises(ConfigError, match="timeout_ms.*'-5'"):
        load_settings()
