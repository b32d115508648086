"""Redis-backed stores. ``open_redis`` is the one place a Redis client is made; ``open_stores``
opens every store the recommender uses over one shared client (one connection pool)."""

from recommender.stores._redis import open_redis, redis_errors_translated
from recommender.stores._open import ServingStores, open_stores

__all__ = ["open_redis", "redis_errors_translated", "ServingStores", "open_stores"]
