"""The blended session scorer: a neural model, a session-KNN baseline and the session's own
items, in one formula shared by `hotfeed eval` and the recommender's rerank.

    score(i) = w_model * logit(i) + w_knn * log(knn(i) + EPSILON) + w_repeat * log(repeat(i) + EPSILON)

- ``logit`` is the model's logit (its log-softmax up to a per-session constant, so the ranking
  and every score difference within a session are the log-softmax's: nothing needs the
  catalogue-wide normalizer, and serving scores only the candidates);
- ``knn`` is the KNN's scores, non-negative, normalized to sum 1 over the catalogue;
- ``repeat`` is the session's own items, click p from the end weighing ``repeat_decay ** p``,
  normalized to sum 1 (RepeatNet's repeat mode: a quarter of next clicks repeat the last item).

A weighted sum of log-distributions is a product of experts: an item ranks high when every
weighted part agrees. ``EPSILON`` keeps items a part has no evidence for finite. The weights
sum to 1 and are picked on the validation sessions (``tune_blend``); (1, 0, 0) is the model
alone, (0, 1, 0) the KNN alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from recommender.model.data import SessionSplit, prefix_examples, sample_examples
from recommender.model.evaluate import ModelScorer, Scorer
from recommender.model.metrics import RankedLists, metric_by_name
from recommender.model.network import TAIL_BIAS_GRID
from recommender.model.session_knn import KNN_DEFAULTS, KNNParams, SessionKNN, sum_at, tune_knn

__all__ = ["EPSILON", "Blend", "BlendChoice", "BlendWeights", "HybridScorer", "WithTailBias", "blend", "fit_blend",
           "knn_at", "knn_distribution", "repeat_at", "repeat_distribution", "tail_biases_of", "tune_blend",
           "WEIGHT_STEP", "REPEAT_DECAYS", "SERVABLE_KNN"]

EPSILON = 1e-4
WEIGHT_STEP = 0.1
REPEAT_DECAYS: tuple[float, ...] = (0.3, 0.6, 0.9)


@dataclass(frozen=True)
class BlendWeights:
    """The weight of each part of the blend (they sum to 1) and the repeat part's decay per click."""

    model: float = 1.0
    knn: float = 0.0
    repeat: float = 0.0
    repeat_decay: float = 0.6

    def __post_init__(self):
        parts = (self.model, self.knn, self.repeat)
        if not all(math.isfinite(w) and w >= 0 for w in parts) or not math.isclose(sum(parts), 1.0, abs_tol=1e-6):
            raise ValueError(f"blend weights {parts!r} must be non-negative and sum to 1")
        if not 0 < self.repeat_decay <= 1:
            raise ValueError(f"repeat_decay {self.repeat_decay!r} must be in (0, 1]")

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def knn_distribution(scores: np.ndarray) -> np.ndarray:
    """Return KNN scores [B, N] as distributions: non-finite and negative scores count 0, rows sum to 1."""
    positive = np.where(np.isfinite(scores), np.maximum(scores, 0.0), 0.0).astype(np.float64)
    total = positive.sum(axis=1, keepdims=True)
    return positive / np.where(total > 0, total, 1.0)


def _repeat_weights(items: np.ndarray, lengths: np.ndarray, decay: float) -> np.ndarray:
    """Return [B, L]: click p from the end weighs ``decay ** p``; padding and positions past the length 0."""
    age = np.asarray(lengths).reshape(-1, 1) - 1 - np.arange(items.shape[1]).reshape(1, -1)
    return np.where((age >= 0) & (items > 0), float(decay) ** np.maximum(age, 0), 0.0)


