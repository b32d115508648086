"""Search bodies for the feeds: profile + request context -> one plain dict. Pure.

No client, no I/O, no clock (``now`` is an argument); inputs are never mutated. The bodies
use the neutral Elasticsearch 8 query DSL; the engine adapter (recommender/engine/) renders
what differs per engine, e.g. the ``knn`` clause for OpenSearch.

The feed query, for a profile with every component::

    function_score                              score_mode sum, boost_mode sum
      query: bool
        filter    status in profile statuses, region (scope exact), price range
        must_not  category_levels in excluded + disliked, ids of seen items
        should    has_child popularity (cohort-weighted child scores)  x cohort_popularity.weight
                  knn on embedding (pre-filtered alike)                x knn.weight
                  constant_score per boosted / preferred category      x category_boost.weight
      functions   freshness decays, engagement factors, random_score

    score = has_child + knn + category boosts + sum(functions)

Sums keep every component's share separable, and let an item with no popularity and no
neighbour still rank on freshness. Items that match no ``should`` clause still match (a
bool with a filter needs no should), scoring 0 there. Hits are sorted by
(_score desc, item_id asc), which is what ``search_after`` continues from.

With ``context.explain`` the same sum is laid out so the engine reports each component's
share: every component becomes one bool ``should`` clause named (``_name``) by its key,
its functions in a ``function_score`` over ``match_all``. Searched with the URL parameter
``include_named_queries_score=true`` (both engines), each hit's ``matched_queries`` maps
component key -> score; ``read_component_scores`` turns that into the explain map. The
scores equal those of the plain layout; the plain one is kept for serving because one
function_score is cheaper than a disjunction of per-component clauses.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from recommender.errors import InvalidRequest
from recommender.profiles import Filters, Knn, ScoreProfile
from recommender.query import _fields as F
from recommender.query._context import FeedContext
from recommender.query.components import ComponentInputs, component_builder, knn_clause, render_time

__all__ = [
    "FEED_SORT",
    "build_filter_clauses",
    "build_exclusion_clauses",
    "build_feed_query",
    "build_similar_items_query",
    "read_component_scores",
]

FEED_SORT: tuple[dict[str, str], ...] = ({"_score": "desc"}, {F.ITEM_ID: "asc"})


def build_filter_clauses(filters: Filters, context: FeedContext) -> list[dict[str, Any]]:
    """Return the bool ``filter`` clauses: allowed statuses, region scope, price range.

    The status filter also keeps popularity children out of the hits: they have no status.
    """
    clauses: list[dict[str, Any]] = [{"terms": {F.STATUS: list(filters.statuses)}}]
    if filters.region_scope == "exact" and context.region:
        clauses.append({"term": {F.REGION: context.region}})
    price: dict[str, float] = {}
    if filters.price_min is not None:
        price["gte"] = filters.price_min
    if filters.price_max is not None:
        price["lte"] = filters.price_max
    if price:
        clauses.append({"range": {F.PRICE: price}})
    return clauses


def build_exclusion_clauses(context: FeedContext, *, also_ids: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Return the bool ``must_not`` clauses: excluded and disliked categories, seen items.

    Category prefixes match ``category_levels``, so excluding "fashion" excludes its subtree.
    Seen items go by document id, which the indexer sets to the item id.
    """
    clauses: list[dict[str, Any]] = []
    categories = list(dict.fromkeys(context.excluded_categories + context.disliked_categories))
    if categories:
        clauses.append({"terms": {F.CATEGORY_LEVELS: categories}})
    ids = list(dict.fromkeys(also_ids + context.seen_item_ids))
    if ids:
        clauses.append({"ids": {"values": ids}})
    return clauses


