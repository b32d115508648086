"""One evaluator for models and baselines: top-K lists, metrics, a table, JSON and charts.

Anything with ``score_sessions(items [B, L], lengths [B]) -> scores [B, num_items]`` (numpy,
padding column -inf) is a scorer; ``ModelScorer`` wraps a trained network, and the
baselines in baselines.py already are scorers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from recommender.progress import progress_bar
from recommender.model.data import PrefixExamples, SessionSplit, prefix_examples
from recommender.model.metrics import DEFAULT_METRICS, RankedLists, metric_by_name
from recommender.model.network import SessionModel

__all__ = ["Scorer", "ModelScorer", "rank_top_k", "rank_scorers", "metrics_of", "evaluate_scorers", "format_table",
           "write_report"]

_log = logging.getLogger(__name__)


class Scorer(Protocol):
    def score_sessions(self, items: np.ndarray, lengths: np.ndarray) -> np.ndarray: ...


class ModelScorer:
    """Adapts a SessionModel to the scorer protocol (eval mode, no gradients)."""

    def __init__(self, model: SessionModel, *, device: torch.device):
        self.model = model
        self.device = device

    @torch.inference_mode()
    def score_sessions(self, items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Return [B, num_items] float32 model logits; padding column -inf."""
        was_training = self.model.training
        self.model.eval()
        try:
            logits = self.model.score(
                torch.as_tensor(items, device=self.device), torch.as_tensor(lengths, device=self.device)
            )
            return logits.float().cpu().numpy()
        finally:
            self.model.train(was_training)


def rank_top_k(
    scorer: Scorer, examples: PrefixExamples, *, k: int = 20, batch_size: int = 512, progress: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return (topk [N, k] item indices best first, targets [N]) for every prefix in ``examples``."""
    out = np.zeros((len(examples), k), dtype=np.int64)
    starts = range(0, len(examples), batch_size)
    for start in progress_bar(starts, desc=progress or "", disable=progress is None, leave=False, unit="batch"):
        end = start + batch_size
        lengths = examples.lengths[start:end]
        items = examples.items[start:end, : int(lengths.max())]
        scores = torch.from_numpy(np.ascontiguousarray(scorer.score_sessions(items, lengths)))
        # A catalog smaller than k leaves the tail of each list as padding (never a hit, never tail).
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        out[start:end, : top.indices.shape[1]] = np.where(np.isfinite(top.values.numpy()), top.indices.numpy(), 0)
    return out, examples.targets


def rank_scorers(scorers: Mapping[str, Scorer], split: SessionSplit, *, k: int = 20,
                 max_length: int = 20) -> dict[str, RankedLists]:
    """Return {scorer name: its top-``k`` lists} for every prefix of the test sessions."""
    examples = prefix_examples(split.test, max_length=max_length)
    lists = {}
    for name, scorer in scorers.items():
        topk, targets = rank_top_k(scorer, examples, k=k, progress=f"eval {name}")
        lists[name] = RankedLists(topk=topk, targets=targets, is_tail=split.is_tail)
    return lists


def metrics_of(lists: Mapping[str, RankedLists], metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, dict[str, float]]:
    """Return {scorer name: {metric name: value}} of ranked lists."""
    chosen = [metric_by_name(m) for m in metrics]
    results: dict[str, dict[str, float]] = {}
    for name, ranked in lists.items():
        results[name] = {m.name: m.compute(ranked) for m in chosen}
        _log.info("%s: %s", name, ", ".join(f"{m}={v:.4f}" for m, v in results[name].items()))
    return results


def evaluate_scorers(
    scorers: Mapping[str, Scorer],
    split: SessionSplit,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    max_length: int = 20,
) -> dict[str, dict[str, float]]:
    """Return {scorer name: {metric name: value}} on every prefix of the test sessions."""
    k = max(metric_by_name(m).k for m in metrics)
    return metrics_of(rank_scorers(scorers, split, k=k, max_length=max_length), metrics)


def format_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """Return a fixed-width text table: one row per scorer, one column per metric."""
    names = list(results)
    metric_names = list(next(iter(results.values()))) if results else []
    width = max([len(n) for n in names] + [8])
    head = f"{'model':<{width}}  " + "  ".join(f"{m:>15}" for m in metric_names)
    rows = [f"{n:<{width}}  " + "  ".join(f"{results[n][m]:>15.4f}" for m in metric_names) for n in names]
    return "\n".join([head, "-" * len(head), *rows])


def write_report(
    results: Mapping[str, Mapping[str, float]], out_dir: Path, *, extra: Mapping[str, object] | None = None
) -> list[Path]:
    """Write results.json and one PNG bar chart per metric into ``out_dir``; return the paths."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "results.json"]
    written[0].write_text(json.dumps({"results": results, **(extra or {})}, indent=2, default=str))
    names = list(results)
    for metric in (next(iter(results.values())) if results else {}):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        values = [results[n][metric] for n in names]
        bars = ax.bar(names, values, color=["#4c72b0" if n.islower() else "#999999" for n in names])
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
        ax.set_title(metric)
        ax.set_ylim(0, max(values + [1e-9]) * 1.2)
        fig.tight_layout()
        path = out_dir / f"{metric.replace('@', '_at_')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
