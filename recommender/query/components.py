"""Score components: one pure function per profile component ``type``, each returning a fragment.

A fragment is a dict with either or both of

    "should"     clauses for the feed query's bool ``should`` (they add to the score when
                 they match and never decide whether an item matches)
    "functions"  unfiltered function_score functions, applied to every matching item and
                 summed (filtered ones go in "should": see ``category_boost``)

``build_feed_query`` merges the fragments of all components of a profile. A component may
return ``{}`` when the request gives it nothing to work with (kNN without a query vector).
Components with weight 0 are switched off and never called.

Field names come from es_mappings/items.json (see ``recommender.query._fields``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, TypeVar

from recommender.errors import InvalidRequest, ProfileRejected
from recommender.profiles import (
    CategoryBoost,
    CohortPopularity,
    Engagement,
    Exploration,
    FreshnessDecay,
    Knn,
)
from recommender.query import _fields as F
from recommender.query._context import FeedContext, cohort_type

__all__ = [
    "ComponentInputs",
    "ComponentBuilder",
    "COMPONENT_BUILDERS",
    "component_builder",
    "register_component",
    "cohort_popularity",
    "knn",
    "freshness_decay",
    "engagement",
    "category_boost",
    "exploration",
    "knn_clause",
    "render_time",
    "render_duration",
    "exploration_seed",
]


@dataclass(frozen=True, slots=True)
class ComponentInputs:
    """What every component may read besides its own settings."""

    context: FeedContext
    # Timezone-aware; decays are centred on it.
    now: datetime
    # The feed's filter clauses (filters and exclusions), for the kNN pre-filter.
    filters: tuple[dict[str, Any], ...]


ComponentBuilder = Callable[[Any, ComponentInputs], dict[str, Any]]
_C = TypeVar("_C", bound=ComponentBuilder)
_BUILDERS: dict[str, ComponentBuilder] = {}
COMPONENT_BUILDERS: Mapping[str, ComponentBuilder] = MappingProxyType(_BUILDERS)


def register_component(type_: str) -> Callable[[_C], _C]:
    """Return a decorator registering a component function under the profile ``type`` string."""

    def register(fn: _C) -> _C:
        if type_ in _BUILDERS:
            raise ValueError(f"component type {type_!r} is registered twice; give the new one another type")
        _BUILDERS[type_] = fn
        return fn

    return register


def component_builder(type_: str) -> ComponentBuilder:
    """Return the function registered for a component type.

    Raises ProfileRejected naming the type and the known ones when none is registered.
    """
    try:
        return _BUILDERS[type_]
    except KeyError:
        raise ProfileRejected(
            f"component type {type_!r} has no query builder; use one of {sorted(_BUILDERS)}"
        ) from None


def render_time(now: datetime) -> str:
    """Return ``now`` as UTC ISO-8601 text with milliseconds ("2026-11-22T15:00:00.000Z").

    Raises InvalidRequest for a naive datetime: the engine would read it as UTC, silently.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidRequest(f"now {now!r} has no timezone; pass datetime.now(timezone.utc)")
    return now.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_duration(hours: float) -> str:
    """Return an engine duration for ``hours`` in the largest whole unit ("3d", "6h", "90m", "5s").

    Engines reject fractional durations such as "1.5h", so the value is rounded to seconds.
    """
    seconds = round(hours * 3600)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def exploration_seed(seed: int, salt: str) -> int:
    """Return the random_score seed: ``seed`` itself, or a stable mix of seed and salt.

    sha256 rather than ``hash()``: Python salts string hashes per process, and the seed must
    be the same on every server so that a session's scroll stays put.
    """
    if not salt:
        return seed
    digest = hashlib.sha256(f"{seed}:{salt}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 2**31


def knn_clause(component: Knn, vector: tuple[float, ...], filters: tuple[dict[str, Any], ...], *, boost: float | None) -> dict[str, Any]:
    """Return the neutral (Elasticsearch 8 query DSL) kNN clause; the engine adapter renders dialects."""
    body: dict[str, Any] = {
        "field": F.EMBEDDING,
        "query_vector": list(vector),
        "k": component.k,
        "num_candidates": component.num_candidates,
        "filter": list(filters),
    }
    if boost is not None:
        body["boost"] = boost
    return {"knn": body}


@register_component("cohort_popularity")
def cohort_popularity(component: CohortPopularity, inputs: ComponentInputs) -> dict[str, Any]:
    """Return a should clause: has_child over popularity children in the viewer's cohorts.

    A child (item x cohort) scores cohort_weights[type of its cohort] x its ``score``; the
    inner function_score replaces the match score by that. ``score_mode`` sums those over
    the item's matching children (popular in several of the viewer's cohorts adds up) or
    keeps the max. Cohorts whose type weighs 0 are left out; with none left, no clause.
    """
    by_type: dict[str, list[str]] = {}
    for cohort in inputs.context.cohorts:
        by_type.setdefault(cohort_type(cohort), []).append(cohort)
    weights = component.cohort_weights
    # Types in the order the context lists their first cohort: most specific first.
    groups = [(getattr(weights, t), members) for t, members in by_type.items() if getattr(weights, t) > 0]
    if not groups:
        return {}
    cohorts = [c for _, members in groups for c in members]
    functions = [
        {
            "filter": {"terms": {F.COHORT: members}},
            "field_value_factor": {"field": F.SCORE, "missing": 0},
            "weight": weight,
        }
        for weight, members in groups
    ]
    match: dict[str, Any] = {"terms": {F.COHORT: cohorts}}
    if component.min_child_score > 0:
        match = {"bool": {"filter": [match, {"range": {F.SCORE: {"gte": component.min_child_score}}}]}}
    child_query = {
        "function_score": {
            "query": match,
            "functions": functions,
            # A child has exactly one cohort, so at most one function matches it.
            "score_mode": "sum",
            "boost_mode": "replace",
        }
    }
    return {
        "should": [
            {
                "has_child": {
                    "type": F.POPULARITY_RELATION,
                    "score_mode": component.score_mode,
                    "query": child_query,
                    "boost": component.weight,
                }
            }
        ]
    }


@register_component("knn")
def knn(component: Knn, inputs: ComponentInputs) -> dict[str, Any]:
    """Return a should clause: kNN on the item embedding, boosted by the component weight.

    Its filter repeats the feed's filters so the k neighbours are all eligible items.
    No query vector in the context: no clause.
    """
    vector = inputs.context.query_vector
    if vector is None:
        return {}
    return {"should": [knn_clause(component, vector, inputs.filters, boost=component.weight)]}


@register_component("freshness_decay")
def freshness_decay(component: FreshnessDecay, inputs: ComponentInputs) -> dict[str, Any]:
    """Return one decay function on the component's date field, centred on ``now``.

    ``weight`` within ``offset_h`` of now, ``decay x weight`` at offset_h + scale_h.
    """
    params: dict[str, Any] = {"origin": render_time(inputs.now), "scale": render_duration(component.scale_h)}
    if component.offset_h > 0:
        params["offset"] = render_duration(component.offset_h)
    params["decay"] = component.decay
    return {"functions": [{component.function: {component.field: params}, "weight": component.weight}]}


@register_component("engagement")
def engagement(component: Engagement, inputs: ComponentInputs) -> dict[str, Any]:
    """Return one field_value_factor per factor: weight x factor.weight x modifier(factor x field).

    Missing counters count as 0 (``missing``), so items from before a counter existed still score.
    """
    functions = [
        {
            "field_value_factor": {"field": f.field, "factor": f.factor, "modifier": f.modifier, "missing": 0},
            "weight": component.weight * f.weight,
        }
        for f in component.factors
        if f.weight > 0
    ]
    return {"functions": functions} if functions else {}


@register_component("category_boost")
def category_boost(component: CategoryBoost, inputs: ComponentInputs) -> dict[str, Any]:
    """Return constant-score should clauses for items under a boosted prefix or a preferred category.

    Prefixes match ``category_levels`` (every prefix of the item's category path), so
    boosting "electronics" boosts "electronics/phones" too. Should clauses rather than
    filtered functions: a function_score gives a document that matches none of its
    functions a factor of 1, which would rank unboosted items above lightly boosted ones
    whenever no unfiltered function is present.
    """
    clauses: list[dict[str, Any]] = [
        {"constant_score": {"filter": {"term": {F.CATEGORY_LEVELS: prefix}}, "boost": component.weight * boost}}
        for prefix, boost in component.boosts.items()
    ]
    preferred = inputs.context.preferred_categories
    if preferred and component.preferred > 0:
        clauses.append(
            {
                "constant_score": {
                    "filter": {"terms": {F.CATEGORY_LEVELS: list(preferred)}},
                    "boost": component.weight * component.preferred,
                }
            }
        )
    return {"should": clauses} if clauses else {}


@register_component("exploration")
def exploration(component: Exploration, inputs: ComponentInputs) -> dict[str, Any]:
    """Return a seeded random_score in [0, weight): stable per (profile seed, session salt).

    The engines need a field with a seed; ``_seq_no`` is the one they recommend. It changes
    when an item is updated, which reshuffles only that item.
    """
    seed = exploration_seed(component.seed, inputs.context.exploration_salt)
    return {"functions": [{"random_score": {"seed": seed, "field": "_seq_no"}, "weight": component.weight}]}
