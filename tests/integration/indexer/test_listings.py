"""Listings on the event stream: created, edited, sold and refused, through the real gRPC
RecordEvents call, Redis stream, near-real-time indexer, OpenSearch index and HomeFeed; and
their cold-start content vectors from a real (small) trained model."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from indexer.incremental import IncrementalIndexer
from indexer.listing_vectors import ListingVectors
from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.data_model import validate_events
from recommender.model.content import fit_content_encoder, listings_from_items
from recommender.service.server import start_server
from recommender.settings import ModelSettings, ServerSettings
from recommender.stores.cohort_maxima import CohortMaxima
from recommender.stores.events import EventStream
from recommender.stores.segments import RedisSegmentStore

TEST_LISTING_REGION = "testland-"  # tests/integration/conftest.py retires listings in these regions

pytestmark = pytest.mark.usefixtures("retire_test_listings")


@pytest.fixture(scope="module")
def stub(grpc_server: str):
    with grpc.insecure_channel(grpc_server) as channel:
        yield pb_grpc.RecommenderStub(channel)


def _indexer(settings, vectors: ListingVectors | None = None) -> IncrementalIndexer:
    return IncrementalIndexer(
        _engine(settings), EventStream(settings.redis), RedisSegmentStore(settings.redis),
        CohortMaxima(settings.redis, half_life_h=settings.indexer.popularity_half_life_h), settings,
        consumer=f"test-{uuid.uuid4().hex[:6]}", listing_vectors=vectors or ListingVectors(settings),
    )


def _engine(settings):
    from recommender.engine import open_engine

    return open_engine(settings)


def _drain(stack, vectors: ListingVectors | None = None):
    report = _indexer(stack.settings, vectors).run_until_idle(block_ms=100)
    stack.engine.refresh(stack.settings.engine.index_alias)
    return report


def _region() -> str:
    # A region no other item has: the feed's exact-region filter then holds only this test's listings.
    return f"{TEST_LISTING_REGION}{uuid.uuid4().hex[:8]}"


def _listing(item_id: str, region: str, **fields) -> pb.Listing:
    values = {"title": "vintage road bike", "category": "sports/bikes", "price": 120.0, "region": region,
              "seller_id": "seller-1", **fields}
    return pb.Listing(item_id=item_id, **values)


def _feed_ids(stub, region: str, **request) -> list[str]:
    page = stub.HomeFeed(pb.HomeFeedRequest(session_id=f"s-{uuid.uuid4().hex[:6]}", region=region, page_size=50,
                                            **request), timeout=30)
    assert page.served_from == pb.SERVED_FROM_ENGINE, page.degradations
    return [item.item_id for item in page.items]


def test_a_new_listing_reaches_home_feed_and_leaves_it_when_sold(stub, service_stack):
    region, item = _region(), f"new-{uuid.uuid4().hex[:8]}"
    answer = stub.RecordEvents(pb.RecordEventsRequest(listings=[_listing(item, region)]))
    assert answer.accepted == 1 and answer.rejected == 0
    assert item not in _feed_ids(stub, region)  # not before the indexer ran
    report = _drain(service_stack)
    assert report.items_created >= 1
    assert _feed_ids(stub, region) == [item]
    source = service_stack.engine.get(service_stack.settings.engine.index_alias, item)
    assert source["status"] == "active" and source["category_levels"] == ["sports", "sports/bikes"]
    assert source["created_at"] == source["bumped_at"] > 0

    stub.RecordEvents(pb.RecordEventsRequest(listings=[pb.Listing(item_id=item, status="sold")]))
    _drain(service_stack)
    assert item not in _feed_ids(stub, region)
    stub.RecordEvents(pb.RecordEventsRequest(listings=[pb.Listing(item_id=item, status="active")]))
    _drain(service_stack)
    assert _feed_ids(stub, region) == [item]


def test_an_edit_changes_what_filters_see(stub, service_stack):
    region, item = _region(), f"edit-{uuid.uuid4().hex[:8]}"
    stub.RecordEvents(pb.RecordEventsRequest(listings=[_listing(item, region)]))
    _drain(service_stack)
    assert _feed_ids(stub, region, excluded_categories=["home"]) == [item]
    stub.RecordEvents(pb.RecordEventsRequest(listings=[pb.Listing(item_id=item, category="home/lamps",
                                                                  title="brass lamp")]))
    _drain(service_stack)
    assert _feed_ids(stub, region, excluded_categories=["home"]) == []
    assert _feed_ids(stub, region, excluded_categories=["sports"]) == [item]
    source = service_stack.engine.get(service_stack.settings.engine.index_alias, item)
    # A partial update: the edit changed title and category, everything else is as created.
    assert (source["title"], source["category"], source["price"], source["seller_id"]) == \
        ("brass lamp", "home/lamps", 120.0, "seller-1")


def test_edits_in_one_batch_coalesce_in_stream_order(service_stack):
    region, item = _region(), f"co-{uuid.uuid4().hex[:8]}"
    EventStream(service_stack.settings.redis).append([
        {"type": "item", "item_id": item, "title": "a", "category": "toys", "price": 1, "region": region,
         "seller_id": "s"},
        {"type": "item", "item_id": item, "price": 2},
        {"type": "status", "item_id": item, "status": "reserved"},
        {"type": "item", "item_id": item, "price": 3, "bumped_at": "2026-01-01T00:00:00Z"},
    ])
    report = _drain(service_stack)
    assert report.items_created >= 1 and report.failed == 0
    source = service_stack.engine.get(service_stack.settings.engine.index_alias, item)
    assert (source["price"], source["status"], source["bumped_at"]) == (3.0, "reserved", 1767225600000)


def test_invalid_listings_are_dead_lettered_with_their_reason_and_nothing_else_is_lost(stub, service_stack):
    region, good, partial = _region(), f"ok-{uuid.uuid4().hex[:8]}", f"half-{uuid.uuid4().hex[:8]}"
    stream = EventStream(service_stack.settings.redis)
    stream.append([
        {"type": "item", "item_id": f"bad-{good}", "title": "x", "colour": "red"},  # unknown field
        {"type": "item", "item_id": partial, "price": 5},  # a new listing with only a price
        {"type": "item", "item_id": good, "title": "desk", "category": "home/desks", "price": 40,
         "region": region, "seller_id": "s9"},
        {"type": "view", "item_id": good, "session_id": "viewer-1"},
    ])
    report = _drain(service_stack)
    assert report.failed == 0
    reasons = {row["reason"] for row in stream.dead_letters(count=50)}
    assert any("unknown field(s) ['colour']" in r for r in reasons)
    assert any(f"new item {partial!r} lacks" in r and "'title'" in r for r in reasons)
    assert _feed_ids(stub, region) == [good]
    # The view in the same batch found the new listing and wrote its popularity child.
    child = service_stack.engine.get(service_stack.settings.engine.index_alias, f"{good}|all", routing=good)
    assert child is not None and child["decayed_weight"] > 0
    # The gRPC call refuses a bad listing by position (events first, then listings), taking the rest.
    answer = stub.RecordEvents(pb.RecordEventsRequest(
        events=[pb.Event(item_id=good, session_id="v", type=pb.EVENT_TYPE_CLICK)],
        listings=[pb.Listing(item_id="p1", price=float("nan")), pb.Listing(item_id="p2", status="gone")]))
    assert (answer.accepted, answer.rejected) == (1, 2)
    assert [(r.index, "price" in r.reason or "status" in r.reason) for r in answer.rejections] == [(1, True), (2, True)]


@pytest.fixture(scope="module")
def model_with_content(service_stack, tmp_path_factory) -> Path:
    """A small tailnet trained on the stack's market, with a content encoder fitted on its items."""
    from recommender.model.config import load_model_config
    from recommender.model.data import build_sessions, split_sessions
    from recommender.model.trainer import Trainer

    market = service_stack.market
    split = split_sessions(build_sessions(validate_events(market.events)[0]), test_days=0.5)
    config = load_model_config("tailnet", flags={"epochs": 1, "seed": 3,
                                                 "embedding_dim": service_stack.settings.engine.embedding_dims})
    trainer = Trainer(config, device=torch.device("cpu"), progress=False)
    model = trainer.build("tailnet", split)
    report = trainer.fit(model, split)
    items = market.items.set_index(market.items["item_id"].astype(str))
    ids = split.vocab.to_list()
    content = fit_content_encoder(listings_from_items(items.loc[ids]), model.items.weight.detach().numpy()[1:])
    return trainer.save(tmp_path_factory.mktemp("model") / "tailnet.pt", model, split, report, content=content)


