"""Publishing a checkpoint: the hand-over from training to the running recommenders.

``publish_checkpoint`` checks that a checkpoint loads and fits the items index, copies it to
an immutable file named by its version (``<artifacts>/model/versions/<version>.pt``) and
points Redis at it (recommender/stores/published_models.py). Every recommender polls that
pointer (recommender/service/model_watcher.py), loads the new version in the background,
checks it again and swaps it in; a version that fails there is logged and counted, and the
old one keeps serving.

The file is copied rather than referenced because `hotfeed train` overwrites its output
path in place: a recommender that starts (or retries) later must find exactly the bytes
that were published, and a rollback needs the old bytes.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import torch

from recommender.errors import ConfigError, NotFound, StoreUnavailable
from recommender.model.checkpoint import load_checkpoint
from recommender.settings import Settings
from recommender.stores.published_models import PublishedModel, PublishedModelStore

__all__ = ["PublishedModel", "versions_dir", "publish_checkpoint", "read_published", "serving_checkpoint",
           "roll_back_published", "publish_trained"]


def versions_dir(settings: Settings) -> Path:
    """Return the folder of the immutable published checkpoint files."""
    return settings.paths.artifacts_dir / "model" / "versions"


def _store(settings: Settings, client: Any) -> PublishedModelStore:
    return PublishedModelStore(settings.redis, client=client)


def _checked_version(path: Path, settings: Settings) -> tuple[str, bytes]:
    """Return (version, file bytes) of a checkpoint that loads and fits the index.

    Raises NotFound for a missing file and ConfigError for one that does not load, whose
    embedding size differs from HOTFEED_ENGINE_EMBEDDING_DIMS, or that changed while read.
    """
    checkpoint = load_checkpoint(path, device=torch.device("cpu"))
    dims = checkpoint.model.embedding_dim
    if dims != settings.engine.embedding_dims:
        raise ConfigError(
            f"checkpoint {str(path)!r} has embedding_dim {dims}, but the items index holds "
            f"HOTFEED_ENGINE_EMBEDDING_DIMS={settings.engine.embedding_dims} dimensions; retrain with "
            f"`--set embedding_dim={settings.engine.embedding_dims}` (or rebuild the index for {dims})"
        )
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest()[:12] != checkpoint.digest:
        raise ConfigError(f"checkpoint {str(path)!r} changed while it was being published; publish it again")
    return checkpoint.version, raw


def _write_version_file(raw: bytes, version: str, settings: Settings) -> Path:
    """Return the immutable copy of ``raw`` for ``version``, writing it unless an intact one exists."""
    folder = versions_dir(settings)
    dest = folder / f"{version}.pt"
    digest = version.rsplit("-", 1)[-1]
    if dest.exists() and hashlib.sha256(dest.read_bytes()).hexdigest()[:12] == digest:
        return dest.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{version}.pt.{os.getpid()}.tmp"
    try:
        tmp.write_bytes(raw)
        tmp.replace(dest)  # a reader sees the whole file or none
    finally:
        tmp.unlink(missing_ok=True)
    return dest.resolve()


def publish_checkpoint(path: Path, settings: Settings, *, client: Any = None,
                       expected: str | None = None) -> PublishedModel | None:
    """Return the new pointer after publishing the checkpoint at ``path`` to every recommender.

    ``client`` is a Redis client to reuse (default: one from ``settings.redis``). Publishing
    the version already current changes nothing and returns the current pointer. With
    ``expected`` (a version), returns None and publishes nothing unless that version is the
    current one at the moment of publishing (a refresh must not undo a retrain that published
    while it ran).
    Raises NotFound (no file), ConfigError (not a loadable checkpoint, or its embedding size
    differs from HOTFEED_ENGINE_EMBEDDING_DIMS) and StoreUnavailable (Redis down); the
    versioned copy may exist after a StoreUnavailable, which is harmless.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"checkpoint {str(path)!r} does not exist or is not a file; "
                       f"write one with `hotfeed train --out {path}`")
    version, raw = _checked_version(path, settings)
    copy = _write_version_file(raw, version, settings)
    return _store(settings, client).publish(version, copy, published_at=time.time(), expected=expected)


def read_published(settings: Settings, *, client: Any = None) -> PublishedModel | None:
    """Return the published model, or None when nothing was published under this key prefix.

    Raises StoreUnavailable (Redis down) and ConfigError (the pointer is not a published model).
    """
    return _store(settings, client).current()


def serving_checkpoint(settings: Settings, *, client: Any = None) -> Path | None:
    """Return the file of the model the recommenders serve: the published one, else
    HOTFEED_MODEL_CHECKPOINT when that file exists, else None (also for HOTFEED_MODEL_CHECKPOINT=none).

    Raises StoreUnavailable (Redis down) and ConfigError (a broken pointer).
    """
    if settings.model.checkpoint is None:
        return None
    published = read_published(settings, client=client)
    if published is not None:
        return published.path
    return settings.model.checkpoint if settings.model.checkpoint.exists() else None


def roll_back_published(settings: Settings, *, client: Any = None) -> PublishedModel:
    """Return the new pointer after publishing again the version before the current one.

    The current version leaves the history, so rolling back twice goes two versions back.
    Raises NotFound when there is nothing to roll back to, ConfigError when that version's
    file no longer loads or fits the index, and StoreUnavailable when Redis is down.
    """
    store = _store(settings, client)
    current = store.current()
    if current is None:
        raise NotFound("no model is published yet, so there is nothing to roll back; "
                       "publish one with `hotfeed model publish PATH`")
    history = store.history()
    found = next(((n, entry) for n, entry in enumerate(history) if entry.version != current.version), None)
    if found is None:
        raise NotFound(f"the history holds no version before {current.version!r} to roll back to; "
                       f"publish an older checkpoint with `hotfeed model publish PATH`")
    index, target = found
    if not target.path.is_file():
        raise NotFound(f"version {target.version!r} to roll back to has no file at {str(target.path)!r}; "
                       f"publish a checkpoint with `hotfeed model publish PATH`")
    version, _ = _checked_version(target.path, settings)
    if version != target.version:
        raise ConfigError(f"file {str(target.path)!r} holds version {version!r}, not {target.version!r} as the "
                          f"history says; publish a checkpoint with `hotfeed model publish PATH`")
    rolled = store.roll_back(expected=current.version, target_index=index, target=target, published_at=time.time())
    if rolled is None:
        raise ConfigError(f"the published model changed from {current.version!r} while rolling back; "
                          f"check `hotfeed model current` and roll back again")
    return rolled


def publish_trained(path: Path, settings: Settings, *, expected: str | None = None) -> str:
    """Return the line `hotfeed train` (or `model refresh`) prints after publishing the checkpoint it
    wrote to ``path``; with ``expected``, only while that version is the published one.

    Redis being unreachable is no failure of the training run: the line then says the
    checkpoint was not published and how to publish it later. Raises ConfigError when the
    checkpoint cannot be published (it does not fit the items index).
    """
    try:
        published = publish_checkpoint(path, settings, expected=expected)
    except StoreUnavailable as exc:
        return (f"checkpoint written to {path} but not published: Redis unreachable ({exc}); "
                f"publish it later with `hotfeed model publish {path}`")
    except ConfigError as exc:
        raise ConfigError(f"checkpoint written to {path} but not published: {exc} (or train with --no-publish)") \
            from None
    if published is None:
        return (f"checkpoint written to {path} but not published: another model than {expected} was published "
                f"meanwhile, and it stays")
    return f"published model {published.version} (previous: {published.previous or 'none'}): serving picks it up"
