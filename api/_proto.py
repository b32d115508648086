"""JSON <-> proto at the gateway's edge: feed parameters to requests, responses and events to JSON."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender.errors import InvalidRequest
from recommender.events import InteractionEvent, ItemEvent, StatusEvent, parse_event

__all__ = [
    "FeedParams", "feed_request", "feed_json", "preferences_json", "preferences_message", "events_request",
    "record_events_json",
]

_SERVED_FROM_PREFIX = "SERVED_FROM_"


@dataclass(frozen=True)
class FeedParams:
    """The request part common to every feed call (proto fields 1-10)."""

    user_id: str | None = None
    session_id: str = ""
    recent_item_ids: tuple[str, ...] = ()
    region: str = ""
    page_size: int = 20
    cursor: str = ""
    excluded_categories: tuple[str, ...] = ()
    preferred_categories: tuple[str, ...] = ()
    profile: str = ""
    explain: bool = False


def feed_request(message_type: type, params: FeedParams, **extra: str) -> Any:
    """Return a ``message_type`` (HomeFeedRequest, ProductFeedRequest, ...) filled from ``params``."""
    request = message_type(
        session_id=params.session_id,
        recent_item_ids=list(params.recent_item_ids),
        region=params.region,
        page_size=params.page_size,
        cursor=params.cursor,
        excluded_categories=list(params.excluded_categories),
        preferred_categories=list(params.preferred_categories),
        profile=params.profile,
        explain=params.explain,
        **extra,
    )
    # An empty user id means logged out: leave the optional field unset rather than "".
    if params.user_id:
        request.user_id = params.user_id
    return request


def _served_from(value: int) -> str:
    name = pb.ServedFrom.Name(value) if value in pb.ServedFrom.values() else "SERVED_FROM_UNSPECIFIED"
    return name.removeprefix(_SERVED_FROM_PREFIX).lower()


def feed_json(response: pb.FeedResponse, *, explain: bool) -> dict[str, Any]:
    """Return the JSON body of a feed page; ``component_scores`` only when ``explain`` was asked."""
    items = []
    for item in response.items:
        entry: dict[str, Any] = {"item_id": item.item_id, "score": item.score}
        if explain:
            entry["component_scores"] = dict(item.component_scores)
        items.append(entry)
    return {
        "items": items,
        "next_cursor": response.next_cursor,
        "profile_version": response.profile_version,
        "model_version": response.model_version,
        "served_from": _served_from(response.served_from),
        "degradations": [{"stage": d.stage, "reason": d.reason} for d in response.degradations],
        # The A/B experiment whose variant (profile_version) served the page; "" for none.
        "experiment": response.experiment,
    }


def _event_message(event: InteractionEvent) -> pb.Event:
    return pb.Event(
        ts=_timestamp(event.ts),
        user_id=event.user_id or "",
        session_id=event.session_id or "",
        item_id=event.item_id,
        type=pb.EventType.Value(f"EVENT_TYPE_{event.event_type.upper()}"),
        platform=event.platform or "",
    )


def events_request(
    raw_events: list[Any], *, user_id: str | None = None, now_s: float | None = None
) -> tuple[pb.RecordEventsRequest, list[int], list[dict[str, Any]]]:
    """Return the RecordEvents request of the events that parse, their positions in ``raw_events``,
    and a rejection ``{"index", "reason"}`` for each one that does not.

    ``user_id`` is the signed-in viewer (None: logged out). An event's own ``user_id`` must be
    that user or absent (then it becomes that user); a logged-out caller sends none. Status
    events are rejected here: item status changes come from the marketplace backend through
    the event stream (`hotfeed events push`), never from apps.
    """
    now = time.time() if now_s is None else now_s
    messages: list[pb.Event] = []
    positions: list[int] = []
    rejections: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_events):
        claimed = raw.get("user_id") if isinstance(raw, dict) else None
        if claimed not in (None, "") and str(claimed) != user_id:
            rejections.append({"index": index, "reason": (
                "user_id must be the signed-in user of the token; leave it out" if user_id
                else "user_id needs a signed-in user (Authorization: Bearer <token>); logged-out events carry session_id only"
            )})
            continue
        if isinstance(raw, dict) and user_id:
            raw = {**raw, "user_id": user_id}
        try:
            event = parse_event(raw, now_s=now)
        except InvalidRequest as exc:
            rejections.append({"index": index, "reason": str(exc)})
            continue
        if isinstance(event, (StatusEvent, ItemEvent)):
            rejections.append({
                "index": index,
                "reason": f"{'status' if isinstance(event, StatusEvent) else 'item'} events are not accepted from "
                "apps; the marketplace backend sends listings and status changes to POST /v1/items with the "
                "service token",
            })
            continue
        messages.append(_event_message(event))
        positions.append(index)
    return pb.RecordEventsRequest(events=messages), positions, rejections


def _timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(round(seconds * 1e9)))
    return ts


def listings_request(
    raw_listings: list[Any], *, now_s: float | None = None
) -> tuple[pb.RecordEventsRequest, list[int], list[dict[str, Any]]]:
    """Return the RecordEvents request of the listings that parse (item events; "type" may be
    left out), their positions in ``raw_listings``, and a rejection for each one that does not."""
    now = time.time() if now_s is None else now_s
    messages: list[pb.Listing] = []
    positions: list[int] = []
    rejections: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_listings):
        if isinstance(raw, dict) and raw.get("type", "item") != "item":
            rejections.append({"index": index, "reason": f"a listing has 'type' 'item' or none, got {raw['type']!r}; "
                               "send interactions to POST /v1/events"})
            continue
        try:
            event = parse_event({**raw, "type": "item"} if isinstance(raw, dict) else raw, now_s=now)
        except InvalidRequest as exc:
            rejections.append({"index": index, "reason": str(exc)})
            continue
        fields = event.changes()
        for name in ("created_at", "bumped_at"):
            if name in fields:
                fields[name] = _timestamp(fields[name])
        messages.append(pb.Listing(item_id=event.item_id, **fields))
        positions.append(index)
    return pb.RecordEventsRequest(listings=messages), positions, rejections


def record_events_json(
    response: pb.RecordEventsResponse, *, positions: list[int], local_rejections: list[dict[str, Any]]
) -> dict[str, Any]:
    """Return ``{accepted, rejected, rejections}`` with every index pointing into the caller's list."""
    rejections = list(local_rejections)
    for rejection in response.rejections:
        index = positions[rejection.index] if rejection.index < len(positions) else rejection.index
        rejections.append({"index": index, "reason": rejection.reason})
    rejections.sort(key=lambda r: r["index"])
    return {"accepted": response.accepted, "rejected": len(rejections), "rejections": rejections}


