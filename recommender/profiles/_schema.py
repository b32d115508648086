"""The score profile schema: every knob the feed query and the rerank read, as pydantic models.

A profile is data (YAML, see ``default.yaml``). This module checks its shape only: types,
ranges and component ``type`` tags. References to the outside world (mapping fields,
item statuses) are checked by the loader, which knows where those live.

Components are a list; each entry picks its model by ``type`` and is turned into query
pieces by the function registered under the same string in ``recommender.query.components``.
Adding a component takes a model here (added to ``Component``), a function there, and tests.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CohortType",
    "COHORT_TYPES",
    "DecayFunction",
    "EngagementModifier",
    "CohortWeights",
    "CohortPopularity",
    "Knn",
    "FreshnessDecay",
    "EngagementFactor",
    "Engagement",
    "CategoryBoost",
    "Exploration",
    "Component",
    "COMPONENT_MODELS",
    "COMPONENT_TYPES",
    "Filters",
    "Rerank",
    "Diversity",
    "ScoreProfile",
    "profile_json_schema",
]

CohortType = Literal["all", "gender", "age", "gender_age", "region", "platform", "cluster", "combined"]
COHORT_TYPES: tuple[str, ...] = get_args(CohortType)
DecayFunction = Literal["gauss", "exp", "linear"]
# log, ln and reciprocal are left out on purpose: engagement counts are often 0, and the
# engine fails the whole search when a modifier returns -inf or inf for one document.
EngagementModifier = Literal["none", "log1p", "log2p", "ln1p", "ln2p", "sqrt", "square"]

# Engines reject negative final scores, so every weight is >= 0; demote with exclusions.
Weight = Annotated[float, Field(ge=0, strict=True)]
PositiveFloat = Annotated[float, Field(gt=0, strict=True)]
NonNegativeFloat = Annotated[float, Field(ge=0, strict=True)]
_NAME_RE = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
_CATEGORY_RE = re.compile(r"^[^/\s][^/]*(?:/[^/]+)*$")


class _Model(BaseModel):
    # Unknown keys are typos until proven otherwise; frozen keeps built queries from
    # ever changing the profile they were built from.
    model_config = ConfigDict(extra="forbid", frozen=True)


class CohortWeights(_Model):
    """Weight of a popularity child per cohort type of the viewer's cohorts (0 leaves it out)."""

    all: Weight = 0.2
    gender: Weight = 0.6
    age: Weight = 0.6
    gender_age: Weight = 1.0
    region: Weight = 0.8
    platform: Weight = 0.3
    cluster: Weight = 1.2
    combined: Weight = 1.5


class _ComponentBase(_Model):
    # Key of this component in explain output; unique per profile. Defaults per type below.
    name: Annotated[str, Field(pattern=_NAME_RE)] | None = None
    weight: Weight = 1.0

    @property
    def key(self) -> str:
        """Return the component's name, or its default name when none is given."""
        return self.name or self._default_name()

    def _default_name(self) -> str:
        return self.type  # type: ignore[attr-defined]


class CohortPopularity(_ComponentBase):
    """has_child over popularity children: sum (or max) of weight(cohort type) x child score."""

    type: Literal["cohort_popularity"]
    cohort_weights: CohortWeights = CohortWeights()
    # sum: popular in several of the viewer's cohorts adds up; max: only the best cohort counts.
    score_mode: Literal["sum", "max"] = "sum"
    # Children scoring below this are skipped before the join: popularity is power-law, so a
    # small floor drops most children (and most of the join's cost) for little score.
    min_child_score: float = Field(default=0.0, ge=0, lt=1)


class Knn(_ComponentBase):
    """Nearest neighbours of the query vector on the item embedding, boosted by ``weight``."""

    type: Literal["knn"]
    # Bounded to what a feed search can afford within its deadline (docs/performance.md).
    k: int = Field(default=100, ge=1, le=1_000)
    num_candidates: int = Field(default=400, ge=1, le=2_000)

    @model_validator(mode="after")
    def _candidates_cover_k(self) -> "Knn":
        if self.num_candidates < self.k:
            raise ValueError(f"num_candidates {self.num_candidates!r} is below k {self.k!r}; set num_candidates >= k")
        return self


class FreshnessDecay(_ComponentBase):
    """A decay function of one date field of the item, ``weight`` at ``origin``, ``decay`` at scale."""

    type: Literal["freshness_decay"]
    field: str = "bumped_at"
    function: DecayFunction = "gauss"
    # Only "now" for now: the builder receives now as an argument and renders it explicitly.
    origin: Literal["now"] = "now"
    scale_h: PositiveFloat = 72.0
    offset_h: NonNegativeFloat = 0.0
    decay: float = Field(default=0.5, gt=0, lt=1, strict=True)

    def _default_name(self) -> str:
        return f"freshness_{self.field}"


class EngagementFactor(_Model):
    """One field_value_factor: weight x modifier(factor x field)."""

    field: str
    factor: PositiveFloat = 1.0
    modifier: EngagementModifier = "log1p"
    weight: Weight = 1.0


