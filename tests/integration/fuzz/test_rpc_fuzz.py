"""Random input against the real recommender and gateway: every answer is a result or a 4xx /
INVALID_ARGUMENT-class status, never INTERNAL, UNKNOWN or a 5xx (bounded example counts)."""

from __future__ import annotations

import json

import grpc
import pytest
from fastapi.testclient import TestClient
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc

_RUNS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
# Codes a caller can cause; INTERNAL and UNKNOWN mean hotfeed failed on the input.
_CALLER_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED,
                 grpc.StatusCode.RESOURCE_EXHAUSTED}

_text = st.one_of(st.sampled_from(["", "é", "abc.é", "\x00", "a.b", "x" * 600]), st.text(max_size=40),
                  st.text(min_size=100, max_size=700))
_valid = st.text(alphabet="abcdefghij0123456789-_", min_size=1, max_size=12)
_ids = st.one_of(st.just([]), st.lists(_valid, max_size=5), st.lists(_text, max_size=300))
# Mostly valid sizes, so the rest of the request gets checked too.
_size = st.one_of(st.integers(min_value=1, max_value=100), st.integers(min_value=0, max_value=2**32 - 1))


@pytest.fixture(scope="module")
def stub(service_stack):
    channel = grpc.insecure_channel(service_stack.target)
    yield pb_grpc.RecommenderStub(channel)
    channel.close()


def _call(method, request) -> None:
    try:
        method(request, timeout=30)
    except grpc.RpcError as exc:
        assert exc.code() in _CALLER_CODES, f"{exc.code()} for {request!r:.300}: {exc.details()}"


# One or two hostile fields per request, the others valid: each example then reaches the
# check (or the crash) of the field it attacks instead of stopping at the first bad one.
_HOSTILE = {
    "user_id": _text, "session_id": _text, "region": _text, "page_size": _size, "cursor": _text,
    "recent_item_ids": _ids, "excluded_categories": _ids, "preferred_categories": _ids, "profile": _text,
    "explain": st.booleans(), "item_id": _text,
}


def _request(message, valid: dict, fields: list[str]):
    @st.composite
    def build(draw):
        chosen = draw(st.lists(st.sampled_from(fields), min_size=1, max_size=2, unique=True))
        values = {**valid, **{name: draw(_HOSTILE[name]) for name in chosen}}
        return message(**values)

    return build()


_FEED = ["session_id", "region", "page_size", "cursor", "recent_item_ids", "excluded_categories",
         "preferred_categories", "profile", "explain"]


@_RUNS
@given(request=_request(pb.HomeFeedRequest, {"session_id": "fuzz", "page_size": 5}, ["user_id", *_FEED]))
def test_home_feed_never_fails_on_input(stub, request):
    _call(stub.HomeFeed, request)


@_RUNS
@given(request=_request(pb.ProductFeedRequest, {"user_id": "u-fuzz", "item_id": "i0000001", "page_size": 5},
                        ["user_id", "item_id", *_FEED]))
def test_product_feed_never_fails_on_input(stub, request):
    _call(stub.ProductFeed, request)


@_RUNS
@given(request=_request(pb.SimilarItemsRequest, {"item_id": "i0000001", "page_size": 5},
                        ["item_id", "page_size", "cursor", "region"]))
def test_similar_items_never_fail_on_input(stub, request):
    _call(stub.SimilarItems, request)


_event = st.builds(
    pb.Event,
    item_id=_text, user_id=_text, session_id=_text, platform=_text,
    type=st.integers(min_value=0, max_value=12),
    ts=st.builds(Timestamp, seconds=st.integers(min_value=-(2**40), max_value=2**40),
                 nanos=st.integers(min_value=0, max_value=2**31 - 1)),
)


@_RUNS
@given(events=st.lists(_event, max_size=40))
def test_record_events_never_fails_on_input(stub, events):
    _call(stub.RecordEvents, pb.RecordEventsRequest(events=events))


@_RUNS
@given(user_id=_text, gender=_text, age_band=_text, liked=_ids, disliked=_ids)
def test_preferences_never_fail_on_input(stub, user_id, gender, age_band, liked, disliked):
    prefs = pb.Preferences(gender=gender, age_band=age_band, liked_categories=liked, disliked_categories=disliked)
    _call(stub.SetPreferences, pb.SetPreferencesRequest(user_id=user_id, preferences=prefs))
    _call(stub.GetPreferences, pb.GetPreferencesRequest(user_id=user_id))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | _text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_text, inner, max_size=5),
    max_leaves=30,
)
_wire_event = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(["view", "like", "status", "teleport"]), _json), "item_id": _json},
    optional={"session_id": _json, "user_id": _json, "ts": _json, "platform": _json, "status": _json},
)


@pytest.fixture(scope="module")
def gateway(service_stack, grpc_server: str):
    from api.app import create_app
    from tests.integration.api.conftest import gateway_settings

    settings = gateway_settings(service_stack.settings, redis=service_stack.settings.redis, grpc_target=grpc_server)
    with TestClient(create_app(settings)) as client:
        yield client


@_RUNS
@given(body=st.one_of(st.lists(_wire_event, max_size=30), _json))
def test_the_events_endpoint_never_answers_5xx(gateway, body):
    # json.dumps, not the client's encoder: NaN and Infinity must reach the gateway as apps may send them.
    response = gateway.post("/v1/events", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code < 500, response.text


@_RUNS
@given(params=st.dictionaries(st.sampled_from(["session_id", "region", "page_size", "cursor", "explain",
                                               "recent_item_ids", "excluded_categories", "user_id"]),
                              _text, max_size=6))
def test_the_home_feed_endpoint_never_answers_5xx(gateway, params):
    response = gateway.get("/v1/feed/home", params=params)
    assert response.status_code < 500, response.text
