"""Continual retraining: one round retrains the session model on recent sessions, warm-started
from the serving checkpoint, and publishes it only when it is not worse than the serving model.

A round (``retrain_once``; `hotfeed retrain` runs one, `--every-hours` runs them on an
APScheduler schedule):
1. split the events file as `hotfeed train` does (the last ``test_days`` are the held-out
   recent slice, the ``test_days`` before them validation, ``train_days`` before that training);
2. widen the vocabulary with every item the serving model knows (appended after the split's
   own, so the sessions' indices stay valid) and copy the serving model's weights in: items
   that had no clicks lately keep their learned vectors instead of being forgotten, and the
   item space stays aligned with the content vectors already in the index;
3. train (early stopping on validation), fit the content encoder on the items file, pick the
   blend on validation with counting parts as long as the published ones (``data.parts_split``);
4. score the new and the serving model on every prefix of the held-out sessions; publish the
   new one only when its metric (``--metric``, MRR@20 by default) is at least the serving
   one's, else keep the serving model and say why;
5. after a publish, write the item vectors that changed (cosine to the old one below
   0.9999, or new) to the items index as partial updates in bulk, not a full rebuild.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recommender.engine import Doc
from recommender.errors import ConfigError
from recommender.model.checkpoint import Checkpoint, load_checkpoint
from recommender.model.data import ItemVocabulary, SessionSplit, serving_split
from recommender.model.evaluate import ModelScorer, evaluate_scorers
from recommender.model.network import SessionModel
from recommender.model.trainer import Trainer
from recommender.settings import Settings

__all__ = ["RetrainResult", "widen_split", "warm_start", "retrain_once",
           "write_changed_vectors"]

_log = logging.getLogger("hotfeed.retrain")
_UNCHANGED_COSINE = 0.9999


@dataclass
class RetrainResult:
    published: bool
    reason: str
    metric: str
    new_value: float
    serving_value: float | None
    new_version: str = ""
    serving_version: str = ""
    checkpoint: Path | None = None
    vectors_written: int = 0
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        serving = "none" if self.serving_value is None else f"{self.serving_value:.4f}"
        verdict = "published" if self.published else "not published"
        return (f"retrain: new {self.new_version} {self.metric}={self.new_value:.4f} vs serving "
                f"{self.serving_version or 'none'} {serving}: {verdict} ({self.reason}); "
                f"{self.vectors_written:,} item vectors updated in the index; {self.seconds:.0f}s")


def widen_split(split: SessionSplit, old: Checkpoint) -> SessionSplit:
    """Return the split with the old model's items appended to its vocabulary (no clicks, tail)."""
    known = set(split.vocab.to_list())
    extra = [item for item in old.vocab.to_list() if item not in known]
    if not extra:
        return split
    vocab = ItemVocabulary(split.vocab.to_list() + extra)
    return replace(
        split, vocab=vocab,
        item_counts=np.concatenate([split.item_counts, np.zeros(len(extra), dtype=split.item_counts.dtype)]),
        is_tail=np.concatenate([split.is_tail, np.ones(len(extra), dtype=bool)]),
    )


def warm_start(model: SessionModel, vocab: ItemVocabulary, old: Checkpoint) -> int:
    """Copy the old model's weights into ``model`` (item rows by id); return the items copied.

    Raises ConfigError when the two are different architectures or sizes.
    """
    if old.model_name != model.name or old.model.embedding_dim != model.embedding_dim:
        raise ConfigError(f"cannot warm-start a {model.name} of {model.embedding_dim} dims from the serving "
                          f"{old.model_name} of {old.model.embedding_dim} dims; train from scratch instead")
    state = model.state_dict()
    with torch.no_grad():
        for name, value in old.model.state_dict().items():
            if name in ("items.table.weight", "is_tail") or name not in state:
                continue
            if state[name].shape == value.shape:
                state[name].copy_(value)
        position = old.vocab.index_of(vocab.to_list())
        shared = np.flatnonzero(position > 0)
        table = state["items.table.weight"]
        table[torch.as_tensor(shared + 1)] = old.model.items.weight.detach()[torch.as_tensor(position[shared])].to(table)
    model.load_state_dict(state)
    return int(len(shared))


def _held_out_value(scorers: dict[str, Any], split: SessionSplit, metric: str, max_length: int) -> dict[str, float]:
    results = evaluate_scorers(scorers, split, metrics=[metric], max_length=max_length)
    return {name: float(values[metric]) for name, values in results.items()}


