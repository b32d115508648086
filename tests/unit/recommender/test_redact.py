"""Credentials are masked in every message."""

from __future__ import annotations

from recommender.engine.base import translate_http_error
from recommender.redact import redact, redact_url


def test_a_password_in_a_url_is_masked_and_the_rest_kept():
    assert redact_url("https://elastic:pa55@es.internal:9200/x") == "https://elastic:***@es.internal:9200/x"
    assert redact_url("redis://:pa55@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("http://127.0.0.1:9200") == "http://127.0.0.1:9200"


def test_every_url_in_a_text_is_masked():
    text = redact("tried redis://a:b1@h1/0 then http://u:p2@h2:9200 and failed")
    assert "b1" not in text and "p2" not in text and "h1" in text and "h2:9200" in text


def test_engine_errors_never_carry_the_password():
    exc = translate_http_error(None, "refused by http://u:topsecret@es:9200", what="searching", url="http://u:topsecret@es:9200")
    assert "topsecret" not in str(exc) and "es:9200" in str(exc)
