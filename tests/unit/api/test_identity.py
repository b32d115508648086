"""Who the viewer is: only a valid signed token says so."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest
from fastapi.testclient import TestClient

import api.app
from api._identity import TokenVerifier
from recommender.errors import Unauthenticated
from recommender.settings import GatewaySettings, Settings

SECRET = "test-signing-secret-of-enough-length"


def _token(*, sub: object = "alice", aud: str = "hotfeed", exp_in_s: float = 300, key: str = SECRET, **extra) -> str:
    claims = {"sub": sub, "aud": aud, "exp": int(time.time() + exp_in_s), **extra}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="HS256")


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier.from_settings(GatewaySettings(jwt_secret=SECRET))


def test_a_valid_token_names_its_user(verifier: TokenVerifier) -> None:
    assert verifier.user_of(_token()) == "alice"


@pytest.mark.parametrize(("token", "message"), [
    (lambda: _token(exp_in_s=-60), "expired"),
    (lambda: _token(aud="another-service"), "not for this service"),
    (lambda: _token(key="a-different-secret-of-enough-length"), "does not verify"),
    (lambda: _token()[:-3] + "abc", "does not verify"),
    (lambda: _token(sub=None), "'sub'"),
    (lambda: jwt.encode({"sub": "alice", "aud": "hotfeed"}, SECRET, algorithm="HS256"), "'exp'"),
    (lambda: "not.a.jwt", "malformed"),
])
def test_a_bad_token_is_unauthenticated_and_says_why(verifier: TokenVerifier, token, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message):
        verifier.user_of(token())


def test_no_key_configured_means_no_verifier() -> None:
    assert TokenVerifier.from_settings(GatewaySettings()) is None


def _client(**gateway) -> Iterator[TestClient]:
    base = Settings()
    settings = base.model_copy(update={
        "redis": base.redis.model_copy(update={"url": "redis://127.0.0.1:1/0"}),
        "gateway": base.gateway.model_copy(update={"grpc_target": "127.0.0.1:1", **gateway}),
    })
    with TestClient(api.app.create_app(settings)) as client:
        yield client


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from _client(jwt_secret=SECRET)


@pytest.mark.parametrize("header", [f"Bearer {'x' * 20}", "Basic dXNlcjpwdw==", "Bearer "])
def test_feeds_with_a_bad_authorization_are_401(client: TestClient, header: str) -> None:
    response = client.get("/v1/feed/home", headers={"Authorization": header})
    assert response.status_code == 401 and response.json()["detail"]


def test_an_expired_token_is_401_on_events_too(client: TestClient) -> None:
    response = client.post("/v1/events", json=[], headers={"Authorization": f"Bearer {_token(exp_in_s=-5)}"})
    assert response.status_code == 401 and "expired" in response.json()["detail"]


def test_a_user_id_in_the_query_is_refused_not_trusted(client: TestClient) -> None:
    response = client.get("/v1/feed/home", params={"user_id": "bob"})
    assert response.status_code == 400 and "signed token" in response.json()["detail"]


def test_a_gateway_without_a_key_refuses_every_token_without_operator_hints() -> None:
    for client in _client():
        response = client.get("/v1/feed/home", headers={"Authorization": f"Bearer {_token()}"})
        assert response.status_code == 401
        assert "HOTFEED" not in response.json()["detail"] and "without Authorization" in response.json()["detail"]
