"""The session model swapped without a restart when a new checkpoint is published.

A daemon thread polls the published-model pointer in Redis (recommender/stores/published_models.py,
written by `hotfeed model publish` and `hotfeed train`) every ``HOTFEED_MODEL_POLL_MS``. When it
names a version other than the one serving, the thread loads that checkpoint, checks it
(version, embedding size against the items index, one finite smoke run) and hands it to
``FeedService.swap_scorer``: requests already running finish with the model they started
with, the next ones use the new one, and each response names the model that ranked it.

A version that fails any check is logged once, counted (``hotfeed_model_swaps_total{result=
"failed"}``) and not tried again until the pointer names another version; the old model keeps
serving. Redis being down is logged once per outage, and polling goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recommender.errors import ConfigError, HotfeedError, StoreUnavailable
from recommender.service import metrics
from recommender.settings import Settings
from recommender.stores.published_models import PublishedModel, PublishedModelStore

if TYPE_CHECKING:
    from recommender.model.serving import SessionScorer
    from recommender.service.feeds import FeedService

__all__ = ["ModelWatcher", "load_serving_scorer", "record_serving_model", "failure_reason"]

_log = logging.getLogger("hotfeed.model")

# Candidates in the smoke score: enough to run the network's batched path, cheap on any device.
_SMOKE_CANDIDATES = 8


def load_serving_scorer(path: Path, settings: Settings, *, expected_version: str | None = None) -> SessionScorer:
    """Return the checkpoint at ``path`` loaded on ``HOTFEED_MODEL_DEVICE`` and checked ready to serve.

    Checks: the file holds ``expected_version`` (when given), its embedding size equals
    HOTFEED_ENGINE_EMBEDDING_DIMS (its session vectors query the items index), and a session
    of one known item gets a finite query vector and finite scores for known candidates.
    Raises NotFound (no file) and ConfigError (any other failed check).
    """
    import torch

    from recommender.model.serving import SessionScorer

    if settings.model.serving_threads:
        torch.set_num_threads(settings.model.serving_threads)
    scorer = SessionScorer.load(path, device=settings.model.device)
    if expected_version is not None and scorer.version != expected_version:
        raise ConfigError(f"{str(path)!r} holds model {scorer.version!r}, not the published {expected_version!r}; "
                          f"publish the file again with `hotfeed model publish`")
    if scorer.embedding_dims != settings.engine.embedding_dims:
        raise ConfigError(f"model {scorer.version!r} has embedding_dim {scorer.embedding_dims}, the items index "
                          f"HOTFEED_ENGINE_EMBEDDING_DIMS={settings.engine.embedding_dims}")
    ids = scorer.vocab.to_list()
    if ids:
        # The serving path's own calls: the query vector goes to the engine as is, so it is
        # checked too (scores may be made finite on the way out, a NaN query vector is not).
        represented = scorer.represent(ids[:1])
        vector = represented.vector if represented.vector is not None else np.zeros(0, dtype=np.float32)
        scores = scorer.score_represented(represented, ids[:_SMOKE_CANDIDATES])
        if not (np.isfinite(vector).all() and np.isfinite(scores).all()):
            raise ConfigError(f"model {scorer.version!r} turns a session of one known item into non-finite "
                              f"numbers (query vector {vector.tolist()[:3]!r}..., scores {scores.tolist()[:3]!r}...): "
                              f"its weights are broken, retrain")
    return scorer


def record_serving_model(version: str, *, replaced: str | None = None) -> None:
    """Point the ``hotfeed_model_info`` gauge at ``version`` (dropping ``replaced``'s series)."""
    if replaced and replaced != version:
        try:
            metrics.MODEL_INFO.remove(replaced)
        except KeyError:
            pass
    metrics.MODEL_INFO.labels(version=version).set(1)


def failure_reason(exc: BaseException) -> str:
    """Return one line saying why a model could not be served (our message, else the exception type)."""
    if isinstance(exc, HotfeedError):
        return str(exc)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class ModelWatcher:
    """Polls the published-model pointer and swaps newly published models into ``feeds``.

    ``client`` is the Redis client to poll with (the recommender's shared one); ``failed_version``
    is a version that already failed at start-up, so it is not loaded a second time.
    """

    def __init__(self, settings: Settings, feeds: FeedService, client: Any = None, *,
                 failed_version: str | None = None):
        self.settings = settings
        self.feeds = feeds
        self.store = PublishedModelStore(settings.redis, client=client)
        self.poll_s = settings.model.poll_ms / 1000
        self.failed_version = failed_version
        self._redis_down = False
        self._bad_pointer: str | None = None
        # One check at a time: the poll thread and a caller of check() never load a version twice.
        self._checking = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start polling in a daemon thread (nothing when HOTFEED_MODEL_POLL_MS is 0)."""
        if self.poll_s <= 0:
            _log.info("HOTFEED_MODEL_POLL_MS=0: published models are not picked up until a restart")
            return
        self._thread = threading.Thread(target=self._poll, name="model-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop polling; wait up to ``timeout_s`` for a model load in progress to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive any surprise; serving goes on
                _log.exception("model watcher: unexpected failure; polling goes on")

    def check(self) -> None:
        """Read the pointer once and swap in the model it names if that one is new and sound."""
        with self._checking:
            published = self._read_pointer()
            if published is None:
                return
            serving = self._serving_version()
            if published.version == serving or published.version == self.failed_version:
                return
            self._swap_to(published, serving)

    def _read_pointer(self) -> PublishedModel | None:
        try:
            published = self.store.current()
        except StoreUnavailable as exc:
            if not self._redis_down:
                _log.warning("model watcher: %s; serving %s meanwhile, polling goes on", exc,
                             self._serving_version() or "no model")
                self._redis_down = True
            return None
        except ConfigError as exc:
            if str(exc) != self._bad_pointer:
                _log.error("model watcher: %s; serving %s meanwhile", exc, self._serving_version() or "no model")
                metrics.MODEL_SWAPS.labels(result="failed").inc()
                self._bad_pointer = str(exc)
            return None
        if self._redis_down:
            _log.info("model watcher: Redis reachable again")
            self._redis_down = False
        self._bad_pointer = None
        return published

    def _serving_version(self) -> str | None:
        scorer = self.feeds.scorer
        return scorer.version if scorer is not None else None

    def _swap_to(self, published: PublishedModel, serving: str | None) -> None:
        started = time.monotonic()
        try:
            scorer = load_serving_scorer(published.path, self.settings, expected_version=published.version)
        except Exception as exc:  # noqa: BLE001 - any failure of a new model must leave the old one serving
            metrics.MODEL_SWAPS.labels(result="failed").inc()
            _log.error("published model %s not swapped in, %s keeps serving: %s", published.version,
                       serving or "no model", failure_reason(exc))
            self.failed_version = published.version
            return
        if self._stop.is_set():
            return  # the server is stopping: a swap now would only race the shutdown
        # Counted before the swap, so whoever sees the new version in a response sees the count too.
        self.failed_version = None
        metrics.MODEL_SWAPS.labels(result="ok").inc()
        record_serving_model(scorer.version, replaced=serving)
        delay_s = max(0.0, time.time() - published.published_at)
        metrics.MODEL_SWAP_DELAY_SECONDS.set(delay_s)
        self.feeds.swap_scorer(scorer)
        _log.info("session model %s swapped in for %s on %s (loaded and checked in %.1f s, %.1f s after publish)",
                  scorer.version, serving or "no model", scorer.runs_on, time.monotonic() - started, delay_s)
