"""Who was active lately, for the admin console's previews: users of the newest events in the
event stream, and whether a user id is known at all (read-only; nothing here writes).

A user is known when Redis holds something serving would use for them: a session history
(``SessionStore``), segments in the published clustering version or declared preferences
(``RedisSegmentStore``). The key layouts stay with those stores.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

import redis

from recommender.settings import RedisSettings
from recommender.stores._redis import open_redis, redis_errors_translated
from recommender.stores.events import EventStream
from recommender.stores.segments import RedisSegmentStore
from recommender.stores.sessions import SessionStore

__all__ = ["RecentUsers"]

# Newest stream entries scanned for a sample: a few seconds of traffic on a busy marketplace.
SCAN_ENTRIES = 2_000


class RecentUsers:
    def __init__(self, settings: RedisSettings, *, client: redis.Redis | None = None):
        self.settings = settings
        self.client = client or open_redis(settings)
        self.events = EventStream(settings, client=self.client)
        self.sessions = SessionStore(settings, client=self.client)
        self.segments = RedisSegmentStore(settings, client=self.client)

    def active(self, *, scan: int = SCAN_ENTRIES) -> list[str]:
        """Return the distinct user ids of the newest ``scan`` events in the stream, newest first
        (logged-out events, listings and unparsable entries are skipped)."""
        with redis_errors_translated("reading recent events", self.settings.url):
            rows = self.client.xrevrange(self.events.key, count=scan)
        users: dict[str, None] = {}
        for _, fields in rows:
            try:
                user = json.loads(fields.get("e", "")).get("user_id")
            except (ValueError, AttributeError):
                continue
            if isinstance(user, str) and user:
                users.setdefault(user)
        return list(users)

    def sample(self, n: int, *, rng: random.Random | None = None) -> list[str]:
        """Return up to ``n`` user ids drawn at random from the recently active ones (``active``)."""
        users = self.active()
        return (rng or random).sample(users, min(n, len(users)))

    def unknown(self, user_ids: Sequence[str]) -> list[str]:
        """Return the ids of ``user_ids`` (in order) that have no session history, no segments and
        no declared preferences: serving knows nothing about them."""
        if not user_ids:
            return []
        with redis_errors_translated("checking user ids", self.settings.url):
            version = self.client.get(self.segments.pointer_key)
            pipe = self.client.pipeline(transaction=False)
            for user in user_ids:
                keys = [self.sessions.key(user), self.segments.pref_key(user)]
                if version:
                    keys.append(self.segments.user_key(version, user))
                pipe.exists(*keys)
            found = pipe.execute()
        return [user for user, n in zip(user_ids, found) if not n]
