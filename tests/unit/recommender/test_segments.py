"""Segment value types (recommender/segments.py): no Redis needed."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.errors import InvalidRequest
from recommender.segments import DeclaredPreferences, UserSegments, decode_centroid, encode_centroid


def test_declared_preferences_round_trip_through_a_hash():
    prefs = DeclaredPreferences(gender="f", age_band="35-44", liked_categories=["books", "books", " toys "],
                                disliked_categories=("phones",))
    again = DeclaredPreferences.from_hash(prefs.to_hash())
    assert again == prefs
    assert again.liked_categories == ("books", "toys")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"gender": "x"}, "'x'"),
    ({"age_band": "20-29"}, "'20-29'"),
    ({"liked_categories": "books"}, "wrap it in a list"),
    ({"liked_categories": ["a"], "disliked_categories": ["a"]}, "both liked and disliked"),
])
def test_bad_declared_preferences_are_rejected(kwargs, match):
    with pytest.raises(InvalidRequest, match=match):
        DeclaredPreferences(**kwargs)


def test_empty_strings_mean_not_declared():
    assert DeclaredPreferences(gender="", age_band="").to_hash().keys() == {"liked_categories", "disliked_categories"}


def test_centroids_survive_encoding_as_float32():
    v = np.random.default_rng(0).normal(size=64).astype(np.float32)
    assert np.array_equal(decode_centroid(encode_centroid(v)), v)


def test_default_segments_are_the_all_cohort():
    seg = UserSegments(user_id=None)
    assert seg.cohorts == ("all",) and not seg.known and seg.cluster_source == "none"