def write_changed_vectors(engine: Any, index: str, new: Checkpoint, old: Checkpoint | None, *,
                          max_retries: int = 5) -> int:
    """Write the new model's item vectors that differ from the old one's to the index, as
    partial updates; return how many the engine accepted (items not in the index are skipped)."""
    ids = new.vocab.to_list()
    vectors = torch.nn.functional.normalize(new.model.items.weight.detach()[1:].float(), dim=-1).numpy()
    changed = np.ones(len(ids), dtype=bool)
    if old is not None:
        position = old.vocab.index_of(ids)
        had = position > 0
        before = torch.nn.functional.normalize(old.model.items.weight.detach().float(), dim=-1).numpy()[position[had]]
        changed[had] = (before * vectors[had]).sum(axis=1) < _UNCHANGED_COSINE
    docs = (Doc(ids[n], {"embedding": vectors[n].round(6).tolist(), "model_version": new.version}, partial=True)
            for n in np.flatnonzero(changed))
    result = engine.bulk_upsert(index, docs, max_retries=max_retries)
    missing = len(result.refused)
    if len(result.failed) > missing:
        _log.warning("%d item vector updates failed: %s", len(result.failed) - missing, result.summary())
    _log.info("item vectors: %d of %d changed, %d written, %d not in the index", int(changed.sum()), len(ids),
              result.ok, missing)
    return result.ok


def retrain_once(settings: Settings, split: SessionSplit, *, model_name: str, config: dict[str, Any],
                 out: Path, items_path: Path | None, metric: str = "MRR@20", publish: bool = True,
                 device: torch.device | None = None, blend: str = "VSTAN",
                 blend_tail_bias: float | None = None) -> RetrainResult:
    """Run one retraining round on ``split`` (see the module docstring); return what happened.

    ``blend`` names the session-KNN the new checkpoint serves its model with ("none": the model
    alone) and ``blend_tail_bias`` its tail bias (None: picked on validation); the held-out comparison
    is between the models themselves.
    """
    from recommender.model.publish import publish_checkpoint, serving_checkpoint
    from recommender.model.runs import VocabularyMapped, catalogue_items, fit_checkpoint_blend, fit_content

    started = time.monotonic()
    device = device or torch.device("cpu")
    serving_path = serving_checkpoint(settings)
    old = load_checkpoint(serving_path, device=device) if serving_path is not None else None
    if old is not None:
        split = widen_split(split, old)
    trainer = Trainer(config, device=device)
    model = trainer.build(model_name, split)
    copied = warm_start(model, split.vocab, old) if old is not None else 0
    _log.info("warm start: %d item vectors from the serving model %s", copied, old.version if old else "none")
    report = trainer.fit(model, split)
    catalogue = catalogue_items(split, items_path)
    content = fit_content(model, split, catalogue)
    fitted = None if blend == "none" else fit_checkpoint_blend(model, split, catalogue, knn_name=blend, device=device,
                                                                max_length=int(config.get("max_length", 20)),
                                                                tail_bias=blend_tail_bias)
    # The held-out comparison below reads the models alone; the checkpoint's item counts and the
    # blend's counting parts are built from every session of the log, the held-out ones too.
    serving = serving_split(split)
    path = trainer.save(out, model, serving, report, content=content,
                        blend=fitted.refitted(serving) if fitted is not None else None,
                        meta={"warm_start": old.version if old else None})
    new = load_checkpoint(path, device=device)
    max_length = int(config.get("max_length", 20))
    scorers: dict[str, Any] = {"new": ModelScorer(new.model, device=device)}
    if old is not None:
        scorers["serving"] = VocabularyMapped(ModelScorer(old.model, device=device), split_vocab=split.vocab,
                                              model_vocab=old.vocab)
    values = _held_out_value(scorers, split, metric, max_length)
    serving_value = values.get("serving")
    result = RetrainResult(
        published=False, reason="", metric=metric, new_value=values["new"], serving_value=serving_value,
        new_version=new.version, serving_version=old.version if old else "", checkpoint=path,
        details={"warm_started_items": copied, "train": report.summary()},
    )
    if np.isnan(values["new"]):
        result.reason = "no held-out sessions to compare on; widen --test-days"
    elif serving_value is not None and values["new"] < serving_value:
        result.reason = "worse than the serving model on the held-out sessions"
    elif not publish:
        result.reason = "not worse, but --no-publish"
    else:
        publish_checkpoint(path, settings)
        result.published = True
        result.reason = "no serving model" if old is None else "not worse on the held-out sessions"
        from recommender.engine import open_engine

        engine = open_engine(settings)
        try:
            result.vectors_written = write_changed_vectors(engine, settings.engine.index_alias, new, old,
                                                           max_retries=settings.indexer.bulk_max_retries)
        finally:
            engine.close()
    result.seconds = time.monotonic() - started
    _log.info("%s", result.summary())
    return result
