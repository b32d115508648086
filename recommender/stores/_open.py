"""``open_stores``: every Redis store the recommender uses, over one shared client."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from recommender.settings import Settings
from recommender.stores._redis import open_redis
from recommender.stores.events import EventStream
from recommender.stores.feed_pages import FeedPageStore
from recommender.stores.popular import PopularStore
from recommender.stores.segments import RedisSegmentStore
from recommender.stores.sessions import SessionStore

__all__ = ["ServingStores", "open_stores"]


@dataclass(frozen=True)
class ServingStores:
    client: redis.Redis
    segments: RedisSegmentStore
    sessions: SessionStore
    pages: FeedPageStore
    popular: PopularStore
    events: EventStream

    def close(self) -> None:
        """Write queued feed pages, then close the shared connection pool."""
        self.pages.close()
        self.client.close()


def open_stores(settings: Settings) -> ServingStores:
    """Return the recommender's stores sharing one Redis client (connections are made lazily)."""
    # A hung Redis must degrade a feed like a dead one, within the request's budget.
    client = open_redis(settings.redis, timeout_ms=min(settings.redis.timeout_ms, settings.server.redis_timeout_ms))
    return ServingStores(
        client=client,
        segments=RedisSegmentStore(settings.redis, client=client),
        sessions=SessionStore(settings.redis, max_items=settings.server.session_max_items,
                              ttl_s=settings.server.session_ttl_s, client=client),
        pages=FeedPageStore(settings.redis, ttl_s=settings.server.feed_ttl_s, client=client),
        popular=PopularStore(settings.redis, client=client),
        events=EventStream(settings.redis, client=client),
    )
