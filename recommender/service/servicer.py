"""The gRPC edge: proto messages <-> domain types, and our errors -> gRPC status codes.

No module below this one imports ``*_pb2``. Every RPC goes through ``_call``, which maps
the HotfeedError tree to status codes in one table and counts errors by code.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.errors import (
    ConfigError,
    EngineUnavailable,
    HotfeedError,
    InvalidRequest,
    NotFound,
    RateLimited,
    StoreUnavailable,
    Unauthenticated,
)
from recommender.events import MAX_ID_LENGTH, InteractionEvent, parse_event
from recommender.experiments import COUNTED_EVENTS
from recommender.redact import redact
from recommender.service import metrics
from recommender.service.feeds import FeedItem, FeedPage, FeedRequest, FeedService, Preview
from recommender.segments import DeclaredPreferences
from recommender.stores.events import EventStream
from recommender.stores.segments import RedisSegmentStore
from recommender.stores.sessions import SessionStore

__all__ = ["RecommenderServicer", "STATUS_OF", "TokenInterceptor"]

_log = logging.getLogger("hotfeed.rpc")

# Our error classes -> gRPC status codes (most specific first; InvalidRequest covers ProfileRejected).
STATUS_OF: tuple[tuple[type[HotfeedError], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (EngineUnavailable, grpc.StatusCode.UNAVAILABLE),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
    (ConfigError, grpc.StatusCode.FAILED_PRECONDITION),
    (HotfeedError, grpc.StatusCode.INTERNAL),
)

_EVENT_TYPE_NAMES = {
    pb.EVENT_TYPE_VIEW: "view",
    pb.EVENT_TYPE_CLICK: "click",
    pb.EVENT_TYPE_LIKE: "like",
    pb.EVENT_TYPE_CART: "cart",
    pb.EVENT_TYPE_CHAT: "chat",
    pb.EVENT_TYPE_PURCHASE: "purchase",
}
_UNAVAILABLE = {
    StoreUnavailable: "the session and event store is unavailable; retry shortly",
    EngineUnavailable: "the search engine is unavailable; retry shortly",
}
_SERVED_FROM = {"engine": pb.SERVED_FROM_ENGINE, "fallback": pb.SERVED_FROM_FALLBACK}


def _status_of(exc: HotfeedError) -> grpc.StatusCode:
    for cls, code in STATUS_OF:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` when a service token is set.

    Health checks and reflection stay open so load balancers and grpcurl work without it.
    """

    _OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")

    def __init__(self, token: str):
        self.token = token

        def deny(request: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "missing or wrong service token: send metadata 'authorization: Bearer <token>'")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation, handler_call_details):
        if not self.token or handler_call_details.method.startswith(self._OPEN):
            return continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        if metadata.get("authorization") == f"Bearer {self.token}":
            return continuation(handler_call_details)
        return self._deny


def _preview(request: Any) -> Preview | None:
    """Return the preview options of a feed request, None when it is not a preview (only
    HomeFeedRequest has the field)."""
    if "preview" not in request.DESCRIPTOR.fields_by_name or not request.HasField("preview"):
        return None
    return Preview(profile_version=request.preview.profile_version,
                   engine_deadline_ms=request.preview.engine_deadline_ms)


def _feed_request(kind: str, request: Any) -> FeedRequest:
    return FeedRequest(
        kind=kind,
        user_id=request.user_id if request.HasField("user_id") and request.user_id else None,
        session_id=request.session_id,
        recent_item_ids=tuple(request.recent_item_ids),
        region=request.region,
        page_size=request.page_size,
        cursor=request.cursor,
        excluded_categories=tuple(request.excluded_categories),
        preferred_categories=tuple(request.preferred_categories),
        profile=request.profile,
        explain=request.explain,
        item_id=getattr(request, "item_id", ""),
        preview=_preview(request),
    )


def _timestamp_of(value: Any) -> Timestamp | None:
    """Return a document time (epoch milliseconds, as the indexer writes them, or ISO-8601 text)
    as a Timestamp; None when it is neither."""
    ts = Timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ts.FromMilliseconds(int(value))
        return ts
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    ts.FromDatetime(parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc))
    return ts


