"""Shared fixtures of the query tests: the mapping's fields and small profiles from plain data."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from recommender.profiles import ItemFields, ScoreProfile, read_item_fields, validate_profile
from recommender.settings import REPO_ROOT

@pytest.fixture(scope="session")
def item_fields() -> ItemFields:
    return read_item_fields(REPO_ROOT / "es_mappings")


@pytest.fixture()
def make_profile(item_fields: ItemFields) -> Callable[..., ScoreProfile]:
    """Return a factory: make_profile(*components, **top_level_keys) -> validated profile."""

    def make(*components: dict[str, Any], **top: Any) -> ScoreProfile:
        return validate_profile({"name": "t", "components": list(components), **top}, fields=item_fields)

    return make
