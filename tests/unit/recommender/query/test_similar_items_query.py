"""build_similar_items_query: kNN on one item's vector, that item excluded."""

from __future__ import annotations

from typing import Callable

import pytest

from recommender.errors import InvalidRequest
from recommender.profiles import ScoreProfile
from recommender.query import FeedContext, SearchAfter, build_similar_items_query

MakeProfile = Callable[..., ScoreProfile]
ACTIVE = {"terms": {"status": ["active"]}}


def test_similar_items_are_knn_neighbours_without_the_item(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "knn", "weight": 3.0, "k": 20, "num_candidates": 80}, candidates=40)
    body = build_similar_items_query(profile, FeedContext(), item_id="i7", item_vector=[0.6, 0.8])
    not_itself = [{"ids": {"values": ["i7"]}}]
    assert body == {
        "query": {
            "bool": {
                "filter": [ACTIVE],
                "must_not": not_itself,
                "must": [
                    {
                        "knn": {
                            "field": "embedding",
                            "query_vector": [0.6, 0.8],
                            "k": 20,
                            "num_candidates": 80,
                            "filter": [ACTIVE, {"bool": {"must_not": not_itself}}],
                        }
                    }
                ],
            }
        },
        "size": 40,
        "sort": [{"_score": "desc"}, {"item_id": "asc"}],
        "track_total_hits": False,
        "stored_fields": "_none_",
        "docvalue_fields": ["item_id", "category"],
    }


def test_similar_items_fall_back_to_default_knn_settings(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "exploration"})
    knn = build_similar_items_query(profile, FeedContext(), item_id="i7", item_vector=[1.0])["query"]["bool"]["must"][0]
    assert (knn["knn"]["k"], knn["knn"]["num_candidates"]) == (100, 400)


def test_similar_items_respect_exclusions_and_region(make_profile: MakeProfile) -> None:
    context = FeedContext(region="busan", excluded_categories=["toys"], seen_item_ids=["i1"])
    query = build_similar_items_query(make_profile({"type": "knn"}), context, item_id="i7", item_vector=[1.0])["query"]
    assert query["bool"]["filter"] == [ACTIVE, {"term": {"region": "busan"}}]
    assert query["bool"]["must_not"] == [{"terms": {"category_levels": ["toys"]}}, {"ids": {"values": ["i7", "i1"]}}]


def test_similar_items_scroll_with_search_after(make_profile: MakeProfile) -> None:
    context = FeedContext(search_after=SearchAfter(0.91, "i3"))
    body = build_similar_items_query(make_profile({"type": "knn"}), context, item_id="i7", item_vector=[1.0])
    assert body["search_after"] == [0.91, "i3"]


@pytest.mark.parametrize("vector", [[], [float("nan")], [1.0, float("inf")]])
def test_similar_items_reject_an_unusable_vector(make_profile: MakeProfile, vector: list[float]) -> None:
    with pytest.raises(InvalidRequest, match=r"vector of item 'i7' \(\d values\) is empty or non-finite; reindex the item"):
        build_similar_items_query(make_profile({"type": "knn"}), FeedContext(), item_id="i7", item_vector=vector)


def test_similar_items_need_an_item_id(make_profile: MakeProfile) -> None:
    with pytest.raises(InvalidRequest, match="item_id '' is empty"):
        build_similar_items_query(make_profile({"type": "knn"}), FeedContext(), item_id="", item_vector=[1.0])
