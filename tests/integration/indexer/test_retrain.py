"""Continual retraining against the real Redis (the published pointer), OpenSearch (item vectors
written as partial updates) and real torch models: a first round publishes, a worse one does not."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.rebuild import MarketplaceData, rebuild_index
from indexer.synth import generate_marketplace
from recommender.data_model import validate_events
from recommender.model.checkpoint import load_checkpoint
from recommender.model.config import load_model_config
from recommender.model.data import build_sessions, split_sessions
from recommender.model.publish import read_published
from recommender.model.retrain import retrain_once
from recommender.settings import ModelSettings, PathsSettings, Settings
from recommender.stores.cohort_maxima import CohortMaxima
from recommender.stores.popular import PopularStore


@pytest.fixture(scope="module")
def market() -> MarketplaceData:
    import pandas as pd

    synth = generate_marketplace(n_items=300, n_users=200, days=3, seed=21, n_events=9000,
                                 end=pd.Timestamp.now(tz="UTC").floor("s"))
    return MarketplaceData(synth.items, synth.users, synth.events)


@pytest.fixture
def settings(opensearch_settings: Settings, redis_settings, tmp_path: Path, market):
    from recommender.engine import open_engine

    alias = f"hftest-{uuid.uuid4().hex[:8]}-retrain"
    settings = opensearch_settings.model_copy(update={
        "engine": opensearch_settings.engine.model_copy(update={"index_alias": alias}),
        "redis": redis_settings,
        "paths": PathsSettings(artifacts_dir=tmp_path / "artifacts"),
        "model": ModelSettings(checkpoint=tmp_path / "none.pt", device="cpu"),
    })
    engine = open_engine(settings)
    rebuild_index(engine, market, settings, popular=PopularStore(redis_settings),
                  maxima=CohortMaxima(redis_settings, half_life_h=24), show_progress=False)
    yield settings
    engine.drop_items_alias(alias)
    engine.close()


def _round(settings, market, tmp_path, name: str, **flags):
    split = split_sessions(build_sessions(validate_events(market.events)[0]), test_days=0.5)
    config = load_model_config("tailnet", flags={"epochs": 1, "seed": 4,
                                                 "embedding_dim": settings.engine.embedding_dims, **flags})
    items = tmp_path / "items.parquet"
    market.items.to_parquet(items)
    return retrain_once(settings, split, model_name="tailnet", config=config, out=tmp_path / f"{name}.pt",
                        items_path=items, device=torch.device("cpu"))


def test_first_round_publishes_and_writes_vectors_then_a_worse_model_is_refused(settings, market, tmp_path):
    from recommender.engine import open_engine

    first = _round(settings, market, tmp_path, "first")
    assert first.published and first.serving_value is None and first.vectors_written > 0
    # The published blend's neighbours and counts are every session of the log, the held-out ones too.
    split = split_sessions(build_sessions(validate_events(market.events)[0]), test_days=0.5)
    every = [*split.train, *split.valid, *split.test]
    published = load_checkpoint(first.checkpoint)
    assert published.blend.knn.n_sessions == len(every) > len(split.train) + len(split.valid)
    assert published.item_counts.sum() == sum(len(s) for s in every)
    assert read_published(settings).version == first.new_version
    engine = open_engine(settings)
    try:
        engine.refresh(settings.engine.index_alias)
        checkpoint = load_checkpoint(first.checkpoint)
        item = checkpoint.vocab.to_list()[0]
        source = engine.get(settings.engine.index_alias, item)
        assert source["model_version"] == first.new_version
        learned = checkpoint.model.items.weight.detach()[1].numpy()
        assert np.allclose(source["embedding"], learned / np.linalg.norm(learned), atol=1e-4)
    finally:
        engine.close()

    # A learning rate this large wrecks the warm-started weights within one epoch: worse on the
    # held-out sessions, so the serving model stays.
    worse = _round(settings, market, tmp_path, "worse", lr=5.0)
    assert worse.serving_version == first.new_version and worse.serving_value is not None
    assert not worse.published and "worse" in worse.reason and worse.new_value < worse.serving_value
    assert read_published(settings).version == first.new_version and worse.vectors_written == 0
    # The round started from the serving model: its vocabulary holds every item the serving one knew.
    assert set(load_checkpoint(first.checkpoint).vocab.to_list()) <= set(load_checkpoint(worse.checkpoint).vocab.to_list())
