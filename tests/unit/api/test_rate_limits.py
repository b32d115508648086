"""Per-caller event rate limits."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import api.app
from api._limits import RateLimiter
from recommender.errors import RateLimited
from recommender.settings import Settings


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_caller_gets_its_share_then_waits_for_the_refill():
    clock = _Clock()
    limiter = RateLimiter(60, clock=clock)  # one event per second, bursts of 60
    limiter.take("a", 60)
    with pytest.raises(RateLimited) as caught:
        limiter.take("a", 2)
    assert caught.value.retry_after_s == pytest.approx(2.0)
    limiter.take("b", 60)  # another caller has its own bucket
    clock.now = 2.0
    limiter.take("a", 2)


def test_a_call_larger_than_the_bucket_is_refused_with_the_size_to_split_to():
    with pytest.raises(RateLimited, match="send at most 10 per call"):
        RateLimiter(10).take("a", 11)


def test_zero_means_no_limit():
    RateLimiter(0).take("a", 10**6)


def test_the_gateway_answers_429_with_retry_after_once_a_caller_is_over():
    base = Settings()
    settings = base.model_copy(update={
        "redis": base.redis.model_copy(update={"url": "redis://127.0.0.1:1/0"}),
        "gateway": base.gateway.model_copy(update={"grpc_target": "127.0.0.1:1", "events_per_minute": 3}),
    })
    with TestClient(api.app.create_app(settings)) as client:
        bad = [{"type": "teleport", "item_id": "i", "session_id": "s"}] * 3  # rejected locally: no recommender call
        assert client.post("/v1/events", json=bad).status_code == 200
        over = client.post("/v1/events", json=bad[:1])
        assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
        assert "per minute" in over.json()["detail"]
