"""The one popularity decay formula."""

from __future__ import annotations

import numpy as np

from recommender.decay import half_life_decay


def test_weight_halves_every_half_life():
    assert half_life_decay(0.0, 6.0) == 1.0
    assert half_life_decay(6.0, 6.0) == 0.5
    assert half_life_decay(18.0, 6.0) == 0.125


def test_arrays_decay_elementwise_and_future_ages_count_as_now():
    out = half_life_decay(np.array([-3.0, 0.0, 12.0]), 6.0)
    assert out.tolist() == [1.0, 1.0, 0.25]
    assert half_life_decay(-1.0, 6.0) == 1.0
