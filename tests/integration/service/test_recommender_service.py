"""The real gRPC recommender over a real OpenSearch index and Redis (see the service_stack fixture)."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.profiles import read_item_fields
from recommender.service.server import start_server
from recommender.settings import EngineSettings, ServerSettings
from recommender.stores.popular import PopularStore
from recommender.stores.profiles import ProfileStore
from tests.integration.tcp_proxy import TcpProxy


@pytest.fixture(scope="module")
def stub(service_stack):
    channel = grpc.insecure_channel(service_stack.target)
    yield pb_grpc.RecommenderStub(channel)
    channel.close()


def _active(stack) -> list[str]:
    items = stack.market.items
    return items.loc[items["status"] == "active", "item_id"].tolist()


def _region(stack) -> str:
    return str(stack.market.users["region"].dropna().iloc[0])


def _user(stack) -> str:
    return str(stack.market.users["user_id"].iloc[0])


def _code(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request)
    return info.value.code(), info.value.details()


def test_home_feed_serves_active_items_from_the_engine_with_explanations(stub, service_stack):
    page = stub.HomeFeed(pb.HomeFeedRequest(user_id=_user(service_stack), region=_region(service_stack),
                                            page_size=10, explain=True))
    assert page.served_from == pb.SERVED_FROM_ENGINE
    assert len(page.items) == 10 and page.next_cursor and page.profile_version
    assert set(i.item_id for i in page.items) <= set(_active(service_stack))
    assert "cohort_popularity" in page.items[0].component_scores
    assert list(page.degradations) == []


def test_ten_scrolled_pages_hold_no_duplicate(stub, service_stack):
    seen: list[str] = []
    cursor = ""
    for _ in range(10):
        page = stub.HomeFeed(pb.HomeFeedRequest(session_id="scroll-1", page_size=12, cursor=cursor))
        assert page.served_from == pb.SERVED_FROM_ENGINE
        seen += [i.item_id for i in page.items]
        cursor = page.next_cursor
        assert cursor, "the feed ran dry before ten pages"
    assert len(seen) == 120 and len(set(seen)) == 120


def test_product_feed_needs_a_user_and_excludes_the_item_itself(stub, service_stack):
    item = _active(service_stack)[0]
    code, details = _code(stub.ProductFeed, pb.ProductFeedRequest(item_id=item, page_size=5))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "user_id" in details
    page = stub.ProductFeed(pb.ProductFeedRequest(user_id=_user(service_stack), item_id=item, page_size=5))
    assert len(page.items) == 5 and item not in {i.item_id for i in page.items}


def test_similar_items_are_the_nearest_vectors_and_never_the_item(stub, service_stack):
    item = _active(service_stack)[1]
    page = stub.SimilarItems(pb.SimilarItemsRequest(item_id=item, page_size=5, region=""))
    assert len(page.items) == 5 and item not in {i.item_id for i in page.items}
    assert [i.score for i in page.items] == sorted((i.score for i in page.items), reverse=True)


def test_record_events_accepts_good_events_and_explains_rejections(stub, service_stack):
    item = _active(service_stack)[2]
    answer = stub.RecordEvents(pb.RecordEventsRequest(events=[
        pb.Event(item_id=item, type=pb.EVENT_TYPE_VIEW, session_id="ev-1"),
        pb.Event(item_id="", type=pb.EVENT_TYPE_VIEW, session_id="ev-1"),
        pb.Event(item_id=item, type=pb.EVENT_TYPE_UNSPECIFIED, session_id="ev-1"),
        pb.Event(item_id=item, type=pb.EVENT_TYPE_LIKE),
    ]))
    assert (answer.accepted, answer.rejected) == (1, 3)
    reasons = {r.index: r.reason for r in answer.rejections}
    assert "item_id" in reasons[1] and "type" in reasons[2] and "session_id" in reasons[3]
    # The accepted view is now the session's history: the next feed excludes the seen item.
    page = stub.HomeFeed(pb.HomeFeedRequest(session_id="ev-1", page_size=50))
    assert item not in {i.item_id for i in page.items}


def test_an_impossible_event_time_rejects_that_event_only(stub, service_stack):
    from google.protobuf.timestamp_pb2 import Timestamp

    item = _active(service_stack)[3]
    answer = stub.RecordEvents(pb.RecordEventsRequest(events=[
        pb.Event(item_id=item, type=pb.EVENT_TYPE_VIEW, session_id="ev-ts", ts=Timestamp(seconds=253402300800)),
        pb.Event(item_id=item, type=pb.EVENT_TYPE_VIEW, session_id="ev-ts", ts=Timestamp(seconds=1, nanos=2_000_000_000)),
        pb.Event(item_id=item, type=pb.EVENT_TYPE_VIEW, session_id="ev-ts"),
    ]))
    assert (answer.accepted, answer.rejected) == (1, 2)
    assert all("'ts'" in r.reason for r in answer.rejections)


@pytest.mark.parametrize("cursor", ["abc.é", "é"])
def test_a_non_ascii_cursor_is_invalid_argument(stub, cursor):
    with pytest.raises(grpc.RpcError) as caught:
        stub.HomeFeed(pb.HomeFeedRequest(page_size=5, cursor=cursor))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("size", [0, 10_000])
def test_page_size_out_of_bounds_is_invalid(stub, size):
    code, details = _code(stub.HomeFeed, pb.HomeFeedRequest(page_size=size))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and f"page_size {size}" in details


def test_unknown_user_gets_a_default_feed(stub):
    page = stub.HomeFeed(pb.HomeFeedRequest(user_id="nobody-we-know", page_size=5))
    assert len(page.items) == 5 and page.served_from == pb.SERVED_FROM_ENGINE


def test_unknown_item_is_not_found(stub):
    code, details = _code(stub.SimilarItems, pb.SimilarItemsRequest(item_id="no-such-item", page_size=5))
    assert code == grpc.StatusCode.NOT_FOUND and "'no-such-item'" in details


@pytest.mark.parametrize("cursor", ["garbage", "eyJmIjoiYSIsInAiOjEsInYiOiJ4In0.AAAAAAAAAAAAAAAAAAAAAA", "x" * 600])
def test_malformed_or_forged_cursor_is_invalid(stub, cursor):
    code, details = _code(stub.HomeFeed, pb.HomeFeedRequest(page_size=5, cursor=cursor))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "without a cursor" in details


def test_a_cursor_from_another_feed_is_invalid(stub):
    first = stub.HomeFeed(pb.HomeFeedRequest(session_id="owner", page_size=5))
    code, details = _code(stub.HomeFeed, pb.HomeFeedRequest(session_id="thief", page_size=5, cursor=first.next_cursor))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "another feed" in details


def test_unknown_profile_is_not_found(stub):
    code, details = _code(stub.HomeFeed, pb.HomeFeedRequest(page_size=5, profile="no-such-profile"))
    assert code == grpc.StatusCode.NOT_FOUND and "'no-such-profile'" in details


def test_oversized_event_batch_is_invalid(stub, service_stack):
    limit = service_stack.settings.server.max_events_per_call
    events = [pb.Event(item_id="i", type=pb.EVENT_TYPE_VIEW, session_id="s")] * (limit + 1)
    code, details = _code(stub.RecordEvents, pb.RecordEventsRequest(events=events))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and f"at most {limit}" in details


def test_oversized_message_is_refused(stub):
    code, _ = _code(stub.HomeFeed, pb.HomeFeedRequest(page_size=5, session_id="s" * (9 * 1024 * 1024)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_deleted_item_disappears_from_the_next_request(stub, service_stack):
    request = pb.HomeFeedRequest(session_id="deleted-1", page_size=5)
    top = stub.HomeFeed(request).items[0].item_id
    service_stack.engine.update(service_stack.settings.engine.index_alias, top, {"status": "deleted"})
    service_stack.engine.refresh(service_stack.settings.engine.index_alias)
    try:
        assert top not in {i.item_id for i in stub.HomeFeed(request).items}
    finally:
        service_stack.engine.update(service_stack.settings.engine.index_alias, top, {"status": "active"})
        service_stack.engine.refresh(service_stack.settings.engine.index_alias)


def test_a_popularity_change_reorders_the_feed(stub, service_stack):
    alias = service_stack.settings.engine.index_alias
    request = pb.HomeFeedRequest(session_id="pop-1", page_size=50, explain=True)
    before = [i.item_id for i in stub.HomeFeed(request).items]
    last = before[-1]
    child = {"relation": {"name": "popularity", "parent": last}, "cohort": "all", "score": 1.0,
             "decayed_weight": 1e6, "count_1h": 1000, "count_24h": 1000, "count_7d": 1000,
             "updated_at": int(time.time() * 1000)}
    from recommender.engine import Doc

    old = service_stack.engine.get(alias, f"{last}|all", routing=last)
    service_stack.engine.bulk_upsert(alias, [Doc(f"{last}|all", {**child, "score": 50.0}, routing=last)])
    service_stack.engine.refresh(alias)
    try:
        after = [i.item_id for i in stub.HomeFeed(request).items]
        assert after.index(last) < before.index(last)
    finally:
        if old is None:
            service_stack.engine.delete(alias, f"{last}|all", routing=last)
        else:
            service_stack.engine.bulk_upsert(alias, [Doc(f"{last}|all", old, routing=last)])
        service_stack.engine.refresh(alias)


def _serves_version(stub, version: str, *, within_s: float = 30.0) -> bool:
    """Return whether the server serves profile ``version`` before ``within_s`` (a bound, not a speed claim)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if stub.HomeFeed(pb.HomeFeedRequest(page_size=3)).profile_version == version:
            return True
        threading.Event().wait(0.05)
    return False


