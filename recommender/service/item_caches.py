"""In-process item caches of the feed service: item documents for the product/similar source-item
lookup, and the vectors of candidates the serving model does not know.

``ItemCache`` is an LRU with a short time to live. ``ItemVectorCache`` holds the index's vectors
of listings newer than the model's training (the indexer wrote each one's content vector with
its first upsert): a new listing costs one multi-get the first time it is a candidate and
nothing after. It belongs to one model version (a content vector lives in that model's item
space) and starts empty when another version asks.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from recommender.engine import SearchEngine

__all__ = ["ItemCache", "ItemVectorCache"]


class ItemCache:
    """In-process LRU of item documents (metadata and vector) with a short time to live.

    The TTL bounds how long a status change can hide from the product/similar source-item
    lookup; feeds themselves always filter status in the engine.
    """

    def __init__(self, *, size: int = 10_000, ttl_s: float = 30.0):
        self.size = size
        self.ttl_s = ttl_s
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, item_id: str) -> Any:
        with self._lock:
            hit = self._items.get(item_id)
            if hit is None or time.monotonic() - hit[0] > self.ttl_s:
                return None
            self._items.move_to_end(item_id)
            return hit[1]

    def put(self, item_id: str, value: Any) -> None:
        with self._lock:
            self._items[item_id] = (time.monotonic(), value)
            self._items.move_to_end(item_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class ItemVectorCache:
    def __init__(self, engine: SearchEngine, index: str, *, size: int = 50_000, timeout_ms: int | None = None):
        self.engine = engine
        self.index = index
        self.size = size
        self.timeout_ms = timeout_ms
        self._version = ""
        self._vectors = ItemCache(size=size, ttl_s=float("inf"))
        self._lock = threading.Lock()

    def _cache_for(self, version: str) -> ItemCache:
        with self._lock:
            if version != self._version:
                self._version, self._vectors = version, ItemCache(size=self.size, ttl_s=float("inf"))
            return self._vectors

    def get_many(self, item_ids: Sequence[str], *, version: str) -> dict[str, np.ndarray]:
        """Return the index's vectors of ``item_ids`` (those that have one) for model ``version``.

        Raises the engine's errors (EngineUnavailable, NotFound) when the multi-get fails.
        """
        cache = self._cache_for(version)
        found = {item_id: vector for item_id in dict.fromkeys(item_ids)
                 if (vector := cache.get(item_id)) is not None}
        missing = [item_id for item_id in dict.fromkeys(item_ids) if item_id not in found]
        if not missing:
            return found
        sources = self.engine.mget(self.index, [(item_id, None) for item_id in missing], fields=["embedding"],
                                   timeout_ms=self.timeout_ms)
        for item_id, source in zip(missing, sources):
            values = (source or {}).get("embedding")
            if values:
                found[item_id] = np.asarray(values, dtype=np.float32)
                cache.put(item_id, found[item_id])
        return found
