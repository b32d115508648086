"""Session histories in Redis: the last items a session (or a signed-in user) looked at.

One list per session, newest first, capped at ``max_items`` and expiring ``ttl_s`` after
the last event. Written by RecordEvents, read by every feed request without recent ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from recommender.settings import RedisSettings
from recommender.stores._redis import open_redis, redis_errors_translated

__all__ = ["SessionStore"]


class SessionStore:
    def __init__(
        self,
        settings: RedisSettings,
        *,
        max_items: int = 50,
        ttl_s: int = 6 * 3600,
        client: redis.Redis | None = None,
    ):
        self.settings = settings
        self.max_items = max_items
        self.ttl_s = ttl_s
        self.client = client or open_redis(settings)

    def key(self, session_id: str) -> str:
        """Return the Redis list key of a session's history."""
        return f"{self.settings.key_prefix}session:{session_id}"

    def append(self, session_id: str, item_ids: Sequence[str]) -> None:
        """Add items (oldest first) to the session's history, keep the newest ``max_items``."""
        if not item_ids:
            return
        key = self.key(session_id)
        with redis_errors_translated("writing a session", self.settings.url):
            pipe = self.client.pipeline(transaction=True)
            pipe.lpush(key, *item_ids)
            pipe.ltrim(key, 0, self.max_items - 1)
            pipe.expire(key, self.ttl_s)
            pipe.execute()

    def recent(self, session_id: str) -> list[str]:
        """Return the session's items oldest first (empty for an unknown or expired session)."""
        with redis_errors_translated("reading a session", self.settings.url):
            newest_first = self.client.lrange(self.key(session_id), 0, self.max_items - 1)
        return list(reversed(newest_first))