def _details_message(details: dict[str, Any]) -> pb.ItemDetails:
    message = pb.ItemDetails(title=str(details.get("title", "")), category=str(details.get("category", "")))
    if isinstance(details.get("price"), (int, float)):
        message.price = float(details["price"])
    for name in ("created_at", "bumped_at"):
        ts = _timestamp_of(details[name]) if name in details else None
        if ts is not None:
            getattr(message, name).CopyFrom(ts)
    return message


def _item_message(item: FeedItem) -> pb.FeedItem:
    message = pb.FeedItem(item_id=item.item_id, score=item.score, component_scores=item.components)
    if item.details is not None:
        message.details.CopyFrom(_details_message(item.details))
    return message


def _feed_response(page: FeedPage) -> pb.FeedResponse:
    return pb.FeedResponse(
        items=[_item_message(i) for i in page.items],
        next_cursor=page.next_cursor,
        profile_version=page.profile_version,
        model_version=page.model_version,
        served_from=_SERVED_FROM[page.served_from],
        degradations=[pb.Degradation(stage=s, reason=r) for s, r in page.degradations],
        experiment=page.experiment,
    )


def _user_id(value: str) -> str:
    if not value or len(value) > MAX_ID_LENGTH:
        raise InvalidRequest(f"user_id {value[:40]!r} must be 1..{MAX_ID_LENGTH} characters")
    return value


def _preferences_message(prefs: DeclaredPreferences | None) -> pb.Preferences:
    if prefs is None:
        return pb.Preferences()
    return pb.Preferences(gender=prefs.gender or "", age_band=prefs.age_band or "",
                          liked_categories=list(prefs.liked_categories),
                          disliked_categories=list(prefs.disliked_categories))


def _listing_wire(listing: pb.Listing) -> dict[str, Any]:
    """Return the wire form (recommender/events.py) of a Listing message: only the fields it set."""
    wire: dict[str, Any] = {"type": "item", "item_id": listing.item_id}
    for name in ("title", "category", "price", "region", "seller_id", "status"):
        if listing.HasField(name):
            wire[name] = getattr(listing, name)
    for name in ("created_at", "bumped_at"):
        if listing.HasField(name):
            wire[name] = getattr(listing, name).ToDatetime(tzinfo=timezone.utc).isoformat()
    return wire


