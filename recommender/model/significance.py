"""Is one scorer better than another on the same test prefixes, or is the gap sampling noise?

A test set of a few hundred prefixes moves HR@20 by several points from one sample to the
next, so `hotfeed eval` reports each served blend against the strongest baseline as a paired
difference with a bootstrap confidence interval: the prefixes are resampled with replacement
(the same draw for both scorers, which keeps their correlation), the difference of the means
is taken per draw, and the interval is the draws' 2.5th and 97.5th percentiles. An interval
that excludes 0 is a difference the test set can tell; one that spans 0 is not.

Both long-tail offsets (TailNet's own rectification in the trainer and the blend's tail bias in
hybrid.py) are picked on validation by one rule, ``largest_acceptable``: scanning up from the most
accurate setting, a stronger offset is taken while its HR@20 and MRR@20 either lose less than a
margin at the point estimate without the loss being significant (an unproven small loss), or are
shown to lose less than the margin (a non-inferiority test: every interval's low end above
-margin times the reference value), and the scan stops at the first offset that is neither. A
large validation set proves even a 0.3% loss, and the margin then lets a loss that is surely
small buy long-tail exposure. A small one leaves wide intervals, so only unproven losses pass,
and only those measured under the margin: a 5% loss on 300 prefixes is not significant, yet it is
what was measured, and it is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recommender.model.metrics import PerPrefixMetric, RankedLists, metric_by_name

__all__ = ["ACCURACY_METRICS", "PairedDifference", "accuracy", "paired_bootstrap", "compare", "largest_acceptable"]

# What "accuracy" means when a blend or a tail offset is picked on validation: both must hold.
ACCURACY_METRICS: tuple[str, ...] = ("HR@20", "MRR@20")


def accuracy(lists: RankedLists, metrics: Sequence[str] = ACCURACY_METRICS) -> float:
    """Return the sum of ``metrics`` over ``lists``: what a blend or a tail offset is picked by."""
    return sum(metric_by_name(name).compute(lists) for name in metrics)


@dataclass(frozen=True)
class PairedDifference:
    """Metric of ``ours`` minus that of ``theirs`` on the same prefixes, with its confidence interval."""

    metric: str
    difference: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """Return "better", "worse" or "tie" (the interval spans 0)."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "tie"

    def describe(self) -> str:
        return f"{self.metric} {self.difference:+.4f} [{self.low:+.4f}, {self.high:+.4f}] {self.verdict}"


def paired_bootstrap(ours: np.ndarray, theirs: np.ndarray, *, draws: int = 2000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float, float]:
    """Return (mean(ours - theirs), the interval's low and high end) from ``draws`` resamples of
    the paired per-prefix values; raises ValueError for arrays of different lengths."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape or ours.ndim != 1:
        raise ValueError(f"paired values must be two 1-d arrays of one length; got {ours.shape} and {theirs.shape}")
    delta = ours - theirs
    if not len(delta):
        return 0.0, 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = np.empty(draws)
    chunk = max(1, min(200, 2_000_000 // len(delta)))  # draws at a time: at most ~2M indices in memory
    for start in range(0, draws, chunk):
        n = min(chunk, draws - start)
        means[start:start + n] = delta[rng.integers(len(delta), size=(n, len(delta)))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(delta.mean()), float(low), float(high)


def compare(ours: RankedLists | Sequence[RankedLists], theirs: RankedLists | Sequence[RankedLists], *,
            metrics: Sequence[str] = ACCURACY_METRICS, draws: int = 2000, seed: int = 0) -> list[PairedDifference]:
    """Return one paired difference per metric (HR, MRR or NDCG at some K) of two scorers' lists
    on the same prefixes; raises ValueError when the prefixes' targets differ.

    Either side may be several runs' lists of the same prefixes (one per training seed): each
    prefix's value is then its mean over the runs, so the interval is over the test's prefixes
    and the difference is that of the runs' mean metrics (``hotfeed eval --seeds``)."""
    ours_runs = [ours] if isinstance(ours, RankedLists) else list(ours)
    theirs_runs = [theirs] if isinstance(theirs, RankedLists) else list(theirs)
    if not ours_runs or not theirs_runs:
        raise ValueError("compare needs at least one run's lists on each side")
    targets = ours_runs[0].targets
    if not all(np.array_equal(run.targets, targets) for run in [*ours_runs, *theirs_runs]):
        raise ValueError("the two ranked lists are not for the same prefixes")
    out = []
    for name in metrics:
        metric = metric_by_name(name)
        if not isinstance(metric, PerPrefixMetric):
            raise ValueError(f"{name} is not a mean over prefixes; compare HR, MRR or NDCG")
        mine, other = (np.mean([metric.per_prefix(run) for run in runs], axis=0) for runs in (ours_runs, theirs_runs))
        diff, low, high = paired_bootstrap(mine, other, draws=draws, seed=seed)
        out.append(PairedDifference(metric.name, diff, low, high))
    return out


def largest_acceptable(reference: RankedLists, tried: Sequence[tuple[float, RankedLists]], *,
                       margin: float) -> tuple[float | None, dict[float, dict]]:
    """Return (the last value of ``tried`` that passes against ``reference``, None when the first
    fails; what each scanned value gave: its verdicts, its relative change of each metric, Tail@20
    and whether it passed).

    ``tried`` is scanned in the given order (weakest offset first) and the scan stops at the first
    value that fails. A value passes when on every one of ``ACCURACY_METRICS`` its lists lose less
    than ``margin`` (relative to ``reference``'s value) and are not significantly worse than
    ``reference``'s, or when every interval's low end lies above ``-margin`` times
    ``reference``'s value (the loss is shown to be under ``margin``).
    """
    values = {name: metric_by_name(name).compute(reference) for name in ACCURACY_METRICS}
    allowed = {name: margin * value for name, value in values.items()}
    tail = metric_by_name("Tail@20")
    picked, scan = None, {}
    for value, lists in tried:
        differences = compare(lists, reference)
        # No loss at all passes too (a reference without hits allows none, and loses none).
        unproven = all(d.verdict != "worse" and (d.difference >= 0 or d.difference > -allowed[d.metric])
                       for d in differences)
        small = all(d.low > -allowed[d.metric] for d in differences)
        scan[value] = {**{d.metric: d.verdict for d in differences},
                       "change": {d.metric: round(d.difference / values[d.metric], 4) if values[d.metric] else 0.0
                                  for d in differences},
                       "Tail@20": round(tail.compute(lists), 4), "taken": unproven or small}
        if not scan[value]["taken"]:
            break
        picked = value
    return picked, scan