def test_a_new_listing_gets_a_content_vector_and_a_finite_rerank_score(service_stack, model_with_content):
    settings = service_stack.settings.model_copy(update={
        "model": ModelSettings(checkpoint=model_with_content, poll_ms=0, device="cpu"),
        "server": ServerSettings(port=0, engine_timeout_ms=5000, metrics_port=0, profile_poll_ms=100),
    })
    region, item = _region(), f"cold-{uuid.uuid4().hex[:8]}"
    EventStream(settings.redis).append([{"type": "item", "item_id": item, "title": "red bike", "category":
                                         "sports/bikes", "price": 99, "region": region, "seller_id": "s"}])
    vectors = ListingVectors(settings, recheck_s=0)
    _drain(service_stack, vectors)
    source = service_stack.engine.get(settings.engine.index_alias, item)
    embedding = np.asarray(source["embedding"])
    assert embedding.shape == (settings.engine.embedding_dims,) and np.isfinite(embedding).all()
    assert np.isclose(np.linalg.norm(embedding), 1.0, atol=1e-4)
    assert source["model_version"] == vectors.scorer().version

    running = start_server(settings, port=0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            known = vectors.scorer().vocab.to_list()[:3]
            stub = pb_grpc.RecommenderStub(channel)
            page = stub.HomeFeed(pb.HomeFeedRequest(
                session_id="cold-viewer", region=region, recent_item_ids=known, page_size=10, explain=True), timeout=30)
            # The new listing in the session itself (the model skips ids it does not know).
            again = stub.HomeFeed(pb.HomeFeedRequest(session_id="cold-viewer-2", region="", page_size=20, explain=True,
                                                     recent_item_ids=[*known, item]), timeout=30)
    finally:
        running.stop(grace_s=1)
    assert [i.item_id for i in page.items] == [item] and page.model_version == vectors.scorer().version
    assert not page.degradations  # the new listing was scored from its vector in the index
    components = dict(page.items[0].component_scores)
    assert "session_model" in components and np.isfinite(list(components.values())).all()
    assert np.isfinite(page.items[0].score)
    assert again.items and not again.degradations
    assert all(np.isfinite([i.score, *i.component_scores.values()]).all() for i in again.items)
