"""Redis-backed stores. ``open_redis`` is the one place a Redis client is made."""

from recommender.stores._redis import open_redis, redis_errors_translated

__all__ = ["open_redis", "redis_errors_translated"]