class Engagement(_ComponentBase):
    """Engagement counters of the item (likes, chats, ...); each factor scaled by ``weight``."""

    type: Literal["engagement"]
    # Emptiness is checked by a validator, not min_length: pydantic reports min_length again
    # on a list whose items failed, which would add a false problem to every message.
    factors: tuple[EngagementFactor, ...]

    @field_validator("factors")
    @classmethod
    def _has_factors(cls, factors: tuple[EngagementFactor, ...]) -> tuple[EngagementFactor, ...]:
        if not factors:
            raise ValueError("factors is empty; list at least one {field, factor, modifier, weight}")
        return factors


class CategoryBoost(_ComponentBase):
    """Boosts per category path prefix and for the request's preferred categories, all x ``weight``."""

    type: Literal["category_boost"]
    boosts: dict[str, PositiveFloat] = {}
    # Boost of an item in one of the request's preferred categories (before x weight).
    preferred: NonNegativeFloat = 1.0

    @field_validator("boosts")
    @classmethod
    def _prefixes_are_paths(cls, boosts: dict[str, float]) -> dict[str, float]:
        for prefix in boosts:
            if not _CATEGORY_RE.match(prefix) or prefix != prefix.strip():
                raise ValueError(
                    f"category prefix {prefix!r} is not a slash-separated path; write it like 'electronics/phones'"
                )
        return boosts


class Exploration(_ComponentBase):
    """Seeded random score in [0, weight): a little shuffling so new items get seen."""

    type: Literal["exploration"]
    weight: Weight = 0.05
    seed: int = Field(default=0, ge=0, lt=2**31)


Component = Annotated[
    Union[CohortPopularity, Knn, FreshnessDecay, Engagement, CategoryBoost, Exploration],
    Field(discriminator="type"),
]
COMPONENT_MODELS: dict[str, type[_ComponentBase]] = {
    get_args(m.model_fields["type"].annotation)[0]: m
    for m in (CohortPopularity, Knn, FreshnessDecay, Engagement, CategoryBoost, Exploration)
}
COMPONENT_TYPES: tuple[str, ...] = tuple(COMPONENT_MODELS)


class Filters(_Model):
    """Which items may appear at all."""

    statuses: tuple[str, ...] = Field(default=("active",), min_length=1)
    # exact: only the request's region (no filter when the request has none); any: all regions.
    region_scope: Literal["exact", "any"] = "exact"
    price_min: NonNegativeFloat | None = None
    price_max: NonNegativeFloat | None = None
    # None: every eligible item competes (the engine scores them all). A number of hours:
    # only items with a signal compete (popular in a viewer cohort, a kNN neighbour, a boosted
    # category) or bumped within that window, so fresh items stay eligible. Far cheaper on a
    # large catalog, same top of the feed.
    candidate_window_h: PositiveFloat | None = None

    @model_validator(mode="after")
    def _price_range_ordered(self) -> "Filters":
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError(f"price_min {self.price_min!r} is above price_max {self.price_max!r}; swap them")
        return self


class Rerank(_Model):
    """How the session model's score mixes with the engine score."""

    # 0: engine order only; 1: session model only.
    blend: float = Field(default=0.5, ge=0, le=1, strict=True)


class Diversity(_Model):
    """At most ``max_per_category`` items of one category per page (None: no cap)."""

    max_per_category: int | None = Field(default=3, ge=1)
    # Depth of the category path that counts as "one category": 1 = top level, 0 = full path.
    category_level: int = Field(default=1, ge=0, le=10)


class ScoreProfile(_Model):
    """A whole score profile: filters, score components, candidates, rerank and diversity."""

    name: Annotated[str, Field(pattern=_NAME_RE)]
    description: str = ""
    # Engine hits fetched per search: the rerank sees these, the page is cut from them.
    # Every candidate is fetched, parsed and reranked per request: 1,000 is the most that fits.
    candidates: int = Field(default=200, ge=1, le=1_000)
    filters: Filters = Filters()
    components: tuple[Component, ...]
    rerank: Rerank = Rerank()
    diversity: Diversity = Diversity()

    @field_validator("components")
    @classmethod
    def _has_components(cls, components: tuple[Component, ...]) -> tuple[Component, ...]:
        # Not min_length: see Engagement.factors.
        if not components:
            raise ValueError("components is empty; list at least one component (see default.yaml)")
        return components

    @model_validator(mode="after")
    def _component_names_unique(self) -> "ScoreProfile":
        seen: dict[str, int] = {}
        for i, comp in enumerate(self.components):
            if comp.key in seen:
                raise ValueError(
                    f"components[{i}] name {comp.key!r} is already used by components[{seen[comp.key]}]; "
                    f"give one of them a distinct `name`"
                )
            seen[comp.key] = i
        return self

    def components_of(self, model: type[_ComponentBase]) -> tuple[_ComponentBase, ...]:
        """Return the components of one model class, in profile order."""
        return tuple(c for c in self.components if isinstance(c, model))


def profile_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of a ScoreProfile (types, bounds, defaults, component ``type`` tags).

    Generated from the models above, so it is the one source of the bounds the admin
    console's form shows; the models still decide what is valid.
    """
    return ScoreProfile.model_json_schema()
