"""Vectors of candidates the serving model does not know (listings newer than its training), read
from the items index, where the indexer wrote each one's content vector with its first upsert.

An in-process LRU keeps them: a new listing costs one multi-get the first time it is a
candidate and nothing after. The cache belongs to one model version (a content vector lives in
that model's item space) and is emptied when another version asks.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from recommender.engine import SearchEngine

__all__ = ["ItemVectorCache"]


class ItemVectorCache:
    def __init__(self, engine: SearchEngine, index: str, *, size: int = 50_000, timeout_ms: int | None = None):
        self.engine = engine
        self.index = index
        self.size = size
        self.timeout_ms = timeout_ms
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._version = ""
        self._lock = threading.Lock()

    def get_many(self, item_ids: Sequence[str], *, version: str) -> dict[str, np.ndarray]:
        """Return the index's vectors of ``item_ids`` (those that have one) for model ``version``.

        Raises the engine's errors (EngineUnavailable, NotFound) when the multi-get fails.
        """
        found: dict[str, np.ndarray] = {}
        with self._lock:
            if version != self._version:
                self._vectors.clear()
                self._version = version
            for item_id in item_ids:
                vector = self._vectors.get(item_id)
                if vector is not None:
                    self._vectors.move_to_end(item_id)
                    found[item_id] = vector
        missing = [item_id for item_id in dict.fromkeys(item_ids) if item_id not in found]
        if not missing:
            return found
        sources = self.engine.mget(self.index, [(item_id, None) for item_id in missing], fields=["embedding"],
                                   timeout_ms=self.timeout_ms)
        fetched = {}
        for item_id, source in zip(missing, sources):
            values = (source or {}).get("embedding")
            if values:
                fetched[item_id] = np.asarray(values, dtype=np.float32)
        with self._lock:
            if version == self._version:
                self._vectors.update(fetched)
                while len(self._vectors) > self.size:
                    self._vectors.popitem(last=False)
        return found | fetched
