"""Top-K metrics as classes: each carries its formula and does its math on numpy arrays.

Every metric reads one ``RankedLists``: for N test prefixes, ``topk[n]`` holds the K_max
best-scored item indices in rank order and ``targets[n]`` the true next item; rank_n is the
1-based position of targets[n] in topk[n] (infinite when absent). I is the set of
recommendable items, T ⊂ I the tail items. Metrics are picked by name, ``"<Name>@<K>"``:
HR, MRR, NDCG, Coverage, TailCoverage, Tail (TailShare).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recommender.errors import ConfigError

__all__ = [
    "RankedLists",
    "Metric",
    "PerPrefixMetric",
    "HitRate",
    "MRR",
    "NDCG",
    "Coverage",
    "TailCoverage",
    "TailShare",
    "METRICS",
    "metric_by_name",
    "DEFAULT_METRICS",
]

DEFAULT_METRICS: tuple[str, ...] = (
    "HR@10", "HR@20", "MRR@10", "MRR@20", "NDCG@10", "NDCG@20", "Coverage@20", "TailCoverage@20", "Tail@20",
)


@dataclass(frozen=True)
class RankedLists:
    """Top-K lists of N prefixes with their targets, and which items are tail."""

    topk: np.ndarray  # [N, K_max] int item indices, best first
    targets: np.ndarray  # [N] int
    is_tail: np.ndarray  # [num_items] bool; index 0 (padding) is never recommendable

    def ranks(self, k: int) -> np.ndarray:
        """Return 1-based ranks of the targets within the first k entries; 0 where absent."""
        hits = self.topk[:, :k] == self.targets[:, None]
        return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)

    @property
    def num_items(self) -> int:
        return len(self.is_tail) - 1


class Metric:
    """A named top-K metric; ``compute`` returns a float in [0, 1]."""

    short: ClassVar[str]

    def __init__(self, k: int):
        if k < 1:
            raise ConfigError(f"metric {self.short}@{k!r}: K must be at least 1")
        self.k = k

    @property
    def name(self) -> str:
        return f"{self.short}@{self.k}"

    def compute(self, lists: RankedLists) -> float:
        raise NotImplementedError

    def _check(self, lists: RankedLists) -> None:
        if lists.topk.shape[1] < self.k:
            raise ConfigError(f"{self.name} needs top-{self.k} lists; got top-{lists.topk.shape[1]}")


class PerPrefixMetric(Metric):
    """A metric that is the mean of one value per prefix (``per_prefix``): what a paired
    comparison of two scorers on the same prefixes resamples (recommender/model/significance.py)."""

    def per_prefix(self, lists: RankedLists) -> np.ndarray:
        raise NotImplementedError

    def compute(self, lists: RankedLists) -> float:
        self._check(lists)
        return float(np.mean(self.per_prefix(lists))) if len(lists.targets) else 0.0


class HitRate(PerPrefixMetric):
    """HR@K = (1/N) * sum_n 1[rank_n <= K]: the share of prefixes whose next item is in the top K."""

    short = "HR"

    def per_prefix(self, lists: RankedLists) -> np.ndarray:
        return (lists.ranks(self.k) > 0).astype(np.float64)


class MRR(PerPrefixMetric):
    """MRR@K = (1/N) * sum_n 1[rank_n <= K] / rank_n: the mean reciprocal rank, 0 outside the top K."""

    short = "MRR"

    def per_prefix(self, lists: RankedLists) -> np.ndarray:
        ranks = lists.ranks(self.k)
        return np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0)


class NDCG(PerPrefixMetric):
    """NDCG@K = (1/N) * sum_n 1[rank_n <= K] / log2(rank_n + 1).

    One relevant item per prefix, so the ideal DCG is 1/log2(2) = 1.
    """

    short = "NDCG"

    def per_prefix(self, lists: RankedLists) -> np.ndarray:
        ranks = lists.ranks(self.k)
        return np.where(ranks > 0, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)


class Coverage(Metric):
    """Coverage@K = |union_n topK_n| / |I|: the share of all items recommended at least once."""

    short = "Coverage"

    def compute(self, lists: RankedLists) -> float:
        self._check(lists)
        shown = np.unique(lists.topk[:, : self.k])
        return float(np.count_nonzero(shown > 0) / max(lists.num_items, 1))


class TailCoverage(Metric):
    """TailCoverage@K = |union_n topK_n ∩ T| / |T|: the share of tail items recommended at least once."""

    short = "TailCoverage"

    def compute(self, lists: RankedLists) -> float:
        self._check(lists)
        shown = np.unique(lists.topk[:, : self.k])
        n_tail = int(lists.is_tail.sum())
        return float(lists.is_tail[shown].sum() / n_tail) if n_tail else 0.0


class TailShare(Metric):
    """Tail@K = (1/N) * sum_n |topK_n ∩ T| / K: the mean share of tail items in a top-K list."""

    short = "Tail"

    def compute(self, lists: RankedLists) -> float:
        self._check(lists)
        if not len(lists.targets):
            return 0.0
        return float(lists.is_tail[lists.topk[:, : self.k]].mean())


METRICS: dict[str, type[Metric]] = {m.short: m for m in (HitRate, MRR, NDCG, Coverage, TailCoverage, TailShare)}
_NAME = re.compile(r"^([A-Za-z]+)@(\d+)$")


def metric_by_name(name: str) -> Metric:
    """Return the metric for a name like "HR@20" or "Tail@20".

    Raises ConfigError for a malformed or unknown name, listing the known ones.
    """
    match = _NAME.match(name.strip())
    if not match or match.group(1) not in METRICS:
        raise ConfigError(f"metric {name!r} is unknown; use <Name>@<K> with Name in {sorted(METRICS)!r}")
    return METRICS[match.group(1)](int(match.group(2)))
