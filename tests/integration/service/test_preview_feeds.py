"""Preview home feeds (HomeFeedRequest.preview) on the real gRPC recommender of ``service_stack``:
a stored draft served by version, item details, no saved page, and the refusals."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import grpc
import pytest

from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.profiles import read_item_fields
from recommender.service.cursors import decode_cursor
from recommender.stores import open_redis
from recommender.stores.feed_pages import FeedState
from recommender.stores.profiles import ProfileStore


@pytest.fixture(scope="module")
def stub(service_stack) -> Iterator[pb_grpc.RecommenderStub]:
    channel = grpc.insecure_channel(service_stack.target)
    yield pb_grpc.RecommenderStub(channel)
    channel.close()


@pytest.fixture
def draft(service_stack) -> Iterator[tuple[str, str]]:
    """A profile that exists only as a draft (never published): ``(name, version)``."""
    settings = service_stack.settings
    store = ProfileStore(settings.redis, fields=read_item_fields(settings.paths.mappings_dir))
    name = f"pv-draft-{uuid.uuid4().hex[:6]}"
    text = store.active("default").text.replace("name: default", f"name: {name}")
    stored = store.save_draft(name, text, author="test")
    yield name, stored.version
    store.delete(name)
    store.client.close()


def _preview(name: str, version: str, *, deadline_ms: int = 0) -> pb.HomeFeedRequest:
    return pb.HomeFeedRequest(profile=name, page_size=5,
                              preview=pb.PreviewOptions(profile_version=version, engine_deadline_ms=deadline_ms))


def _saved_profiles(redis, prefix: str) -> set[str]:
    """Return the profile names of every saved feed (page state) under ``prefix``."""
    return {FeedState.decode(raw).profile_name for key in redis.scan_iter(match=f"{prefix}feed:*", count=1000)
            if (raw := redis.get(key)) is not None}


def test_a_never_published_draft_is_served_by_version_with_item_details(stub, service_stack, draft) -> None:
    name, version = draft
    prefix = service_stack.settings.redis.key_prefix
    # Not live: an ordinary feed does not know the profile.
    with pytest.raises(grpc.RpcError) as info:
        stub.HomeFeed(pb.HomeFeedRequest(profile=name, page_size=5), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    page = stub.HomeFeed(_preview(name, version, deadline_ms=3000), timeout=20)
    assert page.profile_version == version and page.served_from == pb.SERVED_FROM_ENGINE
    assert page.experiment == "" and page.next_cursor == ""
    items = service_stack.market.items.set_index("item_id")
    assert len(page.items) == 5
    for item in page.items:
        assert item.details.title == items.loc[item.item_id, "title"]
        assert item.details.price == pytest.approx(float(items.loc[item.item_id, "price"]))
        assert item.details.HasField("created_at") and item.details.category
    # A preview keeps no page state: once an ordinary page saved after it is in Redis (the
    # writer saves in order), no saved feed is of the draft's profile.
    ordinary = stub.HomeFeed(pb.HomeFeedRequest(session_id=f"pv-after-{name}", page_size=5), timeout=10)
    assert ordinary.next_cursor
    cursor = decode_cursor(ordinary.next_cursor, secret=service_stack.settings.server.cursor_secret)
    saved_key = f"{prefix}feed:{cursor.feed_id}"
    redis = open_redis(service_stack.settings.redis, decode_responses=False)
    try:
        deadline = time.monotonic() + 30
        while not redis.exists(saved_key):
            assert time.monotonic() < deadline, "the ordinary page was never saved"
            time.sleep(0.05)
        assert name not in _saved_profiles(redis, prefix)
    finally:
        redis.close()


def test_preview_refusals_say_what_is_wrong(stub, service_stack, draft) -> None:
    name, _ = draft
    with pytest.raises(grpc.RpcError) as unknown:
        stub.HomeFeed(_preview(name, "0123456789abcdef"), timeout=10)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert f"{name!r} has no stored version '0123456789abcdef'" in unknown.value.details()
    cap = service_stack.settings.engine.timeout_ms
    with pytest.raises(grpc.RpcError) as too_long:
        stub.HomeFeed(_preview(name, "", deadline_ms=cap + 1), timeout=10)
    assert too_long.value.code() == grpc.StatusCode.INVALID_ARGUMENT and f"0..{cap} ms" in too_long.value.details()
    with pytest.raises(grpc.RpcError) as cursor:
        stub.HomeFeed(pb.HomeFeedRequest(page_size=5, cursor="abc", preview=pb.PreviewOptions()), timeout=10)
    assert cursor.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "without a cursor" in cursor.value.details()


def test_a_deleted_profile_is_no_longer_previewable_once_the_recommender_reloads(stub, service_stack, draft) -> None:
    name, version = draft
    assert stub.HomeFeed(_preview(name, version, deadline_ms=3000), timeout=20).profile_version == version  # cached now
    settings = service_stack.settings
    store = ProfileStore(settings.redis, fields=read_item_fields(settings.paths.mappings_dir))
    try:
        assert store.delete(name, actor="test", comment="gone")
    finally:
        store.client.close()
    deadline = time.monotonic() + 30  # the recommender's profile poll
    while True:
        try:
            stub.HomeFeed(_preview(name, version, deadline_ms=3000), timeout=20)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND and version in exc.details()
            break
        assert time.monotonic() < deadline, "a deleted profile's version was still served 30 s after the delete"
        time.sleep(0.2)
