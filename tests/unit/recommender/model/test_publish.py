"""What `hotfeed model publish` refuses before it writes anything (no Redis needed)."""

from __future__ import annotations

import pytest

from recommender.errors import ConfigError, NotFound
from recommender.model.publish import publish_checkpoint, versions_dir
from recommender.settings import EngineSettings, PathsSettings, Settings


def _settings(tmp_path, dims: int) -> Settings:
    return Settings(engine=EngineSettings(embedding_dims=dims), paths=PathsSettings(artifacts_dir=tmp_path / "art"))


def test_versioned_files_live_under_the_artifacts_folder(tmp_path):
    assert versions_dir(_settings(tmp_path, 16)) == tmp_path / "art" / "model" / "versions"


def test_a_checkpoint_of_another_embedding_size_is_refused_naming_both(tiny_checkpoint, tmp_path):
    settings = _settings(tmp_path, 64)
    with pytest.raises(ConfigError, match=r"embedding_dim 16, .*HOTFEED_ENGINE_EMBEDDING_DIMS=64"):
        publish_checkpoint(tiny_checkpoint(dims=16), settings)
    assert not versions_dir(settings).exists()


def test_a_missing_or_foreign_file_is_refused(tmp_path):
    settings = _settings(tmp_path, 16)
    with pytest.raises(NotFound, match="does not exist"):
        publish_checkpoint(tmp_path / "missing.pt", settings)
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be read"):
        publish_checkpoint(tmp_path / "notes.pt", settings)
    assert not versions_dir(settings).exists()
