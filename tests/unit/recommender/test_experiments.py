"""A/B experiment assignment, variant checks and the Wilson interval: pure, no services."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from recommender.errors import InvalidRequest
from recommender.experiments import (
    BUCKETS,
    Experiment,
    Variant,
    assign_bucket,
    assign_variant,
    checked_variants,
    variant_stats,
    wilson_interval,
)

A, B, C = "a" * 16, "b" * 16, "c" * 16


def _experiment(*variants: tuple[str, float], name: str = "summer-test") -> Experiment:
    return Experiment(name=name, profile="default", variants=tuple(Variant(v, p) for v, p in variants),
                      state="running", created_by="pm", created_at=0.0)


@pytest.mark.parametrize("split", [((A, 50), (B, 50)), ((A, 10), (B, 90)), ((A, 33.33), (B, 33.33), (C, 33.34))])
def test_proportions_on_100k_users_are_within_one_point_of_the_split(split) -> None:
    experiment = _experiment(*split)
    served = Counter(assign_variant(experiment, f"user-{n}").version for n in range(100_000))
    for version, percent in split:
        assert abs(served[version] / 1000 - percent) < 1.0, (version, served[version])


def test_the_same_user_always_gets_the_same_variant() -> None:
    experiment = _experiment((A, 50), (B, 50))
    first = [assign_variant(experiment, f"user-{n}").version for n in range(1000)]
    again = [assign_variant(_experiment((A, 50), (B, 50)), f"user-{n}").version for n in range(1000)]
    assert first == again
    assert set(first) == {A, B}


def test_the_bucket_is_sha256_of_name_and_viewer() -> None:
    import hashlib

    digest = hashlib.sha256("exp\x1fuser-1".encode()).digest()
    assert assign_bucket("exp", "user-1") == int.from_bytes(digest[:8], "big") % BUCKETS
    # Another experiment reshuffles the viewers.
    other = [assign_bucket("exp-2", f"u{n}") for n in range(50)]
    assert other != [assign_bucket("exp", f"u{n}") for n in range(50)]


def test_variants_must_be_published_and_sum_to_100() -> None:
    published = {A, B}
    assert checked_variants([(A, 60), (B, 40)], published=published, profile="p") == (Variant(A, 60.0),
                                                                                     Variant(B, 40.0))
    with pytest.raises(InvalidRequest, match=r"'c{16}' is not a published version of profile 'p'"):
        checked_variants([(A, 50), (C, 50)], published=published, profile="p")
    with pytest.raises(InvalidRequest, match="sum to 90, not 100"):
        checked_variants([(A, 50), (B, 40)], published=published, profile="p")
    with pytest.raises(InvalidRequest, match="at least two variants"):
        checked_variants([(A, 100)], published=published, profile="p")
    with pytest.raises(InvalidRequest, match="appears twice"):
        checked_variants([(A, 50), (A, 50)], published=published, profile="p")
    with pytest.raises(InvalidRequest, match="at most two decimals"):
        checked_variants([(A, 50.005), (B, 49.995)], published=published, profile="p")
    with pytest.raises(InvalidRequest, match="above 0"):
        checked_variants([(A, 0), (B, 100)], published=published, profile="p")


def test_wilson_interval_of_10_in_100() -> None:
    z = 1.959963984540054
    p, n = 0.1, 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = wilson_interval(10, 100)
    assert low == pytest.approx(centre - half) and high == pytest.approx(centre + half)
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)


def test_wilson_interval_is_not_zero_width_at_zero_and_is_all_without_trials() -> None:
    low, high = wilson_interval(0, 50)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(1.959963984540054 ** 2 / (50 + 1.959963984540054 ** 2))
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(InvalidRequest, match="successes 5"):
        wilson_interval(5, 4)


def test_variant_stats_give_ctr_and_conversion_over_impressions() -> None:
    stats = variant_stats(Variant(A, 50), {"impressions": 200, "exposed_viewers": 40, "click": 20, "purchase": 2,
                                           "like": 5})
    assert (stats.impressions, stats.exposed_viewers) == (200, 40)
    assert stats.events == {"click": 20, "like": 5, "chat": 0, "purchase": 2}
    assert stats.rates["ctr"][0] == 20 / 200 and stats.rates["conversion"][0] == 2 / 200
    assert stats.rates["ctr"][1:] == wilson_interval(20, 200)
    assert variant_stats(Variant(B, 50), {}).rates["ctr"] == (None, 0.0, 1.0)
    assert variant_stats(Variant(B, 50), {}).exposed_viewers == 0