_PREFERENCE_KEYS = ("gender", "age_band", "liked_categories", "disliked_categories")


def preferences_message(data: Any) -> pb.Preferences:
    """Return the Preferences message of a JSON object; InvalidRequest names a wrong key or type."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"preferences must be a JSON object with {list(_PREFERENCE_KEYS)}, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_PREFERENCE_KEYS))
    if unknown:
        raise InvalidRequest(f"unknown preference field(s) {unknown}; use {list(_PREFERENCE_KEYS)}")
    for key in ("gender", "age_band"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise InvalidRequest(f"preference {key!r} must be text or null, got {data[key]!r}")
    for key in ("liked_categories", "disliked_categories"):
        value = data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidRequest(f"preference {key!r} must be a list of category paths, got {value!r:.80}")
    return pb.Preferences(gender=data.get("gender") or "", age_band=data.get("age_band") or "",
                          liked_categories=data.get("liked_categories") or [],
                          disliked_categories=data.get("disliked_categories") or [])


def preferences_json(message: pb.Preferences) -> dict[str, Any]:
    """Return the JSON object of a Preferences message (null for what was not declared)."""
    return {
        "gender": message.gender or None,
        "age_band": message.age_band or None,
        "liked_categories": list(message.liked_categories),
        "disliked_categories": list(message.disliked_categories),
    }
