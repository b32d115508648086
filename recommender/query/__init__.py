"""Pure query building: score profile + request context -> one search body (a plain dict).

``components`` holds one function per profile component type; ``build`` composes them into
the feed and similar-items queries. No client, no I/O, no clock.
"""

from recommender.query._fields import ITEM_RELATION, POPULARITY_RELATION
from recommender.query._context import COHORT_KIND_TYPES, MAX_PAGE_SIZE, FeedContext, SearchAfter, cohort_type
from recommender.query.build import (
    FEED_SORT,
    build_exclusion_clauses,
    build_feed_query,
    build_filter_clauses,
    build_similar_items_query,
    read_component_scores,
)
from recommender.query.components import (
    COMPONENT_BUILDERS,
    ComponentBuilder,
    ComponentInputs,
    component_builder,
    register_component,
)

__all__ = [
    "COHORT_KIND_TYPES",
    "COMPONENT_BUILDERS",
    "FEED_SORT",
    "ITEM_RELATION",
    "POPULARITY_RELATION",
    "MAX_PAGE_SIZE",
    "ComponentBuilder",
    "ComponentInputs",
    "FeedContext",
    "SearchAfter",
    "build_exclusion_clauses",
    "build_feed_query",
    "build_filter_clauses",
    "build_similar_items_query",
    "cohort_type",
    "read_component_scores",
    "component_builder",
    "register_component",
]
