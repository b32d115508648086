"""JSON <-> proto at the gateway edge, with no network."""

from __future__ import annotations

import pytest

from api._proto import FeedParams, events_request, feed_json, feed_request, record_events_json
from recommender._generated.hotfeed.v1 import recommender_pb2 as pb

NOW_S = 1_800_000_000.0


def test_feed_request_copies_every_common_field() -> None:
    params = FeedParams(
        user_id="u1", session_id="s1", recent_item_ids=("a", "b"), region="west", page_size=7, cursor="c",
        excluded_categories=("toys",), preferred_categories=("books",), profile="summer", explain=True,
    )
    request = feed_request(pb.ProductFeedRequest, params, item_id="i9")
    assert request == pb.ProductFeedRequest(
        user_id="u1", session_id="s1", recent_item_ids=["a", "b"], region="west", page_size=7, cursor="c",
        excluded_categories=["toys"], preferred_categories=["books"], profile="summer", explain=True, item_id="i9",
    )


def test_logged_out_viewer_leaves_user_id_unset() -> None:
    request = feed_request(pb.HomeFeedRequest, FeedParams(session_id="s1"))
    assert not request.HasField("user_id")


def _response() -> pb.FeedResponse:
    return pb.FeedResponse(
        items=[pb.FeedItem(item_id="a", score=2.5, component_scores={"knn": 1.0, "engine": 2.0})],
        next_cursor="next",
        profile_version="0123456789abcdef",
        model_version="m1",
        served_from=pb.SERVED_FROM_FALLBACK,
        degradations=[pb.Degradation(stage="engine", reason="timeout after 80 ms")],
        experiment="knn-weight",
    )


def test_feed_json_has_the_documented_shape() -> None:
    assert feed_json(_response(), explain=False) == {
        "items": [{"item_id": "a", "score": 2.5}],
        "next_cursor": "next",
        "profile_version": "0123456789abcdef",
        "model_version": "m1",
        "served_from": "fallback",
        "degradations": [{"stage": "engine", "reason": "timeout after 80 ms"}],
        "experiment": "knn-weight",
    }


def test_feed_json_explains_only_when_asked() -> None:
    assert feed_json(_response(), explain=True)["items"] == [
        {"item_id": "a", "score": 2.5, "component_scores": {"knn": 1.0, "engine": 2.0}}
    ]


@pytest.mark.parametrize(
    ("value", "name"),
    [(pb.SERVED_FROM_ENGINE, "engine"), (pb.SERVED_FROM_CACHE, "cache"), (pb.SERVED_FROM_UNSPECIFIED, "unspecified")],
)
def test_served_from_is_the_short_lower_case_name(value: int, name: str) -> None:
    assert feed_json(pb.FeedResponse(served_from=value), explain=False)["served_from"] == name


def test_events_request_forwards_good_events_and_rejects_the_rest_locally() -> None:
    raw = [
        {"type": "click", "item_id": "i1", "user_id": 42, "ts": NOW_S - 10, "platform": " Android "},
        {"type": "status", "item_id": "i1", "status": "sold"},
        "not an object",
        {"type": "view", "item_id": "i2", "session_id": "s1"},
    ]
    request, positions, rejections = events_request(raw, user_id="42", now_s=NOW_S)
    assert positions == [0, 3]
    first, second = request.events
    assert (first.item_id, first.user_id, first.type, first.platform) == ("i1", "42", pb.EVENT_TYPE_CLICK, "android")
    assert first.ts.seconds == int(NOW_S - 10)
    # No ts: the time of receipt.
    assert (second.session_id, second.type, second.ts.seconds) == ("s1", pb.EVENT_TYPE_VIEW, int(NOW_S))
    assert [r["index"] for r in rejections] == [1, 2]
    assert "status events are not accepted" in rejections[0]["reason"]
    assert "JSON object" in rejections[1]["reason"]


def test_record_events_json_points_server_rejections_into_the_callers_list() -> None:
    response = pb.RecordEventsResponse(accepted=1, rejected=1, rejections=[pb.EventRejection(index=1, reason="unknown item")])
    answer = record_events_json(response, positions=[0, 3], local_rejections=[{"index": 1, "reason": "status"}])
    assert answer == {
        "accepted": 1,
        "rejected": 2,
        "rejections": [{"index": 1, "reason": "status"}, {"index": 3, "reason": "unknown item"}],
    }


def test_an_event_for_another_user_is_rejected_and_a_missing_user_is_the_signed_in_one() -> None:
    raw = [
        {"type": "view", "item_id": "i1", "user_id": "mallory"},
        {"type": "view", "item_id": "i2"},
    ]
    request, positions, rejections = events_request(raw, user_id="alice", now_s=NOW_S)
    assert positions == [1] and request.events[0].user_id == "alice"
    assert rejections == [{"index": 0, "reason": "user_id must be the signed-in user of the token; leave it out"}]


def test_a_logged_out_caller_cannot_name_a_user() -> None:
    request, positions, rejections = events_request(
        [{"type": "view", "item_id": "i1", "user_id": "alice"}, {"type": "view", "item_id": "i1", "session_id": "s"}],
        now_s=NOW_S,
    )
    assert positions == [1] and request.events[0].user_id == ""
    assert "needs a signed-in user" in rejections[0]["reason"]
