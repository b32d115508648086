"""A checkpoint is checked before it may serve: version, embedding size, finite scores."""

from __future__ import annotations

import pytest

from recommender.errors import ConfigError, NotFound
from recommender.model.checkpoint import load_checkpoint
from recommender.service.model_watcher import failure_reason, load_serving_scorer
from recommender.settings import EngineSettings, ModelSettings, Settings


def _settings(dims: int = 16) -> Settings:
    return Settings(engine=EngineSettings(embedding_dims=dims), model=ModelSettings(device="cpu", serving_threads=0))


def test_a_sound_checkpoint_is_returned_ready_to_score(tiny_checkpoint):
    path = tiny_checkpoint()
    version = load_checkpoint(path).version
    scorer = load_serving_scorer(path, _settings(), expected_version=version)
    assert scorer.version == version and scorer.embedding_dims == 16


def test_a_file_holding_another_version_than_published_is_refused(tiny_checkpoint):
    with pytest.raises(ConfigError, match="not the published 'tailnet-000000000000'"):
        load_serving_scorer(tiny_checkpoint(), _settings(), expected_version="tailnet-000000000000")


def test_another_embedding_size_than_the_index_is_refused_naming_both(tiny_checkpoint):
    with pytest.raises(ConfigError, match="embedding_dim 16, the items index HOTFEED_ENGINE_EMBEDDING_DIMS=64"):
        load_serving_scorer(tiny_checkpoint(), _settings(dims=64))


def test_nan_weights_are_refused(tiny_checkpoint):
    with pytest.raises(ConfigError, match="non-finite numbers"):
        load_serving_scorer(tiny_checkpoint(poison=True), _settings())


def test_a_missing_or_corrupt_file_is_refused(tiny_checkpoint, tmp_path):
    with pytest.raises(NotFound):
        load_serving_scorer(tmp_path / "gone.pt", _settings())
    (tmp_path / "cut.pt").write_bytes(tiny_checkpoint().read_bytes()[:100])
    with pytest.raises(ConfigError, match="cannot be read"):
        load_serving_scorer(tmp_path / "cut.pt", _settings())


def test_a_failure_reason_is_one_line():
    assert failure_reason(ConfigError("bad file; retrain")) == "bad file; retrain"
    assert failure_reason(RuntimeError("CUDA out of memory\n  at ...")) == "RuntimeError: CUDA out of memory"
    assert failure_reason(MemoryError()) == "MemoryError"