def repeat_distribution(items: np.ndarray, lengths: np.ndarray, num_items: int, decay: float) -> np.ndarray:
    """Return [B, num_items]: each session's own items, click p from the end weighing ``decay ** p``, rows
    normalized (a row without items is all zeros). Padding (index 0) never counts."""
    items = np.asarray(items)
    batch, width = items.shape
    weight = _repeat_weights(items, lengths, decay)
    out = np.zeros((batch, num_items))
    np.add.at(out, (np.repeat(np.arange(batch), width), items.ravel()), weight.ravel())
    out[:, 0] = 0.0
    total = out.sum(axis=1, keepdims=True)
    return out / np.where(total > 0, total, 1.0)


def repeat_at(session: np.ndarray, candidates: np.ndarray, decay: float) -> np.ndarray:
    """Return ``repeat_distribution`` of one session at ``candidates`` only (the serving path)."""
    weight = _repeat_weights(session[None, :], np.array([len(session)]), decay)[0]
    total = weight.sum()
    return sum_at(session, weight, candidates) / total if total > 0 else np.zeros(len(candidates))


def knn_at(knn: SessionKNN, session: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Return ``knn_distribution`` of ``knn.score_session(session)`` at ``candidates`` only (the serving
    path: nothing the size of the catalogue); padding candidates get 0."""
    items, votes = knn.votes(session)
    total = knn.popularity_total + float(votes.sum())
    at = (knn.popularity[candidates] + sum_at(items, votes, candidates)) / total
    return np.where(candidates > 0, at, 0.0)


def blend(logits: np.ndarray, knn: np.ndarray, repeat: np.ndarray, weights: BlendWeights) -> np.ndarray:
    """Return the blended scores (the module docstring's formula), elementwise over same-shaped parts."""
    logits = np.asarray(logits, dtype=np.float64)
    out = weights.model * logits if weights.model else np.zeros_like(logits)  # 0 * -inf would be NaN
    if weights.knn:
        out = out + weights.knn * np.log(knn + EPSILON)
    if weights.repeat:
        out = out + weights.repeat * np.log(repeat + EPSILON)
    return out


class HybridScorer:
    """The blend as an evaluator scorer: ``score_sessions(items, lengths)`` -> [B, num_items]."""

    def __init__(self, model: Scorer, knn: Scorer, *, weights: BlendWeights, name: str = "hybrid"):
        self.model, self.knn, self.weights, self.name = model, knn, weights, name

    def parts(self, items: np.ndarray, lengths: np.ndarray,
              decays: Sequence[float] = ()) -> tuple[np.ndarray, np.ndarray, dict[float, np.ndarray]]:
        """Return (model logits, KNN distribution, {decay: repeat distribution}) for a batch."""
        logits = self.model.score_sessions(items, lengths).astype(np.float64)
        knn = knn_distribution(self.knn.score_sessions(items, lengths))
        decays = tuple(decays) or (self.weights.repeat_decay,)
        return logits, knn, {d: repeat_distribution(items, lengths, logits.shape[1], d) for d in decays}

    def score_sessions(self, items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        logits, knn, repeat = self.parts(items, lengths)
        scores = blend(logits, knn, repeat[self.weights.repeat_decay], self.weights).astype(np.float32)
        scores[:, 0] = -np.inf
        return scores


def _grid(step: float) -> list[tuple[float, float, float]]:
    n = round(1 / step)
    return [(round(a * step, 6), round(b * step, 6), round((n - a - b) * step, 6))
            for a in range(n + 1) for b in range(n + 1 - a)]


class WithTailBias:
    """A model scorer whose TailNet scores with ``tail_bias`` (the model's own is restored after each call):
    one trained model gives the blend tuning every rectification strength, and a hybrid row its own."""

    def __init__(self, scorer: ModelScorer, tail_bias: float):
        self.scorer, self.tail_bias = scorer, float(tail_bias)

    def score_sessions(self, items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        model = self.scorer.model
        before, model.tail_bias = model.tail_bias, self.tail_bias
        try:
            return self.scorer.score_sessions(items, lengths)
        finally:
            model.tail_bias = before


def tail_biases_of(scorer: Scorer) -> tuple[float, ...]:
    """Return the tail biases the blend tuning tries with ``scorer``: the grid for a TailNet, none for
    other models and for checkpoints scored through another vocabulary."""
    if isinstance(scorer, ModelScorer) and hasattr(scorer.model, "tail_bias"):
        return TAIL_BIAS_GRID
    return ()


@dataclass(frozen=True)
class BlendChoice:
    """The blend picked on validation: its weights, the model's tail bias (None: the model's own), what was tried."""

    weights: BlendWeights
    tail_bias: float | None
    info: dict

    def scorer(self, model: Scorer) -> Scorer:
        """Return ``model`` as the blend scores it (with the picked tail bias)."""
        return model if self.tail_bias is None else WithTailBias(model, self.tail_bias)


def tune_blend(model: Scorer, knn: Scorer, split: SessionSplit, *, metrics: Sequence[str] = ("HR@20", "MRR@20"),
               max_length: int = 20, step: float = WEIGHT_STEP, decays: Sequence[float] = REPEAT_DECAYS,
               tail_biases: Sequence[float] | None = None, max_examples: int = 5000, batch_size: int = 512,
               seed: int = 0) -> BlendChoice:
    """Return the blend with the best sum of the validation ``metrics``, and what was tried.

    The sum of HR@20 and MRR@20 by default: the blend has to win on both, not trade one away.
    Every weight triple on the simplex at ``step`` is tried with the middle decay and each tail
    bias (``tail_biases``, default ``tail_biases_of(model)``: a TailNet's rectification strength
    is picked for the blend it serves in, not for the model alone), then the best triple and bias
    with each decay; at most ``max_examples`` validation prefixes (a seeded sample). Ties go to
    the larger tail bias (more of the long tail at equal accuracy), then the larger model weight,
    then the larger KNN weight.
    """
    chosen = [metric_by_name(m) for m in metrics]
    k = max(m.k for m in chosen)
    biases: tuple[float | None, ...] = tuple(tail_biases_of(model) if tail_biases is None else tail_biases) or (None,)
    variants = {b: model if b is None else WithTailBias(model, b) for b in biases}
    examples = sample_examples(prefix_examples(split.valid, max_length=max_length), max_examples, seed=seed)
    if not len(examples):
        return BlendChoice(BlendWeights(), None, {})
    hybrid = HybridScorer(model, knn, weights=BlendWeights())
    middle = sorted(decays)[len(decays) // 2]
    Tried = tuple[float | None, BlendWeights]

    def evaluate(candidates: list[Tried]) -> dict[Tried, float]:
        tops: dict[Tried, list[np.ndarray]] = {c: [] for c in candidates}
        for start in range(0, len(examples), batch_size):
            lengths = examples.lengths[start:start + batch_size]
            items = examples.items[start:start + batch_size, : int(lengths.max())]
            _, dist, repeats = hybrid.parts(items, lengths, decays={w.repeat_decay for _, w in candidates})
            for bias in {b for b, _ in candidates}:
                logits = variants[bias].score_sessions(items, lengths).astype(np.float64)
                for w in (w for b, w in candidates if b == bias):
                    scores = torch.from_numpy(blend(logits, dist, repeats[w.repeat_decay], w).astype(np.float32))
                    scores[:, 0] = -np.inf
                    top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
                    found = np.zeros((len(lengths), k), dtype=np.int64)
                    found[:, : top.indices.shape[1]] = np.where(np.isfinite(top.values.numpy()),
                                                                top.indices.numpy(), 0)
                    tops[(bias, w)].append(found)
        return {c: sum(m.compute(RankedLists(topk=np.concatenate(t), targets=examples.targets, is_tail=split.is_tail))
                       for m in chosen) for c, t in tops.items()}

    def rank(c: Tried) -> tuple:
        bias, w = c
        return values[c], -math.inf if bias is None else bias, w.model, w.knn, w.repeat_decay == middle

    values = evaluate([(b, BlendWeights(x, y, z, middle)) for b in biases for x, y, z in _grid(step)])
    best_bias, best = max(values, key=rank)
    if best.repeat:
        values.update(evaluate([(best_bias, BlendWeights(best.model, best.knn, best.repeat, d))
                                for d in decays if d != middle]))
        best_bias, best = max(values, key=rank)
    alone = {b: values.get((b, BlendWeights(1.0, 0.0, 0.0, middle)), float("nan")) for b in biases}
    info = {"validation_prefixes": len(examples), "best": round(values[(best_bias, best)], 4), "tried": len(values),
            "model_alone": round(max(alone.values()), 4),
            "knn_alone": round(values.get((biases[0], BlendWeights(0.0, 1.0, 0.0, middle)), float("nan")), 4)}
    if best_bias is not None:
        info["tail_bias"] = best_bias
    return BlendChoice(best, best_bias, info)


SERVABLE_KNN: tuple[str, ...] = tuple(KNN_DEFAULTS)  # the neighbourhood methods (SR is not served)


@dataclass
class Blend:
    """What a checkpoint carries to serve the blend: the KNN over the training sessions and the weights."""

    knn: SessionKNN
    weights: BlendWeights
    info: dict

    def to_payload(self) -> dict:
        """Return plain data for the checkpoint (loads with ``weights_only=True``)."""
        return {"knn": self.knn.name, "params": asdict(self.knn.params), "weights": self.weights.to_dict(),
                "indptr": torch.as_tensor(self.knn.indptr, dtype=torch.int64),
                "clicks": torch.as_tensor(self.knn.clicks, dtype=torch.int32), "info": dict(self.info)}

    @classmethod
    def from_payload(cls, payload: dict, item_counts: np.ndarray) -> "Blend":
        """Return the blend of a checkpoint payload; raise ValueError when it does not fit ``item_counts``."""
        if payload["knn"] not in SERVABLE_KNN:
            raise ValueError(f"blend KNN {payload['knn']!r} is not one of {SERVABLE_KNN!r}")
        indptr = payload["indptr"].numpy().astype(np.int64)
        clicks = payload["clicks"].numpy().astype(np.int64)
        if len(clicks) and (clicks.min() < 1 or clicks.max() >= len(item_counts)):
            raise ValueError("blend sessions hold item indices outside the vocabulary")
        sessions = np.split(clicks, indptr[1:-1]) if len(indptr) > 1 else []
        knn = SessionKNN(payload["knn"], item_counts, sessions, KNNParams(**payload["params"]))
        return cls(knn=knn, weights=BlendWeights(**payload["weights"]), info=dict(payload.get("info", {})))


def fit_blend(model: Scorer, split: SessionSplit, *, knn_name: str = "VSTAN", tune_knn_params: bool = True,
              max_length: int = 20, max_examples: int = 5000) -> Blend:
    """Return the blend of ``model`` with the KNN ``knn_name`` over the training sessions, the KNN's
    parameters and the weights picked on validation (at most ``max_examples`` prefixes each).

    A TailNet's tail bias is picked with the weights, and ``model``'s is set to it: the checkpoint
    then serves the model with the strength its blend was tuned for (Trainer.save writes it).
    """
    if knn_name not in SERVABLE_KNN:
        raise ValueError(f"blend KNN {knn_name!r} is not one of {SERVABLE_KNN!r}")
    params, info = (tune_knn(knn_name, split, max_length=max_length, max_examples=max_examples)
                    if tune_knn_params else (KNN_DEFAULTS[knn_name], {}))
    knn = SessionKNN(knn_name, split.item_counts, split.train, params)
    choice = tune_blend(model, knn, split, max_length=max_length, max_examples=max_examples)
    if choice.tail_bias is not None and isinstance(model, ModelScorer):
        model.model.tail_bias = choice.tail_bias
    return Blend(knn=knn, weights=choice.weights, info={"knn_tuning": info, "weights_tuning": choice.info})
