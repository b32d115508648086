"""Side-by-side previews of score profile versions for the admin console: one user's home feed
under the live version and under another stored version (a draft, usually), with each item's
title, price, category and age, rank changes, component scores and an overlap summary.

Both sides are HomeFeed calls with ``preview`` set (proto ``PreviewOptions``): the recommender
serves exactly the version asked, with the preview's own, longer engine deadline, assigns no
experiment, counts nothing and saves no page. A side served by a fallback says so and which
one; a comparison is only made when both sides were ranked by the engine (``comparable``).
"""

from __future__ import annotations

import time
from datetime import timezone
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from api._proto import FeedParams, feed_json, feed_request
from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc

__all__ = ["SAMPLE_USERS", "MAX_USERS", "preview_call_timeout_s", "side_json", "compare_sides", "preview_user"]

# Users previewed when the admin names none: a random few of the recently active.
SAMPLE_USERS = 5
# Users one preview may name: each costs two feeds on the serving recommender.
MAX_USERS = 20
# The degradation stages after which the popular fallback served the page (recommender/service/feeds.py).
_FALLBACK_CAUSES = ("engine", "overload")


def preview_call_timeout_s(*, preview_deadline_ms: int, call_deadline_ms: int) -> float:
    """Return the gRPC deadline of one preview call in seconds: the feed slot, the engine search
    and the item details may each take up to the preview deadline, the rest gets the usual one."""
    return (3 * preview_deadline_ms + call_deadline_ms) / 1000


def _iso(ts: Timestamp) -> str:
    return ts.ToDatetime(tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")


def _details_json(item: pb.FeedItem, *, now_s: float) -> dict[str, Any]:
    """Return title, price, category, created_at, bumped_at and age_h (hours since created) of an
    item; each is None when the recommender could not read it."""
    if not item.HasField("details"):
        return {"title": None, "price": None, "category": None, "created_at": None, "bumped_at": None, "age_h": None}
    d = item.details
    created = d.created_at if d.HasField("created_at") else None
    return {
        "title": d.title or None,
        "price": d.price if d.HasField("price") else None,
        "category": d.category or None,
        "created_at": _iso(created) if created is not None else None,
        "bumped_at": _iso(d.bumped_at) if d.HasField("bumped_at") else None,
        "age_h": round((now_s - created.ToMilliseconds() / 1000) / 3600, 1) if created is not None else None,
    }


def _served_by(page: dict[str, Any]) -> tuple[str, str | None]:
    """Return (what served a page, why it was not the engine or None): "engine", "popular
    fallback" or "popular fallback (in-process copy; Redis was down too)"."""
    if page["served_from"] != "fallback":
        return "engine", None
    stages = {d["stage"]: d["reason"] for d in page["degradations"]}
    kind = "popular fallback (in-process copy; Redis was down too)" if "fallback" in stages else "popular fallback"
    cause = next((stages[s] for s in _FALLBACK_CAUSES if s in stages), "the engine did not rank this page")
    return kind, cause


def side_json(response: pb.FeedResponse, *, now_s: float) -> dict[str, Any]:
    """Return one side of a preview: its profile version, what served it (``served_by``; with
    ``fallback_reason`` when not the engine), its degradations and its items in rank order
    (rank from 1, score, component scores, details; ``change`` is filled by ``compare_sides``)."""
    page = feed_json(response, explain=True)
    served_by, reason = _served_by(page)
    items = []
    for rank, (item, message) in enumerate(zip(page["items"], response.items), start=1):
        items.append({"rank": rank, **item, **_details_json(message, now_s=now_s), "change": None})
    return {
        "profile_version": page["profile_version"],
        "model_version": page["model_version"],
        "served_by": served_by,
        "fallback": served_by != "engine",
        "fallback_reason": reason,
        "degradations": page["degradations"],
        "items": items,
    }


def _change(live_rank: int | None, draft_rank: int | None) -> dict[str, Any]:
    """Return how an item moved from the live page to the draft page: ``kind`` new, dropped,
    moved or same, and ``by`` (live rank - draft rank: positive when the draft ranks it higher)."""
    if live_rank is None:
        return {"kind": "new", "by": None}
    if draft_rank is None:
        return {"kind": "dropped", "by": None}
    by = live_rank - draft_rank
    return {"kind": "same" if by == 0 else "moved", "by": by}


def compare_sides(live: dict[str, Any], draft: dict[str, Any], *, k: int) -> dict[str, Any]:
    """Return ``comparable``, ``reason`` and ``overlap`` of two sides (``side_json``), filling each
    item's ``change`` (``_change``) when they are comparable.

    Only two engine-ranked pages compare two profile versions: when either side was served by a
    fallback, ``comparable`` is False, ``reason`` says which side and why, and there is neither
    an overlap figure nor rank changes. ``overlap`` holds ``k`` (the page size asked),
    ``in_common`` and ``overlap_at_k`` (in_common / k).
    """
    fallbacks = [label for label, side in (("live", live), ("draft", draft)) if side["fallback"]]
    if fallbacks:
        which = "both sides were" if len(fallbacks) == 2 else f"the {fallbacks[0]} side was"
        reason = (f"{which} served by the popular fallback, not ranked by the profile, so the pages do not compare "
                  f"the two versions: retry, or raise HOTFEED_GATEWAY_PREVIEW_DEADLINE_MS")
        return {"comparable": False, "reason": reason, "overlap": None}
    live_ranks = {i["item_id"]: i["rank"] for i in live["items"]}
    draft_ranks = {i["item_id"]: i["rank"] for i in draft["items"]}
    for item in live["items"]:
        item["change"] = _change(item["rank"], draft_ranks.get(item["item_id"]))
    for item in draft["items"]:
        item["change"] = _change(live_ranks.get(item["item_id"]), item["rank"])
    in_common = len(live_ranks.keys() & draft_ranks.keys())
    return {"comparable": True, "reason": None,
            "overlap": {"k": k, "in_common": in_common, "overlap_at_k": round(in_common / k, 3)}}


def _request(params: FeedParams, *, version: str, deadline_ms: int) -> pb.HomeFeedRequest:
    request = feed_request(pb.HomeFeedRequest, params)
    request.explain = True  # a preview always shows the component scores
    request.preview.CopyFrom(pb.PreviewOptions(profile_version=version, engine_deadline_ms=deadline_ms))
    return request


def preview_user(
    stub: pb_grpc.RecommenderStub, params: FeedParams, *, live_version: str, draft_version: str, deadline_ms: int,
    timeout_s: float, metadata: list[tuple[str, str]],
) -> dict[str, Any]:
    """Return the preview of one user (``params.user_id``): ``live`` and ``draft`` sides
    (``side_json``) and their comparison (``compare_sides``). Both calls run at once; a
    grpc.RpcError of either propagates (the gateway maps it to an HTTP status)."""
    calls = {
        label: stub.HomeFeed.future(_request(params, version=version, deadline_ms=deadline_ms), timeout=timeout_s,
                                    metadata=metadata)
        for label, version in (("live", live_version), ("draft", draft_version))
    }
    try:
        responses = {label: call.result() for label, call in calls.items()}
    finally:
        for call in calls.values():
            call.cancel()
    now_s = time.time()
    live, draft = (side_json(responses[label], now_s=now_s) for label in ("live", "draft"))
    return {"user_id": params.user_id, "live": live, "draft": draft,
            **compare_sides(live, draft, k=params.page_size)}
