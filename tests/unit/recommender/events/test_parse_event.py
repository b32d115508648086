"""Wire events: what is accepted and the message for what is not."""

from __future__ import annotations

import pytest

from recommender.errors import InvalidRequest
from recommender.events import InteractionEvent, ItemEvent, StatusEvent, parse_event

NOW = 1_700_000_000.0


def test_an_interaction_without_time_gets_the_time_of_receipt():
    event = parse_event({"type": "view", "item_id": "i1", "session_id": "s1", "platform": " iOS "}, now_s=NOW)
    assert event == InteractionEvent(item_id="i1", event_type="view", ts=NOW, session_id="s1", platform="ios")


def test_iso_and_unix_times_are_accepted():
    iso = parse_event({"type": "like", "item_id": 7, "user_id": "u", "ts": "2023-11-14T22:13:20Z"}, now_s=NOW)
    unix = parse_event({"type": "like", "item_id": "7", "user_id": "u", "ts": NOW - 5}, now_s=NOW)
    assert (iso.ts, unix.ts, iso.item_id) == (NOW, NOW - 5, "7")


def test_a_status_event_is_parsed():
    assert parse_event({"type": "status", "item_id": "i1", "status": "sold"}, now_s=NOW) == StatusEvent("i1", "sold")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("text", "must be a JSON object"),
        ({"type": "view", "session_id": "s"}, "'item_id' is missing"),
        ({"type": "teleport", "item_id": "i", "session_id": "s"}, "'type' must be one of"),
        ({"type": "view", "item_id": "i"}, "needs a 'user_id' or a 'session_id'"),
        ({"type": "view", "item_id": ["i"], "session_id": "s"}, "must be a string id"),
        ({"type": "view", "item_id": "i", "session_id": "s", "ts": "yesterday"}, "not ISO-8601"),
        ({"type": "view", "item_id": "i", "session_id": "s", "ts": NOW + 3600}, "in the future"),
        ({"type": "status", "item_id": "i", "status": "gone"}, "'status' must be one of"),
        ({"type": "view", "item_id": "x" * 200, "session_id": "s"}, "1..128 characters"),
    ],
)
def test_bad_events_are_rejected_with_the_field_and_value(raw, message):
    with pytest.raises(InvalidRequest, match=message):
        parse_event(raw, now_s=NOW)


def test_files_and_wire_name_the_event_type_alike():
    wire = parse_event({"type": "click", "item_id": "i1", "user_id": "u"}, now_s=NOW)
    file = parse_event({"event_type": "click", "item_id": "i1", "user_id": "u"}, now_s=NOW)
    assert wire == file


def test_two_different_event_types_are_refused():
    with pytest.raises(InvalidRequest, match="'type' 'click' and 'event_type' 'view'"):
        parse_event({"type": "click", "event_type": "view", "item_id": "i1", "user_id": "u"}, now_s=NOW)


@pytest.mark.parametrize("ts", [float("nan"), float("inf"), float("-inf"), -1e300])
def test_non_finite_or_ancient_times_are_refused(ts):
    with pytest.raises(InvalidRequest, match="'ts'"):
        parse_event({"type": "view", "item_id": "i1", "user_id": "u", "ts": ts}, now_s=NOW)


def test_an_overlong_platform_is_refused_before_it_reaches_a_document_id():
    with pytest.raises(InvalidRequest, match="'platform'.*longer than 64"):
        parse_event({"type": "view", "item_id": "i1", "user_id": "u", "platform": "x" * 600}, now_s=NOW)


def test_an_item_event_carries_only_the_fields_it_sets_normalized():
    event = parse_event({"type": "item", "item_id": "L1", "title": "  Red   bike ", "category": "sports / bikes",
                         "price": 12, "region": "Seoul", "seller_id": 7, "created_at": NOW - 60}, now_s=NOW)
    assert isinstance(event, ItemEvent)
    assert event.changes() == {"title": "Red bike", "category": "sports/bikes", "price": 12.0, "region": "Seoul",
                               "seller_id": "7", "created_at": NOW - 60}
    edit = parse_event({"type": "item", "item_id": "L1", "bumped_at": "2023-01-01T00:00:00Z"}, now_s=NOW)
    assert edit.changes() == {"bumped_at": 1672531200.0}


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"type": "item", "item_id": "L", "title": "x", "colour": "red", "size": 3}, r"unknown field\(s\) \['colour', 'size'\]"),
        ({"type": "item", "item_id": "L"}, "changes nothing"),
        ({"type": "item", "item_id": "L", "price": -1}, "'price' must be a finite number"),
        ({"type": "item", "item_id": "L", "price": "12"}, "'price' must be a number"),
        ({"type": "item", "item_id": "L", "price": True}, "'price' must be a number"),
        ({"type": "item", "item_id": "L", "category": "a//b"}, "empty level"),
        ({"type": "item", "item_id": "L", "title": ""}, "'title' must be 1..300"),
        ({"type": "item", "item_id": "L", "title": 5}, "'title' must be text"),
        ({"type": "item", "item_id": "L", "status": "gone"}, "'status' must be one of"),
        ({"type": "item", "item_id": "L", "created_at": NOW + 3600}, "'created_at' .* in the future"),
        ({"type": "item", "item_id": "L", "created_at": NOW, "bumped_at": NOW - 10}, "before 'created_at'"),
        ({"type": "item", "title": "x"}, "'item_id' is missing"),
    ],
)
def test_bad_item_events_name_the_field(raw, message):
    with pytest.raises(InvalidRequest, match=message):
        parse_event(raw, now_s=NOW)