def test_a_profile_change_goes_live_without_a_restart(stub, service_stack):
    settings = service_stack.settings
    store = ProfileStore(settings.redis, fields=read_item_fields(settings.paths.mappings_dir))
    before = stub.HomeFeed(pb.HomeFeedRequest(page_size=3)).profile_version
    text = store.active("default").text.replace("blend: 0.5", "blend: 0.25")
    assert text != store.active("default").text
    saved = store.save("default", text, author="test")
    try:
        assert _serves_version(stub, saved.version), "the saved profile never went live"
        assert saved.version != before
    finally:
        store.save("default", text.replace("blend: 0.25", "blend: 0.5"), author="test")


def test_an_old_profile_version_cursor_restarts_cleanly_and_says_so(stub, service_stack):
    settings = service_stack.settings
    store = ProfileStore(settings.redis, fields=read_item_fields(settings.paths.mappings_dir))
    first = stub.HomeFeed(pb.HomeFeedRequest(session_id="prof-cursor", page_size=5))
    original = store.active("default").text
    saved = store.save("default", original.replace("blend: 0.5", "blend: 0.3"), author="test")
    try:
        assert _serves_version(stub, saved.version), "the saved profile never went live"
        page = stub.HomeFeed(pb.HomeFeedRequest(session_id="prof-cursor", page_size=5, cursor=first.next_cursor))
        assert [d.stage for d in page.degradations] == ["cursor"]
        assert "restarted from the first page" in page.degradations[0].reason
        assert len(page.items) == 5
    finally:
        store.save("default", original, author="test")


