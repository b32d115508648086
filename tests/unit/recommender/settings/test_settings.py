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
    with pytest.raises(ConfigError, match="HOTFEED_ENGINE='solr'"):
        load_settings()


def test_out_of_range_number_is_rejected_with_the_value(monkeypatch):
    monkeypatch.setenv("HOTFEED_ENGINE_TIMEOUT_MS", "-5")
    with pytest.raises(ConfigError, match="HOTFEED_ENGINE_TIMEOUT_MS='-5'"):
        load_settings()


def test_a_bad_value_names_its_variable_and_masks_passwords(monkeypatch):
    monkeypatch.setenv("HOTFEED_SERVER_PORT", "not-a-port")
    monkeypatch.setenv("HOTFEED_REDIS_TIMEOUT_MS", "0")
    monkeypatch.setenv("HOTFEED_ENGINE_EMBEDDING_DIMS", "https://app:s3cret@es:9200")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "HOTFEED_SERVER_PORT='not-a-port'" in message and "HOTFEED_REDIS_TIMEOUT_MS='0'" in message
    assert "HOTFEED_ENGINE_EMBEDDING_DIMS='https://app:***@es:9200'" in message and "s3cret" not in message


def test_model_checkpoint_none_switches_the_model_off(monkeypatch):
    monkeypatch.setenv("HOTFEED_MODEL_CHECKPOINT", "none")
    assert load_settings().model.checkpoint is None


def test_admin_tokens_map_each_token_to_its_admin(monkeypatch):
    monkeypatch.setenv("HOTFEED_GATEWAY_ADMIN_TOKENS", " anna:0123456789abcdef-anna , boris@shop.example:0123456789abcdef-boris,")
    assert load_settings().gateway.admin_identities() == {
        "0123456789abcdef-anna": "anna", "0123456789abcdef-boris": "boris@shop.example"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("anna-without-a-token", "entry 1 must be name:token"),
        ("anna:short-secret", "the token of 'anna' (entry 1) is shorter than 16 characters"),
        ("anna:0123456789abcdef-1,anna:0123456789abcdef-2", "admin 'anna' is listed twice"),
        ("anna:0123456789abcdef-1,boris:0123456789abcdef-1", "the token of 'boris' (entry 2) is also another admin's"),
    ],
)
def test_bad_admin_tokens_are_refused_without_showing_a_token(monkeypatch, value, expected):
    monkeypatch.setenv("HOTFEED_GATEWAY_ADMIN_TOKENS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "HOTFEED_GATEWAY_ADMIN_TOKENS=<hidden>" in message and expected in message
    assert "0123456789abcdef" not in message and "short-secret" not in message
