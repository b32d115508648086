"""build_feed_query: each behaviour of the feed search body, compared with literal dicts."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest

from recommender.errors import InvalidRequest
from recommender.profiles import ItemFields, ScoreProfile, load_default_profile
from recommender.query import FeedContext, SearchAfter, build_feed_query, read_component_scores
from recommender.query import _fields as F

NOW = datetime(2026, 11, 22, 15, 0, tzinfo=timezone.utc)
NOW_TEXT = "2026-11-22T15:00:00.000Z"
ACTIVE = {"terms": {"status": ["active"]}}
DECAY = {"type": "freshness_decay", "field": "bumped_at", "scale_h": 24}
DECAY_FUNCTION = {"gauss": {"bumped_at": {"origin": NOW_TEXT, "scale": "1d", "decay": 0.5}}, "weight": 1.0}

MakeProfile = Callable[..., ScoreProfile]


def _bool(body: dict[str, Any]) -> dict[str, Any]:
    query = body["query"]
    return query["function_score"]["query"]["bool"] if "function_score" in query else query["bool"]


def _functions(body: dict[str, Any]) -> list[dict[str, Any]]:
    return body["query"]["function_score"]["functions"]


def test_one_decay_profile_builds_the_whole_body(make_profile: MakeProfile) -> None:
    body = build_feed_query(make_profile(DECAY), FeedContext(), now=NOW)
    assert body == {
        "query": {
            "function_score": {
                "query": {"bool": {"filter": [ACTIVE]}},
                "functions": [DECAY_FUNCTION],
                "score_mode": "sum",
                "boost_mode": "sum",
            }
        },
        "size": 200,
        "sort": [{"_score": "desc"}, {"item_id": "asc"}],
        "track_total_hits": False,
        "stored_fields": "_none_",
        "docvalue_fields": ["item_id", "category"],
    }


def test_sold_items_never_match(make_profile: MakeProfile) -> None:
    body = build_feed_query(make_profile(DECAY), FeedContext(), now=NOW)
    assert _bool(body)["filter"][0] == {"terms": {"status": ["active"]}}


def test_profile_statuses_replace_the_default(make_profile: MakeProfile) -> None:
    profile = make_profile(DECAY, filters={"statuses": ["active", "reserved"]})
    assert _bool(build_feed_query(profile, FeedContext(), now=NOW))["filter"] == [
        {"terms": {"status": ["active", "reserved"]}}
    ]


def test_exact_region_scope_keeps_the_request_region(make_profile: MakeProfile) -> None:
    body = build_feed_query(make_profile(DECAY), FeedContext(region="seoul"), now=NOW)
    assert _bool(body)["filter"] == [ACTIVE, {"term": {"region": "seoul"}}]


def test_any_region_scope_has_no_region_filter(make_profile: MakeProfile) -> None:
    profile = make_profile(DECAY, filters={"region_scope": "any"})
    assert _bool(build_feed_query(profile, FeedContext(region="seoul"), now=NOW))["filter"] == [ACTIVE]


def test_request_without_region_has_no_region_filter(make_profile: MakeProfile) -> None:
    assert _bool(build_feed_query(make_profile(DECAY), FeedContext(region=""), now=NOW))["filter"] == [ACTIVE]


def test_price_range_filters_items(make_profile: MakeProfile) -> None:
    profile = make_profile(DECAY, filters={"price_min": 10.0, "price_max": 500.0})
    assert _bool(build_feed_query(profile, FeedContext(), now=NOW))["filter"] == [
        ACTIVE,
        {"range": {"price": {"gte": 10.0, "lte": 500.0}}},
    ]


def test_open_price_range_has_one_bound(make_profile: MakeProfile) -> None:
    profile = make_profile(DECAY, filters={"price_max": 50.0})
    assert _bool(build_feed_query(profile, FeedContext(), now=NOW))["filter"][1] == {"range": {"price": {"lte": 50.0}}}


def test_disliked_categories_are_excluded(make_profile: MakeProfile) -> None:
    context = FeedContext(excluded_categories=["fashion", "toys"], disliked_categories=["toys", "books/comics"])
    assert _bool(build_feed_query(make_profile(DECAY), context, now=NOW))["must_not"] == [
        {"terms": {"category_levels": ["fashion", "toys", "books/comics"]}}
    ]


def test_seen_items_are_excluded_by_id(make_profile: MakeProfile) -> None:
    context = FeedContext(seen_item_ids=["i1", "i2", "i1"])
    assert _bool(build_feed_query(make_profile(DECAY), context, now=NOW))["must_not"] == [
        {"ids": {"values": ["i1", "i2"]}}
    ]


def test_nothing_excluded_means_no_must_not(make_profile: MakeProfile) -> None:
    assert "must_not" not in _bool(build_feed_query(make_profile(DECAY), FeedContext(), now=NOW))


def test_cohort_weights_apply_per_cohort_type(make_profile: MakeProfile) -> None:
    profile = make_profile(
        {
            "type": "cohort_popularity",
            "weight": 2.0,
            "cohort_weights": {"gender_age": 1.5, "region": 0.8, "all": 0.1},
        }
    )
    context = FeedContext(cohorts=["ga:f:25-34", "region:seoul", "all"])
    assert _bool(build_feed_query(profile, context, now=NOW))["should"] == [
        {
            "has_child": {
                "type": "popularity",
                "score_mode": "sum",
                "query": {
                    "function_score": {
                        "query": {"terms": {"cohort": ["ga:f:25-34", "region:seoul", "all"]}},
                        "functions": [
                            {
                                "filter": {"terms": {"cohort": ["ga:f:25-34"]}},
                                "field_value_factor": {"field": "score", "missing": 0},
                                "weight": 1.5,
                            },
                            {
                                "filter": {"terms": {"cohort": ["region:seoul"]}},
                                "field_value_factor": {"field": "score", "missing": 0},
                                "weight": 0.8,
                            },
                            {
                                "filter": {"terms": {"cohort": ["all"]}},
                                "field_value_factor": {"field": "score", "missing": 0},
                                "weight": 0.1,
                            },
                        ],
                        "score_mode": "sum",
                        "boost_mode": "replace",
                    }
                },
                "boost": 2.0,
            }
        }
    ]


def _child_functions(body: dict[str, Any]) -> list[dict[str, Any]]:
    return _bool(body)["should"][0]["has_child"]["query"]["function_score"]["functions"]


def test_cohorts_of_one_type_share_one_function(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "cohort_popularity", "cohort_weights": {"cluster": 1.2}})
    body = build_feed_query(profile, FeedContext(cohorts=["cluster:3", "cluster:7"]), now=NOW)
    assert [f["filter"] for f in _child_functions(body)] == [{"terms": {"cohort": ["cluster:3", "cluster:7"]}}]


def test_zero_weight_cohort_type_is_left_out(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "cohort_popularity", "cohort_weights": {"platform": 0.0}})
    body = build_feed_query(profile, FeedContext(cohorts=["platform:ios", "all"]), now=NOW)
    child = _bool(body)["should"][0]["has_child"]["query"]["function_score"]
    assert child["query"] == {"terms": {"cohort": ["all"]}}
    assert [f["filter"] for f in child["functions"]] == [{"terms": {"cohort": ["all"]}}]


def test_viewer_without_weighted_cohorts_gets_no_popularity_clause(make_profile: MakeProfile) -> None:
    profile = make_profile(DECAY, {"type": "cohort_popularity", "cohort_weights": {"all": 0.0}})
    assert "should" not in _bool(build_feed_query(profile, FeedContext(cohorts=["all"]), now=NOW))


def test_score_mode_max_keeps_only_the_best_cohort(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "cohort_popularity", "score_mode": "max"})
    assert _bool(build_feed_query(profile, FeedContext(), now=NOW))["should"][0]["has_child"]["score_mode"] == "max"


def test_knn_clause_is_boosted_and_prefiltered_like_the_feed(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "knn", "weight": 2.5, "k": 50, "num_candidates": 200})
    context = FeedContext(query_vector=[0.5, -0.5], region="seoul", seen_item_ids=["i1"])
    assert _bool(build_feed_query(profile, context, now=NOW))["should"] == [
        {
            "knn": {
                "field": "embedding",
                "query_vector": [0.5, -0.5],
                "k": 50,
                "num_candidates": 200,
                "filter": [
                    ACTIVE,
                    {"term": {"region": "seoul"}},
                    {"bool": {"must_not": [{"ids": {"values": ["i1"]}}]}},
                ],
                "boost": 2.5,
            }
        }
    ]


def test_knn_is_skipped_without_a_query_vector(make_profile: MakeProfile) -> None:
    body = build_feed_query(make_profile({"type": "knn"}), FeedContext(query_vector=None), now=NOW)
    assert body["query"] == {"bool": {"filter": [ACTIVE]}}


def test_freshness_decay_is_centred_on_now(make_profile: MakeProfile) -> None:
    profile = make_profile(
        {"type": "freshness_decay", "field": "created_at", "function": "exp", "scale_h": 336, "offset_h": 6,
         "decay": 0.3, "weight": 0.4}
    )
    later = datetime(2026, 11, 23, 1, 30, tzinfo=timezone(timedelta(hours=9)))
    assert _functions(build_feed_query(profile, FeedContext(), now=later)) == [
        {"exp": {"created_at": {"origin": "2026-11-22T16:30:00.000Z", "scale": "14d", "offset": "6h", "decay": 0.3}},
         "weight": 0.4}
    ]


def test_fractional_hours_render_as_whole_units(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "freshness_decay", "scale_h": 1.5, "offset_h": 0.25})
    params = _functions(build_feed_query(profile, FeedContext(), now=NOW))[0]["gauss"]["bumped_at"]
    assert (params["scale"], params["offset"]) == ("90m", "15m")


def test_each_date_field_gets_its_own_decay(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "freshness_decay", "field": "bumped_at"}, {"type": "freshness_decay", "field": "created_at"})
    assert [list(f["gauss"]) for f in _functions(build_feed_query(profile, FeedContext(), now=NOW))] == [
        ["bumped_at"],
        ["created_at"],
    ]


def test_engagement_factors_multiply_weights(make_profile: MakeProfile) -> None:
    profile = make_profile(
        {"type": "engagement", "weight": 0.5, "factors": [
            {"field": "likes", "factor": 2.0, "modifier": "sqrt", "weight": 3.0},
            {"field": "chats"},
        ]}
    )
    assert _functions(build_feed_query(profile, FeedContext(), now=NOW)) == [
        {"field_value_factor": {"field": "likes", "factor": 2.0, "modifier": "sqrt", "missing": 0}, "weight": 1.5},
        {"field_value_factor": {"field": "chats", "factor": 1.0, "modifier": "log1p", "missing": 0}, "weight": 0.5},
    ]


def test_category_boosts_match_every_level_of_the_path(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "category_boost", "weight": 2.0, "boosts": {"electronics": 0.5, "books/comics": 1.0}})
    assert build_feed_query(profile, FeedContext(), now=NOW)["query"] == {
        "bool": {
            "filter": [ACTIVE],
            "should": [
                {"constant_score": {"filter": {"term": {"category_levels": "electronics"}}, "boost": 1.0}},
                {"constant_score": {"filter": {"term": {"category_levels": "books/comics"}}, "boost": 2.0}},
            ],
        }
    }


def test_preferred_categories_get_the_preferred_boost(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "category_boost", "weight": 2.0, "preferred": 0.25})
    context = FeedContext(preferred_categories=["garden", "sports/bikes"])
    assert _bool(build_feed_query(profile, context, now=NOW))["should"] == [
        {"constant_score": {"filter": {"terms": {"category_levels": ["garden", "sports/bikes"]}}, "boost": 0.5}}
    ]


def test_category_boost_without_boosts_or_preferences_adds_nothing(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "category_boost"})
    assert build_feed_query(profile, FeedContext(), now=NOW)["query"] == {"bool": {"filter": [ACTIVE]}}


def test_exploration_without_salt_uses_the_profile_seed(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "exploration", "weight": 0.1, "seed": 42})
    assert _functions(build_feed_query(profile, FeedContext(), now=NOW)) == [
        {"random_score": {"seed": 42, "field": "_seq_no"}, "weight": 0.1}
    ]


def test_exploration_is_seeded_per_session_and_stable(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "exploration", "seed": 42})

    def seed(salt: str) -> int:
        return _functions(build_feed_query(profile, FeedContext(exploration_salt=salt), now=NOW))[0]["random_score"]["seed"]

    # The first 4 bytes of sha256("<seed>:<salt>") mod 2**31: the same on every server and run.
    expected = int.from_bytes(hashlib.sha256(b"42:session-a").digest()[:4], "big") % 2**31
    assert seed("session-a") == seed("session-a") == expected
    assert seed("session-b") != seed("session-a")


def test_zero_weight_component_is_switched_off(make_profile: MakeProfile) -> None:
    profile = make_profile(DECAY, {"type": "knn", "weight": 0.0})
    body = build_feed_query(profile, FeedContext(query_vector=[1.0, 0.0]), now=NOW)
    assert "should" not in _bool(body)


def test_components_add_up_in_profile_order(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "exploration", "seed": 1}, DECAY)
    assert [next(iter(f)) for f in _functions(build_feed_query(profile, FeedContext(), now=NOW))] == [
        "random_score",
        "gauss",
    ]


def test_search_after_continues_from_the_last_served_hit(make_profile: MakeProfile) -> None:
    context = FeedContext(search_after=SearchAfter(score=3.25, item_id="i42"))
    body = build_feed_query(make_profile(DECAY), context, now=NOW)
    assert (body["sort"], body["search_after"]) == ([{"_score": "desc"}, {"item_id": "asc"}], [3.25, "i42"])


def test_first_page_has_no_search_after(make_profile: MakeProfile) -> None:
    assert "search_after" not in build_feed_query(make_profile(DECAY), FeedContext(), now=NOW)


def test_explain_names_each_component_share(make_profile: MakeProfile) -> None:
    profile = make_profile(
        {"type": "knn", "weight": 2.0, "k": 10, "num_candidates": 10},
        DECAY,
        {"type": "exploration", "weight": 0.1, "seed": 3},
        {"type": "category_boost", "boosts": {"toys": 1.0}},
    )
    body = build_feed_query(profile, FeedContext(query_vector=[1.0], explain=True), now=NOW)
    knn = {"knn": {"field": "embedding", "query_vector": [1.0], "k": 10, "num_candidates": 10, "filter": [ACTIVE], "boost": 2.0}}

    def functions(*fs: dict[str, Any]) -> dict[str, Any]:
        return {"function_score": {"query": {"match_all": {}}, "functions": list(fs), "score_mode": "sum", "boost_mode": "replace"}}

    assert body["query"] == {
        "bool": {
            "filter": [ACTIVE],
            "should": [
                {"bool": {"should": [knn], "_name": "knn"}},
                {"bool": {"should": [functions(DECAY_FUNCTION)], "_name": "freshness_bumped_at"}},
                {"bool": {"should": [functions({"random_score": {"seed": 3, "field": "_seq_no"}, "weight": 0.1})],
                          "_name": "exploration"}},
                {"bool": {"should": [{"constant_score": {"filter": {"term": {"category_levels": "toys"}}, "boost": 1.0}}],
                          "_name": "category_boost"}},
            ],
        }
    }


def test_explain_leaves_out_components_with_nothing_to_add(make_profile: MakeProfile) -> None:
    profile = make_profile(DECAY, {"type": "knn"})
    should = _bool(build_feed_query(profile, FeedContext(query_vector=None, explain=True), now=NOW))["should"]
    assert [c["bool"]["_name"] for c in should] == ["freshness_bumped_at"]


def test_component_scores_come_from_matched_queries(make_profile: MakeProfile) -> None:
    profile = make_profile(DECAY, {"type": "knn"}, {"type": "exploration", "weight": 0.0})
    scores = read_component_scores(profile, {"freshness_bumped_at": 0.75, "unrelated": 9.0})
    assert scores == {"freshness_bumped_at": 0.75, "knn": 0.0}


def test_component_scores_of_a_hit_without_matches_are_zero(make_profile: MakeProfile) -> None:
    assert read_component_scores(make_profile(DECAY), None) == {"freshness_bumped_at": 0.0}


def test_size_is_the_candidates_but_at_least_a_page(make_profile: MakeProfile) -> None:
    assert build_feed_query(make_profile(DECAY, candidates=50), FeedContext(page_size=20), now=NOW)["size"] == 50
    assert build_feed_query(make_profile(DECAY, candidates=10), FeedContext(page_size=20), now=NOW)["size"] == 20


def test_naive_now_is_rejected(make_profile: MakeProfile) -> None:
    with pytest.raises(InvalidRequest, match=r"now datetime\.datetime\(2026, 11, 22, 15, 0\) has no timezone"):
        build_feed_query(make_profile({"type": "knn"}), FeedContext(), now=datetime(2026, 11, 22, 15, 0))


def test_building_never_mutates_its_inputs(item_fields: ItemFields) -> None:
    profile = load_default_profile(fields=item_fields)
    context = FeedContext(cohorts=["g:f", "all"], query_vector=[0.1, 0.2], seen_item_ids=["i1"], preferred_categories=["a"])
    before = (copy.deepcopy(profile.model_dump()), copy.deepcopy(context))
    first = build_feed_query(profile, context, now=NOW)
    first["query"]["function_score"]["functions"].clear()
    assert (profile.model_dump(), context) == before
    assert build_feed_query(profile, context, now=NOW)["query"]["function_score"]["functions"]


def test_default_profile_query_is_plain_json(item_fields: ItemFields) -> None:
    profile = load_default_profile(fields=item_fields)
    context = FeedContext(cohorts=["ga:m:25-34", "g:m", "all"], query_vector=[0.1, 0.2], region="seoul")
    body = build_feed_query(profile, context, now=NOW)
    assert json.loads(json.dumps(body)) == body
    assert [next(iter(c)) for c in _bool(body)["should"]] == ["has_child", "knn", "constant_score"]


def test_query_fields_exist_in_the_items_mapping(item_fields: ItemFields) -> None:
    used = [F.ITEM_ID, F.CATEGORY_LEVELS, F.PRICE, F.REGION, F.STATUS, F.BUMPED_AT, F.EMBEDDING, F.COHORT, F.SCORE]
    assert [f for f in used if f not in item_fields.types] == []
    assert item_fields.types["relation"] == "join"


def test_weak_children_are_skipped_before_the_join(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "cohort_popularity", "cohort_weights": {"all": 1.0}, "min_child_score": 0.05})
    clause = _bool(build_feed_query(profile, FeedContext(cohorts=["all"]), now=NOW))["should"][0]
    assert clause["has_child"]["query"]["function_score"]["query"] == {
        "bool": {"filter": [{"terms": {"cohort": ["all"]}}, {"range": {"score": {"gte": 0.05}}}]}
    }


def test_a_candidate_window_admits_only_signal_or_fresh_items(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "cohort_popularity", "cohort_weights": {"all": 1.0}})
    profile = profile.model_copy(update={"filters": profile.filters.model_copy(update={"candidate_window_h": 48.0})})
    boolean = _bool(build_feed_query(profile, FeedContext(cohorts=["all"]), now=NOW))
    assert boolean["minimum_should_match"] == 1
    assert boolean["should"][-1] == {
        "constant_score": {"filter": {"range": {"bumped_at": {"gte": "2026-11-20T15:00:00.000Z"}}}, "boost": 0.0}
    }


def test_a_widened_scroll_drops_the_candidate_window(make_profile: MakeProfile) -> None:
    profile = make_profile({"type": "cohort_popularity", "cohort_weights": {"all": 1.0}})
    profile = profile.model_copy(update={"filters": profile.filters.model_copy(update={"candidate_window_h": 48.0})})
    boolean = _bool(build_feed_query(profile, FeedContext(cohorts=["all"], widened=True), now=NOW))
    assert "minimum_should_match" not in boolean
    assert all("constant_score" not in clause for clause in boolean["should"])
