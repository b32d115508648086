"""Reranked feeds kept in Redis between the pages of an infinite scroll.

A feed state holds the reranked candidates not served yet, the ids already served, where
the engine's result list ended (to fetch more after it), and the profile and model versions
it was made with. It expires ``ttl_s`` after the last page was served.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from recommender.settings import RedisSettings
from recommender.stores._redis import open_redis, redis_errors_translated

__all__ = ["FeedState", "FeedPageStore"]


@dataclass
class FeedState:
    feed_id: str
    profile_name: str
    profile_version: str
    model_version: str
    request_key: str  # what the cursor may be used for: rpc, user, session, region, item
    pending: list[dict[str, Any]] = field(default_factory=list)  # {item_id, score, category, components}
    served: list[str] = field(default_factory=list)
    engine_after: list[Any] | None = None  # [score, item_id] of the last engine hit, or None when exhausted
    pages: int = 0
    served_from: str = "engine"


class FeedPageStore:
    def __init__(self, settings: RedisSettings, *, ttl_s: int = 1800, client: redis.Redis | None = None):
        self.settings = settings
        self.ttl_s = ttl_s
        self.client = client or open_redis(settings)

    def _key(self, feed_id: str) -> str:
        return f"{self.settings.key_prefix}feed:{feed_id}"

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def save(self, state: FeedState) -> None:
        with redis_errors_translated("saving a feed page", self.settings.url):
            self.client.set(self._key(state.feed_id), json.dumps(asdict(state), separators=(",", ":")), ex=self.ttl_s)

    def load(self, feed_id: str) -> FeedState | None:
        """Return the saved state, or None when it expired or never existed."""
        with redis_errors_translated("loading a feed page", self.settings.url):
            raw = self.client.get(self._key(feed_id))
        return FeedState(**json.loads(raw)) if raw else None