def _knn_filters(filter_clauses: list[dict[str, Any]], must_not: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    if must_not:
        return (*filter_clauses, {"bool": {"must_not": must_not}})
    return tuple(filter_clauses)


def _page_fields(profile: ScoreProfile, context: FeedContext) -> dict[str, Any]:
    # The rerank needs the profile's candidates; a page never needs more than that, but a
    # profile with fewer candidates than the page still fills the page.
    body: dict[str, Any] = {
        "size": max(profile.candidates, context.page_size),
        "sort": [dict(s) for s in FEED_SORT],
        "track_total_hits": False,
        # No stored fields at all (not even _id): item id and category come from doc values.
        "stored_fields": "_none_",
        "docvalue_fields": list(F.HIT_FIELDS),
    }
    if context.search_after is not None:
        body["search_after"] = [context.search_after.score, context.search_after.item_id]
    return body


def _active_components(profile: ScoreProfile) -> list[Any]:
    # Weight 0 switches a component off; it then costs the engine nothing.
    return [c for c in profile.components if c.weight > 0]


def _named_clause(key: str, fragment: dict[str, Any]) -> list[dict[str, Any]]:
    parts = list(fragment.get("should", ()))
    if fragment.get("functions"):
        parts.append(
            {
                "function_score": {
                    "query": {"match_all": {}},
                    "functions": list(fragment["functions"]),
                    "score_mode": "sum",
                    "boost_mode": "replace",
                }
            }
        )
    return [{"bool": {"should": parts, "_name": key}}] if parts else []


def read_component_scores(profile: ScoreProfile, matched_queries: Mapping[str, float] | None) -> dict[str, float]:
    """Return component key -> score of one hit of an explain query, 0.0 for components it missed.

    ``matched_queries`` is the hit's ``matched_queries`` as the engines return it with
    ``include_named_queries_score=true``; switched-off components (weight 0) are left out.
    """
    matched = matched_queries or {}
    return {c.key: float(matched.get(c.key, 0.0)) for c in _active_components(profile)}


def build_feed_query(profile: ScoreProfile, context: FeedContext, *, now: datetime) -> dict[str, Any]:
    """Return the search body of a home or product feed page (see the module docstring).

    ``now`` must be timezone-aware: decays are centred on it. Components with weight 0 are
    left out. With ``context.explain`` the body names each component's share (see the module
    docstring). Raises InvalidRequest for a naive ``now`` and ProfileRejected for a component
    type without a registered builder.
    """
    filter_clauses = build_filter_clauses(profile.filters, context)
    must_not = build_exclusion_clauses(context)
    render_time(now)  # fail on a naive now even when no component reads it
    inputs = ComponentInputs(context=context, now=now, filters=_knn_filters(filter_clauses, must_not))
    should: list[dict[str, Any]] = []
    functions: list[dict[str, Any]] = []
    for component in _active_components(profile):
        fragment = component_builder(component.type)(component, inputs)
        if context.explain:
            should.extend(_named_clause(component.key, fragment))
        else:
            should.extend(fragment.get("should", ()))
            functions.extend(fragment.get("functions", ()))
    boolean: dict[str, Any] = {"filter": filter_clauses}
    if must_not:
        boolean["must_not"] = must_not
    window_h = profile.filters.candidate_window_h
    if should and window_h is not None and not context.widened:
        # Fresh items qualify without a signal; boost 0 keeps the score what the components say.
        since = render_time(now - timedelta(hours=window_h))
        should.append({"constant_score": {"filter": {"range": {F.BUMPED_AT: {"gte": since}}}, "boost": 0.0}})
        boolean["minimum_should_match"] = 1
    if should:
        boolean["should"] = should
    query: dict[str, Any] = {"bool": boolean}
    if functions:
        query = {"function_score": {"query": query, "functions": functions, "score_mode": "sum", "boost_mode": "sum"}}
    return {"query": query, **_page_fields(profile, context)}


def build_similar_items_query(
    profile: ScoreProfile,
    context: FeedContext,
    *,
    item_id: str,
    item_vector: tuple[float, ...] | list[float],
) -> dict[str, Any]:
    """Return the search body of the neighbours of one item: kNN on its vector, itself excluded.

    Uses k and num_candidates of the profile's first knn component (schema defaults when it
    has none, so a profile that switches kNN off the feed still serves similar items). The
    feed's filters and exclusions apply; the score is the similarity alone.
    Raises InvalidRequest for an empty item id or an empty or non-finite vector.
    """
    if not isinstance(item_id, str) or not item_id:
        raise InvalidRequest(f"item_id {item_id!r} is empty; pass the id of the item to find neighbours of")
    vector = tuple(float(x) for x in item_vector)
    if not vector or any(x != x or x in (float("inf"), float("-inf")) for x in vector):
        raise InvalidRequest(
            f"vector of item {item_id!r} ({len(vector)} values) is empty or non-finite; reindex the item"
        )
    knn_components = profile.components_of(Knn)
    component = knn_components[0] if knn_components else Knn(type="knn")
    filter_clauses = build_filter_clauses(profile.filters, context)
    must_not = build_exclusion_clauses(context, also_ids=(item_id,))
    clause = knn_clause(component, vector, _knn_filters(filter_clauses, must_not), boost=None)
    query = {"bool": {"filter": filter_clauses, "must_not": must_not, "must": [clause]}}
    return {"query": query, **_page_fields(profile, context)}
