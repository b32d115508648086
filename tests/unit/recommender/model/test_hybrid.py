"""The hybrid scorer: a model's softmax and a KNN's normalized scores, the weight picked on validation."""

import numpy as np
import pytest

from recommender.model.hybrid import HybridScorer, tune_weight


class _Fixed:
    """A scorer returning the same scores for every session."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=np.float32)

    def score_sessions(self, items, lengths):
        return np.tile(self.scores, (len(items), 1))


def test_the_blend_is_written_out_as_arithmetic():
    model = _Fixed([-np.inf, 0.0, np.log(3.0), 0.0])  # softmax over 1..3: 0.2, 0.6, 0.2
    knn = _Fixed([-np.inf, 3.0, 0.0, 1.0])  # normalized: 0.75, 0, 0.25
    scores = HybridScorer(model, knn, weight=0.5).score_sessions(np.array([[1]]), np.array([1]))[0]
    assert scores[0] == -np.inf
    assert np.allclose(scores[1:], [0.5 * 0.2 + 0.5 * 0.75, 0.5 * 0.6, 0.5 * 0.2 + 0.5 * 0.25])


def test_the_weight_is_picked_on_validation(chain_split):
    # The model always says item 1; the KNN says the true chain successor: the KNN must win.
    from recommender.model.session_knn import SequentialRules

    n = len(chain_split.vocab)
    model = _Fixed(np.r_[-np.inf, 10.0, np.zeros(n - 2)])
    rules = SequentialRules(chain_split.item_counts, chain_split.train)
    weight, values = tune_weight(model, rules, chain_split)
    assert weight < 0.5 and values[weight] == pytest.approx(max(values.values()))
    assert values[0.0] > values[1.0]
