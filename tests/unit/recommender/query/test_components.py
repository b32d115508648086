"""The component registry and the small renderers the components share."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import recommender.query as query_pkg
from recommender.errors import InvalidRequest, ProfileRejected
from recommender.profiles import COMPONENT_TYPES
from recommender.query import COMPONENT_BUILDERS, component_builder, register_component
from recommender.query.components import exploration_seed, render_duration, render_time


def test_every_profile_component_type_has_a_builder() -> None:
    assert sorted(COMPONENT_BUILDERS) == sorted(COMPONENT_TYPES)


def test_unknown_component_type_is_a_load_error() -> None:
    with pytest.raises(ProfileRejected) as info:
        component_builder("recency")
    assert str(info.value) == (
        "component type 'recency' has no query builder; use one of "
        "['category_boost', 'cohort_popularity', 'engagement', 'exploration', 'freshness_decay', 'knn']"
    )


def test_a_type_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError, match="component type 'knn' is registered twice"):
        register_component("knn")(lambda component, inputs: {})


@pytest.mark.parametrize(
    ("hours", "text"),
    [(72, "3d"), (6, "6h"), (1.5, "90m"), (0.25, "15m"), (1 / 3600, "1s"), (0, "0s"), (25, "25h")],
)
def test_durations_render_in_the_largest_whole_unit(hours: float, text: str) -> None:
    assert render_duration(hours) == text


def test_time_renders_as_utc_with_milliseconds() -> None:
    kst = timezone(timedelta(hours=9))
    assert render_time(datetime(2026, 11, 23, 0, 0, 0, 123456, tzinfo=kst)) == "2026-11-22T15:00:00.123Z"


def test_naive_time_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="has no timezone; pass datetime.now\\(timezone.utc\\)"):
        render_time(datetime(2026, 1, 1))


def test_exploration_seed_stays_in_the_engine_int_range() -> None:
    seeds = {exploration_seed(7, f"s{i}") for i in range(200)}
    assert all(0 <= s < 2**31 for s in seeds) and len(seeds) == 200


def test_public_names_are_exactly_all() -> None:
    public = {name for name in vars(query_pkg) if not name.startswith("_")}
    modules = {"build", "components"}
    assert public - modules == set(query_pkg.__all__)
