"""Strong non-neural session baselines, written from the papers' formulas: SR, SKNN, V-SKNN,
STAN and VSTAN. They are scorers (evaluate.py): ``score_sessions(items [B, L], lengths [B])``
returns [B, num_items] scores with the padding column -inf, like the models.

Notation: the current session is s = (s_1 .. s_m) (item indices, oldest first; the evaluator
passes at most the last ``max_length`` clicks), training sessions n are ordered by end time
(index 0 oldest), ``|n|`` is the number of distinct items of n, ``S`` the number of training
sessions and ``S_i`` the number holding item i; ``idf(i) = log(S / S_i)``.

SR, sequential rules (Kamehkhosh, Jannach & Ludewig 2017): every training session adds
``1 / (q - p)`` to the rule ``n_p -> n_q`` for positions p < q with q - p <= ``steps``;
score(j) = rule(s_m -> j), the rules of the last click only.

Neighbourhood methods share three steps: (1) the candidate neighbours are the ``sample`` most
recent training sessions that hold at least one item of s; (2) each gets a similarity and the
``k`` most similar are kept; (3) score(i) = the sum, over kept neighbours holding i, of their
similarity times a per-item factor.

SKNN (Jannach & Ludewig 2017): sim(s, n) = |set(s) ∩ n| / sqrt(|set(s)| |n|) (cosine of binary
vectors); item factor 1.

V-SKNN (Ludewig & Jannach 2018): the session is a real-valued vector, w(s_p) = p / m (linear
decay, the last click 1; a repeated item keeps its latest weight); sim(s, n) = sum of w(i) over
i in s ∩ n, divided by sqrt(|set(s)| |n|); item factor ``1 + idf_weight * idf(i)``.

STAN (Garg et al., SIGIR 2019): w(s_p) = exp((p - m) / lambda_1); sim(s, n) = sum of w(i) over
i in s ∩ n / (||w|| sqrt(|n|)), times the neighbour's recency exp(-(T - t_n) / lambda_2); item
factor exp(-|pos_n(i) - pos_n(c)| / lambda_3), where c is the most recent click of s that n
holds and pos_n its (last) position in n. Session times are not kept in the split, so t_n is
the neighbour's rank in training order as a share of S (T = 1): lambda_2 is in units of the
training period (a documented approximation of the paper's seconds).

VSTAN (Ludewig, Latifi, Jannach et al. 2021): STAN's three weights plus the IDF item factor
of V-SKNN (``1 + idf_weight * idf(i)``).

Every score adds ``1e-6 *`` normalized popularity, so ties and items no neighbour holds fall
back to popularity (as the other baselines do).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recommender.model.knn_kernels import DECAYS, neighbour_votes

__all__ = ["SequentialRules", "SessionKNN", "KNN_DEFAULTS", "SESSION_BASELINES", "build_session_baseline"]


def _popularity(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    return counts / (counts.max() + 1.0)


class SequentialRules:
    """SR: see the module docstring."""

    name = "SR"

    def __init__(self, item_counts: np.ndarray, train_sessions: Sequence[np.ndarray], *, steps: int = 10):
        self.num_items = len(item_counts)
        self.popularity = _popularity(item_counts) * 1e-6
        lefts, rights, weights = [], [], []
        for session in train_sessions:
            for gap in range(1, min(steps, len(session) - 1) + 1):
                lefts.append(session[:-gap])
                rights.append(session[gap:])
                weights.append(np.full(len(session) - gap, 1.0 / gap))
        left = np.concatenate(lefts) if lefts else np.zeros(0, np.int64)
        right = np.concatenate(rights) if rights else np.zeros(0, np.int64)
        weight = np.concatenate(weights) if weights else np.zeros(0)
        keys, inverse = np.unique(left * self.num_items + right, return_inverse=True)
        summed = np.bincount(inverse, weights=weight)
        rule_left = keys // self.num_items
        order = np.argsort(rule_left, kind="stable")
        self.indptr = np.zeros(self.num_items + 1, dtype=np.int64)
        np.cumsum(np.bincount(rule_left, minlength=self.num_items), out=self.indptr[1:])
        self.targets = (keys % self.num_items)[order]
        self.weights = summed[order]

    def rules_from(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (target items, rule weights) of the rules ``item -> j``."""
        lo, hi = self.indptr[item], self.indptr[item + 1]
        return self.targets[lo:hi], self.weights[lo:hi]

    def score_sessions(self, items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        scores = np.tile(self.popularity, (len(items), 1))
        for row, (session, length) in enumerate(zip(items, lengths)):
            targets, weights = self.rules_from(int(session[int(length) - 1]))
            scores[row, targets] += weights
        scores[:, 0] = -np.inf
        return scores.astype(np.float32)


@dataclass(frozen=True)
class KNNParams:
    """One neighbourhood method's parameters (see the module docstring)."""

    k: int = 100
    sample: int = 500
    decay: str = "none"  # none (SKNN) | linear (V-SKNN) | exp (STAN, VSTAN)
    lambda_1: float = 2.0  # exp decay within the current session, in clicks
    lambda_2: float = math.inf  # neighbour recency, in units of the training period
    lambda_3: float = math.inf  # position distance in the neighbour, in clicks
    idf_weight: float = 0.0


KNN_DEFAULTS: dict[str, KNNParams] = {
    "SKNN": KNNParams(k=100, sample=500),
    "V-SKNN": KNNParams(k=100, sample=500, decay="linear", idf_weight=1.0),
    "STAN": KNNParams(k=100, sample=500, decay="exp", lambda_1=2.0, lambda_2=0.5, lambda_3=2.0),
    "VSTAN": KNNParams(k=100, sample=500, decay="exp", lambda_1=2.0, lambda_2=0.5, lambda_3=2.0, idf_weight=1.0),
}


class SessionKNN:
    """SKNN, V-SKNN, STAN and VSTAN over one index of the training sessions."""

    def __init__(self, name: str, item_counts: np.ndarray, train_sessions: Sequence[np.ndarray],
                 params: KNNParams | None = None):
        self.name = name
        self.params = params or KNN_DEFAULTS[name]
        self.num_items = len(item_counts)
        self.popularity = _popularity(item_counts) * 1e-6
        self.popularity_total = float(self.popularity[1:].sum())
        self.n_sessions = len(train_sessions)
        # Sessions as CSR rows of their clicks in order (positions matter to STAN's lambda_3).
        lengths = np.array([len(s) for s in train_sessions], dtype=np.int64)
        self.indptr = np.zeros(self.n_sessions + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.indptr[1:])
        self.clicks = (np.concatenate(list(train_sessions)).astype(np.int64) if train_sessions
                       else np.zeros(0, np.int64))
        session_of = np.repeat(np.arange(self.n_sessions), lengths)
        # Distinct items per session, and each item's sessions (postings), most recent first.
        pairs = np.unique(session_of * self.num_items + self.clicks)
        pair_session, pair_item = pairs // self.num_items, pairs % self.num_items
        self.distinct = np.bincount(pair_session, minlength=self.n_sessions).astype(np.float64)
        self.distinct_indptr = np.zeros(self.n_sessions + 1, dtype=np.int64)
        np.cumsum(self.distinct.astype(np.int64), out=self.distinct_indptr[1:])
        self.distinct_items = pair_item  # sorted by session: row n is distinct_items[distinct_indptr[n]:...]
        order = np.lexsort((-pair_session, pair_item))
        self.post_indptr = np.zeros(self.num_items + 1, dtype=np.int64)
        np.cumsum(np.bincount(pair_item, minlength=self.num_items), out=self.post_indptr[1:])
        self.postings = pair_session[order]
        holders = np.bincount(pair_item, minlength=self.num_items).astype(np.float64)
        self.idf = np.where(holders > 0, np.log(max(self.n_sessions, 1) / np.maximum(holders, 1)), 0.0)

    def score_session(self, session: np.ndarray) -> np.ndarray:
        """Return the [num_items] scores of one session (item indices, padding and unknown ids removed)."""
        items, votes = self.votes(session)
        return self.popularity + np.bincount(items, weights=votes, minlength=self.num_items)

    def votes(self, session: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (items, the neighbours' votes for them): ``score_session`` is the popularity term plus
        these votes summed per item. An item may appear more than once (one vote per neighbour).

        The arithmetic is the module docstring's, compiled (knn_kernels.py): a request's session
        is scored in about a tenth of a millisecond at 200,000 training sessions.
        """
        session = np.asarray(session, dtype=np.int64)
        session = session[session > 0]
        if not len(session) or not self.n_sessions:
            return np.zeros(0, np.int64), np.zeros(0)
        p = self.params
        return neighbour_votes(session, self.postings, self.post_indptr, self.distinct_indptr, self.distinct_items,
                               self.distinct, self.indptr, self.clicks, self.idf, self.n_sessions, int(p.k),
                               int(p.sample), DECAYS[p.decay], float(p.lambda_1), float(p.lambda_2),
                               float(p.lambda_3), float(p.idf_weight))

    def score_sessions(self, items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        out = np.empty((len(items), self.num_items), dtype=np.float32)
        for row, (session, length) in enumerate(zip(items, lengths)):
            out[row] = self.score_session(session[: int(length)])
        out[:, 0] = -np.inf
        return out


SESSION_BASELINES: tuple[str, ...] = ("SR", "SKNN", "V-SKNN", "STAN", "VSTAN")


def build_session_baseline(name: str, item_counts: np.ndarray, train_sessions: Sequence[np.ndarray],
                           params: KNNParams | None = None):
    """Return the baseline ``name`` (one of SESSION_BASELINES) fitted on the training sessions."""
    if name == "SR":
        return SequentialRules(item_counts, train_sessions)
    return SessionKNN(name, item_counts, train_sessions, params)


# The grid each neighbourhood parameter is tuned over (one parameter at a time, from the defaults).
KNN_GRID: dict[str, tuple] = {
    "k": (50, 100, 200),
    "sample": (250, 500, 1000),
    "lambda_1": (1.0, 2.0, 4.0),
    "lambda_2": (0.25, 1.0, math.inf),
    "lambda_3": (1.0, 2.0, 4.0),
    "idf_weight": (0.0, 1.0, 2.0),
}
_TUNED: dict[str, tuple[str, ...]] = {
    "SKNN": ("k", "sample"),
    "V-SKNN": ("k", "sample", "idf_weight"),
    "STAN": ("k", "lambda_1", "lambda_2", "lambda_3"),
    "VSTAN": ("k", "lambda_1", "lambda_2", "lambda_3", "idf_weight"),
}


def tune_knn(name: str, split, *, metric: str = "MRR@20", max_length: int = 20,
             max_examples: int | None = None, seed: int = 0) -> tuple[KNNParams, dict]:
    """Return (the parameters of ``name`` with the best validation ``metric``, what was tried).

    At most ``max_examples`` validation prefixes are scored (a seeded sample) when given.

    Coordinate search: starting from the paper defaults, each parameter in turn takes the grid
    value that scores best with the others fixed (one pass; ties keep the default).
    """
    from dataclasses import replace

    from recommender.model.data import validation_examples
    from recommender.model.evaluate import rank_top_k
    from recommender.model.metrics import RankedLists, metric_by_name

    chosen = metric_by_name(metric)
    examples = validation_examples(split, max_length=max_length, limit=max_examples, seed=seed)
    params = KNN_DEFAULTS[name]
    if not len(examples) or name not in _TUNED:
        return params, {}
    base = SessionKNN(name, split.item_counts, split.train, params)

    def value(candidate: KNNParams) -> float:
        base.params = candidate
        topk, targets = rank_top_k(base, examples, k=chosen.k)
        return chosen.compute(RankedLists(topk=topk, targets=targets, is_tail=split.is_tail))

    tried: dict[str, float] = {}
    best_value = value(params)
    tried[repr(params)] = best_value
    for field_name in _TUNED[name]:
        for option in KNN_GRID[field_name]:
            candidate = replace(params, **{field_name: option})
            if repr(candidate) in tried:
                continue
            tried[repr(candidate)] = score = value(candidate)
            if score > best_value:
                best_value, params = score, candidate
    return params, {"best": best_value, "tried": len(tried)}
