"""POST /v1/items: listings from the marketplace backend, behind the service token, through the
real gateway, gRPC recommender, Redis stream and near-real-time indexer into HomeFeed."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from indexer.incremental import IncrementalIndexer
from recommender.engine import open_engine
from recommender.stores.cohort_maxima import CohortMaxima
from recommender.stores.events import EventStream
from recommender.stores.segments import RedisSegmentStore

TOKEN = "backend-service-token-0123456789"


@pytest.fixture
def backend_client(service_stack, grpc_server: str, make_gateway_settings):
    settings = make_gateway_settings(redis=service_stack.settings.redis, grpc_target=grpc_server, token=TOKEN)
    with TestClient(create_app(settings)) as client:
        yield client


def _drain(stack) -> None:
    settings = stack.settings
    engine = open_engine(settings)
    try:
        IncrementalIndexer(engine, EventStream(settings.redis), RedisSegmentStore(settings.redis),
                           CohortMaxima(settings.redis, half_life_h=settings.indexer.popularity_half_life_h), settings,
                           consumer=f"gw-{uuid.uuid4().hex[:6]}").run_until_idle(block_ms=100)
        engine.refresh(settings.engine.index_alias)
    finally:
        engine.close()


def test_listings_need_the_service_token(backend_client: TestClient) -> None:
    listing = [{"item_id": "x1", "title": "lamp", "category": "home", "price": 3, "region": "r", "seller_id": "s"}]
    missing = backend_client.post("/v1/items", json=listing)
    assert missing.status_code == 401 and "Authorization: Bearer <service token>" in missing.json()["detail"]
    wrong = backend_client.post("/v1/items", json=listing, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and TOKEN not in wrong.text


@pytest.mark.usefixtures("retire_test_listings")
def test_a_listing_posted_by_the_backend_reaches_the_home_feed(backend_client: TestClient, service_stack) -> None:
    region, item = f"testland-gw-{uuid.uuid4().hex[:8]}", f"gw-{uuid.uuid4().hex[:8]}"
    body = [
        {"item_id": item, "title": "oak desk", "category": "home/desks", "price": 80, "region": region,
         "seller_id": "s1"},
        {"item_id": "bad", "title": "desk", "colour": "oak"},
        {"type": "view", "item_id": item, "session_id": "s"},
        "not an object",
    ]
    response = backend_client.post("/v1/items", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (1, 3)
    reasons = {r["index"]: r["reason"] for r in answer["rejections"]}
    assert "'colour'" in reasons[1] and "POST /v1/events" in reasons[2] and "JSON object" in reasons[3]
    _drain(service_stack)
    page = backend_client.get("/v1/feed/home", params={"session_id": "gw-items", "region": region, "page_size": 10})
    assert page.status_code == 200 and [i["item_id"] for i in page.json()["items"]] == [item]
    not_a_list = backend_client.post("/v1/items", json={"item_id": item}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert not_a_list.status_code == 400 and "JSON list of listings" in not_a_list.json()["detail"]


def test_apps_cannot_send_listings_as_events(backend_client: TestClient) -> None:
    answer = backend_client.post("/v1/events", json=[{"type": "item", "item_id": "x", "price": 3}]).json()
    assert answer["accepted"] == 0 and "not accepted from apps" in answer["rejections"][0]["reason"]
