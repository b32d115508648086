"""Tiny deterministic session data for the model tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recommender.data_model import validate_events



def chain_events(*, n_items: int = 30, n_sessions: int = 240, length: int = 5, days: int = 6, seed: int = 0) -> pd.DataFrame:
    """Return raw events where item i is always followed by item (7 i + 3) mod n_items.

    Sessions start at random items and follow the chain, spread evenly over ``days`` days.
    """
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2026-01-01", tz="UTC")
    for s in range(n_sessions):
        item = int(rng.integers(n_items))
        t0 = start + pd.Timedelta(days=days) * s / n_sessions
        for k in range(length):
            rows.append({"ts": (t0 + pd.Timedelta(seconds=30 * k)).isoformat(), "user_id": f"u{s % 40}",
                         "session_id": f"s{s}", "item_id": f"i{item}", "event_type": "view"})
            item = (7 * item + 3) % n_items
    return pd.DataFrame(rows)


@pytest.fixture
def chain_raw() -> pd.DataFrame:
    return chain_events()


@pytest.fixture
def chain_frame(chain_raw) -> pd.DataFrame:
    return validate_events(chain_raw)[0]


@pytest.fixture(scope="session")
def chain_split():
    from recommender.model.data import build_sessions, split_sessions

    return split_sessions(build_sessions(validate_events(chain_events())[0]), test_days=1.0)


@pytest.fixture(scope="session")
def tiny_tailnet(chain_split):
    """(trainer, model, report): a 16-dim TailNet trained two epochs on the chain split (deterministic)."""
    import torch

    from recommender.model.config import load_model_config
    from recommender.model.trainer import Trainer

    trainer = Trainer(load_model_config("tailnet", flags={"epochs": 2, "embedding_dim": 16}),
                      device=torch.device("cpu"), progress=False)
    model = trainer.build("tailnet", chain_split)
    return trainer, model, trainer.fit(model, chain_split)


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    """Commands write under this test's folder, and no model params leak in from the environment."""
    monkeypatch.setenv("HOTFEED_PATHS_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.delenv("HOTFEED_MODEL_PARAMS", raising=False)
    return tmp_path / "artifacts"
