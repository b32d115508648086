"""The checkpoint format shared by the trainer (writes) and serving (reads).

A checkpoint is one ``torch.save`` file holding plain data only, so it loads with
``weights_only=True`` (no pickled code runs on load):

    format        FORMAT_NAME, FORMAT_VERSION
    model         name in network.MODELS
    config        the effective hyper-parameters (after every override)
    items         item ids, vocabulary order without padding (index i+1)
    item_counts   training interactions per vocabulary index (padding first)
    is_tail       bool per vocabulary index
    weights       the model's state_dict
    meta          hotfeed version, creation time, split parameters, validation result
    content       optional: the content encoder for cold items (content.py), absent when the
                  training run had no items file
    blend         optional: the served blend (hybrid.py): the KNN's name, parameters and
                  training sessions (CSR: indptr, clicks) and the blend weights; absent when
                  trained with ``--blend none`` (then the model's logits are the scores)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recommender.errors import ConfigError, NotFound
from recommender.model.content import ContentEncoder
from recommender.model.data import ItemVocabulary
from recommender.model.hybrid import Blend
from recommender.model.network import MODELS, SessionModel, build_model

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "Checkpoint", "save_checkpoint", "load_checkpoint"]

FORMAT_NAME = "hotfeed-session-model"
FORMAT_VERSION = 1


def _hotfeed_version() -> str:
    try:
        return version("hotfeed")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode plus everything needed to use it."""

    model_name: str
    model: SessionModel
    config: dict[str, Any]
    vocab: ItemVocabulary
    item_counts: np.ndarray
    is_tail: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    digest: str = ""  # first 12 hex digits of the file's sha256
    content: ContentEncoder | None = None
    blend: Blend | None = None

    @property
    def version(self) -> str:
        """Return "<model>-<digest>": names exactly these weights (index documents record it)."""
        return f"{self.model_name}-{self.digest}"


def save_checkpoint(
    path: Path,
    *,
    model: SessionModel,
    config: dict[str, Any],
    vocab: ItemVocabulary,
    item_counts: np.ndarray,
    meta: dict[str, Any] | None = None,
    content: ContentEncoder | None = None,
    blend: Blend | None = None,
) -> Path:
    """Write ``model`` with its config, vocabulary and version to ``path``; return the path."""
    if len(vocab) != model.num_items:
        raise ConfigError(f"vocabulary has {len(vocab):,} entries but the model {model.num_items:,} items")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": model.name,
        "config": dict(config),
        "items": vocab.to_list(),
        "item_counts": torch.as_tensor(np.asarray(item_counts, dtype=np.int64)),
        "is_tail": model.is_tail.detach().cpu().clone(),
        "weights": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": {
            "hotfeed_version": _hotfeed_version(),
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **(meta or {}),
        },
    }
    if content is not None:
        payload["content"] = content.to_payload()
    if blend is not None:
        payload["blend"] = blend.to_payload()
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # readers never see a half-written checkpoint
    return path


def load_checkpoint(path: Path, *, device: torch.device | None = None) -> Checkpoint:
    """Return the checkpoint at ``path`` with its model rebuilt, weights loaded, in eval mode.

    Raises NotFound when the file is missing and ConfigError when it is not a hotfeed
    checkpoint, has another format version, names an unknown model or its weights do not fit.
    """
    path = Path(path)
    if not path.exists():
        raise NotFound(f"checkpoint {str(path)!r} does not exist; train one with `hotfeed train`")
    raw = path.read_bytes()
    try:
        payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many unrelated types for a foreign or corrupt file
        raise ConfigError(f"checkpoint {str(path)!r} cannot be read ({type(exc).__name__}); "
                          "point HOTFEED_MODEL_CHECKPOINT at a file written by `hotfeed train`") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise ConfigError(f"{str(path)!r} is not a hotfeed session-model checkpoint; retrain with `hotfeed train`")
    found = payload.get("format_version")
    if found != FORMAT_VERSION:
        raise ConfigError(
            f"checkpoint {str(path)!r} has format version {found!r}, this hotfeed reads {FORMAT_VERSION!r}; "
            "retrain with `hotfeed train` (or use the hotfeed version that wrote it: "
            f"{payload.get('meta', {}).get('hotfeed_version')!r})"
        )
    name = payload["model"]
    if name not in MODELS:
        raise ConfigError(f"checkpoint {str(path)!r} holds model {name!r}; this hotfeed knows {sorted(MODELS)!r}")
    vocab = ItemVocabulary(payload["items"])
    is_tail = payload["is_tail"].to(torch.bool)
    if not len(vocab) == len(is_tail) == len(payload["item_counts"]):
        raise ConfigError(
            f"checkpoint {str(path)!r}: vocabulary ({len(vocab):,}), tail mask ({len(is_tail):,}) and item counts "
            f"({len(payload['item_counts']):,}) do not fit together; the file was altered, retrain"
        )
    model = build_model(name, num_items=len(vocab), is_tail=is_tail, config=payload["config"])
    try:
        model.load_state_dict(payload["weights"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"checkpoint {str(path)!r}: weights do not fit model {name!r} ({first}); retrain") from None
    model.to(device or torch.device("cpu")).eval()
    content = payload.get("content")
    blend = None
    if payload.get("blend") is not None:
        try:
            blend = Blend.from_payload(payload["blend"], payload["item_counts"].numpy())
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"checkpoint {str(path)!r}: its blend does not fit ({exc}); retrain") from None
    return Checkpoint(
        model_name=name,
        model=model,
        config=payload["config"],
        vocab=vocab,
        item_counts=payload["item_counts"].numpy(),
        is_tail=is_tail.numpy(),
        meta=payload.get("meta", {}),
        digest=hashlib.sha256(raw).hexdigest()[:12],
        content=ContentEncoder.from_payload(content, dims=model.embedding_dim) if content is not None else None,
        blend=blend,
    )