def test_an_engine_stopped_mid_test_yields_the_flagged_fallback_within_the_deadline(service_stack):
    settings = service_stack.settings
    proxy = TcpProxy(int(settings.engine.url.rsplit(":", 1)[1]))
    deadline_ms = 300
    proxied = settings.model_copy(update={
        "engine": EngineSettings(kind="opensearch", url=f"http://127.0.0.1:{proxy.port}",
                                 index_alias=settings.engine.index_alias, timeout_ms=deadline_ms),
        "server": ServerSettings(port=0, engine_timeout_ms=deadline_ms, metrics_port=0),
    })
    running = start_server(proxied, port=0)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub = pb_grpc.RecommenderStub(channel)
    try:
        # Generous deadline for the warm-up call only: the first search pays for cold caches.
        ok = stub.HomeFeed(pb.HomeFeedRequest(page_size=5, session_id="stop-1"))
        assert ok.served_from == pb.SERVED_FROM_ENGINE
        proxy.stop()
        page = stub.HomeFeed(pb.HomeFeedRequest(page_size=5, session_id="stop-2"), timeout=5)
        assert page.served_from == pb.SERVED_FROM_FALLBACK
        assert [d.stage for d in page.degradations][:1] == ["engine"]
        # The client hears what degraded, never where the engine lives or how to restart it.
        reason = page.degradations[0].reason
        assert "fallback" in reason and "127.0.0.1" not in reason and "services up" not in reason
        assert len(page.items) == 5
        popular = PopularStore(settings.redis).read()
        assert [i.item_id for i in page.items] == popular[:5]
        item = _active(service_stack)[0]
        product = stub.ProductFeed(pb.ProductFeedRequest(user_id="u-stop", item_id=item, page_size=5), timeout=5)
        similar = stub.SimilarItems(pb.SimilarItemsRequest(item_id=item, page_size=5), timeout=5)
        assert product.served_from == similar.served_from == pb.SERVED_FROM_FALLBACK
    finally:
        channel.close()
        running.stop(grace_s=0.5)
        proxy.stop()


