"""Reranked feeds kept in Redis between the pages of an infinite scroll.

A feed state holds the reranked candidates not served yet (compact rows: id, score,
category, and the per-component scores only when the feed explains itself), the ids
already served, where the engine's result list ended (to fetch more after it), and the
profile and model versions it was made with. It expires ``ttl_s`` after the last page.

Saving is off the request path: ``save_soon`` hands the state to a writer thread that
sends every state queued meanwhile in one pipeline, so a page costs no Redis round trip
of its own. Until a state is written, ``load`` answers from the queue, so the next page
served by this process never misses it. ``save`` writes at once and raises, for callers
that must know (a request that already found Redis down).
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from recommender.errors import StoreUnavailable
from recommender.settings import RedisSettings
from recommender.stores._redis import open_redis, redis_errors_translated

__all__ = ["PageRow", "FeedState", "FeedPageStore"]

_log = logging.getLogger(__name__)

# (item id, score, category, component scores or None)
PageRow = tuple[str, float, str, "dict[str, float] | None"]


@dataclass
class FeedState:
    feed_id: str
    profile_name: str
    profile_version: str
    model_version: str
    request_key: str  # what the cursor may be used for: rpc, user, session, region, item
    pending: list[PageRow] = field(default_factory=list)
    served: list[str] = field(default_factory=list)
    engine_after: list[Any] | None = None  # [score, item_id] of the last engine hit, or None when exhausted
    pages: int = 0
    served_from: str = "engine"
    # The engine list ran out under the profile's candidate window and continued without it.
    widened: bool = False
    # The viewer's declared preferences as of the first page (their updated_at; None: none).
    declared_at: float | None = None

    def encode(self) -> bytes:
        """Return the state as compact JSON (rows as arrays, not objects)."""
        return orjson.dumps(
            [self.feed_id, self.profile_name, self.profile_version, self.model_version, self.request_key,
             self.pending, self.served, self.engine_after, self.pages, self.served_from, self.widened,
             self.declared_at]
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> "FeedState":
        """Return the state ``encode`` wrote."""
        (feed_id, name, version, model, key, pending, served, after, pages, served_from, widened,
         declared_at) = orjson.loads(raw)
        return cls(feed_id, name, version, model, key, [tuple(row) for row in pending], served, after, pages,
                   served_from, widened, declared_at)


class FeedPageStore:
    def __init__(self, settings: RedisSettings, *, ttl_s: int = 1800, client: redis.Redis | None = None):
        self.settings = settings
        self.ttl_s = ttl_s
        self.client = client or open_redis(settings)
        self._queued: dict[str, bytes] = {}
        self._wake = threading.Condition()
        self._stopped = False
        self._writer: threading.Thread | None = None

    def _key(self, feed_id: str) -> str:
        return f"{self.settings.key_prefix}feed:{feed_id}"

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def save(self, state: FeedState) -> None:
        """Write the state now. Raises StoreUnavailable when Redis is down."""
        with redis_errors_translated("saving a feed page", self.settings.url):
            self.client.set(self._key(state.feed_id), state.encode(), ex=self.ttl_s)

    def save_soon(self, state: FeedState) -> None:
        """Queue the state for the writer thread (started on first use); return at once."""
        with self._wake:
            if self._writer is None:
                self._stopped = False
                self._writer = threading.Thread(target=self._write_queued, name="feed-page-writer", daemon=True)
                self._writer.start()
            self._queued[state.feed_id] = state.encode()
            self._wake.notify()

    def load(self, feed_id: str, *, declared_key: str | None = None) -> tuple[FeedState | None, float | None]:
        """Return (the saved or still queued state or None, the viewer's declared-preferences time).

        ``declared_key`` is the viewer's preference hash (read in the same round trip, so a
        scroll notices preferences set since its first page); None reads no preferences.
        """
        with self._wake:
            queued = self._queued.get(feed_id)
        with redis_errors_translated("loading a feed page", self.settings.url):
            pipe = self.client.pipeline(transaction=False)
            if queued is None:
                pipe.get(self._key(feed_id))
            if declared_key:
                pipe.hget(declared_key, "updated_at")
            replies = pipe.execute() if (queued is None or declared_key) else []
        raw = queued if queued is not None else (replies.pop(0) if replies else None)
        declared_at = float(replies[0]) if declared_key and replies and replies[0] else None
        return (FeedState.decode(raw) if raw else None), declared_at

    def close(self) -> None:
        """Write what is queued, then stop the writer thread."""
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        if self._writer is not None:
            self._writer.join(timeout=5)
            self._writer = None

    def _write_queued(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._queued or self._stopped)
                if not self._queued and self._stopped:
                    return
                batch = dict(self._queued)
            try:
                with redis_errors_translated("saving feed pages", self.settings.url):
                    pipe = self.client.pipeline(transaction=False)
                    for feed_id, raw in batch.items():
                        pipe.set(self._key(feed_id), raw, ex=self.ttl_s)
                    pipe.execute()
            except StoreUnavailable as exc:
                # Their cursors then restart from the first page, flagged: nothing is served twice.
                _log.warning("dropped %d saved feeds: %s", len(batch), exc)
            except Exception:  # noqa: BLE001 - the writer must outlive any one bad batch
                _log.exception("dropped %d saved feeds", len(batch))
            with self._wake:
                for feed_id, raw in batch.items():
                    if self._queued.get(feed_id) is raw:
                        del self._queued[feed_id]
                self._wake.notify_all()