class RecommenderServicer(pb_grpc.RecommenderServicer):
    def __init__(self, feeds: FeedService, events: EventStream, sessions: SessionStore, *,
                 preferences: RedisSegmentStore, max_events: int):
        self.feeds = feeds
        self.events = events
        self.sessions = sessions
        self.preferences = preferences
        self.max_events = max_events

    def _call(self, rpc: str, context: grpc.ServicerContext, fn: Callable[[], Any]) -> Any:
        metadata = dict(context.invocation_metadata() or ())
        request_id = metadata.get("x-request-id") or uuid.uuid4().hex[:16]
        context.set_trailing_metadata((("x-request-id", request_id),))
        started = time.perf_counter()
        try:
            response = fn()
        except HotfeedError as exc:
            code = _status_of(exc)
            metrics.RPC_ERRORS.labels(rpc=rpc, code=code.name).inc()
            _log.info("rpc=%s request_id=%s status=%s error=%r", rpc, request_id, code.name, redact(exc))
            # A store or engine outage names the part, not where it lives or how to restart it.
            message = _UNAVAILABLE.get(type(exc), str(exc)) if code == grpc.StatusCode.UNAVAILABLE else str(exc)
            context.abort(code, message)
        except Exception:
            metrics.RPC_ERRORS.labels(rpc=rpc, code="INTERNAL").inc()
            _log.exception("rpc=%s request_id=%s status=INTERNAL", rpc, request_id)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {request_id}); see server logs")
        elapsed = time.perf_counter() - started
        metrics.RPC_SECONDS.labels(rpc=rpc).observe(elapsed)
        extra = ""
        if isinstance(response, pb.FeedResponse):
            extra = (f" items={len(response.items)} served_from={pb.ServedFrom.Name(response.served_from)}"
                     f" degradations={[d.stage for d in response.degradations]}")
        _log.info("rpc=%s request_id=%s status=OK ms=%.1f%s", rpc, request_id, elapsed * 1000, extra)
        return response

    def HomeFeed(self, request, context):
        return self._call("HomeFeed", context, lambda: _feed_response(self.feeds.feed(_feed_request("home", request))))

    def ProductFeed(self, request, context):
        return self._call(
            "ProductFeed", context, lambda: _feed_response(self.feeds.feed(_feed_request("product", request)))
        )

    def SimilarItems(self, request, context):
        return self._call(
            "SimilarItems", context, lambda: _feed_response(self.feeds.feed(_feed_request("similar", request)))
        )

    def GetPreferences(self, request, context):
        return self._call("GetPreferences", context, lambda: _preferences_message(
            self.preferences.declared_preferences(_user_id(request.user_id))))

    def SetPreferences(self, request, context):
        def set_() -> pb.Preferences:
            user = _user_id(request.user_id)
            p = request.preferences
            prefs = DeclaredPreferences(gender=p.gender or None, age_band=p.age_band or None,
                                        liked_categories=tuple(p.liked_categories),
                                        disliked_categories=tuple(p.disliked_categories))
            self.preferences.set_declared_preferences(user, prefs)
            return _preferences_message(prefs)

        return self._call("SetPreferences", context, set_)

    def RecordEvents(self, request, context):
        return self._call("RecordEvents", context, lambda: self._record(request))

    def _count_for_experiments(self, counted: list[tuple[str, str]]) -> None:
        """Count each (viewer, event type) to the viewer's variant in every running experiment;
        the counter keeps only those of viewers exposed to the experiment (served one of its pages).

        Counted here rather than in the indexer: this process already holds the running
        experiments (the profile cache), their assignment and the viewers it exposed, so counting
        is a hash and an in-memory add, flushed with the impressions; the indexer would need its
        own copy. Events written to the stream by other producers are therefore not counted.
        No Redis round trip: with Redis down the events are still accepted (they are in the
        stream already) and counted at the counter's next successful flush.
        """
        counts = self.feeds.experiment_counts
        if counts is None:
            return
        counts.add_events((experiment, version, viewer, event_type)
                          for viewer, event_type in counted
                          for experiment, version in self.feeds.profiles.variants_for_viewer(viewer))

    def _record(self, request: pb.RecordEventsRequest) -> pb.RecordEventsResponse:
        total = len(request.events) + len(request.listings)
        if total > self.max_events:
            raise InvalidRequest(f"{total} events and listings in one call; send at most {self.max_events} per call")
        now_s = time.time()
        accepted: list[dict[str, Any]] = []
        histories: dict[str, list[str]] = {}
        # (viewer, event type) of the events A/B experiments count.
        counted: list[tuple[str, str]] = []
        rejections = []
        for n, event in enumerate(request.events):
            try:
                ts = event.ts.ToDatetime(tzinfo=timezone.utc).isoformat() if event.HasField("ts") else None
            except (ValueError, OverflowError, OSError) as exc:
                rejections.append(pb.EventRejection(index=n, reason=f"event field 'ts' is not a valid time: {exc}"))
                continue
            wire = {
                "type": _EVENT_TYPE_NAMES.get(event.type, f"unknown({event.type})"),
                "item_id": event.item_id,
                "user_id": event.user_id or None,
                "session_id": event.session_id or None,
                "platform": event.platform or None,
                "ts": ts,
            }
            try:
                parsed = parse_event(wire, now_s=now_s)
            except InvalidRequest as exc:
                rejections.append(pb.EventRejection(index=n, reason=str(exc)))
                continue
            accepted.append({k: v for k, v in wire.items() if v is not None})
            if isinstance(parsed, InteractionEvent):
                for key in {parsed.session_id, parsed.user_id} - {None}:
                    histories.setdefault(key, []).append(parsed.item_id)
                if parsed.event_type in COUNTED_EVENTS:
                    counted.append((parsed.user_id or parsed.session_id or "", parsed.event_type))
        for n, listing in enumerate(request.listings, start=len(request.events)):
            try:
                wire = _listing_wire(listing)
                parse_event(wire, now_s=now_s)
            except (InvalidRequest, ValueError, OverflowError, OSError) as exc:
                rejections.append(pb.EventRejection(index=n, reason=str(exc)))
                continue
            accepted.append(wire)
        if accepted:
            self.events.append(accepted)
            for key, items in histories.items():
                self.sessions.append(key, items)
            self._count_for_experiments(counted)
        metrics.EVENTS.labels(outcome="accepted").inc(len(accepted))
        metrics.EVENTS.labels(outcome="rejected").inc(len(rejections))
        return pb.RecordEventsResponse(accepted=len(accepted), rejected=len(rejections), rejections=rejections)