def test_redis_down_still_serves_from_the_engine_with_default_segments_and_says_so(service_stack):
    settings = service_stack.settings
    dead_redis = settings.redis.model_copy(update={"url": "redis://127.0.0.1:1/0", "timeout_ms": 200})
    running = start_server(settings.model_copy(update={
        "redis": dead_redis, "server": ServerSettings(port=0, engine_timeout_ms=5000, metrics_port=0),
    }), port=0)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        page = pb_grpc.RecommenderStub(channel).HomeFeed(
            pb.HomeFeedRequest(user_id=_user(service_stack), session_id="redis-down", page_size=5)
        )
        assert page.served_from == pb.SERVED_FROM_ENGINE and len(page.items) == 5
        stages = [d.stage for d in page.degradations]
        assert stages == ["segments", "session", "cursor"]
        assert page.next_cursor == ""
        assert "Redis" in page.degradations[0].reason
        assert all("redis://" not in d.reason and "services up" not in d.reason for d in page.degradations)
    finally:
        channel.close()
        running.stop(grace_s=0.5)


def test_a_feed_that_finds_no_free_slot_gets_the_flagged_fallback_at_once(service_stack):
    settings = service_stack.settings
    running = start_server(settings.model_copy(update={
        "server": ServerSettings(port=0, engine_timeout_ms=5000, metrics_port=0, concurrent_feeds=1, queue_timeout_ms=1),
    }), port=0)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub = pb_grpc.RecommenderStub(channel)
    try:
        # Hold the only slot, as a feed in flight would.
        assert running.feeds._slots.acquire(timeout=5)
        try:
            busy = stub.HomeFeed(pb.HomeFeedRequest(session_id="slot-1", page_size=5), timeout=10)
        finally:
            running.feeds._slots.release()
        assert busy.served_from == pb.SERVED_FROM_FALLBACK and len(busy.items) == 5
        assert [d.stage for d in busy.degradations] == ["overload"]
        free = stub.HomeFeed(pb.HomeFeedRequest(session_id="slot-2", page_size=5), timeout=10)
        assert free.served_from == pb.SERVED_FROM_ENGINE and list(free.degradations) == []
    finally:
        channel.close()
        running.stop(grace_s=0.5)


def test_serve_refuses_the_public_cursor_secret_outside_dev_mode(service_stack):
    from recommender.errors import ConfigError

    settings = service_stack.settings
    production = settings.model_copy(update={"server": ServerSettings(port=0, metrics_port=0, dev_mode=False)})
    with pytest.raises(ConfigError, match="HOTFEED_SERVER_CURSOR_SECRET"):
        start_server(production, port=0)
    secret = production.model_copy(update={"server": ServerSettings(port=0, metrics_port=0, dev_mode=False,
                                                                   cursor_secret="a-long-random-secret-0123456789")})
    running = start_server(secret, port=0)
    running.stop(grace_s=0.1)
