"""Score profiles: the schema, and parsing, validation, serialization and versioning.

A profile is data (YAML; ``default.yaml`` is the shipped one). Storage and hot reload live
elsewhere; this package is pure apart from reading a file when asked to.
"""

from recommender.profiles._loader import (
    dump_profile,
    load_default_profile,
    load_profile,
    parse_profile,
    profile_version,
    validate_profile,
)
from recommender.profiles._mapping import NUMERIC_TYPES, POPULARITY_FIELDS, ItemFields, read_item_fields
from recommender.profiles._schema import (
    COHORT_TYPES,
    COMPONENT_MODELS,
    COMPONENT_TYPES,
    CategoryBoost,
    CohortPopularity,
    CohortType,
    CohortWeights,
    Component,
    DecayFunction,
    Diversity,
    Engagement,
    EngagementFactor,
    EngagementModifier,
    Exploration,
    Filters,
    FreshnessDecay,
    Knn,
    Rerank,
    ScoreProfile,
)

__all__ = [
    "COHORT_TYPES",
    "COMPONENT_MODELS",
    "COMPONENT_TYPES",
    "NUMERIC_TYPES",
    "POPULARITY_FIELDS",
    "CategoryBoost",
    "CohortPopularity",
    "CohortType",
    "CohortWeights",
    "Component",
    "DecayFunction",
    "Diversity",
    "Engagement",
    "EngagementFactor",
    "EngagementModifier",
    "Exploration",
    "Filters",
    "FreshnessDecay",
    "ItemFields",
    "Knn",
    "Rerank",
    "ScoreProfile",
    "dump_profile",
    "load_default_profile",
    "load_profile",
    "parse_profile",
    "profile_version",
    "read_item_fields",
    "validate_profile",
]
