"""Vectors for listings the near-real-time indexer writes: from the serving model's content encoder.

The model is the published one (the Redis pointer ``hotfeed model publish`` and ``hotfeed
train`` set), else HOTFEED_MODEL_CHECKPOINT; the pointer is re-read at most every
``recheck_s`` seconds, so the indexer follows a hot swap without a restart. A model that
fails to load is logged once and the previous one kept; with no model at all, listings are
written without a vector (kNN cannot find them until the next rebuild, filters and
popularity still can).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recommender.errors import HotfeedError
from recommender.settings import Settings

__all__ = ["ListingVectors"]

_log = logging.getLogger(__name__)


class ListingVectors:
    def __init__(self, settings: Settings, *, client: Any = None, recheck_s: float = 5.0):
        self.settings = settings
        self.client = client
        self.recheck_s = recheck_s
        self._scorer: Any = None
        self._path: Path | None = None
        self._failed: Path | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def _wanted_path(self) -> Path | None:
        from recommender.model.publish import serving_checkpoint

        try:
            return serving_checkpoint(self.settings, client=self.client)
        except HotfeedError as exc:
            _log.warning("published model unreadable (%s); keeping the current one", exc)
            return self._path

    def scorer(self) -> Any:
        """Return the current model (a SessionScorer on the CPU), or None when there is none."""
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at < self.recheck_s:
                return self._scorer
            self._checked_at = now
            path = self._wanted_path()
            if path is None or path == self._path or path == self._failed:
                return self._scorer
            from recommender.model.serving import SessionScorer

            try:
                scorer = SessionScorer.load(path, device="cpu")
                if scorer.embedding_dims != self.settings.engine.embedding_dims:
                    raise HotfeedError(f"{scorer.embedding_dims}-dim vectors, the index has "
                                       f"{self.settings.engine.embedding_dims}")
            except HotfeedError as exc:
                _log.error("listing vectors: model %s not loaded (%s); keeping %s", path, exc,
                           self._scorer.version if self._scorer is not None else "none")
                self._failed = path
                return self._scorer
            _log.info("listing vectors from model %s (%s)", scorer.version,
                      "content encoder" if scorer.content is not None else "no content encoder: catalogue mean")
            self._scorer, self._path = scorer, path
            return scorer

    def encode(self, listings: Sequence[Any]) -> tuple[np.ndarray | None, str]:
        """Return (vectors [n, D] or None without a model, the model version that made them)."""
        scorer = self.scorer()
        if scorer is None or not listings:
            return None, ""
        return scorer.content_vectors(listings), scorer.version
