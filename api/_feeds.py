"""Public endpoints for apps: home feed, product feed, similar items and events, all over gRPC."""

from __future__ import annotations

from collections.abc import Callable
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from api._identity import service_token_check, viewer_id
from api._limits import RateLimiter
from api._proto import (
    FeedParams,
    events_request,
    feed_json,
    feed_request,
    listings_request,
    preferences_json,
    preferences_message,
    record_events_json,
)
from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.errors import InvalidRequest, Unauthenticated
from recommender.events import MAX_ID_LENGTH
from recommender.settings import Settings

__all__ = ["MAX_EVENTS_BODY_BYTES", "feed_params", "call_metadata", "feeds_router"]

# About 1000 events of a few hundred bytes each, the recommender's default batch limit.
MAX_EVENTS_BODY_BYTES = 1024 * 1024
# 200 liked and 200 disliked category paths fit comfortably.
MAX_PREFERENCES_BODY_BYTES = 128 * 1024

_UINT32_MAX = 2**32 - 1
# What only the admin console's previews choose (api/_admin.py); the apps' feeds refuse them.
_PREVIEW_ONLY = ("profile", "profile_version", "version", "preview")
_IdParam = Annotated[str, Query(max_length=MAX_ID_LENGTH)]
_Categories = Annotated[list[str], Query(description="repeat the parameter for several category path prefixes")]


def feed_params(
    request: Request,
    user_id: Annotated[str | None, Depends(viewer_id)],
    session_id: _IdParam = "",
    region: Annotated[str, Query(max_length=64)] = "",
    page_size: Annotated[int | None, Query(ge=1, le=_UINT32_MAX, description="absent: settings.gateway.default_page_size")] = None,
    cursor: Annotated[str, Query(max_length=4096, description="next_cursor of the previous page")] = "",
    explain: bool = False,
    recent_item_ids: Annotated[list[str], Query(description="most recent first; absent: the session store's")] = [],
    excluded_categories: _Categories = [],
    preferred_categories: _Categories = [],
) -> FeedParams:
    """Return the common feed parameters of a query string (FastAPI dependency).

    The viewer is the user of the request's signed token (api/_identity.py); a ``user_id`` in
    the query is refused rather than ignored, so a client relying on it learns at once.
    """
    if "user_id" in request.query_params:
        raise InvalidRequest("user_id is not a query parameter: the viewer comes from the signed token "
                             "(Authorization: Bearer <token>); leave it out for a logged-out feed")
    chosen = [name for name in _PREVIEW_ONLY if name in request.query_params]
    if chosen:
        raise InvalidRequest(f"{chosen[0]} is not a query parameter of the apps' feeds: they always serve the live "
                             f"score profile; product managers preview other versions in the admin console")
    return FeedParams(
        user_id=user_id or None,
        session_id=session_id,
        recent_item_ids=tuple(recent_item_ids),
        region=region,
        page_size=page_size or request.app.state.settings.gateway.default_page_size,
        cursor=cursor,
        excluded_categories=tuple(excluded_categories),
        preferred_categories=tuple(preferred_categories),
        explain=explain,
    )


