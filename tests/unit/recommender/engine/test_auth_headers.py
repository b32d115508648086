"""How the engine adapter authenticates: API key, then user/password, then credentials in the URL."""

from __future__ import annotations

import base64

from recommender.engine.base import auth_headers
from recommender.settings import EngineSettings


def _basic(user_pass: str) -> str:
    return "Basic " + base64.b64encode(user_pass.encode()).decode()


def test_an_api_key_wins():
    s = EngineSettings(url="https://u:p@es:9200", api_key="aWQ6a2V5", username="x", password="y")
    assert auth_headers(s) == {"authorization": "ApiKey aWQ6a2V5"}


def test_username_and_password_become_basic_auth():
    assert auth_headers(EngineSettings(url="https://es:9200", username="elastic", password="pw")) == {
        "authorization": _basic("elastic:pw")
    }


def test_credentials_in_the_url_are_used_when_nothing_else_is_set():
    assert auth_headers(EngineSettings(url="https://elastic:pw@es:9200")) == {"authorization": _basic("elastic:pw")}
    assert auth_headers(EngineSettings(url="http://127.0.0.1:9200")) == {}
