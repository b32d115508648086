"""A neural session model blended with a session-KNN baseline: one scorer, used by eval.

score(i) = w * softmax(model logits)_i + (1 - w) * knn(i) / sum_j knn(j)

Both parts are distributions over the catalogue (the KNN scores, non-negative, normalized to
sum 1), so the weight means the same on any data set; ``w`` is picked on the validation
sessions (``tune_weight``: the best sum of HR@20 and MRR@20). w = 1 is the model alone, w = 0 the baseline alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recommender.model.data import SessionSplit, prefix_examples
from recommender.model.evaluate import Scorer, rank_top_k
from recommender.model.metrics import RankedLists, metric_by_name

__all__ = ["HybridScorer", "tune_weight", "WEIGHT_GRID"]

WEIGHT_GRID: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)


def _softmax(logits: np.ndarray) -> np.ndarray:
    finite = np.where(np.isfinite(logits), logits, -np.inf)
    shifted = finite - finite.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _distribution(scores: np.ndarray) -> np.ndarray:
    positive = np.where(np.isfinite(scores), np.maximum(scores, 0.0), 0.0)
    total = positive.sum(axis=1, keepdims=True)
    return positive / np.where(total > 0, total, 1.0)


class HybridScorer:
    def __init__(self, model: Scorer, knn: Scorer, *, weight: float, name: str = "hybrid"):
        self.model, self.knn, self.weight, self.name = model, knn, float(weight), name

    def score_parts(self, items: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (model distribution, KNN distribution), each [B, num_items]."""
        return _softmax(self.model.score_sessions(items, lengths).astype(np.float64)), \
            _distribution(self.knn.score_sessions(items, lengths).astype(np.float64))

    def score_sessions(self, items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        model, knn = self.score_parts(items, lengths)
        scores = (self.weight * model + (1 - self.weight) * knn).astype(np.float32)
        scores[:, 0] = -np.inf
        return scores


class _Fixed:
    """Precomputed parts at one weight (tuning scores each validation batch once)."""

    def __init__(self, parts: list[tuple[np.ndarray, np.ndarray]], batch: int, weight: float):
        self.parts, self.batch, self.weight, self.calls = parts, batch, weight, 0

    def score_sessions(self, items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        model, knn = self.parts[self.calls]
        self.calls += 1
        scores = (self.weight * model + (1 - self.weight) * knn).astype(np.float32)
        scores[:, 0] = -np.inf
        return scores


def tune_weight(model: Scorer, knn: Scorer, split: SessionSplit, *, metrics: Sequence[str] = ("HR@20", "MRR@20"),
                max_length: int = 20, grid: Sequence[float] = WEIGHT_GRID,
                batch_size: int = 512) -> tuple[float, dict[float, float]]:
    """Return (the grid weight with the best sum of the validation ``metrics``, every weight's sum).

    The sum of HR@20 and MRR@20 by default: the hybrid has to win on both, not trade one away.
    """
    chosen = [metric_by_name(m) for m in metrics]
    k = max(m.k for m in chosen)
    examples = prefix_examples(split.valid, max_length=max_length)
    if not len(examples):
        return 1.0, {}
    hybrid = HybridScorer(model, knn, weight=1.0)
    parts = []
    for start in range(0, len(examples), batch_size):
        lengths = examples.lengths[start:start + batch_size]
        parts.append(hybrid.score_parts(examples.items[start:start + batch_size, : int(lengths.max())], lengths))
    values = {}
    for weight in grid:
        topk, targets = rank_top_k(_Fixed(parts, batch_size, weight), examples, k=k, batch_size=batch_size)
        lists = RankedLists(topk=topk, targets=targets, is_tail=split.is_tail)
        values[float(weight)] = sum(m.compute(lists) for m in chosen)
    best = max(values, key=lambda w: (values[w], w))
    return best, values