async def _read_body(request: Request, *, limit_bytes: int) -> bytes:
    """Return the request body, refusing (InvalidRequest) one longer than ``limit_bytes``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit_bytes:
        raise InvalidRequest(f"the body is {int(declared)} bytes; send at most {limit_bytes} bytes per call (split the batch)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise InvalidRequest(f"the body is over {limit_bytes} bytes; send at most {limit_bytes} bytes per call (split the batch)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_json_list(request: Request, *, path: str, what: str) -> list[Any]:
    """Return the request body, a JSON list of at most MAX_EVENTS_BODY_BYTES; InvalidRequest says what is wrong."""
    body = await _read_body(request, limit_bytes=MAX_EVENTS_BODY_BYTES)
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body of POST {path} is not JSON ({exc}); send a JSON list of {what}") from None
    if not isinstance(value, list):
        raise InvalidRequest(f"the body of POST {path} must be a JSON list of {what}, got a {type(value).__name__}; "
                             f"wrap a single one in [...]")
    return value


def call_metadata(request: Request, settings: Settings) -> list[tuple[str, str]]:
    """Return the gRPC metadata of a call made for ``request``: service token and request id."""
    metadata = [("x-request-id", request.state.request_id)]
    if settings.server.service_token:
        metadata.append(("authorization", f"Bearer {settings.server.service_token}"))
    return metadata


def feeds_router(stub: pb_grpc.RecommenderStub, settings: Settings) -> APIRouter:
    """Return the router of the public feed and event endpoints, calling ``stub``."""
    router = APIRouter(tags=["feeds"])
    timeout_s = settings.gateway.deadline_ms / 1000
    limiter = RateLimiter(settings.gateway.events_per_minute)

    def call(method: Callable[..., Any], message: Any, request: Request) -> Any:
        return method(message, timeout=timeout_s, metadata=call_metadata(request, settings))

    @router.get("/v1/feed/home")
    def home_feed(request: Request, params: Annotated[FeedParams, Depends(feed_params)]) -> dict[str, Any]:
        """Return one page of the home feed; pass ``next_cursor`` back as ``cursor`` for the next."""
        response = call(stub.HomeFeed, feed_request(pb.HomeFeedRequest, params), request)
        return feed_json(response, explain=params.explain)

    @router.get("/v1/feed/product")
    def product_feed(
        request: Request,
        params: Annotated[FeedParams, Depends(feed_params)],
        item_id: Annotated[str, Query(min_length=1, max_length=MAX_ID_LENGTH, description="the item shown")],
    ) -> dict[str, Any]:
        """Return one page of the item detail page feed (needs a user_id: 401 without one)."""
        response = call(stub.ProductFeed, feed_request(pb.ProductFeedRequest, params, item_id=item_id), request)
        return feed_json(response, explain=params.explain)

    @router.get("/v1/items/{item_id}/similar")
    def similar_items(
        request: Request,
        params: Annotated[FeedParams, Depends(feed_params)],
        item_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)],
    ) -> dict[str, Any]:
        """Return one page of the item's nearest neighbours (the item itself never among them)."""
        response = call(stub.SimilarItems, feed_request(pb.SimilarItemsRequest, params, item_id=item_id), request)
        return feed_json(response, explain=params.explain)

    def forward_events(events: list[Any], request: Request, user: str | None) -> dict[str, Any]:
        message, positions, local_rejections = events_request(events, user_id=user)
        if message.events:
            response = call(stub.RecordEvents, message, request)
        else:
            # Nothing valid to forward: answer without a round trip.
            response = pb.RecordEventsResponse()
        return record_events_json(response, positions=positions, local_rejections=local_rejections)

    def signed_in(user: str | None) -> str:
        if not user:
            raise Unauthenticated("preferences belong to a signed-in user: send 'Authorization: Bearer <token>'")
        return user

    @router.get("/v1/me/preferences")
    def get_preferences(request: Request, user: Annotated[str | None, Depends(viewer_id)]) -> dict[str, Any]:
        """Return what the signed-in user declared (gender, age band, liked and disliked categories)."""
        answer = call(stub.GetPreferences, pb.GetPreferencesRequest(user_id=signed_in(user)), request)
        return preferences_json(answer)

    @router.put("/v1/me/preferences")
    async def put_preferences(request: Request, user: Annotated[str | None, Depends(viewer_id)]) -> dict[str, Any]:
        """Replace the signed-in user's preferences; their next feed follows them (disliked categories never show)."""
        user = signed_in(user)
        body = await _read_body(request, limit_bytes=MAX_PREFERENCES_BODY_BYTES)
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"the body is not JSON ({exc}); send a JSON object of preferences") from None
        message = pb.SetPreferencesRequest(user_id=user, preferences=preferences_message(data))
        return preferences_json(await run_in_threadpool(call, stub.SetPreferences, message, request))

    @router.post("/v1/events")
    async def record_events(request: Request, user: Annotated[str | None, Depends(viewer_id)]) -> dict[str, Any]:
        """Return how many events were accepted, and why each rejected one was (index into the list).

        The body is a JSON list of wire events (recommender/events.py), at most
        MAX_EVENTS_BODY_BYTES; it is read here rather than by FastAPI so an oversized one is
        refused before it is held in memory.
        """
        events = await _read_json_list(request, path="/v1/events", what="events")
        caller = f"user:{user}" if user else f"addr:{request.client.host if request.client else 'unknown'}"
        limiter.take(caller, len(events))
        return await run_in_threadpool(forward_events, events, request, user)

    @router.post("/v1/items", dependencies=[Depends(service_token_check(settings, what="listing writes"))])
    async def record_listings(request: Request) -> dict[str, Any]:
        """Return how many listings were accepted, and why each rejected one was (index into the list).

        For the marketplace backend, with the service token: a JSON list of listings created or
        edited (item events of recommender/events.py, "type" optional). They reach feeds within
        seconds, through the event stream and the near-real-time indexer.
        """
        listings = await _read_json_list(request, path="/v1/items", what="listings")

        def forward() -> dict[str, Any]:
            message, positions, local_rejections = listings_request(listings)
            if message.listings:
                response = call(stub.RecordEvents, message, request)
            else:
                response = pb.RecordEventsResponse()
            return record_events_json(response, positions=positions, local_rejections=local_rejections)

        return await run_in_threadpool(forward)

    return router
