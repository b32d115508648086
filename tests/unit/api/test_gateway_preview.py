"""The preview's comparison at the gateway: sides from FeedResponses, rank changes, overlap and
when two pages are not a comparison (no network)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from api._preview import compare_sides, preview_call_timeout_s, side_json
from recommender._generated.hotfeed.v1 import recommender_pb2 as pb

NOW_S = 1_800_000_000.0


def _ts(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromSeconds(int(seconds))
    return ts


def _engine_page(ids: list[str], version: str = "a" * 16) -> pb.FeedResponse:
    return pb.FeedResponse(items=[pb.FeedItem(item_id=i, score=1.0 - n / 10, component_scores={"knn": 0.5})
                                  for n, i in enumerate(ids)],
                           profile_version=version, served_from=pb.SERVED_FROM_ENGINE)


def _fallback_page(ids: list[str], *, redis_down: bool = False) -> pb.FeedResponse:
    degradations = [pb.Degradation(stage="engine", reason="the search engine did not answer in time; served the "
                                                          "popular fallback")]
    if redis_down:
        degradations.append(pb.Degradation(stage="fallback", reason="Redis down too"))
    return pb.FeedResponse(items=[pb.FeedItem(item_id=i, score=0.5) for i in ids], profile_version="b" * 16,
                           served_from=pb.SERVED_FROM_FALLBACK, degradations=degradations)


def test_a_side_lists_ranks_details_and_age() -> None:
    page = _engine_page(["i1", "i2"])
    page.items[0].details.CopyFrom(pb.ItemDetails(title="Red bike", price=120.5, category="sport/bikes",
                                                  created_at=_ts(NOW_S - 7200), bumped_at=_ts(NOW_S - 3600)))
    side = side_json(page, now_s=NOW_S)
    assert (side["served_by"], side["fallback"], side["fallback_reason"]) == ("engine", False, None)
    first, second = side["items"]
    assert (first["rank"], first["item_id"], first["title"], first["price"], first["category"]) == (
        1, "i1", "Red bike", 120.5, "sport/bikes")
    assert first["age_h"] == 2.0 and first["created_at"].endswith("Z") and first["component_scores"] == {"knn": 0.5}
    # An item the recommender could not read: its id and scores, details None.
    assert (second["rank"], second["title"], second["price"], second["age_h"]) == (2, None, None, None)


def test_rank_changes_and_overlap_of_two_engine_pages() -> None:
    live = side_json(_engine_page(["a", "b", "c", "d"]), now_s=NOW_S)
    draft = side_json(_engine_page(["c", "a", "e", "b"]), now_s=NOW_S)
    result = compare_sides(live, draft, k=4)
    assert result == {"comparable": True, "reason": None,
                      "overlap": {"k": 4, "in_common": 3, "overlap_at_k": 0.75}}
    changes = {i["item_id"]: i["change"] for i in draft["items"]}
    assert changes == {"c": {"kind": "moved", "by": 2}, "a": {"kind": "moved", "by": -1},
                       "e": {"kind": "new", "by": None}, "b": {"kind": "moved", "by": -2}}
    assert {i["item_id"]: i["change"]["kind"] for i in live["items"]} == {
        "a": "moved", "b": "moved", "c": "moved", "d": "dropped"}
    same = side_json(_engine_page(["a", "x"]), now_s=NOW_S)
    compare_sides(same, side_json(_engine_page(["a", "y"]), now_s=NOW_S), k=2)
    assert same["items"][0]["change"] == {"kind": "same", "by": 0}


def test_two_fallbacks_are_never_a_comparison() -> None:
    live = side_json(_fallback_page(["p1", "p2"]), now_s=NOW_S)
    draft = side_json(_fallback_page(["p1", "p2"], redis_down=True), now_s=NOW_S)
    assert (live["served_by"], live["fallback"]) == ("popular fallback", True)
    assert "did not answer in time" in live["fallback_reason"]
    assert draft["served_by"] == "popular fallback (in-process copy; Redis was down too)"
    result = compare_sides(live, draft, k=2)
    assert result["comparable"] is False and result["overlap"] is None
    assert "both sides were served by the popular fallback" in result["reason"]
    assert all(i["change"] is None for i in live["items"] + draft["items"])


def test_one_fallback_side_is_named_and_not_compared() -> None:
    live = side_json(_engine_page(["a", "b"]), now_s=NOW_S)
    draft = side_json(_fallback_page(["a", "b"]), now_s=NOW_S)
    result = compare_sides(live, draft, k=2)
    assert result["comparable"] is False and result["overlap"] is None
    assert result["reason"].startswith("the draft side was served by the popular fallback")


def test_the_call_deadline_covers_slot_engine_and_details() -> None:
    assert preview_call_timeout_s(preview_deadline_ms=2000, call_deadline_ms=1000) == 7.0
