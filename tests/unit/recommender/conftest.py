"""Fixtures shared by the recommender unit tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Callable[..., Path]:
    """Return a factory writing an untrained tailnet checkpoint over 20 items to ``tmp_path/<name>``.

    ``poison=True`` fills its weights with NaN (a checkpoint that loads but scores garbage).
    """
    from recommender.model.checkpoint import save_checkpoint
    from recommender.model.config import load_model_config
    from recommender.model.data import ItemVocabulary
    from recommender.model.network import build_model

    def make(name: str = "tiny.pt", *, dims: int = 16, seed: int = 0, poison: bool = False) -> Path:
        torch.manual_seed(seed)
        vocab = ItemVocabulary([f"i{n}" for n in range(20)])
        config = load_model_config("tailnet", flags={"embedding_dim": dims})
        model = build_model("tailnet", num_items=len(vocab), is_tail=torch.zeros(len(vocab), dtype=torch.bool),
                            config=config)
        if poison:
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.fill_(float("nan"))
        return save_checkpoint(tmp_path / name, model=model, config=config, vocab=vocab,
                               item_counts=np.ones(len(vocab), dtype=np.int64))

    return make
