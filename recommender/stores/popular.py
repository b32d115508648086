"""The popular fallback feed in Redis: top item ids globally and per region, written by the
indexer after each run and served by the recommender when the engine is down."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence

import redis

from recommender.cohorts import normalize_cohort_value, region_cohort
from recommender.settings import RedisSettings
from recommender.stores._redis import open_redis, redis_errors_translated

__all__ = ["PopularStore", "GLOBAL_SCOPE"]

GLOBAL_SCOPE = "global"


class PopularStore:
    def __init__(self, settings: RedisSettings, *, client: redis.Redis | None = None):
        self.settings = settings
        self.client = client or open_redis(settings)
        self.key = f"{settings.key_prefix}popular"

    def write(self, lists: Mapping[str, Sequence[str]], *, index: str) -> None:
        """Replace all lists at once ("global" and "region:<r>" -> item ids, best first)."""
        payload = {scope: json.dumps(list(ids)) for scope, ids in lists.items()}
        payload["_meta"] = json.dumps({"index": index, "written_at": time.time()})
        with redis_errors_translated("writing the popular fallback", self.settings.url):
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.key)
            pipe.hset(self.key, mapping=payload)
            pipe.execute()

    def read(self, region: str | None = None) -> list[str]:
        """Return the region's list when there is one, else the global list (empty if never written)."""
        token = normalize_cohort_value(region)
        scopes = ([region_cohort(token)] if token else []) + [GLOBAL_SCOPE]
        with redis_errors_translated("reading the popular fallback", self.settings.url):
            values = self.client.hmget(self.key, scopes)
        for value in values:
            if value:
                return json.loads(value)
        return []
