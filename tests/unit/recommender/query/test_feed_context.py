"""FeedContext: one request's validated, frozen inputs to the query."""

from __future__ import annotations

import dataclasses

import pytest

from recommender.cohorts import COHORT_KINDS
from recommender.errors import InvalidRequest
from recommender.profiles import COHORT_TYPES
from recommender.query import COHORT_KIND_TYPES, MAX_PAGE_SIZE, FeedContext, SearchAfter, cohort_type


def test_lists_become_tuples_so_callers_can_reuse_them() -> None:
    seen = ["i1", "i2"]
    context = FeedContext(seen_item_ids=seen, query_vector=[1, 2])
    seen.append("i3")
    assert (context.seen_item_ids, context.query_vector) == (("i1", "i2"), (1.0, 2.0))


def test_context_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        FeedContext().region = "x"  # type: ignore[misc]


def test_duplicates_are_dropped_keeping_order() -> None:
    assert FeedContext(excluded_categories=["b", "a", "b"]).excluded_categories == ("b", "a")


@pytest.mark.parametrize(("cohort", "kind"), [("ga:m:25-34", "gender_age"), ("g:f", "gender"), ("age:55+", "age"),
                                              ("region:seoul", "region"), ("platform:ios", "platform"),
                                              ("cluster:7", "cluster"), ("all", "all")])
def test_cohort_type_follows_the_cohort_id(cohort: str, kind: str) -> None:
    assert cohort_type(cohort) == kind


def test_every_cohort_kind_maps_to_a_profile_cohort_type() -> None:
    assert set(COHORT_KIND_TYPES) == set(COHORT_KINDS)
    assert set(COHORT_KIND_TYPES.values()) <= set(COHORT_TYPES)


def test_malformed_cohort_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="cohort 'gender:f' is not a cohort id"):
        FeedContext(cohorts=["gender:f"])


@pytest.mark.parametrize("size", [0, MAX_PAGE_SIZE + 1, True, 2.0])
def test_page_size_out_of_range_is_rejected(size: object) -> None:
    with pytest.raises(InvalidRequest, match=rf"page_size {size!r} is outside 1..{MAX_PAGE_SIZE}"):
        FeedContext(page_size=size)  # type: ignore[arg-type]


def test_single_string_for_a_list_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="seen_item_ids 'i1' is one string; pass a list of strings"):
        FeedContext(seen_item_ids="i1")  # type: ignore[arg-type]


def test_empty_id_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="seen_item_ids holds ''; every entry must be a non-empty string"):
        FeedContext(seen_item_ids=["i1", ""])


def test_non_finite_query_vector_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="query_vector of 2 values is empty or has a non-finite value"):
        FeedContext(query_vector=[1.0, float("nan")])


def test_search_after_needs_a_finite_score_and_an_id() -> None:
    with pytest.raises(InvalidRequest, match="search_after score inf is not a finite number"):
        SearchAfter(float("inf"), "i1")
    with pytest.raises(InvalidRequest, match="search_after item_id '' is empty"):
        SearchAfter(1.0, "")
