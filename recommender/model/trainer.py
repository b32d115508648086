"""Training: optimizer, epoch loop, early stopping on a named validation metric, checkpoints.

The trainer owns everything around the model: seeds, batching, full or sampled softmax,
mixed precision on cuda, the progress bar, and keeping the best epoch's weights.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recommender.progress import progress_bar
from recommender.model.content import ContentEncoder
from recommender.model.hybrid import Blend
from recommender.model.checkpoint import save_checkpoint
from recommender.model.data import SessionSplit, iterate_batches, prefix_examples, validation_examples
from recommender.model.evaluate import ModelScorer, rank_top_k
from recommender.model.metrics import RankedLists, metric_by_name
from recommender.model.network import SessionModel, build_model
from recommender.model.significance import ACCURACY_METRICS, accuracy, largest_acceptable

__all__ = ["seed_everything", "TrainReport", "Trainer"]

_log = logging.getLogger(__name__)

# Rectification strengths tried by calibrate_tail_bias (logit offsets added to the tail preference).
_TAIL_BIAS_GRID: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) so a run is repeatable on one device."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@dataclass
class TrainReport:
    """What training did: per-epoch history and the epoch whose weights were kept."""

    model_name: str
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float = float("nan")
    valid_metric: str = ""
    seconds: float = 0.0
    tail_bias_scores: dict[float, float] = field(default_factory=dict)  # the validation metric per tail bias
    tail_bias_scan: dict[float, dict] = field(default_factory=dict)  # verdicts of the biases above the most accurate

    def summary(self) -> str:
        """Return a one-line account of the run."""
        last = self.history[-1]["loss"] if self.history else float("nan")
        kept = (f"no validation sessions: epoch {self.best_epoch} kept" if np.isnan(self.best_value)
                else f"best {self.valid_metric}={self.best_value:.4f} at epoch {self.best_epoch}")
        return f"trained {self.model_name}: {len(self.history)} epochs in {self.seconds:.0f}s, last loss {last:.4f}, {kept}"


class Trainer:
    """Trains one session model on a SessionSplit under a config dict (see config.py)."""

    def __init__(self, config: dict[str, Any], *, device: torch.device, progress: bool = True):
        self.config = dict(config)
        self.device = device
        self.progress = progress
        self.valid_metric = metric_by_name(str(config["valid_metric"]))

    def build(self, model_name: str, split: SessionSplit) -> SessionModel:
        """Return a freshly initialised model for ``split`` (seeded)."""
        seed_everything(int(self.config["seed"]))
        is_tail = torch.as_tensor(split.is_tail)
        return build_model(model_name, num_items=len(split.vocab), is_tail=is_tail, config=self.config).to(self.device)

    def validation_lists(self, model: SessionModel, split: SessionSplit, *, k: int) -> RankedLists | None:
        """Return ``model``'s top-``k`` lists for every prefix of the validation sessions (None without any)."""
        examples = validation_examples(split, max_length=int(self.config["max_length"]))
        if not len(examples):
            return None
        topk, targets = rank_top_k(ModelScorer(model, device=self.device), examples, k=k)
        return RankedLists(topk=topk, targets=targets, is_tail=split.is_tail)

    def validate(self, model: SessionModel, split: SessionSplit) -> float:
        """Return the validation metric of ``model`` on every prefix of the validation sessions."""
        lists = self.validation_lists(model, split, k=self.valid_metric.k)
        return float("nan") if lists is None else self.valid_metric.compute(lists)

    def fit(self, model: SessionModel, split: SessionSplit) -> TrainReport:
        """Train ``model`` in place, keep the best validation epoch's weights; return the report.

        Without validation sessions there is no early stopping and the last epoch is kept.
        """
        cfg = self.config
        seed = int(cfg["seed"])
        seed_everything(seed)
        rng = np.random.default_rng(seed)
        examples = prefix_examples(split.train, max_length=int(cfg["max_length"]))
        optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
        use_amp = self.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        sampled = model.num_items > int(cfg["sampled_softmax_above"])
        negatives_gen = torch.Generator(device=self.device).manual_seed(seed)
        report = TrainReport(model.name, valid_metric=self.valid_metric.name)
        best_state, waited, started = None, 0, time.monotonic()
        shown_value = "-"  # the bar shows the latest validation value next to the running loss
        if sampled:
            _log.info("%s: %s items > %s, using sampled softmax", model.name, model.num_items, cfg["sampled_softmax_above"])
        for epoch in range(1, int(cfg["epochs"]) + 1):
            model.train()
            total, batches = 0.0, 0
            n_batches = -(-len(examples) // int(cfg["batch_size"]))
            bar = progress_bar(
                iterate_batches(examples, batch_size=int(cfg["batch_size"]), shuffle=True, generator=rng, device=self.device),
                total=n_batches, desc=f"{model.name} epoch {epoch}", disable=not self.progress, leave=False, unit="batch",
            )
            for items, lengths, targets in bar:
                negatives = (
                    torch.randint(1, model.num_items, (int(cfg["num_negatives"]),), generator=negatives_gen, device=self.device)
                    if sampled else None
                )
                with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=use_amp):
                    loss = model.loss(items, lengths, targets, negatives=negatives)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += float(loss.detach())
                batches += 1
                if batches % 10 == 0:
                    bar.set_postfix({"loss": f"{total / batches:.4f}", self.valid_metric.name: shown_value})
            bar.close()
            value = self.validate(model, split)
            shown_value = "-" if np.isnan(value) else f"{value:.4f}"
            report.history.append({"epoch": epoch, "loss": total / max(batches, 1), self.valid_metric.name: value})
            _log.info("%s epoch %d: loss %.4f, valid %s %s", model.name, epoch, total / max(batches, 1),
                      self.valid_metric.name, "- (no validation sessions)" if np.isnan(value) else f"{value:.4f}")
            if np.isnan(value) or best_state is None or value > report.best_value:
                report.best_epoch, report.best_value, waited = epoch, value, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
                if waited >= int(cfg["patience"]):
                    _log.info("%s: early stop after epoch %d (no better %s for %d epochs)", model.name, epoch,
                              self.valid_metric.name, waited)
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        if cfg.get("calibrate_tail_bias") and hasattr(model, "tail_bias") and split.valid:
            self._calibrate_tail_bias(model, split, report)
        report.seconds = time.monotonic() - started
        return report

    def _calibrate_tail_bias(self, model: SessionModel, split: SessionSplit, report: TrainReport) -> None:
        """Set the model's tail_bias on the validation split: from the most accurate grid value
        (the best HR@20 + MRR@20, ties to the smaller), the largest stronger one that
        ``significance.largest_acceptable`` takes with the margin ``tail_bias_tolerance``.

        Cross-entropy training calibrates the tail preference to how often tail items are the
        next click, which under-serves them in a top-K list; the rectification strength is
        therefore picked on validation, trading only a loss of HR@20 and MRR@20 that validation
        cannot show or shows to be under the margin (the blend's tail bias follows the same rule).
        """
        k = max([self.valid_metric.k, *(metric_by_name(m).k for m in ACCURACY_METRICS)])
        lists = {}
        for bias in _TAIL_BIAS_GRID:
            model.tail_bias = bias
            lists[bias] = self.validation_lists(model, split, k=k)
        accurate = {b: accuracy(ranked) for b, ranked in lists.items()}
        reference = min(b for b, v in accurate.items() if v == max(accurate.values()))
        stronger = [(b, lists[b]) for b in _TAIL_BIAS_GRID if b > reference]
        picked, scan = largest_acceptable(lists[reference], stronger,
                                          margin=float(self.config.get("tail_bias_tolerance", 0.0)))
        best = reference if picked is None else picked
        model.tail_bias = best
        self.config["tail_bias"] = best
        report.tail_bias_scores = {b: self.valid_metric.compute(ranked) for b, ranked in lists.items()}
        report.best_value = report.tail_bias_scores[best]
        report.tail_bias_scan = scan
        _log.info("%s: tail_bias %s picked on validation (most accurate %s; %s: %s; against it: %s)", model.name, best,
                  reference, self.valid_metric.name,
                  ", ".join(f"{b}={v:.4f}" for b, v in report.tail_bias_scores.items()), scan)

    def save(self, path: Path, model: SessionModel, split: SessionSplit, report: TrainReport, *,
             content: ContentEncoder | None = None, meta: dict[str, Any] | None = None,
             blend: Blend | None = None) -> Path:
        """Write the checkpoint (weights, effective config, vocabulary, version, content encoder, blend); return its path."""
        return save_checkpoint(
            path, model=model, config=self.config, vocab=split.vocab, item_counts=split.item_counts,
            meta={"split": split.params, "best_epoch": report.best_epoch,
                  "valid": {report.valid_metric: report.best_value}, **(meta or {})},
            content=content, blend=blend,
        )
