"""The blended session scorer: a neural model, a session-KNN baseline, the session's own items and
their categories, in one formula shared by `hotfeed eval` and the recommender's rerank.

    score(i) = w_model * logit(i) + w_knn * log(knn(i) + EPSILON) + w_repeat * log(repeat(i) + EPSILON)
               + w_category * log(category(i) + EPSILON) + tail_bias * [i is a tail item]

- ``logit`` is the model's logit (its log-softmax up to a per-session constant, so the ranking
  and every score difference within a session are the log-softmax's: nothing needs the
  catalogue-wide normalizer, and serving scores only the candidates);
- ``knn`` is the KNN's scores, non-negative, normalized to sum 1 over the catalogue;
- ``repeat`` is the session's own items, click p from the end weighing ``repeat_decay ** p``,
  normalized to sum 1 (RepeatNet's repeat mode: a quarter of next clicks repeat the last item);
- ``category`` is the session's categories, weighed like ``repeat`` (the same decay), each spread
  over the items of that category by their share of its training clicks raised to
  ``category_exponent`` (``CategoryPrior``; 1: by popularity, 0: evenly over the category's
  clicked items): where the neighbourhood runs out of evidence, "an item of the category being
  browsed" beats "a popular item" (on the Taobao and REES46 samples it is what lifts HR@20 past
  V-SKNN's). How much popularity should decide within the category is the log's to say (the KNN
  part already favours popular items): the exponent is picked on validation with the weights.

A weighted sum of log-distributions is a product of experts: an item ranks high when every
weighted part agrees. ``EPSILON`` keeps items a part has no evidence for finite. The weights
sum to 1 and are picked on the validation sessions (``tune_blend``); (1, 0, 0, 0) is the model
alone, (0, 1, 0, 0) the KNN alone. Without item categories (no items file) ``w_category`` is 0.

``tail_bias`` is the blend's long-tail rectification (TailNet's idea applied to the whole blend:
the KNN, repeat and category parts all favour popular items). It is picked on validation after
the weights, together with ``category_exponent`` (the other long-tail lever): at each exponent,
the largest of ``TAIL_BIASES`` that the rule TailNet's own rectification is picked by takes
against the most accurate blend (``significance.largest_acceptable``, its module docstring, with
the margin ``TAIL_TOLERANCE``); of those settings, the one whose lists hold the most tail items
(``_pick_long_tail``). Accuracy decides what is acceptable, long-tail exposure among the acceptable.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from recommender.model.data import SessionSplit, validation_examples
from recommender.model.evaluate import Scorer
from recommender.model.metrics import RankedLists, metric_by_name
from recommender.model.significance import ACCURACY_METRICS, accuracy, largest_acceptable
from recommender.model.knn_kernels import sum_at
from recommender.model.session_knn import KNN_DEFAULTS, KNNParams, SessionKNN, tune_knn

__all__ = ["EPSILON", "Blend", "BlendWeights", "CategoryPrior", "HybridScorer", "blend", "fit_blend", "knn_at",
           "knn_distribution", "repeat_at", "repeat_distribution", "tune_blend", "WEIGHT_STEP", "REPEAT_DECAYS",
           "CATEGORY_EXPONENTS", "SERVABLE_KNN", "TAIL_BIASES", "TAIL_TOLERANCE"]

EPSILON = 1e-4
WEIGHT_STEP = 0.1
REPEAT_DECAYS: tuple[float, ...] = (0.3, 0.6, 0.9)
CATEGORY_EXPONENTS: tuple[float, ...] = (0.0, 0.5, 1.0)  # clicks ** exponent spread a category over its items
TAIL_BIASES: tuple[float, ...] = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5)
TAIL_TOLERANCE = 0.02  # a tail bias may cost a loss shown to be under this (relative), or an unproven one measured under it
SCREEN_PREFIXES = 1024  # tune_blend scores every weight tuple on this many validation prefixes first,
FINALISTS = 40  # then this many of the best on all of them


@dataclass(frozen=True)
class BlendWeights:
    """The weight of each part of the blend (they sum to 1), the decay per click of the repeat and
    category parts, the exponent on the clicks that spread a category over its items and the tail
    items' offset (checkpoints written before the category part and the tail bias load with both
    0, those written before the exponent with 1: the shares they were picked with)."""

    model: float = 1.0
    knn: float = 0.0
    repeat: float = 0.0
    repeat_decay: float = 0.6
    category: float = 0.0
    tail_bias: float = 0.0
    category_exponent: float = 1.0

    def __post_init__(self):
        parts = (self.model, self.knn, self.repeat, self.category)
        if not all(math.isfinite(w) and w >= 0 for w in parts) or not math.isclose(sum(parts), 1.0, abs_tol=1e-6):
            raise ValueError(f"blend weights {parts!r} must be non-negative and sum to 1")
        if not (math.isfinite(self.tail_bias) and self.tail_bias >= 0):
            raise ValueError(f"tail_bias {self.tail_bias!r} must be a finite number >= 0")
        if not 0 < self.repeat_decay <= 1:
            raise ValueError(f"repeat_decay {self.repeat_decay!r} must be in (0, 1]")
        if not 0 <= self.category_exponent <= 1:
            raise ValueError(f"category_exponent {self.category_exponent!r} must be in [0, 1]")

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
    session, candidates = np.asarray(session, dtype=np.int64), np.asarray(candidates, dtype=np.int64)
    weight = _repeat_weights(session[None, :], np.array([len(session)]), decay)[0]
    total = weight.sum()
    return sum_at(session, weight, candidates) / total if total > 0 else np.zeros(len(candidates))


@dataclass(frozen=True)
class CategoryPrior:
    """The category part: ``codes`` [num_items] is each vocabulary index's category (-1: none, and
    always for padding); ``counts`` [num_items] the items' training clicks.

        category(i) = share(i) * sum_p decay**p [cat(s_p) == cat(i)] / sum_p decay**p
        share(i) = clicks(i)**a / sum of clicks(j)**a over the items j of i's category

    over the session's clicks s_p with a category, p counted from the end (0 = the last click);
    ``a`` is the blend's ``category_exponent`` (1: an item's share of its category's clicks, 0: the
    category spread evenly; an item never clicked in training has no share either way).
    """

    codes: np.ndarray
    counts: np.ndarray
    _shares: dict[float, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_codes(cls, codes: np.ndarray, item_counts: np.ndarray) -> "CategoryPrior":
        """Return the prior of category ``codes`` per vocabulary index with shares from ``item_counts``;
        raise ValueError when they do not fit each other."""
        codes = np.asarray(codes, dtype=np.int64).copy()
        counts = np.asarray(item_counts, dtype=np.float64).copy()
        if codes.shape != counts.shape or (len(codes) and codes.min() < -1):
            raise ValueError(f"category codes {codes.shape} do not fit {counts.shape} item counts")
        if len(counts) and not (np.isfinite(counts).all() and counts.min() >= 0):
            raise ValueError("item counts must be finite and non-negative")
        if len(codes):
            codes[0] = -1
        return cls(codes=codes, counts=counts)

    def share(self, exponent: float = 1.0) -> np.ndarray:
        """Return [num_items]: each item's ``clicks ** exponent`` over its category's sum of them
        (0 for items without a category or without clicks); computed once per exponent."""
        share = self._shares.get(exponent)
        if share is None:
            has = self.codes >= 0
            mass = np.where(has & (self.counts > 0), self.counts ** float(exponent), 0.0)
            totals = np.bincount(self.codes[has], weights=mass[has], minlength=self.num_categories)
            share = np.zeros(len(self.codes))
            share[has] = mass[has] / np.maximum(totals[self.codes[has]], 1e-12)
            self._shares[exponent] = share
        return share

    @classmethod
    def from_names(cls, categories: Sequence[str | None], item_counts: np.ndarray) -> "CategoryPrior":
        """Return the prior of one category name per vocabulary index (padding first; empty or None: none)."""
        names = [str(c) if c is not None and str(c) not in ("", "nan", "<NA>") else "" for c in categories]
        index: dict[str, int] = {}
        codes = np.array([index.setdefault(n, len(index)) if n else -1 for n in names], dtype=np.int64)
        return cls.from_codes(codes, item_counts)

    @property
    def num_categories(self) -> int:
        return int(self.codes.max(initial=-1)) + 1

    def refitted(self, item_counts: np.ndarray) -> "CategoryPrior":
        """Return the same categories with the shares of other training counts (--refit)."""
        return CategoryPrior.from_codes(self.codes, item_counts)

    def distribution(self, items: np.ndarray, lengths: np.ndarray, decay: float,
                     exponent: float = 1.0) -> np.ndarray:
        """Return [B, num_items]: the category part of each session prefix (rows of padding alone: 0)."""
        return self.share(exponent)[None, :] * self.session_weights(items, lengths, decay)

    def session_weights(self, items: np.ndarray, lengths: np.ndarray, decay: float) -> np.ndarray:
        """Return [B, num_items]: the decayed weight of each item's category in each session prefix
        (the second factor of the class docstring's formula; it does not depend on the exponent)."""
        items = np.asarray(items)
        weight = _repeat_weights(items, lengths, decay)
        code = self.codes[items]
        keep = (weight > 0) & (code >= 0)
        rows = np.broadcast_to(np.arange(len(items))[:, None], items.shape)
        by_category = np.zeros((len(items), self.num_categories + 1))  # the last column: "no category"
        np.add.at(by_category, (rows[keep], code[keep]), weight[keep])
        total = by_category.sum(axis=1, keepdims=True)
        by_category /= np.where(total > 0, total, 1.0)
        column = np.where(self.codes >= 0, self.codes, self.num_categories)
        return by_category[:, column]

    def at(self, session: np.ndarray, candidates: np.ndarray, decay: float, exponent: float = 1.0) -> np.ndarray:
        """Return ``distribution`` of one session at ``candidates`` only (the serving path)."""
        session, candidates = np.asarray(session, dtype=np.int64), np.asarray(candidates, dtype=np.int64)
        weight = _repeat_weights(session[None, :], np.array([len(session)]), decay)[0]
        code = self.codes[session]
        keep = code >= 0
        total = weight[keep].sum()
        if total <= 0:
            return np.zeros(len(candidates))
        wanted = self.codes[candidates]
        at = self.share(exponent)[candidates] * sum_at(code[keep], weight[keep], wanted) / total
        return np.where(wanted >= 0, at, 0.0)

    def to_payload(self) -> torch.Tensor:
        return torch.as_tensor(self.codes, dtype=torch.int32)


def knn_at(knn: SessionKNN, session: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Return ``knn_distribution`` of ``knn.score_session(session)`` at ``candidates`` only (the serving
    path: nothing the size of the catalogue); padding candidates get 0."""
    candidates = np.asarray(candidates, dtype=np.int64)
    items, votes = knn.votes(session)
    total = knn.popularity_total + float(votes.sum())
    at = (knn.popularity[candidates] + sum_at(items, votes, candidates)) / total
    return np.where(candidates > 0, at, 0.0)


def blend(logits: np.ndarray, knn: np.ndarray, repeat: np.ndarray, weights: BlendWeights,
          category: np.ndarray | None = None, tail: np.ndarray | None = None) -> np.ndarray:
    """Return the blended scores (the module docstring's formula), elementwise over same-shaped parts
    (``tail``, the items' tail mask, may broadcast; ``category`` and ``tail`` are read only when
    their weight is not 0)."""
    logits = np.asarray(logits, dtype=np.float64)
    out = weights.model * logits if weights.model else np.zeros_like(logits)  # 0 * -inf would be NaN
    if weights.knn:
        out = out + weights.knn * np.log(knn + EPSILON)
    if weights.repeat:
        out = out + weights.repeat * np.log(repeat + EPSILON)
    if weights.category:
        if category is None:
            raise ValueError("the blend weighs a category part but none was given")
        out = out + weights.category * np.log(category + EPSILON)
    if weights.tail_bias:
        if tail is None:
            raise ValueError("the blend has a tail bias but no tail mask was given")
        out = out + weights.tail_bias * np.asarray(tail, dtype=np.float64)
    return out


class HybridScorer:
    """The blend as an evaluator scorer: ``score_sessions(items, lengths)`` -> [B, num_items]."""

    def __init__(self, model: Scorer, knn: Scorer, *, weights: BlendWeights, name: str = "hybrid",
                 categories: CategoryPrior | None = None, is_tail: np.ndarray | None = None):
        if weights.category and categories is None:
            raise ValueError("the blend weighs a category part but has no item categories")
        if weights.tail_bias and is_tail is None:
            raise ValueError("the blend has a tail bias but no tail mask")
        self.model, self.knn, self.weights, self.name, self.categories = model, knn, weights, name, categories
        self.is_tail = is_tail

    def parts(self, items: np.ndarray, lengths: np.ndarray, decays: Sequence[float] = (),
              category_settings: Sequence[tuple[float, float]] = ()) -> tuple[
            np.ndarray, np.ndarray, dict[float, np.ndarray], dict[tuple[float, float], np.ndarray]]:
        """Return (model logits, KNN distribution, {decay: repeat distribution}, {(decay, exponent):
        category distribution, empty without categories}) for a batch; by default at the weights'
        decay and exponent."""
        logits = self.model.score_sessions(items, lengths).astype(np.float64)
        knn = knn_distribution(self.knn.score_sessions(items, lengths))
        decays = tuple(decays) or (self.weights.repeat_decay,)
        repeat = {d: repeat_distribution(items, lengths, logits.shape[1], d) for d in decays}
        settings = tuple(category_settings) or ((self.weights.repeat_decay, self.weights.category_exponent),)
        category = {}
        if self.categories is not None:  # the session's category weights once per decay, shared by the exponents
            weights = {d: self.categories.session_weights(items, lengths, d) for d in {d for d, _ in settings}}
            category = {(d, a): self.categories.share(a)[None, :] * weights[d] for d, a in settings}
        return logits, knn, repeat, category

    def score_sessions(self, items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        logits, knn, repeat, category = self.parts(items, lengths)
        w = self.weights
        scores = blend(logits, knn, repeat[w.repeat_decay], w, category.get((w.repeat_decay, w.category_exponent)),
                       self.is_tail).astype(np.float32)
        scores[:, 0] = -np.inf
        return scores


def _grid(step: float, parts: int = 3) -> list[tuple[float, ...]]:
    """Return every weight tuple of ``parts`` non-negative multiples of ``step`` summing to 1."""
    n = round(1 / step)
    return [tuple(round(c * step, 6) for c in (*combo, n - sum(combo)))
            for combo in itertools.product(range(n + 1), repeat=parts - 1) if sum(combo) <= n]


def tune_blend(model: Scorer, knn: Scorer, split: SessionSplit, *, metrics: Sequence[str] = ACCURACY_METRICS,
               max_length: int = 20, step: float = WEIGHT_STEP, decays: Sequence[float] = REPEAT_DECAYS,
               category_exponents: Sequence[float] = CATEGORY_EXPONENTS, max_examples: int = 5000, batch_size: int = 512, seed: int = 0,
               categories: CategoryPrior | None = None, screen: int = SCREEN_PREFIXES,
               finalists: int = FINALISTS, tail_biases: Sequence[float] = TAIL_BIASES,
               tail_bias: float | None = None) -> tuple[BlendWeights, dict]:
    """Return (the blend weights with the best sum of the validation ``metrics``, what was tried).

    The sum of HR@20 and MRR@20 by default: the blend has to win on both, not trade one away.
    Every weight tuple on the simplex at ``step`` (model, KNN, repeat, and category when
    ``categories`` are given) is tried with every decay (one decay when neither the repeat nor the
    category part has weight) and, when the category part has weight, every exponent of
    ``category_exponents``, on at most ``max_examples`` validation prefixes (a seeded sample).
    With more than ``screen`` prefixes, every tuple is first scored on the first ``screen`` of
    them and only the best ``finalists`` on all (2,156 tuples x 5,000 prefixes of a 14,000-item
    catalogue would take many minutes). Ties go to the larger model weight, then the larger KNN
    weight, then the larger category weight, then the middle decay, then the middle exponent
    (the middle of a grid: no setting is favoured by a tie). Then the long-tail setting: at each
    of ``category_exponents`` (the picked one only when the category part has no weight), the
    largest of 0 and ``tail_biases`` (empty: none) whose HR@20 and MRR@20 lose less than
    ``TAIL_TOLERANCE`` against the best weights without the loss being significant, or are shown
    to lose less than it (``significance.largest_acceptable``), and of those the one with the most tail items
    (``_pick_long_tail``); or ``tail_bias`` as given when not None (the exponent stays).
    The parts' logs are taken once per batch and summed in float32 for every tuple (the same
    ranking as ``blend`` up to float32 rounding of near ties).
    """
    chosen = [metric_by_name(m) for m in metrics]
    k = max(m.k for m in chosen)
    examples = validation_examples(split, max_length=max_length, limit=max_examples, seed=seed)
    if not len(examples):
        return BlendWeights(), {}
    hybrid = HybridScorer(model, knn, weights=BlendWeights(), categories=categories)
    middle = sorted(decays)[len(decays) // 2]
    middle_exponent = sorted(category_exponents)[len(category_exponents) // 2]
    candidates = [BlendWeights(*p[:3], repeat_decay=d, category=p[3] if len(p) > 3 else 0.0, category_exponent=a)
                  for p in _grid(step, parts=3 if categories is None else 4)
                  for d in (decays if p[2] or (len(p) > 3 and p[3]) else (middle,))
                  for a in (category_exponents if len(p) > 3 and p[3] else (middle_exponent,))]

    def log_of(part: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.log(part + EPSILON).astype(np.float32))

    tail_part = torch.from_numpy(np.asarray(split.is_tail, dtype=np.float32))[None, :]

    def ranked(tried: list[BlendWeights], count: int) -> dict[BlendWeights, RankedLists]:
        """Return the top-k lists of each of ``tried`` on the first ``count`` examples."""
        tops: dict[BlendWeights, list[np.ndarray]] = {w: [] for w in tried}
        for start in range(0, count, batch_size):
            lengths = examples.lengths[start:min(start + batch_size, count)]
            items = examples.items[start:start + len(lengths), : int(lengths.max())]
            logits, dist, repeats, category = hybrid.parts(
                items, lengths, decays={w.repeat_decay for w in tried},
                category_settings={(w.repeat_decay, w.category_exponent) for w in tried if w.category})
            model_part, knn_part = torch.from_numpy(logits.astype(np.float32)), log_of(dist)
            repeat_part = {d: log_of(r) for d, r in repeats.items()}
            category_part = {setting: log_of(c) for setting, c in category.items()}
            # One score buffer and one top-k buffer per batch, filled in place for every tuple: a
            # fresh [batch, items] tensor per tuple left glibc holding tens of GB on large catalogues.
            scores = torch.empty_like(model_part)
            width = min(k, scores.shape[1])
            top_values = torch.empty((len(lengths), width), dtype=scores.dtype)
            top_indices = torch.empty((len(lengths), width), dtype=torch.int64)
            for w in tried:
                scores.zero_()
                for weight, part in ((w.model, model_part), (w.knn, knn_part),
                                     (w.repeat, repeat_part.get(w.repeat_decay)),
                                     (w.category, category_part.get((w.repeat_decay, w.category_exponent))),
                                     (w.tail_bias, tail_part)):
                    if weight:  # 0 * -inf would be NaN
                        scores.add_(part, alpha=weight)
                scores[:, 0] = -np.inf
                torch.topk(scores, width, dim=1, out=(top_values, top_indices))
                found = np.zeros((len(lengths), k), dtype=np.int64)
                found[:, :width] = np.where(np.isfinite(top_values.numpy()), top_indices.numpy(), 0)
                tops[w].append(found)
        targets = examples.targets[:count]
        return {w: RankedLists(topk=np.concatenate(t), targets=targets, is_tail=split.is_tail) for w, t in tops.items()}

    def evaluate(tried: list[BlendWeights], count: int) -> dict[BlendWeights, float]:
        """Return the summed metrics of each of ``tried`` on the first ``count`` examples."""
        return {w: accuracy(lists, metrics) for w, lists in ranked(tried, count).items()}

    def preference(values: dict[BlendWeights, float]):
        return lambda w: (values[w], w.model, w.knn, w.category, w.repeat_decay == middle,
                          w.category_exponent == middle_exponent)

    alone = {"model_alone": BlendWeights(1.0, 0.0, 0.0, middle, category_exponent=middle_exponent),
             "knn_alone": BlendWeights(0.0, 1.0, 0.0, middle, category_exponent=middle_exponent)}
    info: dict = {"validation_prefixes": len(examples), "tried": len(candidates)}
    if len(examples) > screen:
        screened = evaluate(candidates, screen)
        best_screened = sorted(candidates, key=preference(screened), reverse=True)[:finalists]
        candidates = list(dict.fromkeys([*best_screened, *alone.values()]))  # the two references are reported
        info["finalists"] = len(best_screened)
    values = evaluate(candidates, len(examples))
    best = max(values, key=preference(values))
    info.update(best=round(values[best], 4), **{k: round(values[w], 4) for k, w in alone.items()})
    if tail_bias is not None:
        best = replace(best, tail_bias=float(tail_bias))
    elif tail_biases and split.is_tail.any():
        exponents = category_exponents if best.category else (best.category_exponent,)
        tried = [best, *(replace(best, category_exponent=a, tail_bias=b)
                         for a in exponents for b in (0.0, *tail_biases))]
        best, info["long_tail"] = _pick_long_tail(best, ranked(list(dict.fromkeys(tried)), len(examples)))
    return best, info


def _pick_long_tail(best: BlendWeights, lists: dict[BlendWeights, RankedLists],
                    tolerance: float = TAIL_TOLERANCE) -> tuple[BlendWeights, dict]:
    """Return (the long-tail setting picked against ``best``, what each setting gave).

    ``lists`` holds ``best``'s lists and those of ``best`` with other tail biases and category
    exponents. For each exponent, the biases are scanned up from 0 (from the smallest above 0 at
    ``best``'s own exponent, whose unbiased lists are the reference) and the largest that
    ``largest_acceptable`` takes against ``best``'s lists is that exponent's setting (none when even
    its unbiased lists are refused). Of those, the one whose lists hold the most tail items (Tail@20)
    is picked; a tie keeps ``best``'s exponent."""
    tail = metric_by_name("Tail@20")
    exponents = sorted({w.category_exponent for w in lists})
    settings: dict[BlendWeights, float] = {}
    scans: dict[float, dict] = {}
    for a in exponents:
        tried = sorted((w for w in lists if w.category_exponent == a and w != best), key=lambda w: w.tail_bias)
        picked, scans[a] = largest_acceptable(lists[best], [(w.tail_bias, lists[w]) for w in tried],
                                              margin=tolerance)
        if picked is not None or a == best.category_exponent:
            setting = replace(best, category_exponent=a, tail_bias=picked or 0.0)
            settings[setting] = tail.compute(lists[setting])
    chosen = max(settings, key=lambda w: (settings[w], w.category_exponent == best.category_exponent))
    return chosen, {"scans": scans, "picked": {"category_exponent": chosen.category_exponent,
                                               "tail_bias": chosen.tail_bias, "Tail@20": round(settings[chosen], 4)}}


SERVABLE_KNN: tuple[str, ...] = tuple(KNN_DEFAULTS)  # the neighbourhood methods (SR is not served)


@dataclass
class Blend:
    """What a checkpoint carries to serve the blend: the KNN over the training sessions, the item
    categories (None without an items file) and the weights."""

    knn: SessionKNN
    weights: BlendWeights
    info: dict
    categories: CategoryPrior | None = None

    def __post_init__(self):
        if self.weights.category and self.categories is None:
            raise ValueError("the blend weighs a category part but has no item categories")

    def to_payload(self) -> dict:
        """Return plain data for the checkpoint (loads with ``weights_only=True``)."""
        payload = {"knn": self.knn.name, "params": asdict(self.knn.params), "weights": self.weights.to_dict(),
                   "indptr": torch.as_tensor(self.knn.indptr, dtype=torch.int64),
                   "clicks": torch.as_tensor(self.knn.clicks, dtype=torch.int32), "info": dict(self.info)}
        if self.categories is not None:
            payload["categories"] = self.categories.to_payload()
        return payload

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
        categories = (CategoryPrior.from_codes(payload["categories"].numpy(), item_counts)
                      if payload.get("categories") is not None else None)
        weights = BlendWeights(**payload["weights"])
        if sessions:  # compile (or load the cached) KNN loops now, not in the first request
            knn_at(knn, sessions[0], sessions[0])
            repeat_at(sessions[0], sessions[0], 0.5)
        if categories is not None:  # the shares the blend serves with, now too
            categories.share(weights.category_exponent)
        return cls(knn=knn, weights=weights, info=dict(payload.get("info", {})), categories=categories)

    def refitted(self, split: SessionSplit) -> "Blend":
        """Return the blend with the same parameters and weights over ``split``'s training sessions
        (the final fit once everything is picked: ``refit_split``'s or ``serving_split``'s)."""
        return Blend(knn=SessionKNN(self.knn.name, split.item_counts, split.train, self.knn.params),
                     weights=self.weights, info={**self.info, "refit": True, "sessions": len(split.train)},
                     categories=self.categories.refitted(split.item_counts) if self.categories is not None else None)


def fit_blend(model: Scorer, split: SessionSplit, *, knn_name: str = "VSTAN", tune_knn_params: bool = True,
              max_length: int = 20, max_examples: int = 5000, categories: CategoryPrior | None = None,
              tail_bias: float | None = None) -> Blend:
    """Return the blend of ``model`` with the KNN ``knn_name`` over the training sessions (and the
    category part when ``categories`` are given), the KNN's parameters and the weights picked on
    validation (at most ``max_examples`` prefixes each); ``tail_bias`` None picks it on validation."""
    if knn_name not in SERVABLE_KNN:
        raise ValueError(f"blend KNN {knn_name!r} is not one of {SERVABLE_KNN!r}")
    params, info = (tune_knn(knn_name, split, max_length=max_length, max_examples=max_examples)
                    if tune_knn_params else (KNN_DEFAULTS[knn_name], {}))
    knn = SessionKNN(knn_name, split.item_counts, split.train, params)
    weights, tried = tune_blend(model, knn, split, max_length=max_length, max_examples=max_examples,
                                categories=categories, tail_bias=tail_bias)
    return Blend(knn=knn, weights=weights, info={"knn_tuning": info, "weights_tuning": tried,
                                                 "picked_with_sessions": len(split.train)}, categories=categories)
