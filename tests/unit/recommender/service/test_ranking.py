"""Blending engine and model scores, and the per-page category cap."""

from __future__ import annotations

import numpy as np

from recommender.service.ranking import blend_scores, category_key, diversify


def test_blend_zero_keeps_the_engine_order_scaled():
    assert blend_scores([2.0, 4.0, 3.0], [9.0, 0.0, 1.0], blend=0.0).tolist() == [0.0, 1.0, 0.5]


def test_blend_half_averages_min_max_scaled_scores():
    # engine scaled: [0, 1, 0.5]; model scaled: [1, 0, 1/9]
    out = blend_scores([2.0, 4.0, 3.0], [9.0, 0.0, 1.0], blend=0.5)
    assert np.allclose(out, [0.5 * 0 + 0.5 * 1, 0.5 * 1 + 0.5 * 0, 0.5 * 0.5 + 0.5 * (1 / 9)])


def test_unscorable_candidates_get_no_model_share():
    out = blend_scores([1.0, 1.0], [float("-inf"), 3.0], blend=1.0)
    assert out.tolist() == [0.0, 1.0]


def test_category_key_cuts_the_path_at_the_level():
    assert category_key("a/b/c", level=1) == "a"
    assert category_key("a/b/c", level=2) == "a/b"
    assert category_key("a/b/c", level=0) == "a/b/c"


def test_diversify_caps_each_page_and_defers_the_rest_in_rank_order():
    cats = ["x", "x", "x", "y", "z", "x"]
    # page of 3, at most 2 per category: page 1 = x0, x1, y3; page 2 = x2, z4, x5
    assert diversify(cats, page_size=3, max_per_category=2) == [0, 1, 3, 2, 4, 5]


def test_diversify_fills_pages_when_only_one_category_is_left():
    assert diversify(["x"] * 5, page_size=2, max_per_category=1) == [0, 1, 2, 3, 4]


def test_no_cap_keeps_the_order():
    assert diversify(["x", "x"], page_size=1, max_per_category=None) == [0, 1]
